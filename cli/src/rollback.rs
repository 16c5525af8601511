//! `kpages rollback --site NAME [DEPLOY]`: serve an earlier deploy by setting the Site's
//! `spec.pinnedDeploy`; `--unpin` removes it, so the newest Ready production deploy serves
//! again. Rollback is a pointer switch: the old deploy's blobs are still in object storage.
//!
//! ```text
//!  deploys, newest first:  web-c (active) ── web-b (Failed) ── web-a (Superseded) ── web-p (preview)
//!  `kpages rollback --site web` pins ──────────────────────────► web-a
//! ```

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kpages_crds::{Deploy, DeployContext, DeployPhase, Site};
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};

use crate::cluster::{self, Cluster, ClusterArgs, ClusterError};
use crate::deploy::{self, format_conditions};

/// Arguments of `kpages rollback`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The Site.
    #[arg(long, value_name = "NAME")]
    site: String,
    /// The Deploy to serve (default: the production deploy that was Ready before the active one).
    #[arg(value_name = "DEPLOY", conflicts_with = "unpin")]
    deploy: Option<String>,
    /// Remove the pin: serve the newest Ready production deploy again.
    #[arg(long)]
    unpin: bool,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Return without waiting for the Site to switch.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for the Site to switch, e.g. 30s, 2m.
    #[arg(long, default_value = "2m", value_parser = cluster::parse_duration)]
    timeout: Duration,
}

/// Why a rollback failed.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    /// The cluster said no.
    #[error("{0}")]
    Cluster(#[from] ClusterError),
    /// No deploy to roll back to, or the one named is not usable.
    #[error("{0}")]
    Target(String),
    /// The Site did not switch in time.
    #[error("timed out after {}s waiting for Site {site} to {what}{}", timeout.as_secs(), format_conditions(conditions))]
    Timeout {
        /// The site.
        site: String,
        /// What was awaited.
        what: String,
        /// The wait.
        timeout: Duration,
        /// The Site's conditions when the wait ended.
        conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    },
    /// The async runtime could not start.
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl RollbackError {
    /// The process exit code: 3 for a timeout, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            RollbackError::Timeout { .. } => 3,
            _ => 1,
        }
    }
}

/// What the target choice needs to know about a deploy.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployRow {
    /// Name.
    pub name: String,
    /// Production or preview.
    pub context: DeployContext,
    /// Phase (Pending without a status).
    pub phase: DeployPhase,
    /// Creation time.
    pub created: Option<Timestamp>,
}

impl DeployRow {
    /// Reads a Deploy.
    pub fn of(deploy: &Deploy) -> Self {
        Self {
            name: deploy.name_any(),
            context: deploy.spec.context,
            phase: deploy.status.as_ref().map(|s| s.phase).unwrap_or_default(),
            created: deploy.metadata.creation_timestamp.as_ref().map(|t| t.0),
        }
    }
}

/// Sorts newest first, as the operator does: creation time, then name.
pub fn newest_first(rows: &mut [DeployRow]) {
    rows.sort_by(|a, b| match (&a.created, &b.created) {
        (None, None) => b.name.cmp(&a.name),
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        (Some(x), Some(y)) => y.cmp(x).then_with(|| b.name.cmp(&a.name)),
    });
}

/// The deploy a plain `kpages rollback` pins: the newest production deploy older than the
/// active one that was Ready (Ready, or Superseded: scaled to zero after being replaced).
/// Failed, still-starting and preview deploys are skipped. Rolling back again walks further back.
pub fn rollback_target(deploys: &[DeployRow], active: Option<&str>) -> Result<String, String> {
    let mut rows = deploys.to_vec();
    newest_first(&mut rows);
    let Some(active) = active else {
        return Err("the site has no active deploy to roll back from; name one: kpages rollback --site SITE DEPLOY".into());
    };
    let Some(at) = rows.iter().position(|d| d.name == active) else {
        return Err(format!(
            "the active deploy {active} is not among the site's Deploys; name one: kpages rollback --site SITE DEPLOY"
        ));
    };
    rows[at + 1..]
        .iter()
        .find(|d| {
            d.context == DeployContext::Production
                && matches!(d.phase, DeployPhase::Ready | DeployPhase::Superseded)
        })
        .map(|d| d.name.clone())
        .ok_or_else(|| {
            format!(
                "no production deploy older than the active deploy {active} was Ready; see `kpages status` and name one"
            )
        })
}

