//! A deploy's rules, compiled once when the deploy is loaded: redirects, rewrites and
//! proxies; header rules (including `Basic-Auth`); cache rules. Matching is pure: it sees
//! only [`RequestFacts`], never a socket.

use kpages_crds::manifest::{CacheRule, HeaderRule, RedirectRule, RuleConditions};

use crate::path;
use crate::pattern::{Params, Pattern, PatternError, Syntax, Unusable};

/// What the rules may look at in a request, already extracted and normalised by the edge.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    /// Request method, upper case.
    pub method: String,
    /// Host the client asked for (without trailing dot; may carry a port).
    pub host: String,
    /// Normalised, decoded path (see [`crate::path::normalize`]).
    pub path: String,
    /// Raw query string without `?` (empty when absent).
    pub query: String,
    /// Client country (ISO 3166 alpha-2), when geo lookup knows it.
    pub country: Option<String>,
    /// Language tags from `Accept-Language`, lower case, best first.
    pub languages: Vec<String>,
    /// Names of the cookies the client sent.
    pub cookies: Vec<String>,
    /// Roles from a verified `nf_jwt` token.
    pub roles: Vec<String>,
}

impl RequestFacts {
    /// Decoded query parameters in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .into_owned()
            .collect()
    }
}

/// Parses `Accept-Language` into lower-case tags, best first, dropping `q=0`.
pub fn accept_languages(header: &str) -> Vec<String> {
    let mut tags: Vec<(String, f32)> = header
        .split(',')
        .filter_map(|part| {
            let mut it = part.split(';');
            let tag = it.next()?.trim().to_ascii_lowercase();
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (!tag.is_empty() && tag != "*" && q > 0.0).then_some((tag, q))
        })
        .collect();
    tags.sort_by(|a, b| b.1.total_cmp(&a.1));
    tags.into_iter().map(|(t, _)| t).collect()
}

/// Names of the cookies in a `Cookie` header.
pub fn cookie_names(header: &str) -> Vec<String> {
    header
        .split(';')
        .filter_map(|c| c.split_once('=').map(|(n, _)| n.trim().to_string()))
        .filter(|n| !n.is_empty())
        .collect()
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|c| c.split_once('='))
        .find(|(n, _)| n.trim() == name)
        .map(|(_, v)| v.trim())
}

/// How a rule's query requirement is met.
#[derive(Debug, Clone, PartialEq, Eq)]
enum QueryMatch {
    /// The parameter must be present; its value becomes placeholder `name`.
    Capture(String),
    /// The parameter must have exactly this value.
    Equals(String),
}

/// A compiled redirect, rewrite or proxy rule.
#[derive(Debug, Clone)]
pub struct Redirect {
    from: Pattern,
    query: Vec<(String, QueryMatch)>,
    conditions: RuleConditions,
    /// The rule as written in the manifest.
    pub rule: RedirectRule,
}

/// A rule that matched, with its target filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct RedirectMatch<'r> {
    /// The rule.
    pub rule: &'r RedirectRule,
    /// `to` with placeholders substituted (and the request query passed through when the
    /// rule names no query of its own).
    pub to: String,
}

impl Redirect {
    /// Compiles a rule; a pattern the router cannot read is reported, not guessed at.
    pub fn compile(rule: &RedirectRule) -> Result<Self, PatternError> {
        let from = Pattern::netlify_rule(&rule.from)?;
        if rule.status == 200 && is_absolute(&rule.to) {
            check_proxy_target(rule)?;
        }
        let query = rule
            .query
            .iter()
            .map(|(k, v)| {
                let m = match v.strip_prefix(':') {
                    Some(name) if !name.is_empty() => QueryMatch::Capture(name.to_string()),
                    _ => QueryMatch::Equals(v.clone()),
                };
                (k.clone(), m)
            })
            .collect();
        Ok(Self {
            from,
            query,
            conditions: rule.conditions.clone(),
            rule: rule.clone(),
        })
    }

