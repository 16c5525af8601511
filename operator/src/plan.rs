//! Which of a site's deploys serves production, which keep pods running and which are deleted:
//! one pure function both the Site and the Deploy controllers call, so they always agree.
//!
//! ```text
//!  deploys (newest first) ──► active   = spec.pinnedDeploy, else the newest Ready production
//!                                        deploy (the current active one stays a candidate while
//!                                        its pods restart, so traffic does not flap back)
//!                         ──► warm     = active + pinned + the `keepWarm` newest   (pods run)
//!                         ──► delete   = all but the `keepDeploys` newest, active and pinned
//! ```

use std::collections::BTreeSet;

use k8s_openapi::jiff::Timestamp;
use kpages_crds::{Deploy, DeployContext, DeployPhase, Site};

/// What the plan needs to know about one deploy.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployInfo {
    /// Deploy name.
    pub name: String,
    /// Production or preview.
    pub context: DeployContext,
    /// Its current phase (Pending when it has no status yet).
    pub phase: DeployPhase,
    /// Creation time; deploys without one (not yet stored) count as newest.
    pub created: Option<Timestamp>,
}

impl DeployInfo {
    /// Reads the fields the plan uses from a Deploy.
    pub fn of(deploy: &Deploy) -> Self {
        Self {
            name: deploy.metadata.name.clone().unwrap_or_default(),
            context: deploy.spec.context,
            phase: deploy.status.as_ref().map(|s| s.phase).unwrap_or_default(),
            created: deploy.metadata.creation_timestamp.as_ref().map(|t| t.0),
        }
    }
}

/// The outcome for one site.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SitePlan {
    /// The deploy serving production traffic.
    pub active: Option<String>,
    /// `spec.pinnedDeploy` names a deploy that does not exist.
    pub pinned_missing: bool,
    /// Deploys that keep pods running.
    pub warm: BTreeSet<String>,
    /// Deploys to delete (retention).
    pub delete: BTreeSet<String>,
}

/// Plans a site over the deploys whose `spec.site` names it.
pub fn plan(site: &Site, deploys: &[DeployInfo]) -> SitePlan {
    let mut newest_first: Vec<&DeployInfo> = deploys.iter().collect();
    // `None` (not yet created) sorts as newest; ties broken by name so the order is total.
    newest_first.sort_by(|a, b| match (&a.created, &b.created) {
        (None, None) => b.name.cmp(&a.name),
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        (Some(x), Some(y)) => y.cmp(x).then_with(|| b.name.cmp(&a.name)),
    });
    let exists = |name: &str| newest_first.iter().any(|d| d.name == name);

    let pinned = site.spec.pinned_deploy.as_deref();
    let pinned_missing = pinned.is_some_and(|p| !exists(p));
    let current = site
        .status
        .as_ref()
        .and_then(|s| s.active_deploy.as_deref());
    let active = match pinned {
        Some(p) if exists(p) => Some(p.to_string()),
        Some(_) => None,
        None => newest_first
            .iter()
            .find(|d| {
                d.context == DeployContext::Production
                    && (d.phase == DeployPhase::Ready
                        || (Some(d.name.as_str()) == current && d.phase != DeployPhase::Failed))
            })
            .map(|d| d.name.clone()),
    };

    let retention = &site.spec.retention;
    let protected: BTreeSet<String> = active
        .iter()
        .cloned()
        .chain(pinned.filter(|p| exists(p)).map(str::to_string))
        .collect();
    let warm = newest_first
        .iter()
        .take(retention.keep_warm as usize)
        .map(|d| d.name.clone())
        .chain(protected.iter().cloned())
        .collect();
    let delete = newest_first
        .iter()
        .skip(retention.keep_deploys as usize)
        .map(|d| d.name.clone())
        .filter(|n| !protected.contains(n))
        .collect();
    SitePlan {
        active,
        pinned_missing,
        warm,
        delete,
    }
}

pub use kpages_crds::names::LAST_CALL_ANNOTATION;

/// How many pods a deploy runs, and when to look again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    /// Desired replicas.
    pub replicas: i32,
    /// A deploy kept up only by recent calls is idle (and scales to zero) after this long.
    pub idle_in: Option<std::time::Duration>,
}

