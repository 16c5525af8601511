//! `netlify.toml` and the Frameworks API's `.netlify/v1/config.json`, which is a JSON subset
//! of the same format. Both are read into [`NetlifyConfig`]; [`merge`] combines them the way
//! Netlify does.
//!
//! Only what changes a deploy is read: `[build]` `base`/`publish`/`functions`, `[functions]`,
//! `[[redirects]]` and `[[headers]]`. Build commands, `[context.*]`, `[dev]` and plugins are
//! ignored because `kpages build` packages an already-built site.

use std::collections::BTreeMap;

use kpages_crds::manifest::{HeaderRule, HeaderValue, RedirectRule, RuleConditions};
use serde::Deserialize;
use serde_json::Value;

use crate::error::BuildError;
use crate::netlify::redirects::{is_path_or_url, is_rule_status};

/// The parts of a Netlify configuration kpages uses.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct NetlifyConfig {
    /// `[build] base`: the directory the rest is relative to.
    pub base: Option<String>,
    /// `[build] publish`.
    pub publish: Option<String>,
    /// `[functions] directory`, else `[build] functions`.
    pub functions_dir: Option<String>,
    /// `[functions]` settings for every function.
    pub functions_all: FunctionSettings,
    /// `[functions."name"]` settings, by name or glob.
    pub functions_by_name: BTreeMap<String, FunctionSettings>,
    /// `[[redirects]]`, in file order.
    pub redirects: Vec<RedirectRule>,
    /// Frameworks API `redirects!`: applied before every user rule.
    pub important_redirects: Vec<RedirectRule>,
    /// `[[headers]]`, in file order.
    pub headers: Vec<HeaderRule>,
}

/// Settings from `[functions]` or `[functions."name"]`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FunctionSettings {
    /// Globs of files shipped with the function (relative to the base directory); a leading
    /// `!` excludes.
    pub included_files: Vec<String>,
    /// Cron schedule.
    pub schedule: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BuildSection {
    base: Option<String>,
    publish: Option<String>,
    functions: Option<String>,
    // Accepted and ignored: the site is already built when kpages packages it.
    #[serde(default, rename = "command")]
    _command: Option<Value>,
    #[serde(default, rename = "environment")]
    _environment: Option<Value>,
    #[serde(default, rename = "ignore")]
    _ignore: Option<Value>,
    #[serde(default, rename = "processing")]
    _processing: Option<Value>,
    #[serde(default, rename = "edge_functions")]
    _edge_functions: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RedirectEntry {
    from: String,
    to: Option<String>,
    status: Option<u16>,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    query: BTreeMap<String, String>,
    #[serde(default)]
    conditions: BTreeMap<String, StringOrList>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    signed: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderEntry {
    #[serde(rename = "for")]
    for_path: String,
    values: BTreeMap<String, StringOrList>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FunctionEntry {
    #[serde(default)]
    included_files: Vec<String>,
    schedule: Option<String>,
    // Accepted and ignored: kpages always bundles with esbuild and inlines every dependency.
    #[serde(default, rename = "node_bundler")]
    _node_bundler: Option<Value>,
    #[serde(default, rename = "external_node_modules")]
    _external_node_modules: Option<Value>,
    #[serde(default, rename = "ignored_node_modules")]
    _ignored_node_modules: Option<Value>,
}

/// Keys of `[functions]` that are settings rather than per-function tables.
const FUNCTION_SETTING_KEYS: &[&str] = &[
    "directory",
    "included_files",
    "schedule",
    "node_bundler",
    "external_node_modules",
    "ignored_node_modules",
];

/// Parses `netlify.toml`.
pub fn parse_toml(text: &str, file: &str) -> Result<NetlifyConfig, BuildError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| BuildError::Config {
        file: file.to_string(),
        message: format!("not valid TOML: {e}"),
    })?;
    let value = serde_json::to_value(&table).map_err(|e| BuildError::Config {
        file: file.to_string(),
        message: format!("cannot be read: {e}"),
    })?;
    from_value(value, file, false)
}

/// Parses `.netlify/v1/config.json`.
pub fn parse_frameworks_json(text: &str, file: &str) -> Result<NetlifyConfig, BuildError> {
    let value: Value = serde_json::from_str(text).map_err(|e| BuildError::Config {
        file: file.to_string(),
        message: format!("not valid JSON: {e}"),
    })?;
    from_value(value, file, true)
}

fn field<T: serde::de::DeserializeOwned>(
    value: Value,
    file: &str,
    at: &str,
) -> Result<T, BuildError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = if inner == "." || inner.is_empty() {
            at.to_string()
        } else if inner.starts_with('[') {
            format!("{at}{inner}")
        } else {
            format!("{at}.{inner}")
        };
        BuildError::Config {
            file: file.to_string(),
            message: format!("`{path}`: {}", e.into_inner()),
        }
    })
}

