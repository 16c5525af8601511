//! The deploy manifest: the one description of a deploy that `kpages build` writes and the
//! operator, the router and `kpages dev` read. No part of kpages outside `kpages build` parses
//! user configuration files; they all read this.
//!
//! ```text
//!  Manifest ─┬─ version            (1; anything else is refused)
//!            ├─ site               404 page, pretty URLs, limits
//!            ├─ files              "/path" → {digest, size, contentType}
//!            ├─ functions[]        name, bundle digest, dialect, invocation, routes, limits…
//!            └─ rules ─┬─ redirects[]  redirects, rewrites, proxies, in the order they apply
//!                      ├─ headers[]    header rules (incl. Basic-Auth)
//!                      └─ cache[]      cache TTL rules
//! ```
//!
//! The JSON is canonical (maps are ordered), so the same deploy always has the same digest.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// The manifest format this version of kpages reads and writes.
pub const MANIFEST_VERSION: u32 = 1;

/// A deploy: its static files, functions and rules.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "kpages deploy manifest")]
pub struct Manifest {
    /// Format version; readers refuse versions they do not know.
    pub version: u32,
    /// Site-wide settings.
    #[serde(default)]
    pub site: SiteSettings,
    /// Static files by URL path (`/index.html`), in byte order of the path.
    #[serde(default)]
    pub files: BTreeMap<String, StaticFile>,
    /// Functions, sorted by name.
    #[serde(default)]
    pub functions: Vec<Function>,
    /// Routing rules, already normalised from `_redirects`, `_headers`, `netlify.toml`,
    /// `edgeone.json` and `.netlify/v1/config.json`.
    #[serde(default)]
    pub rules: Rules,
}

/// Site-wide settings.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SiteSettings {
    /// Path of the page served with status 404 when nothing matches (usually `/404.html`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_found_page: Option<String>,
    /// Serve `/about` from `about.html` or `about/index.html`.
    #[serde(default = "yes")]
    pub pretty_urls: bool,
    /// Limits that apply to every function unless the function sets its own.
    #[serde(default)]
    pub limits: Limits,
}

impl Default for SiteSettings {
    fn default() -> Self {
        Self {
            not_found_page: None,
            pretty_urls: true,
            limits: Limits::default(),
        }
    }
}

fn yes() -> bool {
    true
}

/// Function limits. Unset fields fall back to the site's, then to kpages' defaults.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// Wall time of a synchronous call, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    /// Wall time of a background or scheduled run, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background_timeout_seconds: Option<u32>,
    /// Largest request body, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// Memory of the function's process, in MiB (advisory for pod sizing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u32>,
}

/// A static file.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StaticFile {
    /// Digest of the file's bytes.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Media type served in `Content-Type`.
    pub content_type: String,
}

/// A function.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Function {
    /// Name, unique in the deploy: letters, digits, `-` and `_`.
    pub name: String,
    /// Digest of the function's ESM bundle.
    pub bundle: Digest,
    /// Which platform's API the code is written for.
    pub dialect: Dialect,
    /// How the function is invoked.
    #[serde(default)]
    pub invocation: InvocationKind,
    /// Cron schedule (5 fields, UTC, or `@hourly`-style), for scheduled functions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Paths the function serves. Empty: reachable only at `/.netlify/functions/<name>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// Paths excluded from `routes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_routes: Vec<Route>,
    /// Methods the function answers; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Serve a static file at the request path instead of the function when one exists.
    #[serde(default, skip_serializing_if = "is_false")]
    pub prefer_static: bool,
    /// For an EdgeOne `[[name]].js` app: the catch-all parameter whose value is the path the
    /// mounted app sees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_all: Option<String>,
    /// Limits of this function.
    #[serde(default, skip_serializing_if = "is_default")]
    pub limits: Limits,
    /// Extra files the function reads at run time, relative to its bundle.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_files: Vec<IncludedFile>,
    /// Rate limiting declared in the function's config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Source file the function was built from, relative to the site directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Platform API a function is written against.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// Netlify Functions v2: `export default async (req, context)`.
    Netlify,
    /// Tencent EdgeOne Pages Node Functions: `onRequest*` exports, or an Express/Koa app.
    Edgeone,
    /// Lambda compatibility: `export const handler = async (event, context)`.
    Lambda,
}

/// How a function is invoked.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "lowercase")]
pub enum InvocationKind {
    /// The client waits for the response.
    #[default]
    Sync,
    /// The client gets 202; the function runs from a durable queue.
    Background,
    /// Run on a cron schedule.
    Scheduled,
}

/// A path a function serves.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Route {
    /// The pattern, in the syntax named by `syntax`.
    pub pattern: String,
    /// The pattern's syntax.
    pub syntax: RouteSyntax,
}

