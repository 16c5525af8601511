//! The pure step of the Deploy reconciler: from a Site, a Deploy and its manifest, the objects
//! that should exist. No I/O, so every object is unit-tested in microseconds.
//!
//! ```text
//!  Site + Deploy + Manifest + Settings ─► Ctx (owner, namespace, labels) ─► DesiredObjects
//!     ├─ Deployment     deployment.rs: init container (kpages image) fetches bundles by digest
//!     │                 into an emptyDir; main container (the Site's Node image) runs the host
//!     ├─ Service        service.rs: the host port, for humans and tools (the router dials pod IPs)
//!     ├─ NetworkPolicy  network_policy.rs: only router pods may reach function pods
//!     ├─ FunctionRoute  routes.rs: one per function route of the manifest
//!     └─ CronJob        cron_job.rs: one per scheduled function, only for the site's active
//!                       production deploy
//!  pod.rs: restricted security contexts, resources and volumes the pods share
//! ```
//!
//! A deploy without functions gets none of these: it is pure static content.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kpages_crds::{Deploy, DeployContext, FunctionRoute, Manifest, Site};
use kube::{Resource, ResourceExt};

use crate::names;

mod cron_job;
mod deployment;
mod network_policy;
mod pod;
mod routes;
mod service;

pub use routes::GENERATED_ROUTE_ORDER;

/// Operator-wide settings the desired objects depend on (from flags).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Image with the kpages binaries and the function host at `runtime_dir` (init containers
    /// and schedule jobs run it).
    pub kpages_image: String,
    /// Where the function host lives inside `kpages_image`.
    pub runtime_dir: String,
    /// Store URL as pods must dial it (may differ from the operator's own view of the store).
    pub pod_store_url: String,
    /// Secret, in each site's namespace, whose keys become the init container's environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`); optional so local stores need none.
    pub store_credentials_secret: Option<String>,
    /// The router's admin base URL; schedule jobs POST to `<url>/.kpages/schedule/<ns>/<site>/<fn>`.
    pub router_admin_url: String,
    /// Labels that mark router pods; only these may reach function pods.
    pub router_pod_labels: BTreeMap<String, String>,
    /// Namespace the router runs in; `None` admits router-labelled pods from any namespace.
    pub router_namespace: Option<String>,
    /// Domain under which preview hosts live: `<deploy>--<site>.<namespace>.<domain>`.
    pub preview_domain: String,
    /// Scheme of published URLs (`https`, or `http` for local clusters).
    pub url_scheme: String,
    /// User and group the containers run as (Node images' `node` user is 1000).
    pub run_as_user: i64,
    /// Replaces the CRD's default Node image (`KPAGES_NODE_IMAGE`) for Sites that keep it.
    pub node_image: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            kpages_image: "ghcr.io/kpages/kpages:latest".into(),
            runtime_dir: "/opt/kpages/runtime".into(),
            pod_store_url: "file:///var/lib/kpages/store".into(),
            store_credentials_secret: Some("kpages-store".into()),
            router_admin_url: "http://kpages-router.kpages-system.svc:9090".into(),
            router_pod_labels: BTreeMap::from([(
                "app.kubernetes.io/name".to_string(),
                "kpages-router".to_string(),
            )]),
            router_namespace: None,
            preview_domain: "preview.kpages.localhost".into(),
            url_scheme: "https".into(),
            run_as_user: 1000,
            node_image: None,
        }
    }
}

impl Settings {
    /// The preview URL of a deploy.
    pub fn preview_url(&self, namespace: &str, site: &str, deploy: &str) -> String {
        format!(
            "{}://{deploy}--{site}.{namespace}.{}",
            self.url_scheme, self.preview_domain
        )
    }

    /// Every URL of a site: its domains, or its preview host when it has none.
    pub fn site_urls(&self, site: &Site) -> Vec<String> {
        let namespace = site.namespace().unwrap_or_default();
        if site.spec.domains.is_empty() {
            vec![format!(
                "{}://{}.{namespace}.{}",
                self.url_scheme,
                site.name_any(),
                self.preview_domain
            )]
        } else {
            site.spec
                .domains
                .iter()
                .map(|d| format!("{}://{}", self.url_scheme, d.replace("*.", "www.")))
                .collect()
        }
    }
}

