//! The Site controller: list the site's deploys → plan (pure: active deploy, warm set,
//! retention) → delete deploys beyond retention → status (active deploy, URLs, conditions) and
//! an event when the active deploy changes. Scaling is done by the Deploy controller from the
//! same plan, so the two never disagree.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kpages_crds::{Deploy, DeployPhase, Site, SiteStatus};
use kube::api::DeleteParams;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use tracing::instrument;

use crate::context::{Context, Error, condition};
use crate::controllers::apply::apply_status;
use crate::controllers::{Scope, run_controller};
use crate::desired::Settings;
use crate::plan::{DeployInfo, SitePlan, plan};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "site";

/// Runs the Site controller until shutdown.
pub async fn run(ctx: Arc<Context>, namespace: Option<&str>) {
    run_controller(ctx, namespace, CONTROLLER, reconcile, related).await;
}

/// What else triggers a Site reconcile: a deploy's phase decides the active deploy, so any
/// change to one re-plans its site.
fn related(
    controller: Controller<DeserializeGuard<Site>>,
    scope: &Scope,
) -> Controller<DeserializeGuard<Site>> {
    controller.watches(
        scope.api::<DeserializeGuard<Deploy>>(),
        watcher::Config::default(),
        |d| {
            let (Ok(deploy), Some(ns)) = (&d.0, d.namespace()) else {
                return None;
            };
            Some(ObjectRef::new(&deploy.spec.site).within(&ns))
        },
    )
}

