//! The routing table: which deploy answers which host, and where its functions run.
//!
//! ```text
//!  Routes ── ArcSwap ──► RouteTable (immutable snapshot)
//!                          ├─ hosts:   "example.com" ──► Site
//!                          ├─ default: Site (kpages dev: every host)
//!                          └─ deploys: deploy id ──► Deploy  (background jobs find theirs)
//!                        Site ──► active Deploy { CompiledDeploy, FunctionUpstream, env }
//! ```
//!
//! A *source* builds whole snapshots and swaps them in: `kpages dev` from a local build, the
//! cluster from Site/Deploy/EndpointSlice watches. Requests load the current snapshot once,
//! lock-free, and finish on it even if a new one is swapped in meanwhile.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use kpages_crds::manifest::InvocationKind;
use tokio::sync::watch;

use kpages_routing::resolve::CompiledDeploy;

/// Where a deploy's function host listens. Several endpoints (pods) are used round-robin.
#[derive(Debug, Default)]
pub struct FunctionUpstream {
    endpoints: Vec<SocketAddr>,
    next: AtomicUsize,
}

impl FunctionUpstream {
    /// An upstream with these endpoints.
    pub fn new(endpoints: Vec<SocketAddr>) -> Self {
        Self {
            endpoints,
            next: AtomicUsize::new(0),
        }
    }

    /// The endpoint for the next call, or `None` when no endpoint is ready.
    pub fn pick(&self) -> Option<SocketAddr> {
        if self.endpoints.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        Some(self.endpoints[i])
    }

    /// The ready endpoints.
    pub fn endpoints(&self) -> &[SocketAddr] {
        &self.endpoints
    }
}

/// A deploy ready to serve.
#[derive(Debug)]
pub struct Deploy {
    /// The deploy's id (its manifest digest, or a name in `kpages dev`).
    pub id: String,
    /// The compiled manifest (shared by every snapshot that serves this manifest).
    pub routes: Arc<CompiledDeploy>,
    /// Its function host.
    pub functions: FunctionUpstream,
    /// Whether this is the site's production deploy (scheduled functions run only there).
    pub production: bool,
    /// Unix seconds of the last function call; carried from snapshot to snapshot so that the
    /// cluster source can tell the operator which deploys are in use (scale to zero).
    pub last_call: Arc<AtomicI64>,
    /// Limits of the deploy's Site object (cluster mode), used where neither the function nor
    /// the manifest's site configuration sets one; the router's flags come last.
    pub site_limits: SiteLimits,
}

/// A Site object's function limits (`spec.functions`); a field not given is `None`. They sit
/// between the manifest's and the router's own in the limits precedence.
pub type SiteLimits = kpages_crds::manifest::Limits;

impl Deploy {
    /// A deploy with these function endpoints.
    pub fn new(
        id: impl Into<String>,
        routes: Arc<CompiledDeploy>,
        endpoints: Vec<SocketAddr>,
        production: bool,
    ) -> Self {
        Self {
            id: id.into(),
            routes,
            functions: FunctionUpstream::new(endpoints),
            production,
            last_call: Arc::default(),
            site_limits: SiteLimits::default(),
        }
    }

    /// Records a function call now.
    pub fn touch(&self) {
        self.last_call
            .store(kpages_crds::schedule::unix_now(), Ordering::Relaxed);
    }
}

/// A site and its active deploy.
#[derive(Debug)]
pub struct Site {
    /// The site's name (metrics label, logs).
    pub name: String,
    /// The deploy serving the site.
    pub deploy: Arc<Deploy>,
    /// FunctionRoutes written for the site (cluster mode), tried before the deploy's own
    /// function routes.
    pub routes: Arc<SiteRoutes>,
}

/// An immutable snapshot of everything the router serves.
#[derive(Debug, Default)]
pub struct RouteTable {
    hosts: HashMap<String, Arc<Site>>,
    /// `*.example.com` domains, keyed by `example.com`: any single label in front matches.
    wildcards: HashMap<String, Arc<Site>>,
    default_site: Option<Arc<Site>>,
    deploys: HashMap<String, Arc<Deploy>>,
}

impl RouteTable {
    /// A table that serves `site` for every host (`kpages dev`).
    pub fn single(site: Site) -> Self {
        let site = Arc::new(site);
        let mut t = Self::default();
        t.deploys
            .insert(site.deploy.id.clone(), site.deploy.clone());
        t.default_site = Some(site);
        t
    }

    /// Adds a site answering `hosts` (lower-cased; `*.example.com` answers every host one
    /// label below `example.com`, after exact hosts).
    pub fn insert(&mut self, hosts: &[String], site: Site) {
        let site = Arc::new(site);
        self.deploys
            .insert(site.deploy.id.clone(), site.deploy.clone());
        for h in hosts {
            let h = h.to_ascii_lowercase();
            match h.strip_prefix("*.") {
                Some(parent) => self.wildcards.insert(parent.to_string(), site.clone()),
                None => self.hosts.insert(h, site.clone()),
            };
        }
    }