/// What the pure step needs about one deploy.
#[derive(Debug, Clone, Copy)]
pub struct DeployInputs<'a> {
    /// The deploy's site.
    pub site: &'a Site,
    /// The deploy.
    pub deploy: &'a Deploy,
    /// Its manifest, read and verified.
    pub manifest: &'a Manifest,
    /// Pods to run (0 when the deploy is neither active nor recent).
    pub replicas: i32,
    /// Whether it is the site's active deploy.
    pub active: bool,
}

/// Everything a deploy should own.
#[derive(Debug, Clone, Default)]
pub struct DesiredObjects {
    /// Function pods; `None` when the deploy has no functions.
    pub deployment: Option<Deployment>,
    /// Service in front of the pods.
    pub service: Option<Service>,
    /// Who may reach the pods.
    pub network_policy: Option<NetworkPolicy>,
    /// One per function route.
    pub routes: Vec<FunctionRoute>,
    /// One per scheduled function of the active production deploy.
    pub cron_jobs: Vec<CronJob>,
}

impl DesiredObjects {
    /// Whether the deploy should own nothing (it has no functions).
    pub fn is_empty(&self) -> bool {
        self.deployment.is_none()
            && self.service.is_none()
            && self.network_policy.is_none()
            && self.routes.is_empty()
            && self.cron_jobs.is_empty()
    }
}

/// Why desired objects cannot be built.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DesiredError {
    /// The Deploy lacks metadata the API server always sets (it was not read from the cluster).
    #[error("Deploy has no {0}: only stored objects can be reconciled")]
    MissingMetadata(&'static str),
}

/// Builds the objects a deploy should own.
pub fn desired(
    inputs: DeployInputs<'_>,
    settings: &Settings,
) -> Result<DesiredObjects, DesiredError> {
    let DeployInputs {
        deploy, manifest, ..
    } = inputs;
    let owner = deploy
        .controller_owner_ref(&())
        .ok_or(DesiredError::MissingMetadata("uid"))?;
    let namespace = deploy
        .namespace()
        .ok_or(DesiredError::MissingMetadata("namespace"))?;
    let deploy_name = deploy
        .meta()
        .name
        .clone()
        .ok_or(DesiredError::MissingMetadata("name"))?;
    if manifest.functions.is_empty() {
        return Ok(DesiredObjects::default());
    }
    let ctx = Ctx {
        inputs,
        settings,
        owner,
        namespace,
        deploy_name,
    };
    let active_production = inputs.active && deploy.spec.context == DeployContext::Production;
    Ok(DesiredObjects {
        deployment: Some(ctx.deployment()),
        service: Some(ctx.service()),
        network_policy: Some(ctx.network_policy()),
        routes: ctx.routes(),
        cron_jobs: if active_production {
            ctx.cron_jobs()
        } else {
            Vec::new()
        },
    })
}

/// One deploy's inputs with the metadata every object needs, checked once by [`desired`]; each
/// object's module adds its builder to it.
struct Ctx<'a> {
    inputs: DeployInputs<'a>,
    settings: &'a Settings,
    owner: OwnerReference,
    namespace: String,
    deploy_name: String,
}

/// Labels of function pods (the Deployment's selector).
pub fn pod_labels(site: &str, deploy: &str) -> BTreeMap<String, String> {
    let mut labels = names::deploy_labels(site, deploy);
    labels.insert(
        names::COMPONENT_LABEL.into(),
        names::FUNCTION_COMPONENT.into(),
    );
    labels
}

impl Ctx<'_> {
    fn site_name(&self) -> &str {
        &self.inputs.deploy.spec.site
    }

    fn meta(&self, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }

    fn labels(&self) -> BTreeMap<String, String> {
        names::deploy_labels(self.site_name(), &self.deploy_name)
    }

    fn pod_labels(&self) -> BTreeMap<String, String> {
        pod_labels(self.site_name(), &self.deploy_name)
    }

    fn defaults(&self) -> &kpages_crds::site::FunctionDefaults {
        &self.inputs.site.spec.functions
    }
}

#[cfg(test)]
mod tests;
