//! The Deploy controller: dereference the Site → read and verify the manifest → build the
//! desired objects (pure) → server-side apply them, pruning jobs and routes no longer wanted →
//! status (phase, conditions with actionable reasons, preview URL, functions) and events.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kpages_crds::deploy::DeployedFunction;
use kpages_crds::{Deploy, DeployPhase, DeployStatus, FunctionRoute, Manifest, Site};
use kpages_store::StoreError;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::instrument;

use crate::context::{Context, Error, condition};
use crate::controllers::apply::{apply, apply_status};
use crate::controllers::{Scope, run_controller};
use crate::desired::{DeployInputs, DesiredObjects, desired, pod_labels};
use crate::names;
use crate::plan::{DeployInfo, LAST_CALL_ANNOTATION, Scale, plan, scale};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "deploy";

/// How often a deploy whose pods are starting is looked at again (pod failures such as a
/// crashing init container do not change the Deployment, so no watch event would come).
const PROVISIONING_RECHECK: Duration = Duration::from_secs(10);
/// How often a deploy whose manifest or bundles are missing is retried: `kpages deploy`
/// uploads blobs before creating the Deploy, so this only covers uploads done by hand.
const MISSING_RECHECK: Duration = Duration::from_secs(300);

/// Runs the Deploy controller until shutdown.
pub async fn run(ctx: Arc<Context>, namespace: Option<&str>) {
    run_controller(ctx, namespace, CONTROLLER, reconcile, related).await;
}

/// What else triggers a Deploy reconcile: its Deployment (pods becoming ready), and any change
/// to its Site (pin, status.activeDeploy, env, image), which affects all of the site's deploys.
fn related(
    controller: Controller<DeserializeGuard<Deploy>>,
    scope: &Scope,
) -> Controller<DeserializeGuard<Deploy>> {
    let deploys = controller.store();
    controller
        .owns(
            scope.api::<Deployment>(),
            watcher::Config::default().labels("app.kubernetes.io/managed-by=kpages"),
        )
        .watches(
            scope.api::<DeserializeGuard<Site>>(),
            watcher::Config::default(),
            move |site| {
                let (Ok(site), Some(ns)) = (&site.0, site.namespace()) else {
                    return Vec::new();
                };
                let name = site.name_any();
                deploys
                    .state()
                    .into_iter()
                    .filter_map(|d| match &d.0 {
                        Ok(d) if d.spec.site == name && d.namespace().as_deref() == Some(&ns) => {
                            Some(ObjectRef::new(&d.name_any()).within(&ns))
                        }
                        _ => None,
                    })
                    .collect()
            },
        )
}

/// Reconciles one Deploy (see the module docs).
#[instrument(skip_all, fields(deploy = %guard.name_any(), namespace = guard.namespace().unwrap_or_default()))]
pub async fn reconcile(
    guard: Arc<DeserializeGuard<Deploy>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let deploy = crate::context::unguard(&guard)?;
    if deploy.meta().deletion_timestamp.is_some() {
        // Owner references cascade the deletion; nothing external to clean up.
        return Ok(Action::await_change());
    }
    reconcile_deploy(deploy, &ctx).await
}

/// Makes the Site an owner of the Deploy, so deleting a Site deletes its deploys (and, through
/// theirs, everything they own), however the Deploy was created (`kpages deploy`, GitOps), and
/// labels it with its site (`kpages.dev/site`), by which reconciles list a site's deploys
/// (see [`Context::site_deploys`]). Its own field manager keeps both apart from anything else
/// written to the Deploy. Best effort: a failure is logged and retried on the next reconcile.
async fn adopt(deploy: &Deploy, site: &Site, ctx: &Context) {
    let Some(uid) = site.uid() else { return };
    let owned = deploy.owner_references().iter().any(|o| o.uid == uid);
    let label = names::label_value(&site.name_any());
    let labelled = deploy.labels().get(names::SITE_LABEL) == Some(&label);
    if owned && labelled {
        return;
    }
    let ns = deploy.namespace().unwrap_or_default();
    let api: Api<Deploy> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = json!({
        "apiVersion": Deploy::api_version(&()),
        "kind": Deploy::kind(&()),
        "metadata": {
            "name": deploy.name_any(),
            "labels": { names::SITE_LABEL: label },
            "ownerReferences": [{
                "apiVersion": Site::api_version(&()),
                "kind": Site::kind(&()),
                "name": site.name_any(),
                "uid": uid,
            }],
        },
    });
    let params = PatchParams::apply(OWNER_FIELD_MANAGER).force();
    if let Err(e) = api
        .patch(&deploy.name_any(), &params, &Patch::Apply(&patch))
        .await
    {
        tracing::warn!(error = %e, "cannot make the Site an owner of its Deploy and label it");
    }
}

