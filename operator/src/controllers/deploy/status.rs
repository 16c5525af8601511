//! Stage 5 of the Deploy pipeline: the verdict on a deploy whose objects are applied (from
//! its Deployment and pods), the status a verdict stands for (pure), and writing it.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kpages_crds::deploy::DeployedFunction;
use kpages_crds::{Deploy, DeployPhase, DeployStatus, Manifest, Site};
use kpages_store::StoreError;
use kube::api::ListParams;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};

use super::Built;
use crate::context::{Context, Error, condition};
use crate::controllers::apply::apply_status;
use crate::desired::pod_labels;
use crate::names;

/// The verdict on a deploy whose objects are applied: a static deploy, scaled to zero,
/// superseded, or what its pods say.
pub(super) async fn observe(
    ctx: &Context,
    deploy: &Deploy,
    site: &Site,
    built: &Built,
    deployment: Option<&Deployment>,
) -> Result<Outcome, Error> {
    let Built {
        objects,
        replicas,
        warm,
        ..
    } = built;
    Ok(if objects.is_empty() {
        if *warm {
            Outcome::ready("NoFunctions", "static deploy: no functions, no pods".into())
        } else {
            Outcome::superseded()
        }
    } else if *replicas == 0 && *warm {
        Outcome::ready(
            "ScaledToZero",
            format!(
                "no calls for {}s: no pods until the next call, which the router holds while one starts",
                site.spec.retention.scale_to_zero_after_seconds
            ),
        )
    } else if *replicas == 0 || !*warm {
        Outcome::superseded()
    } else {
        let ns = deploy.namespace().unwrap_or_default();
        pods_outcome(ctx, &ns, deploy, deployment, *replicas).await?
    })
}

/// The phase of a deploy whose pods should run, from its Deployment and pods.
async fn pods_outcome(
    ctx: &Context,
    ns: &str,
    deploy: &Deploy,
    deployment: Option<&Deployment>,
    replicas: i32,
) -> Result<Outcome, Error> {
    let ready = deployment
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    if ready > 0 {
        let mut o = Outcome::ready(
            "PodsReady",
            format!("{ready}/{replicas} function pods ready"),
        );
        o.ready_replicas = Some(ready);
        return Ok(o);
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let selector: Vec<String> = pod_labels(&deploy.spec.site, &deploy.name_any())
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let list = pods
        .list(&ListParams::default().labels(&selector.join(",")))
        .await
        .map_err(|source| Error::Dereference {
            what: format!("Pods of Deploy {ns}/{}", deploy.name_any()),
            source,
        })?;
    let mut o = match list.items.iter().find_map(fetch_failure) {
        Some(message) if message.contains("is corrupt") => Outcome::failed(
            "DigestMismatch",
            format!("a function blob does not match its digest: {message}"),
        ),
        Some(message) => Outcome::provisioning(
            "BundleFetchFailed",
            format!("the init container could not fetch the bundles: {message}"),
        ),
        None => Outcome::provisioning(
            "PodsNotReady",
            format!(
                "0/{replicas} function pods ready ({} created); see kubectl describe pods -l kpages.dev/deploy={}",
                list.items.len(),
                names::label_value(&deploy.name_any())
            ),
        ),
    };
    o.ready_replicas = Some(0);
    Ok(o)
}

/// The termination message of a failed `fetch-bundles` init container, if any.
fn fetch_failure(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?.init_container_statuses.as_ref()?;
    statuses.iter().find_map(|s| {
        let terminated = s
            .state
            .as_ref()
            .and_then(|st| st.terminated.as_ref())
            .filter(|t| t.exit_code != 0)
            .or_else(|| {
                s.last_state
                    .as_ref()
                    .and_then(|st| st.terminated.as_ref())
                    .filter(|t| t.exit_code != 0)
            })?;
        Some(
            terminated
                .message
                .clone()
                .map(|m| m.trim().to_string())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| format!("exit code {}", terminated.exit_code)),
        )
    })
}

/// A reconcile's verdict on a deploy, before it becomes a status.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Phase.
    pub phase: DeployPhase,
    /// Reason of the `Ready` condition (and of the event).
    pub reason: String,
    /// Message of the `Ready` condition.
    pub message: String,
    /// Ready pods, when known.
    pub ready_replicas: Option<i32>,
    /// Whether the manifest was read.
    pub manifest_ok: bool,
}