/// Route pattern syntaxes, one per platform convention.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum RouteSyntax {
    /// URLPattern pathname syntax as in Netlify's `config.path`: `/api/:id`, `/blog/*`.
    Urlpattern,
    /// EdgeOne file routes: `/users/[id]` (one segment), `/koa/[[default]]` (catch-all).
    ///
    /// Matching is case-sensitive and a trailing slash is optional. `[name]` matches exactly
    /// one non-empty segment; `[[name]]` is always the last segment and matches zero or more
    /// segments, so `/koa/[[default]]` serves `/koa` and `/koa/a/b`; its param value is the
    /// rest of the path without the leading slash (`""`, `"a/b"`). When several file routes
    /// match, compare them segment by segment from the left: a literal segment beats `[name]`,
    /// which beats `[[name]]` (so `/users/me` beats `/users/[id]`, which beats
    /// `/users/[[rest]]`). `kpages build` does not encode this in the order of `functions`
    /// (they are sorted by name); the router applies it.
    File,
}

/// A file shipped next to a function bundle.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IncludedFile {
    /// Path relative to the bundle's directory.
    pub path: String,
    /// Digest of the file's bytes.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
}

/// A fixed-window rate limit (Netlify `config.rateLimit`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    /// Requests allowed per window.
    pub window_limit: u32,
    /// Window length in seconds.
    pub window_size: u32,
    /// What a window counts: `ip`, `domain`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aggregate_by: Vec<String>,
}

/// Routing rules in the order they apply.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rules {
    /// Redirects, rewrites and proxies; the first match wins. `kpages build` writes them in
    /// the order they apply: Frameworks API `redirects!` (marked `important`), `_redirects`,
    /// `netlify.toml`, Frameworks API `redirects`, then `edgeone.json` redirects and rewrites.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirects: Vec<RedirectRule>,
    /// Header rules; every matching rule adds its headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderRule>,
    /// Cache rules; the first match sets the cache lifetime.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache: Vec<CacheRule>,
}

/// A redirect (3xx), rewrite (200 to a path), proxy (200 to an absolute URL) or custom-status
/// rule (e.g. 404 to a page).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedirectRule {
    /// Path pattern with `:placeholders` and a trailing `*` splat; may start with a scheme and
    /// host to match one domain only.
    pub from: String,
    /// Target path or absolute URL; may use `:placeholders` and `:splat`.
    pub to: String,
    /// 200 (rewrite or proxy), 301, 302, 303, 307, 308, or another status to serve `to` with.
    pub status: u16,
    /// Apply even when a static file exists at the request path.
    #[serde(default, skip_serializing_if = "is_false")]
    pub force: bool,
    /// Applied before functions and every other rule (Frameworks API `redirects!`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub important: bool,
    /// Query parameters that must be present; a value `:name` captures it as a placeholder.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
    /// Conditions on the request.
    #[serde(default, skip_serializing_if = "is_default")]
    pub conditions: RuleConditions,
    /// Request headers added when proxying.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Where the rule was written (`_redirects:3`, `netlify.toml`, `edgeone.json`), for errors
    /// and debugging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

impl RedirectRule {
    /// A rule from `from` to `to` with `status`, unforced, without conditions, query matches
    /// or headers: what a plain `_redirects` line `from to status` means.
    pub fn new(from: impl Into<String>, to: impl Into<String>, status: u16) -> Self {
        Self {
            from: from.into(),
            to: to.into(),
            status,
            force: false,
            important: false,
            query: BTreeMap::new(),
            conditions: RuleConditions::default(),
            headers: BTreeMap::new(),
            origin: None,
        }
    }
}

/// Conditions a request must meet for a rule to apply; an empty list means any.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleConditions {
    /// ISO 3166 country codes of the client.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub country: Vec<String>,
    /// Language tags accepted by the client (`Accept-Language`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub language: Vec<String>,
    /// Roles in the client's JWT (`nf_jwt` cookie) `app_metadata.roles`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub role: Vec<String>,
    /// Cookie names that must be present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cookie: Vec<String>,
}

/// Headers added to responses whose path matches.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderRule {
    /// Path pattern (`/*`, `/blog/:slug`).
    #[serde(rename = "for")]
    pub for_path: String,
    /// Headers to set, in order; a name may repeat. `Basic-Auth` protects the path instead
    /// of being sent.
    pub values: Vec<HeaderValue>,
    /// Where the rule was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// One header.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderValue {
    /// Header name.
    pub name: String,
    /// Header value.
    pub value: String,
}

/// Cache lifetime for matching paths (EdgeOne `caches`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheRule {
    /// Path pattern.
    pub source: String,
    /// Seconds a response may be cached.
    pub ttl_seconds: u64,
}

/// Why a manifest cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The bytes are not a JSON object with a numeric `version`.
    #[error("manifest is not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// The manifest was written by a kpages that uses another format.
    #[error(
        "unsupported manifest version {found}: this kpages reads version {MANIFEST_VERSION}; rebuild the site with a matching kpages"
    )]
    UnsupportedVersion {
        /// The version found.
        found: u64,
    },
    /// A field has the wrong shape or value.
    #[error("invalid manifest at {path}: {message}")]
    Invalid {
        /// JSON path of the offending field (`functions[0].bundle`).
        path: String,
        /// What is wrong and what is accepted.
        message: String,
    },
}

