//! The pure step of the Deploy reconciler: from a Site, a Deploy and its manifest, the objects
//! that should exist. No I/O, so every object is unit-tested in microseconds.
//!
//! ```text
//!  Site + Deploy + Manifest + Settings ─► DesiredObjects
//!     ├─ Deployment     init container (kpages image) fetches bundles by digest into an emptyDir;
//!     │                 main container (the Site's Node image) runs the function host from it
//!     ├─ Service        the host port, for humans and tools (the router dials pod IPs)
//!     ├─ NetworkPolicy  only router pods may reach function pods
//!     ├─ FunctionRoute  one per function route of the manifest
//!     └─ CronJob        one per scheduled function, only for the site's active production deploy
//! ```
//!
//! A deploy without functions gets none of these: it is pure static content.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource, EnvVar,
    EnvVarSource, HTTPGetAction, Lifecycle, LifecycleHandler, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretEnvSource, SecurityContext,
    Service, ServicePort, ServiceSpec, SleepAction, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kpages_crds::function_route::{
    FunctionBackend, HttpMethod, PathMatch, PathMatchType, RouteBackend, RouteInvocation,
    RouteMatch,
};
use kpages_crds::manifest::{Function, InvocationKind, Route, RouteSyntax};
use kpages_crds::{Deploy, DeployContext, FunctionRoute, FunctionRouteSpec, Manifest, Site};
use kube::{Resource, ResourceExt};

use crate::names::{self, BUNDLE_DIR, HOST_PORT, HOST_PORT_NAME, READY_PATH};

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

