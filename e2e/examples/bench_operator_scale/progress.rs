//! What the watches know during a round: each Deploy's phase, each Site's active deploy and
//! readiness, and when everything wanted was first done. `want` maps each Site to its Deploy.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use kpages_crds::{Deploy, DeployPhase, Site};
use kpages_e2e::TestNamespace;
use kube::ResourceExt;
use kube::runtime::watcher;

/// What the watches know: each Deploy's phase, each Site's active deploy and readiness.
#[derive(Default)]
pub struct Progress {
    /// Each Deploy's phase, by name.
    pub deploy_phase: HashMap<String, DeployPhase>,
    /// Each Site's active deploy and readiness, by name.
    site_active: HashMap<String, (Option<String>, bool)>,
    /// When every wanted Deploy was first seen Ready.
    pub all_deploys_ready: Option<Instant>,
    /// When every wanted Site was first seen serving its Deploy, Ready.
    pub all_sites_active: Option<Instant>,
}

impl Progress {
    /// How many wanted Deploys are Ready.
    pub fn deploys_ready(&self, want: &BTreeMap<String, String>) -> usize {
        want.values()
            .filter(|d| self.deploy_phase.get(*d) == Some(&DeployPhase::Ready))
            .count()
    }

    /// How many wanted Sites serve their Deploy and are Ready.
    pub fn sites_active(&self, want: &BTreeMap<String, String>) -> usize {
        want.iter()
            .filter(|(site, deploy)| {
                self.site_active
                    .get(*site)
                    .is_some_and(|(active, ready)| *ready && active.as_deref() == Some(deploy))
            })
            .count()
    }

    fn update(&mut self, want: &BTreeMap<String, String>) {
        let now = Instant::now();
        if self.all_deploys_ready.is_none() && self.deploys_ready(want) == want.len() {
            self.all_deploys_ready = Some(now);
        }
        if self.all_sites_active.is_none() && self.sites_active(want) == want.len() {
            self.all_sites_active = Some(now);
        }
    }
}

/// Progress shared between the watches and the round.
pub type Shared = Arc<Mutex<Progress>>;

/// The progress, even if a watch task panicked holding it.
pub fn lock(p: &Shared) -> std::sync::MutexGuard<'_, Progress> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// Watches Deploys and Sites of the namespace into `progress`.
pub fn track(
    ns: &TestNamespace,
    want: Arc<BTreeMap<String, String>>,
    progress: Shared,
) -> Vec<tokio::task::JoinHandle<()>> {
    let deploys = watcher(ns.api::<Deploy>(), watcher::Config::default());
    let (p, w) = (progress.clone(), want.clone());
    let deploy_task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(deploys);
        while let Some(event) = stream.next().await {
            let Ok(watcher::Event::Apply(d) | watcher::Event::InitApply(d)) = event else {
                continue;
            };
            let phase = d.status.as_ref().map(|s| s.phase).unwrap_or_default();
            let mut p = lock(&p);
            p.deploy_phase.insert(d.name_any(), phase);
            p.update(&w);
        }
    });
    let sites = watcher(ns.api::<Site>(), watcher::Config::default());
    let (p, w) = (progress, want);
    let site_task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(sites);
        while let Some(event) = stream.next().await {
            let Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) = event else {
                continue;
            };
            let status = s.status.clone().unwrap_or_default();
            let ready = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            let mut p = lock(&p);
            p.site_active
                .insert(s.name_any(), (status.active_deploy, ready));
            p.update(&w);
        }
    });
    vec![deploy_task, site_task]
}
