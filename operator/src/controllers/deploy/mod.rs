//! The Deploy controller: a pipeline of five stages. The first two may end a reconcile early
//! with a verdict (right column); every reconcile that does not fail ends by writing its
//! verdict as the Deploy's status.
//!
//! ```text
//!  Deploy ─► 1 dereference  the Site (adopted: owner reference, label)    SiteNotFound
//!                           the manifest (read, verified, cached)         ManifestNotFound,
//!                                                                         DigestMismatch, …
//!        ─► 2 validate     every blob the manifest names is stored       BundleNotFound
//!        ─► 3 build        pure: the site's plan places the deploy (active, warm, replicas),
//!                          the desired objects follow (crate::desired)
//!        ─► 4 apply        server-side apply; CronJobs and FunctionRoutes no longer desired go
//!        ─► 5 status       the verdict: NoFunctions, ScaledToZero, Superseded, or the pods'
//!                          (PodsReady, PodsNotReady, BundleFetchFailed) ─► status, events
//! ```
//!
//! Input only a change can fix (no Site, a missing or corrupt blob) is a verdict with a status
//! that says what to do, not an error; a stage that cannot reach the API server or the store
//! fails with its own [`Error`] variant, and the error policy backs off.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::jiff::Timestamp;
use kpages_crds::{Deploy, DeployPhase, FunctionRoute, Manifest, Site};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::instrument;

use crate::context::{Context, Error};
use crate::controllers::apply::apply;
use crate::controllers::{Scope, run_controller};
use crate::desired::{DeployInputs, DesiredError, DesiredObjects, Settings, desired};
use crate::names;
use crate::plan::{DeployInfo, LAST_CALL_ANNOTATION, Scale, plan, scale};

mod status;

pub use status::{Outcome, status_for};
use status::{observe, write_status};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "deploy";

/// How often a deploy whose pods are starting is looked at again (pod failures such as a
/// crashing init container do not change the Deployment, so no watch event would come).
const PROVISIONING_RECHECK: Duration = Duration::from_secs(10);
/// How often a deploy whose manifest or bundles are missing is retried: `kpages deploy`
/// uploads blobs before creating the Deploy, so this only covers uploads done by hand.
const MISSING_RECHECK: Duration = Duration::from_secs(300);
/// How often a settled deploy is looked at again at the latest.
const SETTLED_RECHECK: Duration = Duration::from_secs(600);

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
    let verdict = match converge(deploy, &ctx).await {
        Ok(verdict) | Err(Stop::Verdict(verdict)) => verdict,
        Err(Stop::Failed(error)) => return Err(error),
    };
    // Every verdict, early or from the last stage, becomes the status.
    write_status(deploy, &ctx, &verdict.outcome, verdict.manifest.as_deref()).await?;
    Ok(verdict.then)
}

/// How a reconcile that does not fail ends: the status to write and when to look again.
#[derive(Debug)]
struct Verdict {
    outcome: Outcome,
    /// The manifest, once read: the status lists its functions.
    manifest: Option<Arc<Manifest>>,
    /// When to look again.
    then: Action,
}

/// Why the pipeline stopped before its last stage.
#[derive(Debug)]
enum Stop {
    /// The deploy cannot go further until its input changes (or its blobs are uploaded).
    Verdict(Verdict),
    /// A stage failed; the error policy decides when to try again.
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(error: Error) -> Self {
        Stop::Failed(error)
    }
}

impl From<DesiredError> for Stop {
    fn from(error: DesiredError) -> Self {
        Stop::Failed(error.into())
    }
}

/// Stages 1 to 5 up to the verdict; [`reconcile`] writes it.
async fn converge(deploy: &Deploy, ctx: &Context) -> Result<Verdict, Stop> {
    // 1. Dereference.
    let site = site_of(deploy, ctx).await?;
    adopt(deploy, &site, ctx).await;
    let manifest = manifest_of(deploy, ctx).await?;

    // 2. Validate.
    bundles_stored(&manifest, ctx).await?;

    // 3. Build: the site's deploys as the API server's watch cache has them, then pure.
    let siblings = ctx.site_deploys(&site).await?;
    let now = Timestamp::now().as_second();
    let built = build(deploy, &site, &manifest, &siblings, &ctx.settings, now)?;

    // 4. Apply.
    let ns = deploy.namespace().unwrap_or_default();
    let deployment = apply_all(ctx, &ns, &deploy.name_any(), &built.objects).await?;

    // 5. Status: the verdict, from the pods when there should be some.
    let outcome = observe(ctx, deploy, &site, &built, deployment.as_ref()).await?;
    let then = if outcome.phase == DeployPhase::Provisioning {
        Action::requeue(PROVISIONING_RECHECK)
    } else {
        // Look again when the deploy turns idle, so it scales to zero on time.
        Action::requeue(built.idle_in.map_or(SETTLED_RECHECK, |d| {
            (d + Duration::from_secs(1)).min(SETTLED_RECHECK)
        }))
    };
    Ok(Verdict {
        outcome,
        manifest: Some(manifest),
        then,
    })
}