/// Seconds a function pod keeps serving after it is told to stop, before its host drains.
const PRE_STOP_SECONDS: i64 = 5;

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

    /// The Site's Node image, or the operator's replacement when the Site keeps the default.
    fn node_image(&self, settings: &Settings) -> String {
        let image = &self.defaults().image;
        match &settings.node_image {
            Some(replacement) if image == kpages_crds::limits::DEFAULT_NODE_IMAGE => {
                replacement.clone()
            }
            _ => image.clone(),
        }
    }

    fn context_name(&self) -> &'static str {
        match self.inputs.deploy.spec.context {
            DeployContext::Production => "production",
            DeployContext::Preview => "preview",
        }
    }

    /// `URL`: the site's main address, for every deploy (Netlify's meaning), so a deploy's
    /// pods do not change (and roll) when it goes live.
    fn url(&self) -> String {
        self.settings
            .site_urls(self.inputs.site)
            .into_iter()
            .next()
            .unwrap_or_default()
    }

    /// `DEPLOY_URL`: this deploy's own preview address.
    fn deploy_url(&self) -> String {
        self.settings
            .preview_url(&self.namespace, self.site_name(), &self.deploy_name)
    }

    fn deployment(&self) -> Deployment {
        let labels = self.pod_labels();
        let mut meta = self.meta(names::workload_name(&self.deploy_name), labels.clone());
        meta.annotations = Some(BTreeMap::from([(
            "kpages.dev/manifest".to_string(),
            self.inputs.deploy.spec.manifest.to_string(),
        )]));
        let pod = PodSpec {
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(self.settings.run_as_user),
                run_as_group: Some(self.settings.run_as_user),
                fs_group: Some(self.settings.run_as_user),
                seccomp_profile: Some(runtime_default()),
                ..PodSecurityContext::default()
            }),
            // The host's own grace (KPAGES_SHUTDOWN_GRACE_MS) is shorter, so it exits first.
            // The pre-stop pause, then the host's drain (KPAGES_SHUTDOWN_GRACE_MS), then SIGKILL.
            termination_grace_period_seconds: Some(PRE_STOP_SECONDS + 30),
            init_containers: Some(vec![self.fetch_container()]),
            containers: vec![self.host_container()],
            volumes: Some(vec![
                empty_dir("bundles", Some("1Gi")),
                empty_dir("tmp", Some("256Mi")),
            ]),
            ..PodSpec::default()
        };
        Deployment {
            metadata: meta,
            spec: Some(DeploymentSpec {
                replicas: Some(self.inputs.replicas),
                revision_history_limit: Some(2),
                selector: LabelSelector {
                    match_labels: Some(labels.clone()),
                    ..LabelSelector::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(pod),
                },
                ..DeploymentSpec::default()
            }),
            status: None,
        }
    }

    fn fetch_container(&self) -> Container {
        let d = self.defaults();
        Container {
            name: "fetch-bundles".into(),
            image: Some(self.settings.kpages_image.clone()),
            image_pull_policy: Some("IfNotPresent".into()),
            command: Some(vec!["kpages-operator".into(), "fetch-bundles".into()]),
            args: Some(vec![
                "--store".into(),
                self.settings.pod_store_url.clone(),
                "--manifest".into(),
                self.inputs.deploy.spec.manifest.to_string(),
                "--out".into(),
                BUNDLE_DIR.into(),
                "--runtime".into(),
                self.settings.runtime_dir.clone(),
                "--timeout-seconds".into(),
                d.timeout_seconds.to_string(),
                "--background-timeout-seconds".into(),
                d.background_timeout_seconds.to_string(),
            ]),
            env_from: self.settings.store_credentials_secret.as_ref().map(|name| {
                vec![EnvFromSource {
                    secret_ref: Some(SecretEnvSource {
                        name: name.clone(),
                        optional: Some(true),
                    }),
                    ..EnvFromSource::default()
                }]
            }),
            resources: Some(resources(
                &[("cpu", "50m"), ("memory", "64Mi")],
                &[("memory", "256Mi")],
            )),
            security_context: Some(restricted()),
            // A failed fetch's last log line becomes the pod's message, which the Deploy's
            // status quotes (BundleFetchFailed).
            termination_message_policy: Some("FallbackToLogsOnError".into()),
            volume_mounts: Some(vec![
                mount("bundles", BUNDLE_DIR, false),
                mount("tmp", "/tmp", false),
            ]),
            ..Container::default()
        }
    }

    fn host_container(&self) -> Container {
        let site = self.inputs.site;
        let mut env: Vec<EnvVar> = site
            .spec
            .env
            .iter()
            .map(|v| EnvVar {
                name: v.name.clone(),
                value: v.value.clone(),
                value_from: v.value_from.as_ref().map(|from| EnvVarSource {
                    secret_key_ref: Some(from.secret_key_ref.clone()),
                    ..EnvVarSource::default()
                }),
            })
            .collect();
        // Set after the user's so that ours win should the API's CEL rule ever be bypassed.
        let fixed = [
            ("SITE_ID", site.uid().unwrap_or_else(|| site.name_any())),
            ("SITE_NAME", site.name_any()),
            ("URL", self.url()),
            ("DEPLOY_URL", self.deploy_url()),
            ("DEPLOY_ID", self.deploy_name.clone()),
            ("CONTEXT", self.context_name().to_string()),
            ("KPAGES_SHUTDOWN_GRACE_MS", "25000".to_string()),
            ("HOME", "/tmp".to_string()),
        ];
        env.retain(|v| !fixed.iter().any(|(n, _)| *n == v.name));
        env.extend(fixed.into_iter().map(|(name, value)| EnvVar {
            name: name.into(),
            value: Some(value),
            value_from: None,
        }));
        let host = format!("{BUNDLE_DIR}/runtime/src/host.mjs");
        Container {
            name: "host".into(),
            image: Some(self.node_image(self.settings)),
            image_pull_policy: Some("IfNotPresent".into()),
            command: Some(vec!["node".into()]),
            args: Some(vec![
                host,
                "--functions".into(),
                format!("{BUNDLE_DIR}/functions.json"),
                "--port".into(),
                HOST_PORT.to_string(),
                "--host".into(),
                "0.0.0.0".into(),
            ]),
            env: Some(env),
            ports: Some(vec![ContainerPort {
                name: Some(HOST_PORT_NAME.into()),
                container_port: HOST_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            }]),
            readiness_probe: Some(Probe {
                http_get: Some(HTTPGetAction {
                    path: Some(READY_PATH.into()),
                    port: IntOrString::String(HOST_PORT_NAME.into()),
                    ..HTTPGetAction::default()
                }),
                period_seconds: Some(2),
                failure_threshold: Some(3),
                timeout_seconds: Some(2),
                ..Probe::default()
            }),
            resources: Some(self.host_resources()),
            // Keep accepting while the pod's endpoint leaves the EndpointSlices and routers'
            // tables (they lag the deletion by a moment); then the host drains on SIGTERM.
            lifecycle: Some(Lifecycle {
                pre_stop: Some(LifecycleHandler {
                    sleep: Some(SleepAction {
                        seconds: PRE_STOP_SECONDS,
                    }),
                    ..LifecycleHandler::default()
                }),
                ..Lifecycle::default()
            }),
            security_context: Some(restricted()),
            volume_mounts: Some(vec![
                mount("bundles", BUNDLE_DIR, true),
                mount("tmp", "/tmp", false),
            ]),
            ..Container::default()
        }
    }

    /// The Site's resources, else modest requests and a memory limit large enough for the
    /// largest `memoryMib` any function asks for.
    fn host_resources(&self) -> ResourceRequirements {
        if let Some(r) = &self.defaults().resources {
            return r.clone();
        }
        let memory_mib = self
            .inputs
            .manifest
            .functions
            .iter()
            .filter_map(|f| f.limits.memory_mib)
            .chain(self.inputs.manifest.site.limits.memory_mib)
            .max()
            .unwrap_or(0)
            .max(256);
        resources(
            &[("cpu", "100m"), ("memory", "128Mi")],
            &[("memory", &format!("{memory_mib}Mi"))],
        )
    }

    fn service(&self) -> Service {
        Service {
            metadata: self.meta(names::workload_name(&self.deploy_name), self.labels()),
            spec: Some(ServiceSpec {
                selector: Some(self.pod_labels()),
                ports: Some(vec![ServicePort {
                    name: Some(HOST_PORT_NAME.into()),
                    port: HOST_PORT,
                    target_port: Some(IntOrString::String(HOST_PORT_NAME.into())),
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    fn network_policy(&self) -> NetworkPolicy {
        let namespace_selector = LabelSelector {
            match_labels: self.settings.router_namespace.as_ref().map(|ns| {
                BTreeMap::from([("kubernetes.io/metadata.name".to_string(), ns.clone())])
            }),
            ..LabelSelector::default()
        };
        NetworkPolicy {
            metadata: self.meta(names::workload_name(&self.deploy_name), self.labels()),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(self.pod_labels()),
                    ..LabelSelector::default()
                }),
                policy_types: Some(vec!["Ingress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        // Both selectors in one peer: router pods, in the router's namespace.
                        namespace_selector: Some(namespace_selector),
                        pod_selector: Some(LabelSelector {
                            match_labels: Some(self.settings.router_pod_labels.clone()),
                            ..LabelSelector::default()
                        }),
                        ..NetworkPolicyPeer::default()
                    }]),
                    ports: Some(vec![NetworkPolicyPort {
                        port: Some(IntOrString::Int(HOST_PORT)),
                        protocol: Some("TCP".into()),
                        ..NetworkPolicyPort::default()
                    }]),
                }]),
                ..NetworkPolicySpec::default()
            }),
        }
    }

    fn routes(&self) -> Vec<FunctionRoute> {
        // The active deploy's routes apply to every host of the site; any other deploy's only
        // to its own preview host, so deploys of one site never fight over a path.
        let hostnames = if self.inputs.active {
            Vec::new()
        } else {
            vec![preview_host(&self.settings.preview_url(
                &self.namespace,
                self.site_name(),
                &self.deploy_name,
            ))]
        };
        let mut out = Vec::new();
        for f in &self.inputs.manifest.functions {
            let invocation = match f.invocation {
                InvocationKind::Sync => RouteInvocation::Sync,
                InvocationKind::Background => RouteInvocation::Background,
                // Scheduled functions are not reachable by URL in production.
                InvocationKind::Scheduled => continue,
            };
            for (i, route) in f.routes.iter().enumerate() {
                let mut labels = self.labels();
                labels.insert(names::FUNCTION_LABEL.into(), names::label_value(&f.name));
                let mut route_obj = FunctionRoute::new(
                    &names::route_name(&self.deploy_name, &f.name, i),
                    FunctionRouteSpec {
                        site: self.site_name().to_string(),
                        hostnames: hostnames.clone(),
                        matches: route_matches(route, f),
                        backend: RouteBackend {
                            function: Some(FunctionBackend {
                                deploy: Some(self.deploy_name.clone()),
                                name: f.name.clone(),
                            }),
                            service: None,
                        },
                        invocation,
                        prefer_static: f.prefer_static,
                        order: GENERATED_ROUTE_ORDER,
                    },
                );
                route_obj.metadata = self.meta(route_obj.name_any(), labels);
                out.push(route_obj);
            }
        }
        out
    }

    fn cron_jobs(&self) -> Vec<CronJob> {
        self.inputs
            .manifest
            .functions
            .iter()
            .filter(|f| f.invocation == InvocationKind::Scheduled)
            .filter_map(|f| f.schedule.as_ref().map(|s| (f, s)))
            .map(|(f, schedule)| self.cron_job(f, schedule))
            .collect()
    }

    fn cron_job(&self, f: &Function, schedule: &str) -> CronJob {
        let mut labels = self.labels();
        labels.insert(names::FUNCTION_LABEL.into(), names::label_value(&f.name));
        let mut pod_labels = labels.clone();
        pod_labels.insert(names::COMPONENT_LABEL.into(), "schedule".into());
        let timeout = f
            .limits
            .background_timeout_seconds
            .unwrap_or(self.defaults().background_timeout_seconds);
        let pod = PodSpec {
            restart_policy: Some("Never".into()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(self.settings.run_as_user),
                run_as_group: Some(self.settings.run_as_user),
                seccomp_profile: Some(runtime_default()),
                ..PodSecurityContext::default()
            }),
            containers: vec![Container {
                name: "trigger".into(),
                image: Some(self.settings.kpages_image.clone()),
                image_pull_policy: Some("IfNotPresent".into()),
                command: Some(vec!["kpages-operator".into(), "trigger-schedule".into()]),
                args: Some(vec![
                    "--router".into(),
                    self.settings.router_admin_url.clone(),
                    "--namespace".into(),
                    self.namespace.clone(),
                    "--site".into(),
                    self.site_name().to_string(),
                    "--function".into(),
                    f.name.clone(),
                    "--schedule".into(),
                    schedule.to_string(),
                    "--timeout-seconds".into(),
                    timeout.to_string(),
                ]),
                resources: Some(resources(
                    &[("cpu", "10m"), ("memory", "16Mi")],
                    &[("memory", "64Mi")],
                )),
                security_context: Some(restricted()),
                termination_message_policy: Some("FallbackToLogsOnError".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        };
        CronJob {
            metadata: self.meta(names::cron_job_name(&self.deploy_name, &f.name), labels),
            spec: Some(CronJobSpec {
                schedule: schedule.to_string(),
                time_zone: Some("Etc/UTC".into()),
                concurrency_policy: Some("Forbid".into()),
                starting_deadline_seconds: Some(300),
                successful_jobs_history_limit: Some(1),
                failed_jobs_history_limit: Some(3),
                job_template: JobTemplateSpec {
                    metadata: None,
                    spec: Some(JobSpec {
                        backoff_limit: Some(2),
                        active_deadline_seconds: Some(i64::from(timeout) + 120),
                        ttl_seconds_after_finished: Some(3600),
                        template: PodTemplateSpec {
                            metadata: Some(ObjectMeta {
                                labels: Some(pod_labels),
                                ..ObjectMeta::default()
                            }),
                            spec: Some(pod),
                        },
                        ..JobSpec::default()
                    }),
                },
                ..CronJobSpec::default()
            }),
            status: None,
        }
    }
}

/// Order of the FunctionRoutes the operator generates: after user-written routes (default 100).
pub const GENERATED_ROUTE_ORDER: i32 = 500;

/// The most matches a FunctionRoute may hold (the CRD's limit).
const MAX_MATCHES: usize = 16;

fn preview_host(url: &str) -> String {
    url.split_once("://")
        .map(|(_, h)| h)
        .unwrap_or(url)
        .to_string()
}

/// A manifest route as FunctionRoute matches: URLPattern routes as they are; EdgeOne file routes
/// translated (`[id]` → `:id`, `[[rest]]` → `*` plus the bare prefix, which a catch-all also
/// serves); one match per method when the function limits methods.
fn route_matches(route: &Route, f: &Function) -> Vec<RouteMatch> {
    let paths: Vec<String> = match route.syntax {
        RouteSyntax::Urlpattern => vec![route.pattern.clone()],
        RouteSyntax::File => file_route_patterns(&route.pattern),
    };
    let methods: Vec<HttpMethod> = f.methods.iter().filter_map(|m| http_method(m)).collect();
    let methods: Vec<Option<HttpMethod>> =
        if methods.is_empty() || paths.len() * methods.len() > MAX_MATCHES {
            // The router also reads the manifest's methods, so dropping them here only widens
            // what this object advertises, never what is served.
            vec![None]
        } else {
            methods.into_iter().map(Some).collect()
        };
    paths
        .iter()
        .flat_map(|p| {
            methods.iter().map(move |m| RouteMatch {
                path: PathMatch {
                    kind: PathMatchType::Pattern,
                    value: p.clone(),
                },
                method: *m,
            })
        })
        .take(MAX_MATCHES)
        .collect()
}

fn file_route_patterns(pattern: &str) -> Vec<String> {
    let mut catch_all = false;
    let segments: Vec<String> = pattern
        .split('/')
        .map(|seg| {
            if let Some(name) = seg.strip_prefix("[[").and_then(|s| s.strip_suffix("]]")) {
                catch_all = !name.is_empty();
                "*".to_string()
            } else if let Some(name) = seg.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                format!(":{name}")
            } else {
                seg.to_string()
            }
        })
        .collect();
    let joined = segments.join("/");
    if catch_all {
        let bare = joined.trim_end_matches("/*");
        let bare = if bare.is_empty() { "/" } else { bare };
        vec![bare.to_string(), joined]
    } else {
        vec![joined]
    }
}

fn http_method(m: &str) -> Option<HttpMethod> {
    Some(match m.to_ascii_uppercase().as_str() {
        "GET" => HttpMethod::GET,
        "HEAD" => HttpMethod::HEAD,
        "POST" => HttpMethod::POST,
        "PUT" => HttpMethod::PUT,
        "PATCH" => HttpMethod::PATCH,
        "DELETE" => HttpMethod::DELETE,
        "OPTIONS" => HttpMethod::OPTIONS,
        _ => return None,
    })
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

/// The container security context of Pod Security Standards "restricted".
fn restricted() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default()),
        ..SecurityContext::default()
    }
}

fn resources(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> ResourceRequirements {
    let map = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect::<BTreeMap<_, _>>()
    };
    ResourceRequirements {
        requests: Some(map(requests)),
        limits: Some(map(limits)),
        ..ResourceRequirements::default()
    }
}

fn empty_dir(name: &str, size: Option<&str>) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: size.map(|s| Quantity(s.into())),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

#[cfg(test)]
mod tests;
