//! The router's settings: limits, timeouts, connection bounds and the in-process queue. The
//! limits here are the last layer of the limits precedence; a deploy may set its own.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use kpages_crds::limits;

use crate::jobs::queue::QueueConfig;

/// Router settings. Limits here are defaults; a deploy's manifest may set its own.
#[derive(Debug, Clone)]
pub struct Config {
    /// Wall time of a synchronous function call.
    pub sync_timeout: Duration,
    /// Wall time of a background or scheduled run.
    pub background_timeout: Duration,
    /// Largest function request body.
    pub body_limit: u64,
    /// Time a client has to send request headers (slowloris).
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers), in bytes.
    pub max_header_bytes: usize,
    /// Client connections open at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Peers whose `X-Forwarded-For`/`-Proto`/`-Host` are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Bytes of static files kept in memory.
    pub cache_bytes: u64,
    /// Largest file kept in the cache (and compressed); larger ones stream.
    pub max_cached_file: u64,
    /// The in-process background queue.
    pub queue: QueueConfig,
    /// Secret that signs `nf_jwt` tokens, for `Role` conditions; none: no roles.
    pub jwt_secret: Option<Vec<u8>>,
    /// How long a function call waits for a deploy scaled to zero to get a ready pod before
    /// the router answers 503 with `Retry-After` (cluster mode; `kpages dev` never waits).
    pub cold_start_timeout: Duration,
    /// The router's own listeners (public and admin): a proxy rule never connects to them,
    /// so a site cannot reach the admin API through its own rules. `kpages dev` still lets
    /// rules reach other loopback servers (a developer's local API).
    pub own_listeners: Vec<SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            sync_timeout: Duration::from_secs(limits::DEFAULT_SYNC_TIMEOUT_SECONDS.into()),
            background_timeout: Duration::from_secs(
                limits::DEFAULT_BACKGROUND_TIMEOUT_SECONDS.into(),
            ),
            body_limit: limits::DEFAULT_BODY_LIMIT_BYTES,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_connections: 10_000,
            shutdown_grace: Duration::from_secs(30),
            trusted_proxies: vec![],
            cache_bytes: 256 * 1024 * 1024,
            max_cached_file: 8 * 1024 * 1024,
            queue: QueueConfig::default(),
            jwt_secret: None,
            cold_start_timeout: Duration::from_secs(60),
            own_listeners: Vec::new(),
        }
    }
}