fn from_value(value: Value, file: &str, frameworks: bool) -> Result<NetlifyConfig, BuildError> {
    let Value::Object(mut top) = value else {
        return Err(BuildError::Config {
            file: file.to_string(),
            message: "must be an object".into(),
        });
    };
    let config_err = |message: String| BuildError::Config {
        file: file.to_string(),
        message,
    };
    let mut out = NetlifyConfig::default();
    if let Some(build) = top.remove("build") {
        let build: BuildSection = field(build, file, "build")?;
        out.base = build.base;
        out.publish = build.publish;
        out.functions_dir = build.functions;
    }
    if let Some(functions) = top.remove("functions") {
        let Value::Object(functions) = functions else {
            return Err(config_err("`functions` must be a table".into()));
        };
        let mut all = serde_json::Map::new();
        for (key, v) in functions {
            if key == "directory" {
                out.functions_dir = Some(field(v, file, "functions.directory")?);
            } else if FUNCTION_SETTING_KEYS.contains(&key.as_str()) {
                all.insert(key, v);
            } else if v.is_object() {
                let at = format!("functions.{key}");
                let entry: FunctionEntry = field(v, file, &at)?;
                out.functions_by_name.insert(key, settings(entry));
            } else {
                return Err(config_err(format!(
                    "`functions.{key}` is not a setting kpages knows ({}) nor a per-function table",
                    FUNCTION_SETTING_KEYS.join(", ")
                )));
            }
        }
        out.functions_all = settings(field(Value::Object(all), file, "functions")?);
    }
    for (key, important) in [("redirects", false), ("redirects!", true)] {
        let Some(list) = top.remove(key) else {
            continue;
        };
        if important && !frameworks {
            return Err(config_err(
                "`redirects!` is only accepted in .netlify/v1/config.json".into(),
            ));
        }
        let entries: Vec<RedirectEntry> = field(list, file, key)?;
        for (i, e) in entries.into_iter().enumerate() {
            let rule = redirect(e, important, file)
                .map_err(|m| config_err(format!("`{key}[{i}]`: {m}")))?;
            if important {
                out.important_redirects.push(rule);
            } else {
                out.redirects.push(rule);
            }
        }
    }
    if let Some(list) = top.remove("headers") {
        let entries: Vec<HeaderEntry> = field(list, file, "headers")?;
        for (i, e) in entries.into_iter().enumerate() {
            if !is_path_or_url(&e.for_path) {
                return Err(config_err(format!(
                    "`headers[{i}].for` {:?} must start with '/'",
                    e.for_path
                )));
            }
            let values = e
                .values
                .into_iter()
                .flat_map(|(name, v)| {
                    v.into_vec().into_iter().map(move |value| HeaderValue {
                        name: name.clone(),
                        // Multi-line TOML strings are one header value, as on Netlify.
                        value: value
                            .lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .collect::<Vec<_>>()
                            .join(" "),
                    })
                })
                .collect();
            out.headers.push(HeaderRule {
                for_path: e.for_path,
                values,
                origin: Some(file.to_string()),
            });
        }
    }
    if frameworks {
        // The Frameworks API accepts only these properties; anything else is a framework bug
        // worth surfacing rather than silently dropping.
        if let Some(key) = top
            .keys()
            .find(|k| !matches!(k.as_str(), "images" | "edge_functions"))
        {
            return Err(config_err(format!(
                "`{key}` is not a Frameworks API property kpages supports (build, functions, headers, redirects, redirects!)"
            )));
        }
    }
    Ok(out)
}

