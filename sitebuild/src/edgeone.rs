//! EdgeOne Pages: `edgeone.json` and the file routes of `node-functions/` (and
//! `cloud-functions/`).
//!
//! ```text
//! node-functions/index.js               → /
//! node-functions/api/hello.js           → /api/hello
//! node-functions/api/users/index.ts     → /api/users
//! node-functions/api/users/[id].js      → /api/users/[id]        one segment, param "id"
//! node-functions/express/[[default]].js → /express/[[default]]   zero or more segments
//! ```

use kpages_crds::manifest::{CacheRule, HeaderRule, HeaderValue, RedirectRule, RouteSyntax};
use serde::Deserialize;
use serde_json::Value;

use crate::error::BuildError;
use crate::netlify::redirects::{is_path_or_url, is_rule_status};

/// Directories whose JavaScript files are EdgeOne Node Functions.
pub const FUNCTION_DIRS: &[&str] = &["node-functions", "cloud-functions"];

/// Source extensions EdgeOne function files may have.
pub const EXTENSIONS: &[&str] = &["js", "mjs", "cjs", "ts", "mts", "cts"];

/// What `edgeone.json` contributes to a deploy.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct EdgeoneConfig {
    /// `outputDirectory`: the static files' directory.
    pub output_directory: Option<String>,
    /// `redirects` then `rewrites`, in file order.
    pub redirects: Vec<RedirectRule>,
    /// `headers`.
    pub headers: Vec<HeaderRule>,
    /// `caches`.
    pub cache: Vec<CacheRule>,
    /// `nodeFunctionsConfig.maxDuration`, in seconds.
    pub max_duration_seconds: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EdgeoneJson {
    output_directory: Option<String>,
    #[serde(default)]
    redirects: Vec<EoRedirect>,
    #[serde(default)]
    rewrites: Vec<EoRewrite>,
    #[serde(default)]
    headers: Vec<EoHeaders>,
    #[serde(default)]
    caches: Vec<EoCache>,
    node_functions_config: Option<NodeFunctionsConfig>,
    // Everything else (buildCommand, installCommand, nodeVersion, …) is about building the
    // site, which has happened before kpages packages it.
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EoRedirect {
    source: String,
    destination: String,
    status_code: Option<u16>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EoRewrite {
    source: String,
    destination: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EoHeaders {
    source: String,
    headers: Vec<EoHeader>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EoHeader {
    key: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EoCache {
    source: String,
    cache_ttl: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NodeFunctionsConfig {
    max_duration: Option<u32>,
}

/// Parses `edgeone.json`.
pub fn parse_json(text: &str, file: &str) -> Result<EdgeoneConfig, BuildError> {
    let err = |message: String| BuildError::Config {
        file: file.to_string(),
        message,
    };
    let value: Value =
        serde_json::from_str(text).map_err(|e| err(format!("not valid JSON: {e}")))?;
    let parsed: EdgeoneJson = serde_path_to_error::deserialize(value)
        .map_err(|e| err(format!("`{}`: {}", e.path(), e.inner())))?;
    let mut out = EdgeoneConfig {
        output_directory: parsed.output_directory,
        max_duration_seconds: parsed.node_functions_config.and_then(|c| c.max_duration),
        ..EdgeoneConfig::default()
    };
    let check = |at: String, s: &str| {
        if s.starts_with('$') {
            Err(err(format!(
                "`{at}` {s:?}: host variables are not supported by kpages; configure domain redirects on the Site instead"
            )))
        } else if !is_path_or_url(s) {
            Err(err(format!(
                "`{at}` {s:?} must start with '/' or be an absolute URL"
            )))
        } else {
            Ok(())
        }
    };
    for (i, r) in parsed.redirects.into_iter().enumerate() {
        check(format!("redirects[{i}].source"), &r.source)?;
        check(format!("redirects[{i}].destination"), &r.destination)?;
        let status = r.status_code.unwrap_or(301);
        if !matches!(status, 301 | 302 | 303 | 307 | 308) || !is_rule_status(status) {
            return Err(err(format!(
                "`redirects[{i}].statusCode` {status} is not a redirect status; use 301, 302, 303, 307 or 308"
            )));
        }
        out.redirects
            .push(rule(r.source, r.destination, status, file));
    }
    for (i, r) in parsed.rewrites.into_iter().enumerate() {
        check(format!("rewrites[{i}].source"), &r.source)?;
        check(format!("rewrites[{i}].destination"), &r.destination)?;
        out.redirects.push(rule(r.source, r.destination, 200, file));
    }
    for (i, h) in parsed.headers.into_iter().enumerate() {
        check(format!("headers[{i}].source"), &h.source)?;
        out.headers.push(HeaderRule {
            for_path: h.source,
            values: h
                .headers
                .into_iter()
                .map(|h| HeaderValue {
                    name: h.key,
                    value: h.value,
                })
                .collect(),
            origin: Some(file.to_string()),
        });
    }
    for (i, c) in parsed.caches.into_iter().enumerate() {
        check(format!("caches[{i}].source"), &c.source)?;
        out.cache.push(CacheRule {
            source: c.source,
            ttl_seconds: c.cache_ttl,
        });
    }
    Ok(out)
}

fn rule(from: String, to: String, status: u16, origin: &str) -> RedirectRule {
    RedirectRule {
        from,
        to,
        status,
        force: false,
        important: false,
        query: Default::default(),
        conditions: Default::default(),
        headers: Default::default(),
        origin: Some(origin.to_string()),
    }
}

/// The route of one function file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRoute {
    /// The route pattern in [`RouteSyntax::File`] syntax.
    pub pattern: String,
    /// The catch-all parameter's name, for `[[name]]` files.
    pub catch_all: Option<String>,
    /// A function name derived from the path (letters, digits, `-`, `_`).
    pub name: String,
}

/// The syntax of [`FileRoute::pattern`].
pub const SYNTAX: RouteSyntax = RouteSyntax::File;

/// Derives the route of a function file from its path inside the functions directory
/// (`api/users/[id].js`), or explains why the path cannot be a route.
pub fn file_route(rel: &str) -> Result<FileRoute, String> {
    let (stem, ext) = rel
        .rsplit_once('.')
        .ok_or_else(|| format!("{rel:?} has no extension"))?;
    if !EXTENSIONS.contains(&ext) {
        return Err(format!("{rel:?} is not a JavaScript or TypeScript file"));
    }
    let mut segments: Vec<&str> = stem.split('/').collect();
    if segments.last() == Some(&"index") {
        segments.pop();
    }
    let mut pattern = String::new();
    let mut name_parts = Vec::new();
    let mut catch_all = None;
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        pattern.push('/');
        pattern.push_str(seg);
        if let Some(inner) = seg.strip_prefix("[[").and_then(|s| s.strip_suffix("]]")) {
            if i != last {
                return Err(format!(
                    "{rel:?}: a catch-all [[{inner}]] must be the file name, not a directory"
                ));
            }
            check_param(rel, inner)?;
            catch_all = Some(inner.to_string());
            name_parts.push(format!("__{}", sanitize(inner)));
        } else if let Some(inner) = seg.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            check_param(rel, inner)?;
            name_parts.push(format!("_{}", sanitize(inner)));
        } else if seg.contains(['[', ']']) {
            return Err(format!(
                "{rel:?}: segment {seg:?} mixes brackets with text; use [name] or [[name]] as the whole segment"
            ));
        } else {
            name_parts.push(sanitize(seg));
        }
    }
    if pattern.is_empty() {
        pattern.push('/');
    }
    let name = if name_parts.is_empty() {
        "index".to_string()
    } else {
        name_parts.join("-")
    };
    Ok(FileRoute {
        pattern,
        catch_all,
        name,
    })
}

fn check_param(rel: &str, name: &str) -> Result<(), String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
    {
        return Err(format!(
            "{rel:?}: parameter name {name:?} must be letters, digits or '_'"
        ));
    }
    Ok(())
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_paths_map_to_routes() {
        let cases = [
            ("index.js", "/", None, "index"),
            ("hello.js", "/hello", None, "hello"),
            ("api/users/index.ts", "/api/users", None, "api-users"),
            (
                "api/users/[id].js",
                "/api/users/[id]",
                None,
                "api-users-_id",
            ),
            ("Api/Case.mjs", "/Api/Case", None, "Api-Case"),
            (
                "express/[[default]].js",
                "/express/[[default]]",
                Some("default"),
                "express-__default",
            ),
            ("[[path]].ts", "/[[path]]", Some("path"), "__path"),
            ("[org]/[repo]/index.js", "/[org]/[repo]", None, "_org-_repo"),
            ("v1.0/ping.js", "/v1.0/ping", None, "v1_0-ping"),
        ];
        for (rel, pattern, catch_all, name) in cases {
            let r = file_route(rel).unwrap();
            assert_eq!(r.pattern, pattern, "{rel}");
            assert_eq!(r.catch_all.as_deref(), catch_all, "{rel}");
            assert_eq!(r.name, name, "{rel}");
        }
    }

    #[test]
    fn bad_file_paths_are_explained() {
        let cases = [
            ("readme.md", "not a JavaScript"),
            ("[[rest]]/x.js", "must be the file name"),
            ("user-[id].js", "mixes brackets"),
            ("[a-b].js", "parameter name"),
        ];
        for (rel, want) in cases {
            let err = file_route(rel).unwrap_err();
            assert!(err.contains(want), "{rel}: {err}");
        }
    }

    #[test]
    fn edgeone_json_is_read_in_order() {
        let c = parse_json(
            r#"{
              "buildCommand": "npm run build",
              "outputDirectory": "./dist",
              "redirects": [{"source": "/old", "destination": "/new", "statusCode": 302},
                            {"source": "/docs/:p", "destination": "https://docs.example.com/:p"}],
              "rewrites": [{"source": "/app/*", "destination": "/index.html"}],
              "headers": [{"source": "/*", "headers": [{"key": "X-A", "value": "1"}, {"key": "X-A", "value": "2"}]}],
              "caches": [{"source": "/assets/*", "cacheTtl": 3600}],
              "nodeFunctionsConfig": {"maxDuration": 60}
            }"#,
            "edgeone.json",
        )
        .unwrap();
        assert_eq!(c.output_directory.as_deref(), Some("./dist"));
        let r: Vec<_> = c
            .redirects
            .iter()
            .map(|r| (r.from.as_str(), r.status))
            .collect();
        assert_eq!(r, [("/old", 302), ("/docs/:p", 301), ("/app/*", 200)]);
        assert_eq!(c.headers[0].values.len(), 2);
        assert_eq!(c.cache[0].ttl_seconds, 3600);
        assert_eq!(c.max_duration_seconds, Some(60));
    }

    #[test]
    fn bad_edgeone_json_names_the_field() {
        let cases = [
            (r#"{"redirects": [{"source": "/a"}]}"#, "`redirects[0]`"),
            (
                r#"{"redirects": [{"source": "/a", "destination": "/b", "statusCode": 200}]}"#,
                "statusCode",
            ),
            (
                r#"{"redirects": [{"source": "$host", "destination": "$wwwhost"}]}"#,
                "host variables",
            ),
            (
                r#"{"caches": [{"source": "/a", "cacheTtl": "soon"}]}"#,
                "`caches[0].cacheTtl`",
            ),
            (
                r#"{"nodeFunctionsConfig": {"memory": 1}}"#,
                "nodeFunctionsConfig",
            ),
            (
                r#"{"headers": [{"source": "a", "headers": []}]}"#,
                "headers[0].source",
            ),
            ("{", "not valid JSON"),
        ];
        for (text, want) in cases {
            let err = parse_json(text, "edgeone.json").unwrap_err().to_string();
            assert!(err.starts_with("edgeone.json: "), "{text}: {err}");
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