    /// Matches the rule against a request.
    pub fn matches(&self, facts: &RequestFacts) -> Option<RedirectMatch<'_>> {
        if !conditions_hold(&self.conditions, facts) {
            return None;
        }
        let mut params = self.from.matches(&facts.host, &facts.path)?;
        if !self.query.is_empty() {
            let pairs = facts.query_pairs();
            for (key, want) in &self.query {
                let value = pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v)?;
                match want {
                    QueryMatch::Capture(name) => {
                        params.insert(name.clone(), value.clone());
                    }
                    QueryMatch::Equals(expected) if expected == value => {}
                    QueryMatch::Equals(_) => return None,
                }
            }
        }
        let mut to = substitute(&self.rule.to, &params);
        if self.query.is_empty() && !facts.query.is_empty() && !to.contains('?') {
            to.push('?');
            to.push_str(&facts.query);
        }
        Some(RedirectMatch {
            rule: &self.rule,
            to,
        })
    }
}

/// Headers that apply to one connection only (RFC 9110 §7.6.1), which a rule cannot forward.
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Why a proxy rule may not set request header `name`, or `None` when it may.
pub fn refused_proxy_header(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    if name.starts_with("x-kpages-") {
        Some("x-kpages-* headers are the router's own control headers")
    } else if name == "host" {
        Some("the Host of a proxied request is the target URL's host")
    } else if HOP_BY_HOP.contains(&name.as_str()) {
        Some("hop-by-hop headers apply to one connection only")
    } else {
        None
    }
}

fn is_absolute(to: &str) -> bool {
    to.starts_with("http://") || to.starts_with("https://")
}