/// Field manager of the Site owner reference on Deploys.
const OWNER_FIELD_MANAGER: &str = "kpages-operator-owner";

async fn reconcile_deploy(deploy: &Deploy, ctx: &Context) -> Result<Action, Error> {
    let ns = deploy.namespace().unwrap_or_default();
    let name = deploy.name_any();

    // 1. Dereference.
    let sites: Api<Site> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(site) =
        sites
            .get_opt(&deploy.spec.site)
            .await
            .map_err(|source| Error::Dereference {
                what: format!("Site {ns}/{}", deploy.spec.site),
                source,
            })?
    else {
        let outcome = Outcome::pending(
            "SiteNotFound",
            format!(
                "Site {:?} does not exist in namespace {ns}; create it or fix spec.site",
                deploy.spec.site
            ),
        );
        write_status(deploy, ctx, outcome, None).await?;
        return Ok(Action::await_change());
    };

    adopt(deploy, &site, ctx).await;

    // 2. Validate: the manifest and every bundle it names must be stored and intact.
    let manifest = match ctx.manifest(&deploy.spec.manifest).await {
        Ok(m) => m,
        Err(e) if e.is_transient() => return Err(Error::Store(e)),
        Err(e) => {
            let outcome = Outcome::manifest_unusable(&e, &ctx.store.to_string());
            write_status(deploy, ctx, outcome, None).await?;
            return Ok(Action::requeue(MISSING_RECHECK));
        }
    };
    let bundles: Vec<_> = manifest
        .functions
        .iter()
        .flat_map(|f| std::iter::once(f.bundle).chain(f.included_files.iter().map(|i| i.digest)))
        .collect();
    let missing = ctx.store.missing(&bundles).await.map_err(Error::Store)?;
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().take(3).map(ToString::to_string).collect();
        let outcome = Outcome::failed(
            "BundleNotFound",
            format!(
                "{} function blob(s) named by the manifest are not in object storage ({}{}); re-run kpages deploy to upload them",
                missing.len(),
                list.join(", "),
                if missing.len() > 3 { ", …" } else { "" }
            ),
        );
        write_status(deploy, ctx, outcome, Some(&manifest)).await?;
        return Ok(Action::requeue(MISSING_RECHECK));
    }

    // 3. Desired objects (pure), from the site's plan.
    let mut siblings: Vec<DeployInfo> = ctx
        .site_deploys(&site)
        .await?
        .iter()
        .map(DeployInfo::of)
        .collect();
    // Not labelled yet when adopting it failed: it still counts for its own plan.
    if !siblings.iter().any(|d| d.name == name) {
        siblings.push(DeployInfo::of(deploy));
    }
    let site_plan = plan(&site, &siblings);
    let active = site
        .status
        .as_ref()
        .and_then(|s| s.active_deploy.as_deref())
        == Some(name.as_str());
    let warm = site_plan.warm.contains(&name) || active;
    let last_call = deploy
        .annotations()
        .get(LAST_CALL_ANNOTATION)
        .and_then(|v| v.parse::<i64>().ok());
    let created = deploy
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second());
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let Scale { replicas, idle_in } = scale(&site, warm, created, last_call, now);
    let objects = desired(
        DeployInputs {
            site: &site,
            deploy,
            manifest: &manifest,
            replicas,
            active,
        },
        &ctx.settings,
    )?;

    // 4. Apply.
    let deployment = apply_all(ctx, &ns, &name, &objects).await?;

    // 5. Status.
    let outcome = if objects.is_empty() {
        if warm {
            Outcome::ready("NoFunctions", "static deploy: no functions, no pods".into())
        } else {
            Outcome::superseded()
        }
    } else if replicas == 0 && warm {
        Outcome::ready(
            "ScaledToZero",
            format!(
                "no calls for {}s: no pods until the next call, which the router holds while one starts",
                site.spec.retention.scale_to_zero_after_seconds
            ),
        )
    } else if replicas == 0 || !warm {
        Outcome::superseded()
    } else {
        pods_outcome(ctx, &ns, deploy, deployment.as_ref(), replicas).await?
    };
    let provisioning = outcome.phase == DeployPhase::Provisioning;
    write_status(deploy, ctx, outcome, Some(&manifest)).await?;
    Ok(if provisioning {
        Action::requeue(PROVISIONING_RECHECK)
    } else {
        // Look again when the deploy turns idle, so it scales to zero on time.
        let recheck = Duration::from_secs(600);
        Action::requeue(idle_in.map_or(recheck, |d| (d + Duration::from_secs(1)).min(recheck)))
    })
}