    /// Adds a deploy that no host serves (background jobs of a deploy that just left).
    pub fn insert_deploy(&mut self, deploy: Arc<Deploy>) {
        self.deploys.entry(deploy.id.clone()).or_insert(deploy);
    }

    /// The site for a `Host` header value (port and trailing dot ignored).
    pub fn site_for_host(&self, host: &str) -> Option<&Arc<Site>> {
        let name = kpages_routing::host::normalize(host);
        self.hosts
            .get(&name)
            .or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.wildcards.get(parent)
            })
            .or(self.default_site.as_ref())
    }

    /// A site by name (`<namespace>/<site>` in cluster mode).
    pub fn site_named(&self, name: &str) -> Option<Arc<Site>> {
        self.sites().into_iter().find(|s| s.name == name)
    }

    /// Every deploy, each once.
    pub fn deploys(&self) -> impl Iterator<Item = &Arc<Deploy>> {
        self.deploys.values()
    }

    /// A deploy by id, whether or not it is still active.
    pub fn deploy(&self, id: &str) -> Option<&Arc<Deploy>> {
        self.deploys.get(id)
    }

    /// Every site, each once.
    pub fn sites(&self) -> Vec<Arc<Site>> {
        let mut seen = std::collections::HashSet::new();
        self.default_site
            .iter()
            .chain(self.hosts.values())
            .chain(self.wildcards.values())
            .filter(|s| seen.insert(Arc::as_ptr(s)))
            .cloned()
            .collect()
    }
}

/// Where a site route (a FunctionRoute a user wrote) sends matching requests.
#[derive(Debug, Clone)]
pub enum RouteTarget {
    /// A function of a deploy (the site's active one unless the route names another).
    Function {
        /// The deploy.
        deploy: Arc<Deploy>,
        /// The function's name in the deploy's manifest.
        function: String,
        /// Sync, or background through the queue.
        invocation: InvocationKind,
    },
    /// A Service port, as `host:port` (its cluster IP): proxied with the request's own Host.
    Service {
        /// `<cluster IP>:<port>`.
        authority: String,
        /// `<namespace>/<name>:<port>`, for errors and logs.
        name: String,
    },
}

/// A site's routes, compiled by the routing core, with the router's targets.
pub type SiteRoutes = kpages_routing::site_routes::SiteRoutes<RouteTarget>;
/// One compiled site route with the router's target.
pub type SiteRoute = kpages_routing::site_routes::SiteRoute<RouteTarget>;

/// The live routing table: lock-free reads, atomic swaps, change notifications.
#[derive(Debug)]
pub struct Routes {
    current: ArcSwap<RouteTable>,
    changed: watch::Sender<u64>,
    ready: AtomicBool,
    waker: std::sync::OnceLock<Arc<dyn Waker>>,
}

/// Asks for pods of a deploy that has none (scale from zero). Called on the request path:
/// implementations return at once and do their work in the background.
pub trait Waker: Send + Sync + std::fmt::Debug {
    /// The deploy `id` has a call waiting and no ready endpoint.
    fn wake(&self, id: &str);
}

impl Routes {
    /// Starts with `table`, ready to serve.
    pub fn new(table: RouteTable) -> Self {
        let routes = Self::pending();
        routes.current.store(Arc::new(table));
        routes.ready.store(true, Ordering::Relaxed);
        routes
    }

    /// Starts empty and not ready until the first [`swap`](Self::swap) (cluster mode: until the
    /// watches have listed everything once).
    pub fn pending() -> Self {
        Self {
            current: ArcSwap::from_pointee(RouteTable::default()),
            changed: watch::channel(0).0,
            ready: AtomicBool::new(false),
            waker: std::sync::OnceLock::new(),
        }
    }

    /// Whether a complete table has been installed (`/readyz`).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Installs the scale-from-zero hook (once).
    pub fn set_waker(&self, waker: Arc<dyn Waker>) {
        let _ = self.waker.set(waker);
    }

    /// An endpoint of deploy `id`. When it has none and a [`Waker`] is installed, wakes the
    /// deploy and waits up to `limit` for a snapshot in which it has one.
    pub async fn endpoint(&self, id: &str, limit: Duration) -> Option<SocketAddr> {
        // Every warm call ends here, without subscribing to changes.
        if let Some(addr) = self.ready_endpoint(id)? {
            return Some(addr);
        }
        let waker = self.waker.get()?;
        let mut changes = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        waker.wake(id);
        loop {
            // Checked after subscribing too, so a swap in between is not missed.
            if let Some(addr) = self.ready_endpoint(id)? {
                return Some(addr);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => return None,
            }
        }
    }

