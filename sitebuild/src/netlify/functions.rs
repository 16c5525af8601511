//! Netlify Functions: which files in a functions directory are functions, what module format
//! each is, and what its in-source `config` means.
//!
//! ```text
//! netlify/functions/hello.mts          → hello
//! netlify/functions/report/report.ts   → report   (beats report/index.ts)
//! netlify/functions/api/index.js       → api
//! netlify/functions/sync-background.js → sync-background (invocation: background)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kpages_crds::manifest::{RateLimit, Route, RouteSyntax};
use kpages_crds::schedule::Schedule;
use serde_json::Value;

use crate::error::BuildError;

/// Extensions of function entry files.
pub const EXTENSIONS: &[&str] = &["mts", "mjs", "cts", "cjs", "ts", "js"];

/// One function found in a functions directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundFunction {
    /// Its name (the file or directory name without extension).
    pub name: String,
    /// The entry file.
    pub entry: PathBuf,
}

/// Lists the functions in `dir`: `name.ext` files, and `name/name.ext` or `name/index.ext`
/// in subdirectories (in that order of precedence). Two entries for one name at the same
/// level (`hello.js` and `hello.ts`) are an error naming both.
pub fn discover(dir: &Path, site: &Path) -> Result<Vec<FoundFunction>, BuildError> {
    let mut found: BTreeMap<String, (u8, PathBuf)> = BTreeMap::new();
    let entries = read_dir_sorted(dir)?;
    for path in entries {
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if file_name.starts_with('.') || file_name == "node_modules" {
            continue;
        }
        let candidate = if path.is_dir() {
            let mut best = None;
            for (rank, stem) in [(1u8, file_name), (2u8, "index")] {
                let hits: Vec<PathBuf> = EXTENSIONS
                    .iter()
                    .map(|ext| path.join(format!("{stem}.{ext}")))
                    .filter(|p| p.is_file())
                    .collect();
                if hits.len() > 1 {
                    return Err(BuildError::DuplicateFunction {
                        name: file_name.to_string(),
                        first: rel(site, &hits[0]),
                        second: rel(site, &hits[1]),
                    });
                }
                if let Some(hit) = hits.into_iter().next() {
                    best = Some((rank, file_name.to_string(), hit));
                    break;
                }
            }
            best
        } else {
            file_name
                .rsplit_once('.')
                .filter(|(_, ext)| EXTENSIONS.contains(ext))
                .map(|(stem, _)| (0u8, stem.to_string(), path.clone()))
        };
        let Some((rank, name, entry)) = candidate else {
            continue;
        };
        match found.get(&name) {
            Some((r, other)) if *r == rank => {
                return Err(BuildError::DuplicateFunction {
                    name,
                    first: rel(site, other),
                    second: rel(site, &entry),
                });
            }
            Some((r, _)) if *r < rank => {}
            _ => {
                found.insert(name, (rank, entry));
            }
        }
    }
    found
        .into_iter()
        .map(|(name, (_, entry))| {
            if kpages_crds::manifest::is_function_name(&name) {
                Ok(FoundFunction { name, entry })
            } else {
                Err(BuildError::Function {
                    file: rel(site, &entry),
                    message: format!(
                        "{name:?} is not a valid function name; use letters, digits, '-' and '_'"
                    ),
                })
            }
        })
        .collect()
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, BuildError> {
    let mut entries = Vec::new();
    for e in std::fs::read_dir(dir).map_err(BuildError::io(dir))? {
        entries.push(e.map_err(BuildError::io(dir))?.path());
    }
    entries.sort();
    Ok(entries)
}

/// `path` relative to `site`, with `/` separators, for messages and the manifest.
pub fn rel(site: &Path, path: &Path) -> String {
    let r = path.strip_prefix(site).unwrap_or(path);
    r.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Module format of a function source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleFormat {
    /// ES module: `.mts`, `.mjs`, or `.ts`/`.js` under `"type": "module"`.
    Esm,
    /// CommonJS: `.cts`, `.cjs`, or `.ts`/`.js` without `"type": "module"`.
    Cjs,
}

/// The module format of `entry`, from its extension or else the `type` of the nearest
/// `package.json` between it and `site` (inclusive).
pub fn module_format(entry: &Path, site: &Path) -> Result<ModuleFormat, BuildError> {
    match entry.extension().and_then(|e| e.to_str()) {
        Some("mts" | "mjs") => return Ok(ModuleFormat::Esm),
        Some("cts" | "cjs") => return Ok(ModuleFormat::Cjs),
        _ => {}
    }
    let mut dir = entry.parent();
    while let Some(d) = dir {
        let pkg = d.join("package.json");
        if pkg.is_file() {
            let text = std::fs::read_to_string(&pkg).map_err(BuildError::io(&pkg))?;
            let v: Value = serde_json::from_str(&text).map_err(|e| BuildError::Config {
                file: rel(site, &pkg),
                message: format!("not valid JSON: {e}"),
            })?;
            return Ok(match v.get("type").and_then(Value::as_str) {
                Some("module") => ModuleFormat::Esm,
                _ => ModuleFormat::Cjs,
            });
        }
        if d == site {
            break;
        }
        dir = d.parent();
    }
    Ok(ModuleFormat::Cjs)
}

/// A function's in-source `config`, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceConfig {
    /// `path`.
    pub routes: Vec<Route>,
    /// `excludedPath`.
    pub excluded_routes: Vec<Route>,
    /// `method`, upper-cased.
    pub methods: Vec<String>,
    /// `preferStatic`.
    pub prefer_static: bool,
    /// `schedule`.
    pub schedule: Option<String>,
    /// `background`.
    pub background: bool,
    /// `rateLimit`.
    pub rate_limit: Option<RateLimit>,
    /// `includedFiles`.
    pub included_files: Vec<String>,
}

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Checks a statically read `config` object against what kpages supports.
pub fn interpret_config(value: &Value, file: &str) -> Result<SourceConfig, BuildError> {
    let err = |field: &str, message: String| BuildError::UnsupportedConfig {
        file: file.to_string(),
        field: field.to_string(),
        message,
    };
    let Value::Object(map) = value else {
        return Err(err("config", "must be an object".into()));
    };
    let mut out = SourceConfig::default();
    for (key, v) in map {
        match key.as_str() {
            "path" | "excludedPath" => {
                let paths = strings(v)
                    .ok_or_else(|| err(key, "must be a string or an array of strings".into()))?;
                let mut routes = Vec::new();
                for p in paths {
                    if !p.starts_with('/') {
                        return Err(err(key, format!("{p:?} must start with '/'")));
                    }
                    routes.push(Route {
                        pattern: p,
                        syntax: RouteSyntax::Urlpattern,
                    });
                }
                if key == "path" {
                    out.routes = routes;
                } else {
                    out.excluded_routes = routes;
                }
            }
            "method" => {
                let methods = strings(v)
                    .ok_or_else(|| err(key, "must be a string or an array of strings".into()))?;
                for m in methods {
                    let up = m.to_ascii_uppercase();
                    if !METHODS.contains(&up.as_str()) {
                        return Err(err(
                            key,
                            format!("{m:?} is not one of {}", METHODS.join(", ")),
                        ));
                    }
                    if !out.methods.contains(&up) {
                        out.methods.push(up);
                    }
                }
            }
            "preferStatic" | "background" => {
                let b = v
                    .as_bool()
                    .ok_or_else(|| err(key, "must be true or false".into()))?;
                if key == "preferStatic" {
                    out.prefer_static = b;
                } else {
                    out.background = b;
                }
            }
            "schedule" => {
                let s = v
                    .as_str()
                    .ok_or_else(|| err(key, "must be a string".into()))?;
                check_cron(s).map_err(|m| err(key, m))?;
                out.schedule = Some(s.to_string());
            }
            "rateLimit" => out.rate_limit = Some(rate_limit(v).map_err(|(f, m)| err(&f, m))?),
            "includedFiles" => {
                out.included_files = strings(v)
                    .ok_or_else(|| err(key, "must be an array of glob strings".into()))?;
            }
            // Descriptive fields with no effect on serving.
            "displayName"
            | "generator"
            | "name"
            | "nodeBundler"
            | "externalNodeModules"
            | "ignoredNodeModules" => {}
            _ => {
                return Err(err(
                    key,
                    "is not supported; kpages reads path, excludedPath, method, preferStatic, schedule, background, rateLimit, includedFiles, displayName and generator".into(),
                ));
            }
        }
    }
    Ok(out)
}

fn strings(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => None,
    }
}