impl Outcome {
    fn new(phase: DeployPhase, reason: &str, message: String, manifest_ok: bool) -> Self {
        Self {
            phase,
            reason: reason.into(),
            message,
            ready_replicas: None,
            manifest_ok,
        }
    }
    pub(super) fn pending(reason: &str, message: String) -> Self {
        Self::new(DeployPhase::Pending, reason, message, false)
    }
    pub(super) fn failed(reason: &str, message: String) -> Self {
        Self::new(DeployPhase::Failed, reason, message, true)
    }
    fn provisioning(reason: &str, message: String) -> Self {
        Self::new(DeployPhase::Provisioning, reason, message, true)
    }
    fn ready(reason: &str, message: String) -> Self {
        Self::new(DeployPhase::Ready, reason, message, true)
    }
    fn superseded() -> Self {
        Self::new(
            DeployPhase::Superseded,
            "Superseded",
            "neither active nor among the site's newest deploys: scaled to zero, kept for rollback (pin it to serve it again)"
                .into(),
            true,
        )
    }

    /// The outcome when the manifest cannot be used (not transient).
    pub fn manifest_unusable(e: &StoreError, store: &str) -> Self {
        let (reason, message) = match e {
            StoreError::NotFound { digest, .. } => (
                "ManifestNotFound",
                format!(
                    "manifest {digest} is not in object storage {store}; upload the build with kpages deploy, or fix spec.manifest in a new Deploy"
                ),
            ),
            StoreError::DigestMismatch { .. } => (
                "DigestMismatch",
                format!("{e}; the stored manifest is corrupt: upload it again"),
            ),
            _ => (
                "ManifestInvalid",
                format!("{e}; rebuild the site with a matching kpages and deploy again"),
            ),
        };
        let mut o = Self::new(DeployPhase::Failed, reason, message, false);
        o.manifest_ok = false;
        o
    }
}

/// Builds the status an outcome stands for (pure).
pub fn status_for(
    deploy: &Deploy,
    outcome: &Outcome,
    manifest: Option<&Manifest>,
    preview_url: String,
) -> DeployStatus {
    let previous: Vec<Condition> = deploy
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let generation = deploy.metadata.generation;
    let manifest_condition = if outcome.manifest_ok {
        condition(
            &previous,
            "ManifestAvailable",
            true,
            "ManifestVerified",
            "manifest read and verified",
            generation,
        )
    } else {
        condition(
            &previous,
            "ManifestAvailable",
            false,
            &outcome.reason,
            outcome.message.clone(),
            generation,
        )
    };
    let ready = condition(
        &previous,
        "Ready",
        outcome.phase == DeployPhase::Ready,
        &outcome.reason,
        outcome.message.clone(),
        generation,
    );
    let functions = manifest
        .map(|m| {
            m.functions
                .iter()
                .map(|f| DeployedFunction {
                    name: f.name.clone(),
                    invocation: f.invocation,
                    routes: f.routes.iter().map(|r| r.pattern.clone()).collect(),
                    schedule: f.schedule.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    DeployStatus {
        observed_generation: generation,
        phase: outcome.phase,
        preview_url: Some(preview_url),
        functions,
        ready_replicas: outcome.ready_replicas,
        conditions: vec![manifest_condition, ready],
    }
}

/// Applies the status `outcome` stands for, unless the Deploy has it already, and publishes an
/// event when the phase or the reason changed.
pub(super) async fn write_status(
    deploy: &Deploy,
    ctx: &Context,
    outcome: &Outcome,
    manifest: Option<&Manifest>,
) -> Result<(), Error> {
    let ns = deploy.namespace().unwrap_or_default();
    let name = deploy.name_any();
    let preview = ctx.settings.preview_url(&ns, &deploy.spec.site, &name);
    let status = status_for(deploy, outcome, manifest, preview);
    let old = deploy.status.as_ref();
    let old_ready = old.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    let changed = old.map(|s| s.phase) != Some(status.phase)
        || old_ready.map(|c| c.reason.as_str()) != Some(outcome.reason.as_str());
    if old != Some(&status) {
        apply_status::<Deploy>(&ctx.client, &ns, &name, &status).await?;
    }
    if changed {
        let type_ = match status.phase {
            DeployPhase::Failed => EventType::Warning,
            _ if outcome.reason == "BundleFetchFailed" => EventType::Warning,
            _ => EventType::Normal,
        };
        ctx.publish(deploy, type_, &outcome.reason, outcome.message.clone())
            .await;
    }
    Ok(())
}