fn settings(e: FunctionEntry) -> FunctionSettings {
    FunctionSettings {
        included_files: e.included_files,
        schedule: e.schedule,
    }
}

fn redirect(e: RedirectEntry, important: bool, origin: &str) -> Result<RedirectRule, String> {
    if e.signed.is_some() {
        return Err("`signed` proxies are not supported by kpages".into());
    }
    if !is_path_or_url(&e.from) {
        return Err(format!(
            "`from` {:?} must be a path or an absolute URL",
            e.from
        ));
    }
    let to = e.to.ok_or("`to` is required")?;
    if !is_path_or_url(&to) {
        return Err(format!("`to` {to:?} must be a path or an absolute URL"));
    }
    let status = e.status.unwrap_or(301);
    if !is_rule_status(status) {
        return Err(format!(
            "`status` {status} is not one of 200, 301, 302, 303, 307, 308 or 4xx/5xx"
        ));
    }
    let mut conditions = RuleConditions::default();
    for (key, values) in e.conditions {
        let slot = match key.to_ascii_lowercase().as_str() {
            "country" => &mut conditions.country,
            "language" => &mut conditions.language,
            "role" => &mut conditions.role,
            "cookie" => &mut conditions.cookie,
            _ => {
                return Err(format!(
                    "unsupported condition {key:?}; kpages supports Country, Language, Role and Cookie"
                ));
            }
        };
        slot.extend(values.into_vec());
    }
    Ok(RedirectRule {
        from: e.from,
        to,
        status,
        force: e.force,
        important,
        query: e.query,
        conditions,
        headers: e.headers,
        origin: Some(origin.to_string()),
    })
}

