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
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::resolve::CompiledDeploy;

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
}

/// A deploy ready to serve.
#[derive(Debug)]
pub struct Deploy {
    /// The deploy's id (its manifest digest, or a name in `kpages dev`).
    pub id: String,
    /// The compiled manifest.
    pub routes: CompiledDeploy,
    /// Its function host.
    pub functions: FunctionUpstream,
    /// Whether this is the site's production deploy (scheduled functions run only there).
    pub production: bool,
}

/// A site and its active deploy.
#[derive(Debug)]
pub struct Site {
    /// The site's name (metrics label, logs).
    pub name: String,
    /// The deploy serving the site.
    pub deploy: Arc<Deploy>,
}

/// An immutable snapshot of everything the router serves.
#[derive(Debug, Default)]
pub struct RouteTable {
    hosts: HashMap<String, Arc<Site>>,
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

    /// Adds a site answering `hosts` (lower-cased).
    pub fn insert(&mut self, hosts: &[String], site: Site) {
        let site = Arc::new(site);
        self.deploys
            .insert(site.deploy.id.clone(), site.deploy.clone());
        for h in hosts {
            self.hosts.insert(h.to_ascii_lowercase(), site.clone());
        }
    }

    /// The site for a `Host` header value (port and trailing dot ignored).
    pub fn site_for_host(&self, host: &str) -> Option<&Arc<Site>> {
        let name = strip_port(host).trim_end_matches('.').to_ascii_lowercase();
        self.hosts.get(&name).or(self.default_site.as_ref())
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
            .filter(|s| seen.insert(Arc::as_ptr(s)))
            .cloned()
            .collect()
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().map_or(host, |h| &h[1..]);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// The live routing table: lock-free reads, atomic swaps, change notifications.
#[derive(Debug)]
pub struct Routes {
    current: ArcSwap<RouteTable>,
    changed: watch::Sender<u64>,
}

impl Routes {
    /// Starts with `table`.
    pub fn new(table: RouteTable) -> Self {
        Self {
            current: ArcSwap::from_pointee(table),
            changed: watch::channel(0).0,
        }
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<RouteTable> {
        self.current.load_full()
    }

    /// Replaces the snapshot; in-flight requests finish on the old one.
    pub fn swap(&self, table: RouteTable) {
        self.current.store(Arc::new(table));
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
            name: name.into(),
            deploy: Arc::new(Deploy {
                id: format!("{name}-1"),
                routes: CompiledDeploy::compile(Arc::new(Manifest::new())),
                functions: FunctionUpstream::default(),
                production: true,
            }),
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
}