    /// `None` when the deploy is not in the current snapshot, else its next ready endpoint
    /// (noting the call).
    fn ready_endpoint(&self, id: &str) -> Option<Option<SocketAddr>> {
        let table = self.current.load();
        let deploy = table.deploy(id)?;
        deploy.touch();
        Some(deploy.functions.pick())
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<RouteTable> {
        self.current.load_full()
    }

    /// Replaces the snapshot; in-flight requests finish on the old one.
    pub fn swap(&self, table: RouteTable) {
        self.current.store(Arc::new(table));
        self.ready.store(true, Ordering::Relaxed);
        self.changed.send_modify(|v| *v += 1);
    }

    /// Notified on every swap (the scheduler re-plans).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kpages_crds::Manifest;

    fn site(name: &str) -> Site {
        Site {
            routes: Default::default(),
            name: name.into(),
            deploy: Arc::new(Deploy::new(
                format!("{name}-1"),
                Arc::new(CompiledDeploy::compile(Arc::new(Manifest::new()))),
                Vec::new(),
                true,
            )),
        }
    }

    #[test]
    fn hosts_resolve_case_and_port_insensitively() {
        let mut t = RouteTable::default();
        t.insert(&["Example.com".into(), "www.example.com".into()], site("a"));
        t.insert(&["b.test".into()], site("b"));
        for (host, want) in [
            ("example.com", Some("a")),
            ("EXAMPLE.COM:8080", Some("a")),
            ("www.example.com.", Some("a")),
            ("b.test", Some("b")),
            ("c.test", None),
            ("[::1]:80", None),
        ] {
            assert_eq!(
                t.site_for_host(host).map(|s| s.name.as_str()),
                want,
                "{host}"
            );
        }
        assert_eq!(t.sites().len(), 2);
        assert!(t.deploy("b-1").is_some());
        let dev = RouteTable::single(site("dev"));
        assert_eq!(dev.site_for_host("anything:1").unwrap().name, "dev");
    }

    #[test]
    fn upstream_round_robin() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let u = FunctionUpstream::new(vec![a, b]);
        assert_eq!([u.pick(), u.pick(), u.pick()], [Some(a), Some(b), Some(a)]);
        assert_eq!(FunctionUpstream::default().pick(), None);
    }

    #[test]
    fn swaps_notify_subscribers() {
        let routes = Routes::new(RouteTable::default());
        let mut rx = routes.subscribe();
        routes.swap(RouteTable::single(site("x")));
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        assert_eq!(routes.load().sites()[0].name, "x");
    }

    #[derive(Debug, Default)]
    struct Recorder(std::sync::Mutex<Vec<String>>);
    impl Waker for Recorder {
        fn wake(&self, id: &str) {
            self.0.lock().unwrap().push(id.to_string());
        }
    }

    fn with_endpoints(eps: Vec<SocketAddr>) -> RouteTable {
        RouteTable::single(Site {
            routes: Default::default(),
            name: "x".into(),
            deploy: Arc::new(Deploy::new(
                "x-1",
                Arc::new(CompiledDeploy::compile(Arc::new(Manifest::new()))),
                eps,
                true,
            )),
        })
    }

    #[tokio::test]
    async fn a_call_to_a_deploy_without_pods_wakes_it_and_waits_for_an_endpoint() {
        let routes = Arc::new(Routes::new(with_endpoints(vec![])));
        // Without a waker (kpages dev) there is nothing to wait for.
        assert_eq!(routes.endpoint("x-1", Duration::from_secs(5)).await, None);
        let waker = Arc::new(Recorder::default());
        routes.set_waker(waker.clone());
        let addr: SocketAddr = "10.0.0.1:9000".parse().unwrap();
        let r = routes.clone();
        let waiting = tokio::spawn(async move { r.endpoint("x-1", Duration::from_secs(30)).await });
        while waker.0.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        routes.swap(with_endpoints(vec![]));
        routes.swap(with_endpoints(vec![addr]));
        assert_eq!(waiting.await.unwrap(), Some(addr));
        assert_eq!(
            *waker.0.lock().unwrap(),
            vec!["x-1".to_string()],
            "woken once"
        );
        assert!(
            routes
                .load()
                .deploy("x-1")
                .unwrap()
                .last_call
                .load(Ordering::Relaxed)
                > 0
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cold_start_gives_up_after_its_limit() {
        let routes = Routes::new(with_endpoints(vec![]));
        routes.set_waker(Arc::new(Recorder::default()));
        assert_eq!(routes.endpoint("x-1", Duration::from_secs(3)).await, None);
        assert_eq!(routes.endpoint("gone", Duration::from_secs(3)).await, None);
        assert!(Routes::pending().load().sites().is_empty());
        assert!(!Routes::pending().is_ready() && routes.is_ready());
    }
}