fn rate_limit(v: &Value) -> Result<RateLimit, (String, String)> {
    let e = |f: &str, m: &str| (format!("rateLimit.{f}"), m.to_string());
    let Value::Object(map) = v else {
        return Err(("rateLimit".into(), "must be an object".into()));
    };
    let mut out = RateLimit {
        window_limit: 0,
        window_size: 0,
        aggregate_by: Vec::new(),
    };
    for (k, v) in map {
        match k.as_str() {
            "windowLimit" | "windowSize" => {
                let n = v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| e(k, "must be a positive whole number"))?;
                if k == "windowLimit" {
                    out.window_limit = n;
                } else {
                    out.window_size = n;
                }
            }
            "aggregateBy" => {
                let by = strings(v)
                    .ok_or_else(|| e(k, "must be \"ip\", \"domain\" or an array of them"))?;
                for b in &by {
                    if !matches!(b.as_str(), "ip" | "domain") {
                        return Err(e(k, &format!("{b:?} is not \"ip\" or \"domain\"")));
                    }
                }
                out.aggregate_by = by;
            }
            "action" => {
                if v.as_str() != Some("rate_limit") {
                    return Err(e(
                        k,
                        "only \"rate_limit\" is supported (rewrites on limit are not)",
                    ));
                }
            }
            _ => {
                return Err(e(
                    k,
                    "is not supported; use windowLimit, windowSize, aggregateBy",
                ));
            }
        }
    }
    if out.window_limit == 0 {
        return Err(e("windowLimit", "is required"));
    }
    if out.window_size == 0 {
        return Err(e("windowSize", "is required"));
    }
    Ok(out)
}