/// A proxy rule's target host is written literally, and its headers are ones a rule may set.
fn check_proxy_target(rule: &RedirectRule) -> Result<(), PatternError> {
    let after_scheme = rule.to.split_once("://").map_or("", |(_, rest)| rest);
    let authority = after_scheme.split(['/', '?', '#']).next().unwrap_or("");
    let placeholder = authority
        .split(':')
        .skip(1)
        .any(|rest| rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'));
    if placeholder || authority.contains('*') {
        return Err(PatternError::PlaceholderHost {
            target: rule.to.clone(),
        });
    }
    for name in rule.headers.keys() {
        if let Some(why) = refused_proxy_header(name) {
            return Err(PatternError::RefusedHeader {
                name: name.clone(),
                why,
            });
        }
    }
    Ok(())
}

fn conditions_hold(c: &RuleConditions, facts: &RequestFacts) -> bool {
    let country_ok = c.country.is_empty()
        || facts
            .country
            .as_deref()
            .is_some_and(|have| c.country.iter().any(|w| w.eq_ignore_ascii_case(have)));
    let language_ok = c.language.is_empty()
        || facts.languages.iter().any(|have| {
            c.language.iter().any(|want| {
                let want = want.to_ascii_lowercase();
                *have == want
                    || have.split('-').next() == Some(want.as_str())
                    || want.split('-').next() == Some(have.as_str())
            })
        });
    let role_ok = c.role.is_empty() || facts.roles.iter().any(|r| c.role.contains(r));
    let cookie_ok = c.cookie.is_empty() || facts.cookies.iter().any(|n| c.cookie.contains(n));
    country_ok && language_ok && role_ok && cookie_ok
}

/// Replaces `:name` in `to` by captured values (percent-encoded again), leaving unknown
/// names — and ports like `:8080` — as written.
fn substitute(to: &str, params: &Params) -> String {
    let mut out = String::with_capacity(to.len());
    let mut rest = to;
    while let Some(i) = rest.find(':') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..name_len];
        match params.get(name) {
            Some(v) if !name.is_empty() => {
                out.push_str(&path::encode(v));
                rest = &after[name_len..];
            }
            _ => {
                out.push(':');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The header rules of a deploy.
#[derive(Debug, Clone, Default)]
pub struct HeaderRules {
    rules: Vec<(Pattern, HeaderRule)>,
}

/// Basic-Auth credentials that protect a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    credentials: Vec<(String, String)>,
}

impl BasicAuth {
    fn parse(value: &str) -> Self {
        let credentials = value
            .split_whitespace()
            .filter_map(|c| c.split_once(':'))
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect();
        Self { credentials }
    }

    /// Whether an `Authorization` header value carries one of the credentials.
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        use base64::Engine as _;
        let Some(encoded) = authorization.and_then(|a| {
            a.strip_prefix("Basic ")
                .or_else(|| a.strip_prefix("basic "))
        }) else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let Ok(decoded) = String::from_utf8(decoded) else {
            return false;
        };
        let Some((user, pass)) = decoded.split_once(':') else {
            return false;
        };
        self.credentials
            .iter()
            .any(|(u, p)| constant_time_eq(u, user) & constant_time_eq(p, pass))
    }
}

/// Compares without an early exit, so timing does not reveal how much of a password matched.
fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// Header name that protects a path with HTTP Basic authentication instead of being sent.
pub const BASIC_AUTH: &str = "Basic-Auth";

impl HeaderRules {
    /// Compiles header rules; unreadable patterns are returned in `unusable`.
    pub fn compile(rules: &[HeaderRule], unusable: &mut Vec<Unusable>) -> Self {
        let rules = rules
            .iter()
            .filter_map(|r| match Pattern::netlify_rule(&r.for_path) {
                Ok(p) => Some((p, r.clone())),
                Err(error) => {
                    unusable.push(Unusable {
                        origin: r.origin.clone().unwrap_or_else(|| "manifest".into()),
                        field: "header rule path".into(),
                        syntax: Syntax::NetlifyRule,
                        error,
                    });
                    None
                }
            })
            .collect();
        Self { rules }
    }

    /// Headers every matching rule adds, in order (`Basic-Auth` excluded).
    pub fn headers_for(&self, host: &str, path: &str) -> Vec<(&str, &str)> {
        self.rules
            .iter()
            .filter(|(p, _)| p.matches(host, path).is_some())
            .flat_map(|(_, r)| r.values.iter())
            .filter(|v| !v.name.eq_ignore_ascii_case(BASIC_AUTH))
            .map(|v| (v.name.as_str(), v.value.as_str()))
            .collect()
    }

    /// The credentials protecting `path`, if a matching rule sets `Basic-Auth`.
    pub fn basic_auth_for(&self, host: &str, path: &str) -> Option<BasicAuth> {
        self.rules
            .iter()
            .filter(|(p, _)| p.matches(host, path).is_some())
            .flat_map(|(_, r)| r.values.iter())
            .find(|v| v.name.eq_ignore_ascii_case(BASIC_AUTH))
            .map(|v| BasicAuth::parse(&v.value))
    }
}

/// The cache rules of a deploy.
#[derive(Debug, Clone, Default)]
pub struct CacheRules {
    rules: Vec<(Pattern, u64)>,
}

impl CacheRules {
    /// Compiles cache rules; unreadable patterns are returned in `unusable`.
    pub fn compile(rules: &[CacheRule], unusable: &mut Vec<Unusable>) -> Self {
        let rules = rules
            .iter()
            .filter_map(|r| match Pattern::netlify_rule(&r.source) {
                Ok(p) => Some((p, r.ttl_seconds)),
                Err(error) => {
                    unusable.push(Unusable {
                        origin: "manifest".into(),
                        field: "cache rule source".into(),
                        syntax: Syntax::NetlifyRule,
                        error,
                    });
                    None
                }
            })
            .collect();
        Self { rules }
    }

    /// Seconds a response for `path` may be cached, from the first matching rule.
    pub fn ttl_for(&self, host: &str, path: &str) -> Option<u64> {
        self.rules
            .iter()
            .find(|(p, _)| p.matches(host, path).is_some())
            .map(|(_, ttl)| *ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kpages_crds::manifest::HeaderValue;

    fn facts(path: &str, query: &str) -> RequestFacts {
        RequestFacts {
            method: "GET".into(),
            host: "example.com".into(),
            path: path.into(),
            query: query.into(),
            ..Default::default()
        }
    }

    fn to(rule: &RedirectRule, f: &RequestFacts) -> Option<String> {
        Redirect::compile(rule).unwrap().matches(f).map(|m| m.to)
    }

    #[test]
    fn redirect_target_table() {
        let cases: Vec<(RedirectRule, RequestFacts, Option<&str>)> = vec![
            (
                RedirectRule::new("/old", "/new", 301),
                facts("/old", ""),
                Some("/new"),
            ),
            (
                RedirectRule::new("/old", "/new", 301),
                facts("/old/", ""),
                Some("/new"),
            ),
            (
                RedirectRule::new("/old", "/new", 301),
                facts("/older", ""),
                None,
            ),
            (
                RedirectRule::new("/old", "/new", 301),
                facts("/old", "a=1&b=2"),
                Some("/new?a=1&b=2"),
            ),
            (
                RedirectRule::new("/old", "/new?x=1", 301),
                facts("/old", "a=1"),
                Some("/new?x=1"),
            ),
            (
                RedirectRule::new("/news/:year/:slug", "/blog/:year/:slug", 301),
                facts("/news/2024/hello", ""),
                Some("/blog/2024/hello"),
            ),
            (
                RedirectRule::new("/shop/*", "https://shop.example.net/:splat", 301),
                facts("/shop/a/b c", ""),
                Some("https://shop.example.net/a/b%20c"),
            ),
            (
                RedirectRule::new("/api/*", "http://127.0.0.1:8080/v1/:splat", 200),
                facts("/api/x", ""),
                Some("http://127.0.0.1:8080/v1/x"),
            ),
            (
                RedirectRule::new("/a/:unknown", "/b/:other/:unknown", 302),
                facts("/a/1", ""),
                Some("/b/:other/1"),
            ),
            (
                RedirectRule::new("/*", "/index.html", 200),
                facts("/deep/link", ""),
                Some("/index.html"),
            ),
            (
                RedirectRule::new(
                    "https://old.example.com/*",
                    "https://new.example.com/:splat",
                    301,
                ),
                facts("/p", ""),
                None,
            ),
        ];
        for (rule, f, want) in cases {
            assert_eq!(to(&rule, &f).as_deref(), want, "{rule:?} {f:?}");
        }
    }

    #[test]
    fn query_matching_table() {
        let mut r = RedirectRule::new("/store", "/blog/:id", 301);
        r.query.insert("id".into(), ":id".into());
        assert_eq!(
            to(&r, &facts("/store", "id=42")).as_deref(),
            Some("/blog/42")
        );
        assert_eq!(
            to(&r, &facts("/store", "x=1&id=a%20b")).as_deref(),
            Some("/blog/a%20b")
        );
        assert_eq!(to(&r, &facts("/store", "")), None);
        assert_eq!(to(&r, &facts("/store", "other=1")), None);
        let mut lit = RedirectRule::new("/page", "/two", 302);
        lit.query.insert("p".into(), "2".into());
        assert_eq!(to(&lit, &facts("/page", "p=2")).as_deref(), Some("/two"));
        assert_eq!(to(&lit, &facts("/page", "p=3")), None);
    }

    #[test]
    fn condition_table() {
        let with = |f: fn(&mut RuleConditions)| {
            let mut r = RedirectRule::new("/*", "/x", 302);
            f(&mut r.conditions);
            r
        };
        let country = with(|c| c.country = vec!["DE".into(), "AT".into()]);
        let language = with(|c| c.language = vec!["fr".into()]);
        let role = with(|c| c.role = vec!["admin".into()]);
        let cookie = with(|c| c.cookie = vec!["session".into()]);
        let both = with(|c| {
            c.country = vec!["DE".into()];
            c.language = vec!["de".into()];
        });
        let base = facts("/p", "");
        let f = |g: fn(&mut RequestFacts)| {
            let mut x = base.clone();
            g(&mut x);
            x
        };
        let de = f(|x| x.country = Some("de".into()));
        let us = f(|x| x.country = Some("US".into()));
        let fr_ca = f(|x| x.languages = vec!["fr-ca".into(), "en".into()]);
        let en = f(|x| x.languages = vec!["en-us".into()]);
        let admin = f(|x| x.roles = vec!["editor".into(), "admin".into()]);
        let cookie_set = f(|x| x.cookies = vec!["theme".into(), "session".into()]);
        let de_de = f(|x| {
            x.country = Some("DE".into());
            x.languages = vec!["de-de".into()];
        });
        let cases = [
            (&country, &de, true),
            (&country, &us, false),
            (&country, &base, false),
            (&language, &fr_ca, true),
            (&language, &en, false),
            (&role, &admin, true),
            (&role, &base, false),
            (&cookie, &cookie_set, true),
            (&cookie, &base, false),
            (&both, &de, false),
            (&both, &de_de, true),
        ];
        for (i, (r, f, want)) in cases.into_iter().enumerate() {
            assert_eq!(to(r, f).is_some(), want, "case {i}");
        }
    }

    #[test]
    fn header_parsing_helpers() {
        assert_eq!(
            accept_languages("en-US;q=0.5, fr-CA, de;q=0, *;q=0.1"),
            vec!["fr-ca", "en-us"]
        );
        assert_eq!(cookie_names("a=1; b=2;bad; c="), vec!["a", "b", "c"]);
        assert_eq!(cookie_value("a=1; nf_jwt=tok", "nf_jwt"), Some("tok"));
    }

    #[test]
    fn header_and_basic_auth_rules() {
        let hv = |n: &str, v: &str| HeaderValue {
            name: n.into(),
            value: v.into(),
        };
        let rules = [
            HeaderRule {
                for_path: "/*".into(),
                values: vec![hv("X-Frame-Options", "DENY")],
                origin: None,
            },
            HeaderRule {
                for_path: "/admin/*".into(),
                values: vec![
                    hv("Basic-Auth", "ann:s3cret bob:pw"),
                    hv("X-Robots-Tag", "none"),
                ],
                origin: None,
            },
            HeaderRule {
                for_path: "/*.js".into(),
                values: vec![hv("Cache-Control", "public, max-age=31536000")],
                origin: None,
            },
        ];
        let mut warnings = vec![];
        let h = HeaderRules::compile(&rules, &mut warnings);
        assert!(warnings.is_empty());
        assert_eq!(h.headers_for("h", "/"), vec![("X-Frame-Options", "DENY")]);
        assert_eq!(
            h.headers_for("h", "/admin/x"),
            vec![("X-Frame-Options", "DENY"), ("X-Robots-Tag", "none")]
        );
        assert_eq!(h.headers_for("h", "/app.js").len(), 2);
        assert_eq!(h.basic_auth_for("h", "/public"), None);
        let auth = h.basic_auth_for("h", "/admin").unwrap();
        use base64::Engine as _;
        let basic = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert!(auth.allows(Some(&basic("ann:s3cret"))));
        assert!(auth.allows(Some(&basic("bob:pw"))));
        assert!(!auth.allows(Some(&basic("ann:wrong"))));
        assert!(!auth.allows(Some(&basic("ann:s3cretx"))));
        assert!(!auth.allows(Some("Basic !!!")));
        assert!(!auth.allows(Some("Bearer x")));
        assert!(!auth.allows(None));
    }

    #[test]
    fn cache_rules_first_match_wins() {
        let rules = [
            CacheRule {
                source: "/assets/*".into(),
                ttl_seconds: 3600,
            },
            CacheRule {
                source: "/*".into(),
                ttl_seconds: 60,
            },
        ];
        let c = CacheRules::compile(&rules, &mut vec![]);
        assert_eq!(c.ttl_for("h", "/assets/a.css"), Some(3600));
        assert_eq!(c.ttl_for("h", "/index.html"), Some(60));
        assert_eq!(CacheRules::default().ttl_for("h", "/"), None);
    }

    #[test]
    fn proxy_rules_cannot_choose_their_host_or_set_router_headers() {
        let proxy = |to: &str| RedirectRule::new("/p/:host/*", to, 200);
        for to in [
            "http://:host/x",
            "http://:host.example.com/:splat",
            "https://api.:host/",
            "http://*.example.com/",
        ] {
            assert!(
                matches!(
                    Redirect::compile(&proxy(to)),
                    Err(PatternError::PlaceholderHost { .. })
                ),
                "{to}"
            );
        }
        for to in [
            "http://api.example.com:8080/:host/:splat",
            "https://api.example.com/:host?x=:splat",
        ] {
            assert!(Redirect::compile(&proxy(to)).is_ok(), "{to}");
        }
        // A redirect sends the client, not the router: a placeholder host is the site's choice.
        assert!(
            Redirect::compile(&RedirectRule::new(
                "/go/:to",
                "https://:to.example.com/",
                302
            ))
            .is_ok()
        );
        for name in [
            "X-Kpages-Function",
            "Host",
            "connection",
            "Transfer-Encoding",
        ] {
            let mut rule = proxy("http://api.example.com/:splat");
            rule.headers.insert(name.into(), "x".into());
            let err = Redirect::compile(&rule).unwrap_err();
            assert!(matches!(err, PatternError::RefusedHeader { .. }), "{name}");
            assert!(err.to_string().contains(name), "{err}");
        }
        let mut fine = proxy("http://api.example.com/:splat");
        fine.headers.insert("X-From".into(), "kpages".into());
        assert!(Redirect::compile(&fine).is_ok());
    }
}
