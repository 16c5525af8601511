//! Cluster mode: the routing table built from Site, Deploy, EndpointSlice, FunctionRoute and
//! Service watches.
//!
//! ```text
//!  watch Sites ─────────┐
//!  watch Deploys ───────┤
//!  watch EndpointSlices ┼─► reflector stores ─ change ─► rebuild task (debounced, off the hot path)
//!  watch FunctionRoutes ┤                                  │ new manifests: fetch + verify + compile
//!  watch Services ──────┘                                  │
//!                                                          ▼ (cached by digest)
//!                                               build_table() ─► Routes::swap (atomic)
//!  request for a deploy with no ready pod ─► Waker ─► annotate Deploy `kpages.dev/last-call`
//!                                             (the operator scales it up; the request waits)
//!  every activity interval ─► annotate Deploys called since the last note (keeps them warm)
//! ```
//!
//! Hosts: each Site domain (exact, or `*.example.com` for one label below), the site's own host
//! `<site>.<namespace>.<preview-domain>`, and per deploy `<deploy>--<site>.<namespace>.<preview-domain>`
//! — the same names the operator publishes. The site's active deploy is the one its status
//! names (the operator decides; the router follows). Function traffic goes straight to the ready
//! endpoints of the deploy's EndpointSlices (no kube-proxy hop), round-robin.
//!
//! Failure behaviour: while the API server is unreachable the watches retry with backoff and
//! the last good table keeps serving; a malformed object is logged and skipped (the watch goes
//! on); a manifest that cannot be fetched leaves that deploy out (or at its previous compile)
//! and is retried on the next rebuild.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kpages_crds::{
    Deploy as DeployObject, Digest, FunctionRoute as FunctionRouteObject, Site as SiteObject,
};
use kpages_store::BlobStore;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::Notify;

use crate::table::{RouteTable, Routes};
use kpages_routing::resolve::CompiledDeploy;

pub use kpages_crds::names::LAST_CALL_ANNOTATION;

mod activity;
mod table;

pub use activity::DeployWaker;
use activity::note_activity;
pub use table::{Snapshot, build_table, deploy_id};

/// Settings of the cluster source.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Namespaces to watch; empty watches all.
    pub namespaces: Vec<String>,
    /// Domain of preview hosts, as the operator's `--preview-domain`.
    pub preview_domain: String,
    /// How often deploys that served calls are noted on their Deploy (keeps them warm).
    pub activity_interval: Duration,
    /// Limit on fetching one manifest.
    pub manifest_timeout: Duration,
    /// Quiet time after a change before the table is rebuilt (coalesces bursts).
    pub debounce: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            namespaces: Vec::new(),
            preview_domain: "preview.kpages.localhost".into(),
            activity_interval: Duration::from_secs(30),
            manifest_timeout: Duration::from_secs(20),
            debounce: Duration::from_millis(50),
        }
    }
}

/// Why cluster mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No kubeconfig and not in a pod.
    #[error("cannot reach Kubernetes (set KUBECONFIG or run in a pod): {0}")]
    Client(#[from] kube::Error),
    /// A watch stopped for good before it had listed its objects once.
    #[error("a watch of the cluster stopped before its first listing")]
    WatchEnded(#[from] reflector::store::WriterDropped),
}

/// Runs cluster mode: watches, rebuilds and swaps `routes` until the process ends. Installs
/// the scale-from-zero waker on `routes`.
pub async fn run(
    client: Client,
    store: BlobStore,
    routes: Arc<Routes>,
    config: ClusterConfig,
) -> Result<(), ClusterError> {
    let changed = Arc::new(Notify::new());
    // One set of watches per namespace (each needs only that namespace's RBAC), or one for all.
    let scopes: Vec<Option<&str>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().map(|n| Some(n.as_str())).collect()
    };
    let mut stores = Vec::new();
    for ns in &scopes {
        stores.push(Stores {
            sites: reflect(scoped(&client, *ns), watcher::Config::default(), &changed),
            deploys: reflect(scoped(&client, *ns), watcher::Config::default(), &changed),
            slices: reflect(
                scoped(&client, *ns),
                watcher::Config::default().labels("app.kubernetes.io/managed-by=kpages"),
                &changed,
            ),
            routes: reflect(scoped(&client, *ns), watcher::Config::default(), &changed),
            services: reflect(scoped(&client, *ns), watcher::Config::default(), &changed),
        });
    }

    let waker = Arc::new(DeployWaker::new(client.clone()));
    routes.set_waker(waker.clone());
    tokio::spawn(note_activity(
        routes.clone(),
        waker.clone(),
        config.activity_interval,
    ));

    let mut rebuild = Rebuild {
        store,
        config: config.clone(),
        compiled: HashMap::new(),
        failed: HashMap::new(),
        cells: HashMap::new(),
    };
    // Serve nothing until every watch has listed once: a partial table would 404 sites that
    // exist. Then build the first table at once, whatever happens next.
    for st in &stores {
        st.wait_until_ready().await?;
    }
    changed.notify_one();
    loop {
        changed.notified().await;
        tokio::time::sleep(config.debounce).await;
        let mut snapshot = Snapshot::default();
        for st in &stores {
            snapshot.sites.extend(valid(&st.sites.state(), "Site"));
            snapshot
                .deploys
                .extend(valid(&st.deploys.state(), "Deploy"));
            snapshot.slices.extend(st.slices.state());
            snapshot
                .routes
                .extend(valid(&st.routes.state(), "FunctionRoute"));
            snapshot.services.extend(st.services.state());
        }
        let table = rebuild.table(&snapshot).await;
        routes.swap(table);
        if rebuild.has_retries() {
            // Try failed manifests again later even if nothing changes meanwhile.
            let changed = changed.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                changed.notify_one();
            });
        }
    }
}

