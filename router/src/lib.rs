//! The kpages data plane: routes requests for many sites to static files in object storage,
//! to Node function hosts, to a background queue, or to redirects and proxies, from each
//! site's active deploy manifest.
//!
//! The decisions are the routing core's (`kpages_routing`); [`client`] is pure too;
//! the rest do I/O at the edges.

pub mod app;
pub mod body;
pub mod client;
pub mod cluster;
pub mod geo;
pub mod jetstream;
pub mod metrics;
pub mod node_host;
pub mod proxy;
pub mod queue;
pub mod scheduler;
pub mod server;
pub mod static_files;
pub mod table;
pub mod trace;