/// Checks a named deploy can be pinned.
pub fn check_target(deploys: &[DeployRow], site: &str, name: &str) -> Result<(), String> {
    let Some(d) = deploys.iter().find(|d| d.name == name) else {
        let mut names: Vec<&str> = deploys.iter().map(|d| d.name.as_str()).collect();
        names.sort_unstable();
        return Err(format!(
            "Site {site} has no Deploy {name:?}; its deploys are: {}",
            if names.is_empty() {
                "(none)".to_string()
            } else {
                names.join(", ")
            }
        ));
    };
    if d.context != DeployContext::Production {
        return Err(format!(
            "Deploy {name} is a preview deploy; only production deploys can serve the site (deploy again with --prod)"
        ));
    }
    if d.phase == DeployPhase::Failed {
        return Err(format!(
            "Deploy {name} failed and cannot serve the site; see `kpages status --site {site}`"
        ));
    }
    Ok(())
}

/// Runs `kpages rollback`.
pub fn run(args: &Args) -> Result<(), RollbackError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(RollbackError::Runtime)?
        .block_on(async {
            let cluster = Cluster::connect(&args.cluster).await?;
            rollback(&cluster, args).await
        })
}

async fn rollback(cluster: &Cluster, args: &Args) -> Result<(), RollbackError> {
    let site = cluster.site(&args.site).await?;
    let rows: Vec<DeployRow> = cluster
        .site_deploys(&args.site)
        .await?
        .iter()
        .map(DeployRow::of)
        .collect();
    let target = if args.unpin {
        None
    } else {
        let name = match &args.deploy {
            Some(name) => name.clone(),
            None => {
                let active = site
                    .status
                    .as_ref()
                    .and_then(|s| s.active_deploy.as_deref());
                rollback_target(&rows, active).map_err(RollbackError::Target)?
            }
        };
        check_target(&rows, &args.site, &name).map_err(RollbackError::Target)?;
        Some(name)
    };

    let patch = serde_json::json!({ "spec": { "pinnedDeploy": target } });
    let params = PatchParams {
        field_manager: Some(cluster::FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let patched = cluster
        .sites()
        .patch(&args.site, &params, &Patch::Merge(&patch))
        .await
        .map_err(|e| ClusterError::api(format!("updating Site {:?}", args.site), e))?;
    match &target {
        Some(t) => eprintln!("pinned Site {} to Deploy {t}", args.site),
        None => eprintln!(
            "unpinned Site {}: the newest Ready production deploy serves",
            args.site
        ),
    }
    if args.no_wait {
        println!("{}", target.unwrap_or_default());
        return Ok(());
    }

    let generation = patched.metadata.generation.unwrap_or_default();
    let settled = deploy::wait_for(&cluster.sites(), &args.site, args.timeout, |s: &Site| {
        s.status.as_ref().is_some_and(|st| {
            st.observed_generation.unwrap_or_default() >= generation
                && target
                    .as_deref()
                    .is_none_or(|t| st.active_deploy.as_deref() == Some(t))
        })
    })
    .await;
    let Some(site) = settled else {
        let conditions = cluster
            .sites()
            .get_opt(&args.site)
            .await
            .ok()
            .flatten()
            .and_then(|s| s.status)
            .map(|s| s.conditions)
            .unwrap_or_default();
        return Err(RollbackError::Timeout {
            site: args.site.clone(),
            what: match &target {
                Some(t) => format!("serve Deploy {t}"),
                None => "pick its newest deploy".into(),
            },
            timeout: args.timeout,
            conditions,
        });
    };
    let status = site.status.unwrap_or_default();
    eprintln!(
        "Site {} serves {}",
        args.site,
        status.active_deploy.as_deref().unwrap_or("no deploy")
    );
    println!(
        "{}",
        status.url.or(status.active_deploy).unwrap_or_default()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use DeployContext::{Preview, Production};
    use DeployPhase::{Failed, Pending, Provisioning, Ready, Superseded};

    fn row(name: &str, secs: i64, context: DeployContext, phase: DeployPhase) -> DeployRow {
        DeployRow {
            name: name.into(),
            context,
            phase,
            created: Some(Timestamp::from_second(1_700_000_000 + secs).unwrap()),
        }
    }

    fn history() -> Vec<DeployRow> {
        // Deliberately not in time order: the choice must sort.
        vec![
            row("web-b", 20, Production, Failed),
            row("web-d", 40, Production, Ready),
            row("web-a", 10, Production, Superseded),
            row("web-p", 35, Preview, Ready),
            row("web-c", 30, Production, Ready),
            row("web-0", 5, Production, Ready),
            row("web-e", 50, Production, Provisioning),
        ]
    }

    #[test]
    fn rollback_picks_the_previous_ready_production_deploy() {
        let cases: &[(Option<&str>, Result<&str, &str>)] = &[
            // Skips the preview deploy between them.
            (Some("web-d"), Ok("web-c")),
            // Skips the failed one; a superseded deploy was Ready once, so it counts.
            (Some("web-c"), Ok("web-a")),
            (Some("web-a"), Ok("web-0")),
            (
                Some("web-0"),
                Err("no production deploy older than the active deploy web-0"),
            ),
            (None, Err("no active deploy")),
            (Some("gone"), Err("not among the site's Deploys")),
        ];
        for (active, want) in cases {
            let got = rollback_target(&history(), *active);
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(w, g, "active {active:?}"),
                (Err(w), Err(g)) => assert!(g.contains(w), "active {active:?}: {g}"),
                _ => panic!("active {active:?}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn same_second_deploys_are_ordered_by_name_like_the_operator() {
        let rows = vec![
            row("web-x1", 10, Production, Ready),
            row("web-x2", 10, Production, Ready),
        ];
        assert_eq!(rollback_target(&rows, Some("web-x2")).unwrap(), "web-x1");
    }

    #[test]
    fn deploys_not_yet_stored_count_as_newest() {
        let mut rows = vec![
            row("old", 1, Production, Ready),
            DeployRow {
                created: None,
                ..row("new", 0, Production, Pending)
            },
        ];
        newest_first(&mut rows);
        assert_eq!(rows[0].name, "new");
    }

    fn args(argv: &[&str]) -> Args {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let argv = std::iter::once("rollback").chain(argv.iter().copied());
        <Cli as clap::Parser>::try_parse_from(argv).unwrap().args
    }

    /// A cluster holding Site `web` (active: web-c) and the deploys of [`history`].
    fn cluster() -> (
        Cluster,
        std::sync::Arc<std::sync::Mutex<crate::fake_api::State>>,
    ) {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        use kpages_crds::{DeploySpec, DeployStatus, Digest, SiteStatus};
        let mut state = crate::fake_api::State::default();
        let mut site = Site::new("web", Default::default());
        site.metadata.generation = Some(1);
        site.status = Some(SiteStatus {
            active_deploy: Some("web-c".into()),
            url: Some("http://web.example".into()),
            observed_generation: Some(1),
            ..SiteStatus::default()
        });
        state.sites.insert("web".into(), site);
        for r in history() {
            let mut d = Deploy::new(
                &r.name,
                DeploySpec {
                    site: "web".into(),
                    manifest: Digest::of(r.name.as_bytes()),
                    context: r.context,
                    source: None,
                },
            );
            d.metadata.creation_timestamp = r.created.map(Time);
            d.status = Some(DeployStatus {
                phase: r.phase,
                ..DeployStatus::default()
            });
            state.deploys.insert(r.name.clone(), d);
        }
        let (client, state) = crate::fake_api::start(state);
        (Cluster::new(client, None), state)
    }

    #[tokio::test]
    async fn rollback_pins_the_previous_deploy_and_waits_for_the_site() {
        let (cluster, state) = cluster();
        rollback(&cluster, &args(&["--site", "web"])).await.unwrap();
        let st = state.lock().unwrap();
        let (kind, patch) = &st.patches[0];
        assert!(kind.starts_with("application/merge-patch+json"), "{kind}");
        assert!(kind.contains("fieldManager=kpages-cli"), "{kind}");
        assert_eq!(
            patch,
            &serde_json::json!({"spec": {"pinnedDeploy": "web-a"}})
        );
        let site = &st.sites["web"];
        assert_eq!(site.spec.pinned_deploy.as_deref(), Some("web-a"));
    }

    #[tokio::test]
    async fn unpin_removes_the_field_and_a_bad_target_changes_nothing() {
        let (cluster, state) = cluster();
        rollback(&cluster, &args(&["--site", "web", "--unpin", "--no-wait"]))
            .await
            .unwrap();
        assert_eq!(
            state.lock().unwrap().patches[0].1,
            serde_json::json!({"spec": {"pinnedDeploy": null}})
        );
        let err = rollback(&cluster, &args(&["--site", "web", "web-p"]))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("preview deploy"), "{err}");
        assert_eq!(state.lock().unwrap().patches.len(), 1);
    }

    #[test]
    fn only_existing_production_deploys_that_did_not_fail_can_be_pinned() {
        let rows = history();
        assert!(check_target(&rows, "web", "web-a").is_ok());
        assert!(check_target(&rows, "web", "web-e").is_ok());
        for (name, why) in [
            ("web-p", "preview deploy"),
            ("web-b", "failed"),
            ("nope", "its deploys are: web-0, web-a"),
        ] {
            let err = check_target(&rows, "web", name).unwrap_err();
            assert!(err.contains(why), "{name}: {err}");
        }
    }
}
