//! Defaults and bounds shared by the CRDs, the manifest and the router, so that every part
//! agrees on what a site may ask for.

/// Node.js image of function pods when a Site names none.
pub const DEFAULT_NODE_IMAGE: &str = "node:20-slim";

/// Most pods one deploy may run.
pub const MAX_REPLICAS: i32 = 100;

/// Default wall time of a synchronous function call (Netlify's and EdgeOne's default class).
pub const DEFAULT_SYNC_TIMEOUT_SECONDS: u32 = 30;
/// Longest wall time a synchronous call may be given.
pub const MAX_SYNC_TIMEOUT_SECONDS: u32 = 900;

/// Default wall time of a background or scheduled run (Netlify background functions: 15 min).
pub const DEFAULT_BACKGROUND_TIMEOUT_SECONDS: u32 = 900;
/// Longest wall time a background or scheduled run may be given.
pub const MAX_BACKGROUND_TIMEOUT_SECONDS: u32 = 3600;

/// Default request body limit for functions: 6 MiB, as on Netlify.
pub const DEFAULT_BODY_LIMIT_BYTES: u64 = 6 * 1024 * 1024;
/// Smallest body limit a site may set.
pub const MIN_BODY_LIMIT_BYTES: u64 = 1024;
/// Largest body limit a site may set.
pub const MAX_BODY_LIMIT_BYTES: u64 = 64 * 1024 * 1024;