/// Combines the user's `netlify.toml` with the Frameworks API config the way Netlify does:
/// array properties keep the user's entries first and the framework's after them, except
/// `redirects!`, which go before everything; single values set by the user win.
pub fn merge(user: NetlifyConfig, framework: NetlifyConfig) -> NetlifyConfig {
    let mut functions_by_name = framework.functions_by_name;
    for (name, s) in user.functions_by_name {
        functions_by_name.insert(name, s);
    }
    NetlifyConfig {
        base: user.base,
        publish: user.publish.or(framework.publish),
        functions_dir: user.functions_dir.or(framework.functions_dir),
        functions_all: FunctionSettings {
            included_files: [
                user.functions_all.included_files,
                framework.functions_all.included_files,
            ]
            .concat(),
            schedule: user
                .functions_all
                .schedule
                .or(framework.functions_all.schedule),
        },
        functions_by_name,
        redirects: [user.redirects, framework.redirects].concat(),
        important_redirects: [user.important_redirects, framework.important_redirects].concat(),
        headers: [user.headers, framework.headers].concat(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = r#"
[build]
  base = "."
  publish = "public"
  command = "npm run build"

[functions]
  directory = "netlify/functions"
  included_files = ["data/**"]
  node_bundler = "esbuild"

[functions."report"]
  schedule = "@daily"
  included_files = ["templates/*.html", "!templates/draft.html"]

[[redirects]]
  from = "/api/*"
  to = "https://api.example.com/:splat"
  status = 200
  force = true
  query = { v = ":v" }
  conditions = { Country = ["US", "CA"], Role = "admin" }
  headers = { X-From = "kpages" }

[[redirects]]
  from = "/old"
  to = "/new"

[[headers]]
  for = "/*"
  [headers.values]
    X-Frame-Options = "DENY"
    Content-Security-Policy = '''
      default-src 'self';
      img-src *'''
"#;

    #[test]
    fn netlify_toml_is_read() {
        let c = parse_toml(TOML, "netlify.toml").unwrap();
        assert_eq!(c.publish.as_deref(), Some("public"));
        assert_eq!(c.functions_dir.as_deref(), Some("netlify/functions"));
        assert_eq!(c.functions_all.included_files, ["data/**"]);
        assert_eq!(
            c.functions_by_name["report"].schedule.as_deref(),
            Some("@daily")
        );
        assert_eq!(c.redirects.len(), 2);
        let r = &c.redirects[0];
        assert_eq!((r.status, r.force, r.important), (200, true, false));
        assert_eq!(r.query["v"], ":v");
        assert_eq!(r.conditions.country, ["US", "CA"]);
        assert_eq!(r.conditions.role, ["admin"]);
        assert_eq!(r.headers["X-From"], "kpages");
        assert_eq!(c.redirects[1].status, 301, "default status");
        let h = &c.headers[0];
        assert_eq!(h.values.len(), 2);
        assert_eq!(h.values[0].name, "Content-Security-Policy");
        assert_eq!(h.values[0].value, "default-src 'self'; img-src *");
    }

    #[test]
    fn bad_netlify_toml_names_the_field() {
        let cases = [
            (
                "[[redirects]]\nfrom = \"/a\"\n",
                "`redirects[0]`: `to` is required",
            ),
            (
                "[[redirects]]\nfrom = \"/a\"\nto = \"/b\"\nstatus = 299\n",
                "299",
            ),
            (
                "[[redirects]]\nfrom = \"/a\"\nto = \"/b\"\nforced = true\n",
                "redirects[0]",
            ),
            (
                "[[redirects]]\nfrom = \"/a\"\nto = \"/b\"\nconditions = { Planet = [\"x\"] }\n",
                "Planet",
            ),
            ("[build]\npublish = 3\n", "`build.publish`"),
            ("[functions]\nnope = 1\n", "`functions.nope`"),
            ("[functions.x]\nschedul = \"@daily\"\n", "functions.x"),
            (
                "[[headers]]\nfor = \"*\"\nvalues = { A = \"b\" }\n",
                "`headers[0].for`",
            ),
            ("redirects = [", "not valid TOML"),
        ];
        for (text, want) in cases {
            let err = parse_toml(text, "netlify.toml").unwrap_err().to_string();
            assert!(err.starts_with("netlify.toml: "), "{text}: {err}");
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn frameworks_config_merges_after_user_rules_and_forced_rules_go_first() {
        let user = parse_toml(
            "[build]\npublish = \"dist\"\n[[redirects]]\nfrom = \"/u\"\nto = \"/user\"\n",
            "netlify.toml",
        )
        .unwrap();
        let fw = parse_frameworks_json(
            r#"{"build": {"publish": "fw-out", "functions": "fw-fns"},
                "functions": {"ssr": {"included_files": ["server/**"]}},
                "redirects": [{"from": "/f", "to": "/fw", "status": 200}],
                "redirects!": [{"from": "/first", "to": "/x", "status": 302}],
                "headers": [{"for": "/_fw/*", "values": {"Cache-Control": "immutable"}}]}"#,
            ".netlify/v1/config.json",
        )
        .unwrap();
        let merged = merge(user, fw);
        assert_eq!(merged.publish.as_deref(), Some("dist"), "user wins");
        assert_eq!(merged.functions_dir.as_deref(), Some("fw-fns"));
        assert_eq!(
            merged.functions_by_name["ssr"].included_files,
            ["server/**"]
        );
        let froms: Vec<_> = merged.redirects.iter().map(|r| r.from.as_str()).collect();
        assert_eq!(froms, ["/u", "/f"]);
        assert_eq!(merged.important_redirects[0].from, "/first");
        assert!(merged.important_redirects[0].important);
        assert_eq!(
            merged.headers[0].origin.as_deref(),
            Some(".netlify/v1/config.json")
        );
    }

    #[test]
    fn forced_redirects_are_only_for_frameworks() {
        let err = parse_toml("\"redirects!\" = []\n", "netlify.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("only accepted in .netlify/v1/config.json"),
            "{err}"
        );
        let err = parse_frameworks_json(r#"{"plugins": []}"#, "c.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`plugins`"), "{err}");
    }
}