/// Pods for a deploy: `minReplicas` while it is warm (active, pinned or among the newest)
/// and the site wants pods always; otherwise one pod (at least `minReplicas`) while it was
/// created or called within `scaleToZeroAfterSeconds`, and none after — the router wakes it
/// again on the next call.
pub fn scale(
    site: &Site,
    warm: bool,
    created: Option<i64>,
    last_call: Option<i64>,
    now: i64,
) -> Scale {
    let f = &site.spec.functions;
    if warm && f.min_replicas > 0 {
        return Scale {
            replicas: f.min_replicas.min(f.max_replicas),
            idle_in: None,
        };
    }
    let idle_after = i64::from(site.spec.retention.scale_to_zero_after_seconds);
    let last = created.into_iter().chain(last_call).max().unwrap_or(now);
    let left = last + idle_after - now;
    if left > 0 {
        Scale {
            replicas: f.min_replicas.max(1).min(f.max_replicas),
            idle_in: Some(std::time::Duration::from_secs(left.unsigned_abs())),
        }
    } else {
        Scale {
            replicas: 0,
            idle_in: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kpages_crds::SiteStatus;
    use kpages_crds::site::Retention;

    fn info(name: &str, secs: i64, context: DeployContext, phase: DeployPhase) -> DeployInfo {
        DeployInfo {
            name: name.into(),
            context,
            phase,
            created: Some(Timestamp::from_second(1_700_000_000 + secs).unwrap_or_default()),
        }
    }
    use DeployContext::{Preview, Production};
    use DeployPhase::{Failed, Provisioning, Ready};

    #[test]
    fn scale_follows_min_replicas_creation_and_calls() {
        let mut s = site(10, 2);
        s.spec.retention.scale_to_zero_after_seconds = 600;
        let now = 10_000;
        // Always-on: minReplicas > 0 and warm.
        s.spec.functions.min_replicas = 2;
        assert_eq!(
            scale(&s, true, Some(0), None, now),
            Scale {
                replicas: 2,
                idle_in: None
            }
        );
        // A cold (not warm) deploy with minReplicas still idles.
        assert_eq!(scale(&s, false, Some(0), None, now).replicas, 0);
        s.spec.functions.min_replicas = 0;
        // New: up for the idle period after creation.
        let fresh = scale(&s, true, Some(now - 100), None, now);
        assert_eq!(fresh.replicas, 1);
        assert_eq!(fresh.idle_in, Some(std::time::Duration::from_secs(500)));
        // Idle since creation and never called: zero.
        assert_eq!(scale(&s, true, Some(now - 601), None, now).replicas, 0);
        // Called recently (the router's note): up again, even if not warm.
        let woken = scale(&s, false, Some(0), Some(now - 10), now);
        assert_eq!(woken.replicas, 1);
        assert_eq!(woken.idle_in, Some(std::time::Duration::from_secs(590)));
        // maxReplicas bounds everything.
        s.spec.functions.max_replicas = 1;
        s.spec.functions.min_replicas = 1;
        assert_eq!(scale(&s, true, None, None, now).replicas, 1);
    }

    fn site(keep_deploys: u32, keep_warm: u32) -> Site {
        let mut site = Site::new("web", Default::default());
        site.spec.retention = Retention {
            keep_deploys,
            keep_warm,
            ..Retention::default()
        };
        site
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_newest_ready_production_deploy_is_active() {
        let deploys = [
            info("a", 1, Production, Ready),
            info("b", 2, Production, Ready),
            info("c", 3, Production, Provisioning),
            info("d", 4, Preview, Ready),
        ];
        let p = plan(&site(10, 2), &deploys);
        assert_eq!(p.active.as_deref(), Some("b"));
        assert_eq!(p.warm, set(&["b", "c", "d"]));
        assert!(p.delete.is_empty());
    }

    #[test]
    fn a_pin_wins_and_a_missing_pin_is_reported() {
        let deploys = [
            info("a", 1, Production, Ready),
            info("b", 2, Production, Ready),
        ];
        let mut s = site(10, 1);
        s.spec.pinned_deploy = Some("a".into());
        let p = plan(&s, &deploys);
        assert_eq!(p.active.as_deref(), Some("a"));
        assert_eq!(p.warm, set(&["a", "b"]));
        s.spec.pinned_deploy = Some("gone".into());
        let p = plan(&s, &deploys);
        assert_eq!((p.active, p.pinned_missing), (None, true));
    }

    #[test]
    fn the_current_active_deploy_stays_while_its_pods_restart_but_not_when_failed() {
        let deploys = [
            info("a", 1, Production, Ready),
            info("b", 2, Production, Provisioning),
        ];
        let mut s = site(10, 2);
        s.status = Some(SiteStatus {
            active_deploy: Some("b".into()),
            ..SiteStatus::default()
        });
        assert_eq!(plan(&s, &deploys).active.as_deref(), Some("b"));
        let deploys = [
            info("a", 1, Production, Ready),
            info("b", 2, Production, Failed),
        ];
        assert_eq!(plan(&s, &deploys).active.as_deref(), Some("a"));
    }

    #[test]
    fn retention_deletes_the_oldest_but_never_the_active_or_pinned_deploy() {
        let deploys: Vec<DeployInfo> = (0..6)
            .map(|i| info(&format!("d{i}"), i, Production, Ready))
            .collect();
        let mut s = site(3, 1);
        s.spec.pinned_deploy = Some("d0".into());
        let p = plan(&s, &deploys);
        assert_eq!(p.active.as_deref(), Some("d0"));
        assert_eq!(p.warm, set(&["d0", "d5"]));
        assert_eq!(p.delete, set(&["d1", "d2"]));
    }

    #[test]
    fn no_deploys_no_active() {
        assert_eq!(plan(&site(10, 2), &[]), SitePlan::default());
    }
}
