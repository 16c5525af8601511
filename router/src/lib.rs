//! The kpages data plane: routes requests for many sites to static files in object storage,
//! to Node function hosts, to a background queue, or to redirects and proxies, from each
//! site's active deploy manifest. What a request is for is decided by the routing core
//! (`kpages_routing`); this crate does the I/O around that decision.
//!
//! ```text
//!  sources/ ── local build | cluster watches ──► table::Routes (ArcSwap<RouteTable>)
//!                                                     │ one lock-free load per request
//!  client ─► http/ (server, pipeline, admin) ─► kpages_routing::resolve ─► serve/
//!                                                     ├─ static_files (blobs, cache)
//!                                                     ├─ functions (host calls, limits)
//!                                                     └─ proxy (rules, Services)
//!            background calls ─► jobs/ (queue: in-process | JetStream, scheduler, runner)
//!            observe/ (metrics, tracing, geo) around all of it
//! ```

pub mod body;
pub mod config;
pub mod http;
pub mod jobs;
pub mod observe;
pub mod serve;
pub mod sources;
pub mod table;