impl Manifest {
    /// An empty manifest of the current version.
    pub fn new() -> Self {
        Self {
            version: MANIFEST_VERSION,
            ..Self::default()
        }
    }

    /// Parses and checks a manifest.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        #[derive(Deserialize)]
        struct Versioned {
            version: Option<serde_json::Value>,
        }
        let probe: Versioned = serde_json::from_slice(bytes).map_err(ManifestError::NotJson)?;
        match probe.version {
            Some(serde_json::Value::Number(n)) if n.as_u64() == Some(MANIFEST_VERSION.into()) => {}
            Some(serde_json::Value::Number(n)) => {
                return Err(ManifestError::UnsupportedVersion {
                    found: n.as_u64().unwrap_or(0),
                });
            }
            _ => {
                return Err(ManifestError::Invalid {
                    path: "version".into(),
                    message: format!("missing or not a number; expected {MANIFEST_VERSION}"),
                });
            }
        }
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let manifest: Manifest =
            serde_path_to_error::deserialize(de).map_err(|e| ManifestError::Invalid {
                path: e.path().to_string(),
                message: e.inner().to_string(),
            })?;
        manifest.check()?;
        Ok(manifest)
    }

    /// The canonical JSON form; its digest names the deploy.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The digest of the canonical JSON form.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.to_json())
    }

    /// Every blob the deploy needs: files, bundles and included files. A deploy may go live
    /// only when all of them are stored.
    pub fn blobs(&self) -> BTreeSet<Digest> {
        let files = self.files.values().map(|f| f.digest);
        let bundles = self.functions.iter().map(|f| f.bundle);
        let included = self
            .functions
            .iter()
            .flat_map(|f| f.included_files.iter().map(|i| i.digest));
        files.chain(bundles).chain(included).collect()
    }

    /// The function called `name`.
    pub fn function(&self, name: &str) -> Option<&Function> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// Checks the invariants serde cannot express.
    pub fn check(&self) -> Result<(), ManifestError> {
        let invalid = |path: String, message: String| Err(ManifestError::Invalid { path, message });
        for path in self.files.keys() {
            if let Err(why) = check_url_path(path) {
                return invalid(format!("files.{path:?}"), why);
            }
        }
        let mut names = BTreeSet::new();
        for (i, f) in self.functions.iter().enumerate() {
            if !is_function_name(&f.name) {
                return invalid(
                    format!("functions[{i}].name"),
                    format!(
                        "{:?} is not a function name; use letters, digits, '-' and '_'",
                        f.name
                    ),
                );
            }
            if !names.insert(f.name.as_str()) {
                return invalid(
                    format!("functions[{i}].name"),
                    format!("two functions are named {:?}", f.name),
                );
            }
            match (f.invocation, &f.schedule) {
                (InvocationKind::Scheduled, None) => {
                    return invalid(
                        format!("functions[{i}].schedule"),
                        "a scheduled function needs a schedule".into(),
                    );
                }
                (InvocationKind::Sync | InvocationKind::Background, Some(_)) => {
                    return invalid(
                        format!("functions[{i}].schedule"),
                        "only scheduled functions have a schedule".into(),
                    );
                }
                (InvocationKind::Scheduled, Some(schedule)) => {
                    if let Err(e) = schedule.parse::<crate::schedule::Schedule>() {
                        return invalid(format!("functions[{i}].schedule"), e.to_string());
                    }
                }
                _ => {}
            }
            for (j, r) in f.routes.iter().chain(&f.excluded_routes).enumerate() {
                if !r.pattern.starts_with('/') {
                    return invalid(
                        format!("functions[{i}].routes[{j}].pattern"),
                        format!("{:?} must start with '/'", r.pattern),
                    );
                }
            }
        }
        for (i, r) in self.rules.redirects.iter().enumerate() {
            let known = matches!(r.status, 200 | 301 | 302 | 303 | 307 | 308 | 400..=599);
            if !known {
                return invalid(
                    format!("rules.redirects[{i}].status"),
                    format!(
                        "{} is not a rule status; use 200, 301, 302, 303, 307, 308 or 4xx/5xx",
                        r.status
                    ),
                );
            }
        }
        Ok(())
    }
}

/// Whether `name` can name a function (and appear in `/.netlify/functions/<name>`).
pub fn is_function_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks that a static file key is an absolute, normalised URL path.
fn check_url_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("a file path must start with '/'".into());
    }
    if path.contains('\\') || path.contains('\0') {
        return Err("a file path may not contain backslashes or NUL".into());
    }
    if path
        .split('/')
        .skip(1)
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err("a file path may not contain empty, '.' or '..' segments".into());
    }
    Ok(())
}