/// Checks a schedule with the grammar the schedulers run (see [`kpages_crds::schedule`]).
pub fn check_cron(s: &str) -> Result<(), String> {
    s.parse::<Schedule>().map(drop).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tree(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "export default () => new Response('x')\n").unwrap();
        }
        dir
    }

    #[test]
    fn discovery_follows_netlify_precedence() {
        let d = tree(&[
            "fns/hello.mts",
            "fns/report/report.ts",
            "fns/report/index.ts",
            "fns/report/helper.ts",
            "fns/api/index.js",
            "fns/both.js",
            "fns/both/index.js",
            "fns/sync-background.js",
            "fns/README.md",
            "fns/empty/util.js",
        ]);
        let found = discover(&d.path().join("fns"), d.path()).unwrap();
        let got: Vec<_> = found
            .iter()
            .map(|f| (f.name.as_str(), rel(d.path(), &f.entry)))
            .collect();
        assert_eq!(
            got,
            [
                ("api", "fns/api/index.js".to_string()),
                ("both", "fns/both.js".to_string()),
                ("hello", "fns/hello.mts".to_string()),
                ("report", "fns/report/report.ts".to_string()),
                ("sync-background", "fns/sync-background.js".to_string()),
            ]
        );
    }

    #[test]
    fn two_entries_for_one_name_are_an_error() {
        for files in [
            &["fns/a.js", "fns/a.mts"][..],
            &["fns/a/index.js", "fns/a/index.ts"][..],
        ] {
            let d = tree(files);
            let err = discover(&d.path().join("fns"), d.path())
                .unwrap_err()
                .to_string();
            assert!(err.contains("two functions are named \"a\""), "{err}");
            for f in files {
                assert!(err.contains(f), "{err}");
            }
        }
        let d = tree(&["fns/a.b.js"]);
        let err = discover(&d.path().join("fns"), d.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a valid function name"), "{err}");
    }

    #[test]
    fn module_format_follows_extension_then_package_type() {
        let d = tree(&["a.mts", "b.cjs", "c.ts", "esm/d.js", "esm/sub/e.ts"]);
        std::fs::write(d.path().join("esm/package.json"), r#"{"type": "module"}"#).unwrap();
        let f = |p: &str| module_format(&d.path().join(p), d.path()).unwrap();
        assert_eq!(f("a.mts"), ModuleFormat::Esm);
        assert_eq!(f("b.cjs"), ModuleFormat::Cjs);
        assert_eq!(f("c.ts"), ModuleFormat::Cjs);
        assert_eq!(f("esm/d.js"), ModuleFormat::Esm);
        assert_eq!(f("esm/sub/e.ts"), ModuleFormat::Esm);
    }

    #[test]
    fn config_values_are_checked() {
        let ok = interpret_config(
            &json!({"path": ["/a", "/b/:id"], "excludedPath": "/a/x", "method": ["get", "POST"],
                    "preferStatic": true, "rateLimit": {"windowLimit": 5, "windowSize": 60, "aggregateBy": "ip"},
                    "displayName": "A"}),
            "f.mts",
        )
        .unwrap();
        assert_eq!(ok.routes.len(), 2);
        assert_eq!(ok.excluded_routes[0].pattern, "/a/x");
        assert_eq!(ok.methods, ["GET", "POST"]);
        assert!(ok.prefer_static);
        assert_eq!(ok.rate_limit.unwrap().aggregate_by, ["ip"]);
        let bad = [
            (json!({"path": "a"}), "path", "must start with '/'"),
            (json!({"path": 3}), "path", "string"),
            (json!({"method": "FETCH"}), "method", "FETCH"),
            (
                json!({"schedule": "every day"}),
                "schedule",
                "expected 5 fields",
            ),
            (json!({"schedule": "@sometimes"}), "schedule", "@hourly"),
            (
                json!({"preferStatic": "yes"}),
                "preferStatic",
                "true or false",
            ),
            (
                json!({"rateLimit": {"windowSize": 60}}),
                "rateLimit.windowLimit",
                "required",
            ),
            (
                json!({"rateLimit": {"windowLimit": 1, "windowSize": 60, "action": "rewrite"}}),
                "rateLimit.action",
                "rate_limit",
            ),
            (json!({"cache": "manual"}), "cache", "not supported"),
        ];
        for (v, field, want) in bad {
            let err = interpret_config(&v, "f.mts").unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("f.mts: config field `{field}`")),
                "{v}: {err}"
            );
            assert!(err.contains(want), "{v}: {err}");
        }
        assert!(check_cron("*/5 * * * 1-5").is_ok());
        let e = check_cron("60 * * * *").unwrap_err();
        assert!(
            e.contains("\"60 * * * *\"") && e.contains("minute: 60 is outside 0-59"),
            "{e}"
        );
    }
}
