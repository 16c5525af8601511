//! Activity written back to the cluster: a call for a deploy scaled to zero annotates its
//! Deploy `kpages.dev/last-call` at once (the operator scales it up while the call waits), and
//! every activity interval the deploys called since the last note are annotated, so the
//! operator keeps them warm.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kpages_crds::Deploy as DeployObject;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

use crate::table::{Routes, Waker};
use kpages_crds::names::LAST_CALL_ANNOTATION;
use kpages_crds::schedule::unix_now;

/// Notes calls on Deploys: at once for a deploy with no ready pod (scale from zero), and every
/// interval for deploys that served calls (so the operator keeps them warm).
pub struct DeployWaker {
    client: Client,
    /// Deploy id → unix seconds last written, so each deploy is patched at most once per
    /// interval however many calls wait.
    noted: Mutex<BTreeMap<String, i64>>,
}

impl std::fmt::Debug for DeployWaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeployWaker").finish_non_exhaustive()
    }
}

impl DeployWaker {
    pub(super) fn new(client: Client) -> Self {
        Self {
            client,
            noted: Mutex::new(BTreeMap::new()),
        }
    }

    /// Patches `kpages.dev/last-call` on the Deploy `id` unless it was written within
    /// `min_gap` seconds.
    fn note(&self, id: &str, at: i64, min_gap: i64) {
        {
            let Ok(mut noted) = self.noted.lock() else {
                return;
            };
            if noted.get(id).is_some_and(|&t| at - t < min_gap) {
                return;
            }
            noted.insert(id.to_string(), at);
        }
        let Some((ns, name)) = id.split_once('/') else {
            return;
        };
        let api: Api<DeployObject> = Api::namespaced(self.client.clone(), ns);
        let (name, id) = (name.to_string(), id.to_string());
        tokio::spawn(async move {
            let patch = serde_json::json!({
                "metadata": {"annotations": {LAST_CALL_ANNOTATION: at.to_string()}}
            });
            if let Err(e) = api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(deploy = %id, error = %e, "cannot note a call on the Deploy");
            }
        });
    }
}

impl Waker for DeployWaker {
    fn wake(&self, id: &str) {
        tracing::info!(deploy = %id, "no ready function pod: asking for one");
        self.note(id, unix_now(), 5);
    }
}

/// Every `interval`, notes deploys whose functions were called since the last round.
pub(super) async fn note_activity(
    routes: Arc<Routes>,
    waker: Arc<DeployWaker>,
    interval: Duration,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let gap = i64::try_from(interval.as_secs()).unwrap_or(30).max(1);
    loop {
        ticks.tick().await;
        let table = routes.load();
        for deploy in table.deploys() {
            let last = deploy.last_call.load(Ordering::Relaxed);
            if last > 0 && unix_now() - last < gap * 2 {
                waker.note(&deploy.id, last, gap);
            }
        }
    }
}
