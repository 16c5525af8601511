//! The kpages data plane: routes requests for many sites to static files in object storage,
//! to Node function hosts, to a background queue, or to redirects and proxies, from each
//! site's active deploy manifest.
//!
//! Pure modules ([`path`], [`pattern`], [`rules`], [`resolve`], [`cron`], [`client`]) decide;
//! the rest do I/O at the edges.

pub mod app;
pub mod body;
pub mod client;
pub mod cluster;
pub mod cron;
pub mod geo;
pub mod jetstream;
pub mod metrics;
pub mod node_host;
pub mod path;
pub mod pattern;
pub mod proxy;
pub mod queue;
pub mod resolve;
pub mod rules;
pub mod scheduler;
pub mod server;
pub mod site_routes;
pub mod static_files;
pub mod table;
pub mod trace;