/// Reconciles one Site.
#[instrument(skip_all, fields(site = %guard.name_any(), namespace = guard.namespace().unwrap_or_default()))]
pub async fn reconcile(
    guard: Arc<DeserializeGuard<Site>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let site = crate::context::unguard(&guard)?;
    if site.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = site.namespace().unwrap_or_default();
    let name = site.name_any();

    let deploys: Vec<Deploy> = ctx
        .site_deploys(site)
        .await?
        .into_iter()
        .filter(|d| d.meta().deletion_timestamp.is_none())
        .collect();
    let infos: Vec<DeployInfo> = deploys.iter().map(DeployInfo::of).collect();
    let site_plan = plan(site, &infos);

    for doomed in &site_plan.delete {
        let api: Api<Deploy> = Api::namespaced(ctx.client.clone(), &ns);
        match api.delete(doomed, &DeleteParams::background()).await {
            Ok(_) => {
                ctx.publish(
                    site,
                    EventType::Normal,
                    "DeployDeleted",
                    format!(
                        "deleted Deploy {doomed}: beyond retention.keepDeploys={} (its blobs stay in object storage)",
                        site.spec.retention.keep_deploys
                    ),
                )
                .await;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(source) => {
                return Err(Error::Apply {
                    what: format!("delete Deploy {ns}/{doomed}"),
                    source,
                });
            }
        }
    }

    let status = status_for(site, &site_plan, &deploys, &ctx.settings);
    let old_active = site.status.as_ref().and_then(|s| s.active_deploy.clone());
    if site.status.as_ref() != Some(&status) {
        apply_status::<Site>(&ctx.client, &ns, &name, &status).await?;
    }
    if old_active != status.active_deploy {
        let note = match (&old_active, &status.active_deploy) {
            (_, Some(new)) => format!(
                "Deploy {new} now serves production traffic{}",
                old_active
                    .as_deref()
                    .map(|o| format!(" (was {o})"))
                    .unwrap_or_default()
            ),
            (Some(old), None) => {
                format!("no deploy serves production traffic any more (was {old})")
            }
            (None, None) => String::new(),
        };
        ctx.publish(site, EventType::Normal, "ActiveDeployChanged", note)
            .await;
    }
    Ok(Action::requeue(recheck_after(&deploys)))
}

/// When to look at a site again without an event: soon while one of its deploys is Pending
/// or Provisioning, because the deploys were read from the API server's watch cache, which
/// with several API servers may lag the event that triggered the reconcile by a moment (better
/// a second look than a deploy that became Ready unnoticed); else every 10 minutes.
pub fn recheck_after(deploys: &[Deploy]) -> Duration {
    let settling = deploys.iter().any(|d| {
        matches!(
            d.status.as_ref().map(|s| s.phase).unwrap_or_default(),
            DeployPhase::Pending | DeployPhase::Provisioning
        )
    });
    Duration::from_secs(if settling { 10 } else { 600 })
}

/// The status a plan stands for (pure).
pub fn status_for(
    site: &Site,
    p: &SitePlan,
    deploys: &[Deploy],
    settings: &Settings,
) -> SiteStatus {
    let previous: Vec<Condition> = site
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let generation = site.metadata.generation;
    let active = p
        .active
        .as_ref()
        .and_then(|a| deploys.iter().find(|d| d.name_any() == *a));
    let (ok, reason, message) = match (active, &site.spec.pinned_deploy) {
        (None, Some(pin)) if p.pinned_missing => (
            false,
            "PinnedDeployNotFound",
            format!(
                "spec.pinnedDeploy names Deploy {pin:?}, which does not exist; fix or remove the pin"
            ),
        ),
        (None, _) => (
            false,
            "NoReadyDeploy",
            "no production Deploy of this site is Ready yet; see kubectl get deploys".to_string(),
        ),
        (Some(d), _) => {
            let phase = d.status.as_ref().map(|s| s.phase).unwrap_or_default();
            if phase == DeployPhase::Ready {
                (
                    true,
                    "Active",
                    format!("Deploy {} serves production traffic", d.name_any()),
                )
            } else {
                (
                    false,
                    "ActiveDeployNotReady",
                    format!(
                        "active Deploy {} is {phase:?}; see its conditions",
                        d.name_any()
                    ),
                )
            }
        }
    };
    let urls = settings.site_urls(site);
    SiteStatus {
        observed_generation: generation,
        active_deploy: p.active.clone(),
        active_manifest: active.map(|d| d.spec.manifest.to_string()),
        url: urls.first().cloned(),
        urls,
        conditions: vec![condition(
            &previous, "Ready", ok, reason, message, generation,
        )],
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::fixtures::{deploy, manifest, site};
    use kpages_crds::DeployStatus;

    #[test]
    fn status_names_the_active_deploy_and_its_urls() {
        let m = manifest();
        let mut d = deploy("v1", &m, 0);
        d.status = Some(DeployStatus {
            phase: DeployPhase::Ready,
            ..DeployStatus::default()
        });
        let mut s = site();
        s.spec.domains = vec!["www.example.com".into(), "example.com".into()];
        let p = plan(&s, &[DeployInfo::of(&d)]);
        let status = status_for(&s, &p, &[d], &Settings::default());
        assert_eq!(status.active_deploy.as_deref(), Some("v1"));
        assert_eq!(status.active_manifest, Some(m.digest().to_string()));
        assert_eq!(status.url.as_deref(), Some("https://www.example.com"));
        assert_eq!(status.urls.len(), 2);
        assert_eq!(status.conditions[0].status, "True");
        assert_eq!(status.observed_generation, Some(1));
    }

    #[test]
    fn a_site_with_a_deploy_on_its_way_is_looked_at_again_soon() {
        let m = manifest();
        let mut ready = deploy("v1", &m, 0);
        ready.status = Some(DeployStatus {
            phase: DeployPhase::Ready,
            ..DeployStatus::default()
        });
        let new = deploy("v2", &m, 1);
        assert_eq!(recheck_after(&[ready.clone()]), Duration::from_secs(600));
        assert_eq!(recheck_after(&[ready, new]), Duration::from_secs(10));
    }

    #[test]
    fn a_missing_pin_is_an_actionable_condition() {
        let mut s = site();
        s.spec.pinned_deploy = Some("gone".into());
        let p = plan(&s, &[]);
        let status = status_for(&s, &p, &[], &Settings::default());
        assert_eq!(status.active_deploy, None);
        assert_eq!(status.conditions[0].reason, "PinnedDeployNotFound");
        assert_eq!(
            status.url.as_deref(),
            Some("https://web.team.preview.kpages.localhost"),
            "a site without domains is reached on its preview host"
        );
    }
}