/// The reflector stores of one watch scope (a namespace, or all).
struct Stores {
    sites: Store<DeserializeGuard<SiteObject>>,
    deploys: Store<DeserializeGuard<DeployObject>>,
    slices: Store<EndpointSlice>,
    routes: Store<DeserializeGuard<FunctionRouteObject>>,
    services: Store<Service>,
}

impl Stores {
    /// Waits until every watch of the scope has listed its objects once.
    async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        self.sites.wait_until_ready().await?;
        self.deploys.wait_until_ready().await?;
        self.slices.wait_until_ready().await?;
        self.routes.wait_until_ready().await?;
        self.services.wait_until_ready().await
    }
}

/// An Api on one namespace, or on all.
fn scoped<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Starts a reflector for `api` whose every event wakes the rebuild task.
fn reflect<K>(api: Api<K>, config: watcher::Config, changed: &Arc<Notify>) -> Store<K>
where
    K: Resource + Clone + std::fmt::Debug + Send + Sync + serde::de::DeserializeOwned + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let changed = changed.clone();
    let kind = K::kind(&K::DynamicType::default()).to_string();
    tokio::spawn(async move {
        let events = watcher(api, config).default_backoff().reflect(writer);
        futures::pin_mut!(events);
        loop {
            match events.try_next().await {
                Ok(Some(_)) => changed.notify_one(),
                Ok(None) => break,
                Err(e) => {
                    // The backoff retries; the last good table keeps serving meanwhile.
                    tracing::warn!(kind = %kind, error = %e, "watch failed; retrying");
                }
            }
        }
    });
    reader
}

/// The objects that parsed; the others are reported (once per resource version) and skipped.
fn valid<K>(objects: &[Arc<DeserializeGuard<K>>], kind: &str) -> Vec<Arc<K>>
where
    K: Clone,
{
    objects
        .iter()
        .filter_map(|g| match &g.0 {
            Ok(k) => Some(Arc::new(k.clone())),
            Err(invalid) => {
                tracing::warn!(
                    kind,
                    name = %invalid.metadata.name.as_deref().unwrap_or("?"),
                    namespace = %invalid.metadata.namespace.as_deref().unwrap_or("?"),
                    error = %invalid.error,
                    "skipping a malformed object"
                );
                None
            }
        })
        .collect()
}

/// State kept between rebuilds: compiled manifests, failed fetches, activity cells.
struct Rebuild {
    store: BlobStore,
    config: ClusterConfig,
    compiled: HashMap<Digest, Arc<CompiledDeploy>>,
    failed: HashMap<Digest, Instant>,
    cells: HashMap<String, Arc<std::sync::atomic::AtomicI64>>,
}

impl Rebuild {
    async fn table(&mut self, snapshot: &Snapshot) -> RouteTable {
        let wanted: HashSet<Digest> = snapshot.deploys.iter().map(|d| d.spec.manifest).collect();
        self.compiled.retain(|d, _| wanted.contains(d));
        self.failed.retain(|d, _| wanted.contains(d));
        let missing: Vec<Digest> = wanted
            .iter()
            .filter(|d| !self.compiled.contains_key(d))
            .copied()
            .collect();
        let fetched = futures::stream::iter(missing)
            .map(|digest| {
                let store = self.store.clone();
                let limit = self.config.manifest_timeout;
                async move {
                    let got = tokio::time::timeout(limit, store.get_manifest(&digest)).await;
                    (digest, got)
                }
            })
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await;
        for (digest, got) in fetched {
            match got {
                Ok(Ok(manifest)) => {
                    self.failed.remove(&digest);
                    let compiled = CompiledDeploy::compile(Arc::new(manifest));
                    for w in &compiled.unusable {
                        tracing::warn!(manifest = %digest, unusable = %w, "manifest pattern skipped");
                    }
                    self.compiled.insert(digest, Arc::new(compiled));
                }
                Ok(Err(e)) => {
                    tracing::warn!(manifest = %digest, error = %e, "cannot load a deploy's manifest; its deploy is not served yet");
                    self.failed.insert(digest, Instant::now());
                }
                Err(_) => {
                    tracing::warn!(manifest = %digest, "loading a deploy's manifest timed out; retrying");
                    self.failed.insert(digest, Instant::now());
                }
            }
        }
        let ids: HashSet<String> = snapshot
            .deploys
            .iter()
            .map(|d| deploy_id(&d.namespace().unwrap_or_default(), &d.name_any()))
            .collect();
        self.cells.retain(|id, _| ids.contains(id));
        for id in ids {
            self.cells.entry(id).or_default();
        }
        let table = build_table(
            snapshot,
            &|d| self.compiled.get(d).cloned(),
            &|id| self.cells.get(id).cloned().unwrap_or_default(),
            &self.config.preview_domain,
        );
        let (sites, deploys) = (table.sites().len(), table.deploys().count());
        tracing::info!(sites, deploys, "routing table rebuilt");
        table
    }

    fn has_retries(&self) -> bool {
        !self.failed.is_empty()
    }
}