/// Dereference: the deploy's Site. Without one the deploy waits (Pending) until it appears.
async fn site_of(deploy: &Deploy, ctx: &Context) -> Result<Site, Stop> {
    let ns = deploy.namespace().unwrap_or_default();
    let site = Api::<Site>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&deploy.spec.site)
        .await
        .map_err(|source| Error::Dereference {
            what: format!("Site {ns}/{}", deploy.spec.site),
            source,
        })?;
    site.ok_or_else(|| {
        Stop::Verdict(Verdict {
            outcome: Outcome::pending(
                "SiteNotFound",
                format!(
                    "Site {:?} does not exist in namespace {ns}; create it or fix spec.site",
                    deploy.spec.site
                ),
            ),
            manifest: None,
            then: Action::await_change(),
        })
    })
}

/// Dereference: the deploy's manifest, read and verified (cached by digest). A store that
/// cannot be reached is an error, retried; a manifest that is missing, corrupt or unreadable
/// fails the deploy (looked at again now and then, for uploads done by hand).
async fn manifest_of(deploy: &Deploy, ctx: &Context) -> Result<Arc<Manifest>, Stop> {
    match ctx.manifest(&deploy.spec.manifest).await {
        Ok(manifest) => Ok(manifest),
        Err(source) if source.is_transient() => Err(Error::Store {
            what: format!("manifest {}", deploy.spec.manifest),
            source,
        }
        .into()),
        Err(e) => Err(Stop::Verdict(Verdict {
            outcome: Outcome::manifest_unusable(&e, &ctx.store.to_string()),
            manifest: None,
            then: Action::requeue(MISSING_RECHECK),
        })),
    }
}

/// Validate: every bundle and included file the manifest names is stored, so no pod is
/// started that could only fail to fetch them.
async fn bundles_stored(manifest: &Arc<Manifest>, ctx: &Context) -> Result<(), Stop> {
    let blobs: Vec<_> = manifest
        .functions
        .iter()
        .flat_map(|f| std::iter::once(f.bundle).chain(f.included_files.iter().map(|i| i.digest)))
        .collect();
    let missing = ctx
        .store
        .missing(&blobs)
        .await
        .map_err(|source| Error::Store {
            what: format!("the {} function blob(s) of the manifest", blobs.len()),
            source,
        })?;
    if missing.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = missing.iter().take(3).map(ToString::to_string).collect();
    Err(Stop::Verdict(Verdict {
        outcome: Outcome::failed(
            "BundleNotFound",
            format!(
                "{} function blob(s) named by the manifest are not in object storage ({}{}); re-run kpages deploy to upload them",
                missing.len(),
                list.join(", "),
                if missing.len() > 3 { ", …" } else { "" }
            ),
        ),
        manifest: Some(manifest.clone()),
        then: Action::requeue(MISSING_RECHECK),
    }))
}

/// What the build stage decided for a deploy.
#[derive(Debug)]
struct Built {
    /// What the deploy should own.
    objects: DesiredObjects,
    /// Pods it should run.
    replicas: i32,
    /// Whether it is active, pinned or among the site's newest deploys.
    warm: bool,
    /// When it turns idle and scales to zero, if only recent calls keep it up.
    idle_in: Option<Duration>,
}

/// Build (pure): where the site's plan puts the deploy among `siblings` (the site's deploys) —
/// active or not, warm or not, how many pods at `now` — and the objects that follow.
fn build(
    deploy: &Deploy,
    site: &Site,
    manifest: &Manifest,
    siblings: &[Deploy],
    settings: &Settings,
    now: i64,
) -> Result<Built, DesiredError> {
    let name = deploy.name_any();
    let mut infos: Vec<DeployInfo> = siblings.iter().map(DeployInfo::of).collect();
    // Not labelled yet when adopting it failed: it still counts for its own plan.
    if !infos.iter().any(|d| d.name == name) {
        infos.push(DeployInfo::of(deploy));
    }
    let site_plan = plan(site, &infos);
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
    let Scale { replicas, idle_in } = scale(site, warm, created, last_call, now);
    let objects = desired(
        DeployInputs {
            site,
            deploy,
            manifest,
            replicas,
            active,
        },
        settings,
    )?;
    Ok(Built {
        objects,
        replicas,
        warm,
        idle_in,
    })
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

#[cfg(test)]
mod tests;
