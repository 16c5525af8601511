//! The contract between the router and the Node.js function host, on the Rust side: the
//! control headers the router sets on every call, and `functions.json`, the list of functions
//! a host serves, which the operator's bundle fetcher (cluster) and `kpages dev` (one machine)
//! both write. `docs/host-protocol.md` describes the whole protocol.

use serde::{Deserialize, Serialize};

use crate::Manifest;
use crate::limits::{CallLimits, effective};
use crate::manifest::{Dialect, InvocationKind, Limits};

/// Control headers: set by the router, read by the host. Every header starting with
/// [`header::PREFIX`] that a client sends is stripped before a call.
pub mod header {
    /// What every control header starts with.
    pub const PREFIX: &str = "x-kpages-";
    /// The function to call, by its manifest name.
    pub const FUNCTION: &str = "x-kpages-function";
    /// Route parameters, as a JSON object of strings.
    pub const PARAMS: &str = "x-kpages-params";
    /// The request's id (also answered to the client).
    pub const REQUEST_ID: &str = "x-kpages-request-id";
    /// The client's address, as the router determined it.
    pub const CLIENT_IP: &str = "x-kpages-client-ip";
    /// The client's location, base64 of a JSON object.
    pub const GEO: &str = "x-kpages-geo";
    /// How the function is invoked: see [`super::invocation`].
    pub const INVOCATION: &str = "x-kpages-invocation";
    /// A background call's id, answered with its 202.
    pub const CALL_ID: &str = "x-kpages-call-id";
}

/// The value of [`header::INVOCATION`] for a kind of invocation.
pub fn invocation(kind: InvocationKind) -> &'static str {
    match kind {
        InvocationKind::Sync => "sync",
        InvocationKind::Background => "background",
        InvocationKind::Scheduled => "schedule",
    }
}

/// `functions.json`: the functions one host serves.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct FunctionsFile {
    /// One entry per function of the deploy.
    pub functions: Vec<HostFunction>,
}

/// One function as the host loads it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HostFunction {
    /// The function's manifest name.
    pub name: String,
    /// Its ESM bundle, relative to `functions.json`.
    pub file: String,
    /// The platform API it is written for.
    pub dialect: Dialect,
    /// For an EdgeOne `[[name]].js` app, the catch-all parameter holding the mounted path.
    pub catch_all: Option<String>,
    /// Wall time of a synchronous call, in milliseconds.
    pub timeout_ms: u64,
    /// Wall time of a background or scheduled run, in milliseconds.
    pub background_timeout_ms: u64,
}

impl FunctionsFile {
    /// The file's name next to the bundles.
    pub const NAME: &'static str = "functions.json";

    /// The host's list for `manifest`. Timeouts follow [`effective`]: the function's own, the
    /// manifest's site-wide ones, then `site` (the Site object's, or none), then `defaults`.
    /// `file` names a function's bundle relative to the file.
    pub fn new(
        manifest: &Manifest,
        site: &Limits,
        defaults: CallLimits,
        file: impl Fn(&str) -> String,
    ) -> Self {
        let functions = manifest
            .functions
            .iter()
            .map(|f| {
                let limits = effective(&[&f.limits, &manifest.site.limits, site], defaults);
                HostFunction {
                    name: f.name.clone(),
                    file: file(&f.name),
                    dialect: f.dialect,
                    catch_all: f.catch_all.clone(),
                    timeout_ms: limits.timeout.as_millis() as u64,
                    background_timeout_ms: limits.background_timeout.as_millis() as u64,
                }
            })
            .collect();
        Self { functions }
    }

    /// The file's JSON.
    pub fn to_json(&self) -> String {
        // A struct of strings and numbers always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}