/// Applies every desired object and deletes the jobs and routes of this deploy that are no
/// longer desired (a deploy stops being active: its CronJobs go). Returns the Deployment.
async fn apply_all(
    ctx: &Context,
    ns: &str,
    deploy: &str,
    objects: &DesiredObjects,
) -> Result<Option<Deployment>, Error> {
    let mut deployment = None;
    if let Some(d) = &objects.deployment {
        deployment = Some(apply(&ctx.client, ns, d).await?);
    }
    if let Some(s) = &objects.service {
        apply::<Service>(&ctx.client, ns, s).await?;
    }
    if let Some(n) = &objects.network_policy {
        apply::<NetworkPolicy>(&ctx.client, ns, n).await?;
    }
    for r in &objects.routes {
        apply::<FunctionRoute>(&ctx.client, ns, r).await?;
    }
    for c in &objects.cron_jobs {
        apply::<CronJob>(&ctx.client, ns, c).await?;
    }
    let keep_routes: BTreeSet<String> = objects.routes.iter().map(|r| r.name_any()).collect();
    let keep_jobs: BTreeSet<String> = objects.cron_jobs.iter().map(|c| c.name_any()).collect();
    prune::<FunctionRoute>(ctx, ns, deploy, &keep_routes).await?;
    prune::<CronJob>(ctx, ns, deploy, &keep_jobs).await?;
    Ok(deployment)
}

async fn prune<K>(
    ctx: &Context,
    ns: &str,
    deploy: &str,
    keep: &BTreeSet<String>,
) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let selector = format!(
        "app.kubernetes.io/managed-by={},{}={}",
        names::MANAGED_BY,
        names::DEPLOY_LABEL,
        names::label_value(deploy)
    );
    let what = |name: &str| format!("{} {ns}/{name}", K::kind(&()));
    let list = api
        .list_metadata(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| Error::Apply {
            what: what("(list)"),
            source,
        })?;
    for obj in list.items {
        let name = obj.name_any();
        if !keep.contains(&name) {
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(source) => {
                    return Err(Error::Apply {
                        what: what(&name),
                        source,
                    });
                }
            }
        }
    }
    Ok(())
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
    fn pending(reason: &str, message: String) -> Self {
        Self::new(DeployPhase::Pending, reason, message, false)
    }
    fn failed(reason: &str, message: String) -> Self {
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

async fn write_status(
    deploy: &Deploy,
    ctx: &Context,
    outcome: Outcome,
    manifest: Option<&Manifest>,
) -> Result<(), Error> {
    let ns = deploy.namespace().unwrap_or_default();
    let name = deploy.name_any();
    let preview = ctx.settings.preview_url(&ns, &deploy.spec.site, &name);
    let status = status_for(deploy, &outcome, manifest, preview);
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

#[cfg(test)]
mod tests;
