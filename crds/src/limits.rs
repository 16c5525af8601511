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

/// The limits one function call runs under, once every layer has had its say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// Largest request body, in bytes.
    pub max_body_bytes: u64,
    /// Wall time of a synchronous call.
    pub timeout: std::time::Duration,
    /// Wall time of a background or scheduled run.
    pub background_timeout: std::time::Duration,
}

impl Default for CallLimits {
    /// The platform defaults: 6 MiB, 30 s, 15 min.
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_BODY_LIMIT_BYTES,
            timeout: std::time::Duration::from_secs(DEFAULT_SYNC_TIMEOUT_SECONDS.into()),
            background_timeout: std::time::Duration::from_secs(
                DEFAULT_BACKGROUND_TIMEOUT_SECONDS.into(),
            ),
        }
    }
}

/// The limits precedence, in one place: for each limit the first layer that sets it wins, else
/// `defaults`. Callers pass the layers most specific first — the function's own limits, the
/// manifest's site-wide ones, then the Site object's — and the router's flags (or the
/// platform defaults) as `defaults`. The router enforces what the operator and `kpages dev`
/// give the function host, because all three call this.
pub fn effective(layers: &[&crate::manifest::Limits], defaults: CallLimits) -> CallLimits {
    let secs = |s: u32| std::time::Duration::from_secs(s.into());
    CallLimits {
        max_body_bytes: layers
            .iter()
            .find_map(|l| l.max_body_bytes)
            .unwrap_or(defaults.max_body_bytes),
        timeout: layers
            .iter()
            .find_map(|l| l.timeout_seconds)
            .map_or(defaults.timeout, secs),
        background_timeout: layers
            .iter()
            .find_map(|l| l.background_timeout_seconds)
            .map_or(defaults.background_timeout, secs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Limits;
    use std::time::Duration;

    #[test]
    fn the_most_specific_layer_that_sets_a_limit_wins() {
        let function = Limits {
            timeout_seconds: Some(5),
            ..Limits::default()
        };
        let manifest = Limits {
            timeout_seconds: Some(10),
            max_body_bytes: Some(2048),
            ..Limits::default()
        };
        let object = Limits {
            max_body_bytes: Some(4096),
            background_timeout_seconds: Some(60),
            ..Limits::default()
        };
        let got = effective(&[&function, &manifest, &object], CallLimits::default());
        assert_eq!(got.timeout, Duration::from_secs(5));
        assert_eq!(got.max_body_bytes, 2048);
        assert_eq!(got.background_timeout, Duration::from_secs(60));
        assert_eq!(effective(&[], CallLimits::default()), CallLimits::default());
        assert_eq!(
            CallLimits::default().max_body_bytes,
            DEFAULT_BODY_LIMIT_BYTES
        );
    }
}
