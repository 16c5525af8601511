//! Path patterns in the three syntaxes a deploy uses, compiled to one small matcher.
//!
//! | syntax | where | example | meaning |
//! |---|---|---|---|
//! | Netlify rule | `_redirects` `from`, `_headers` `for`, cache `source` | `/news/:year/*`, `/*.js`, `https://a.com/*` | `:x` one segment, trailing `*` the rest (`:splat`, also matches the base path), `*` inside a segment any characters of that segment; trailing slashes ignored |
//! | URLPattern | Netlify `config.path` | `/api/:id`, `/blog/*`, `/a/:rest*` | `:x` one segment, `:x?`/`:x*`/`:x+` optional/repeated segments, `*` anything (param `0`, `1`, …); exact |
//! | EdgeOne file | `node-functions/` file names | `/users/[id]`, `/koa/[[default]]` | `[x]` one segment, `[[x]]` zero or more segments (the base path too); trailing slash ignored |
//!
//! Every syntax compiles to a small token list and then to an anchored `regex`, whose
//! matching time is linear in the path whatever a site (or a fuzzer) writes: no backtracking.

use std::collections::BTreeMap;

use regex::Regex;

/// Route parameters captured by a match, by name.
pub type Params = BTreeMap<String, String>;

/// Why a pattern cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The pattern is not an absolute path (or absolute URL for rules).
    #[error("pattern {0:?} must start with '/'")]
    NotAbsolute(String),
    /// A construct of the syntax that kpages does not support.
    #[error("pattern {pattern:?}: {what} is not supported")]
    Unsupported {
        /// The pattern.
        pattern: String,
        /// What was found.
        what: &'static str,
    },
    /// A placeholder without a name, or an unterminated `[`.
    #[error("pattern {pattern:?}: {what}")]
    Malformed {
        /// The pattern.
        pattern: String,
        /// What is wrong.
        what: &'static str,
    },
    /// A proxy rule whose target host comes from the request: the client would choose where
    /// the router connects.
    #[error(
        "proxy target {target:?}: a placeholder in the host would let a request choose where the router connects; write the host literally"
    )]
    PlaceholderHost {
        /// The rule's target.
        target: String,
    },
    /// A proxy rule that sets a header the router owns.
    #[error("proxy header {name:?}: {why}")]
    RefusedHeader {
        /// The header.
        name: String,
        /// Why it is refused.
        why: &'static str,
    },
}

impl PatternError {
    /// Whether the error is about the pattern's syntax (so the syntax's accepted forms help).
    fn is_syntax(&self) -> bool {
        !matches!(
            self,
            Self::PlaceholderHost { .. } | Self::RefusedHeader { .. }
        )
    }
}

/// The syntax a pattern is written in, for telling a user what is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// `_redirects` `from`, `_headers` `for`, cache `source`.
    NetlifyRule,
    /// Netlify `config.path`, FunctionRoute `Pattern` matches.
    UrlPattern,
    /// EdgeOne `node-functions/` file names.
    EdgeoneFile,
}

impl Syntax {
    /// What the syntax accepts, in a user's words.
    pub fn accepted(self) -> &'static str {
        match self {
            Self::NetlifyRule => {
                "a path starting with '/' (optionally after https://host) with :name segments, a trailing * splat, and * inside a segment"
            }
            Self::UrlPattern => {
                "a path starting with '/' with literal segments, :name, :name?, :name*, :name+ and *; no regular-expression groups"
            }
            Self::EdgeoneFile => {
                "a path starting with '/' with [name] for one segment and [[name]] for the rest"
            }
        }
    }
}

/// A pattern of a deploy that cannot be compiled, with where it was written: what `kpages
/// build` refuses, and what an older router skips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable {
    /// The file (and line) the pattern came from, or `manifest`.
    pub origin: String,
    /// Which field holds it (`redirect rule \`from\``, `route of function "x"`).
    pub field: String,
    /// Its syntax.
    pub syntax: Syntax,
    /// Why it cannot be compiled.
    pub error: PatternError,
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.origin, self.field, self.error)?;
        if self.error.is_syntax() {
            write!(f, "; accepted: {}", self.syntax.accepted())?;
        }
        Ok(())
    }
}

impl std::error::Error for Unusable {}

impl Pattern {
    /// Compiles `pattern` in `syntax`.
    pub fn compile(syntax: Syntax, pattern: &str) -> Result<Self, PatternError> {
        match syntax {
            Syntax::NetlifyRule => Self::netlify_rule(pattern),
            Syntax::UrlPattern => Self::urlpattern(pattern),
            Syntax::EdgeoneFile => Self::edgeone_file(pattern),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// Exactly this text.
    Lit(String),
    /// One or more characters other than `/`.
    Segment(String),
    /// Zero or more characters other than `/` (a `*` inside a rule segment); not captured.
    Glob,
    /// Zero or more of any character.
    Rest(String),
    /// URLPattern `/:x?`, `/:x*`, `/:x+`: `/`-prefixed segments, `min` of them at least,
    /// at most one unless `many`.
    Segments { name: String, min: u8, many: bool },
    /// EdgeOne `[[x]]`: the end of the path, or `/` and anything; the value has no leading `/`.
    CatchAll(String),
}

/// Segment kinds, in precedence order: a route made of more literal segments wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Literal,
    Dynamic,
    CatchAll,
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The pattern as written, for equality, logs and errors.
    source: String,
    host: Option<String>,
    regex: Regex,
    /// Capture group names in order, and whether an absent group means `""`.
    names: Vec<(String, bool)>,
    /// Netlify: `/a/*` also matches `/a`.
    splat_matches_base: bool,
    /// Netlify rules and EdgeOne files: `/a/` matches like `/a`.
    ignore_trailing_slash: bool,
    precedence: Vec<Kind>,
}

impl Pattern {
    /// Compiles a Netlify rule path (`_redirects` `from`, `_headers` `for`, cache `source`),
    /// optionally prefixed by `scheme://host` to match one domain.
    pub fn netlify_rule(pattern: &str) -> Result<Self, PatternError> {
        let (host, path) = split_host(pattern);
        if !path.starts_with('/') {
            return Err(PatternError::NotAbsolute(pattern.to_string()));
        }
        let path = strip_trailing_slash(path);
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        let mut b = Builder::default();
        let mut splat = false;
        for (i, seg) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            if let Some(name) = seg.strip_prefix(':').filter(|n| is_ident(n)) {
                b.lit("/");
                b.push(Tok::Segment(name.to_string()), Kind::Dynamic);
            } else if *seg == "*" && last {
                b.lit("/");
                b.push(Tok::Rest("splat".into()), Kind::CatchAll);
                splat = true;
            } else if seg.contains('*') {
                b.lit("/");
                for (j, part) in seg.split('*').enumerate() {
                    if j > 0 {
                        b.push(Tok::Glob, Kind::Dynamic);
                    }
                    b.lit(part);
                }
                b.kinds.push(Kind::Dynamic);
            } else {
                b.lit("/");
                b.lit(seg);
                b.kinds.push(Kind::Literal);
            }
        }
        if segments.is_empty() || (segments.len() == 1 && segments[0].is_empty()) {
            b.tokens = vec![Tok::Lit("/".into())];
        }
        Self::finish(pattern, host.map(str::to_ascii_lowercase), b, splat, true)
    }

    /// Compiles a URLPattern pathname (Netlify `config.path`).
    pub fn urlpattern(pattern: &str) -> Result<Self, PatternError> {
        if !pattern.starts_with('/') {
            return Err(PatternError::NotAbsolute(pattern.to_string()));
        }
        let unsupported = |what| PatternError::Unsupported {
            pattern: pattern.to_string(),
            what,
        };
        let mut b = Builder::default();
        let mut chars = pattern.chars().peekable();
        let mut wildcards = 0usize;
        let mut lit = String::new();
        let mut segment_kind = Kind::Literal;
        while let Some(c) = chars.next() {
            match c {
                ':' => {
                    let mut name = String::new();
                    while let Some(&n) = chars.peek().filter(|n| is_ident_char(**n)) {
                        name.push(n);
                        chars.next();
                    }
                    if name.is_empty() {
                        return Err(PatternError::Malformed {
                            pattern: pattern.to_string(),
                            what: "':' must be followed by a parameter name",
                        });
                    }
                    let modifier = chars.next_if(|m| matches!(m, '?' | '*' | '+'));
                    match modifier {
                        None => {
                            b.lit(&std::mem::take(&mut lit));
                            b.tokens.push(Tok::Segment(name));
                            segment_kind = segment_kind.max(Kind::Dynamic);
                        }
                        Some(m) => {
                            // The modifier makes the preceding '/' optional along with the
                            // parameter, as URLPattern does.
                            if lit.ends_with('/') {
                                lit.pop();
                            } else {
                                return Err(unsupported("a modifier not right after '/'"));
                            }
                            b.lit(&std::mem::take(&mut lit));
                            let (min, many) = match m {
                                '?' => (0, false),
                                '*' => (0, true),
                                _ => (1, true),
                            };
                            b.tokens.push(Tok::Segments { name, min, many });
                            segment_kind = Kind::CatchAll;
                        }
                    }
                }
                '*' => {
                    b.lit(&std::mem::take(&mut lit));
                    b.tokens.push(Tok::Rest(wildcards.to_string()));
                    wildcards += 1;
                    segment_kind = Kind::CatchAll;
                }
                '(' | ')' => return Err(unsupported("a regular-expression group")),
                '{' | '}' => return Err(unsupported("a '{…}' group")),
                '\\' => {
                    if let Some(n) = chars.next() {
                        lit.push(n);
                    }
                }
                '/' => {
                    if !b.tokens.is_empty() || !lit.is_empty() {
                        b.kinds.push(segment_kind);
                    }
                    segment_kind = Kind::Literal;
                    lit.push('/');
                }
                c => lit.push(c),
            }
        }
        b.kinds.push(segment_kind);
        b.lit(&lit);
        Self::finish(pattern, None, b, false, false)
    }

    /// Compiles an EdgeOne file route (`/users/[id]`, `/koa/[[default]]`).
    pub fn edgeone_file(pattern: &str) -> Result<Self, PatternError> {
        if !pattern.starts_with('/') {
            return Err(PatternError::NotAbsolute(pattern.to_string()));
        }
        let malformed = |what| PatternError::Malformed {
            pattern: pattern.to_string(),
            what,
        };
        let path = strip_trailing_slash(pattern);
        let segments: Vec<&str> = path.split('/').skip(1).filter(|s| !s.is_empty()).collect();
        let mut b = Builder::default();
        for (i, seg) in segments.iter().enumerate() {
            if let Some(name) = seg.strip_prefix("[[").and_then(|s| s.strip_suffix("]]")) {
                if i + 1 != segments.len() {
                    return Err(malformed("a [[catch-all]] must be the last segment"));
                }
                if name.is_empty() {
                    return Err(malformed("a [[catch-all]] needs a name"));
                }
                b.push(Tok::CatchAll(name.to_string()), Kind::CatchAll);
            } else if let Some(name) = seg.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                if name.is_empty() || name.contains('[') {
                    return Err(malformed("a [param] needs a name"));
                }
                b.lit("/");
                b.push(Tok::Segment(name.to_string()), Kind::Dynamic);
            } else if seg.contains('[') || seg.contains(']') {
                return Err(malformed("brackets must enclose a whole segment"));
            } else {
                b.lit("/");
                b.lit(seg);
                b.kinds.push(Kind::Literal);
            }
        }
        if b.tokens.is_empty() {
            b.tokens.push(Tok::Lit("/".into()));
        }
        Self::finish(pattern, None, b, false, true)
    }

    fn finish(
        source: &str,
        host: Option<String>,
        b: Builder,
        splat_matches_base: bool,
        ignore_trailing_slash: bool,
    ) -> Result<Self, PatternError> {
        let mut re = String::from("^");
        let mut names = Vec::new();
        for tok in &b.tokens {
            match tok {
                Tok::Lit(s) => re.push_str(&regex::escape(s)),
                Tok::Segment(name) => {
                    re.push_str("([^/]+)");
                    names.push((name.clone(), false));
                }
                Tok::Glob => re.push_str("[^/]*"),
                Tok::Rest(name) => {
                    re.push_str("(.*)");
                    names.push((name.clone(), false));
                }
                Tok::Segments { name, min, many } => {
                    let inner = if *many { "[^/]+(?:/[^/]+)*" } else { "[^/]+" };
                    let opt = if *min == 0 { "?" } else { "" };
                    re.push_str(&format!("(?:/({inner})){opt}"));
                    names.push((name.clone(), false));
                }
                Tok::CatchAll(name) => {
                    re.push_str("(?:/(.*))?");
                    names.push((name.clone(), true));
                }
            }
        }
        re.push('$');
        let regex = regex::RegexBuilder::new(&re)
            .dot_matches_new_line(true)
            .size_limit(1 << 20)
            .build()
            .map_err(|_| PatternError::Malformed {
                pattern: source.to_string(),
                what: "too complex",
            })?;
        Ok(Self {
            source: source.to_string(),
            host,
            regex,
            names,
            splat_matches_base,
            ignore_trailing_slash,
            precedence: b.kinds,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Matches a normalised request path (and, for host-qualified rules, the request host).
    pub fn matches(&self, host: &str, path: &str) -> Option<Params> {
        if let Some(want) = &self.host
            && !host_matches(want, host)
        {
            return None;
        }
        let path = if self.ignore_trailing_slash {
            strip_trailing_slash(path)
        } else {
            path
        };
        if let Some(p) = self.match_path(path) {
            return Some(p);
        }
        if self.splat_matches_base && !path.ends_with('/') {
            return self.match_path(&format!("{path}/"));
        }
        None
    }

    fn match_path(&self, path: &str) -> Option<Params> {
        let caps = self.regex.captures(path)?;
        let mut params = Params::new();
        for (i, (name, default_empty)) in self.names.iter().enumerate() {
            match caps.get(i + 1) {
                Some(m) => {
                    params.insert(name.clone(), m.as_str().to_string());
                }
                None if *default_empty => {
                    params.insert(name.clone(), String::new());
                }
                None => {}
            }
        }
        Some(params)
    }

    /// Orders patterns so the more specific comes first: literal segments before dynamic
    /// ones before catch-alls, compared segment by segment.
    pub fn precedence_cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.precedence.cmp(&other.precedence)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.regex.as_str() == other.regex.as_str()
    }
}

impl Eq for Pattern {}

#[derive(Default)]
struct Builder {
    tokens: Vec<Tok>,
    kinds: Vec<Kind>,
}

impl Builder {
    fn lit(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        if let Some(Tok::Lit(prev)) = self.tokens.last_mut() {
            prev.push_str(s);
        } else {
            self.tokens.push(Tok::Lit(s.to_string()));
        }
    }

    fn push(&mut self, tok: Tok, kind: Kind) {
        self.tokens.push(tok);
        if !matches!(self.tokens.last(), Some(Tok::Glob)) {
            self.kinds.push(kind);
        }
    }
}

fn split_host(pattern: &str) -> (Option<&str>, &str) {
    for scheme in ["https://", "http://"] {
        if let Some(rest) = pattern.strip_prefix(scheme) {
            let slash = rest.find('/').unwrap_or(rest.len());
            let path = if slash == rest.len() {
                "/"
            } else {
                &rest[slash..]
            };
            return (Some(&rest[..slash]), path);
        }
    }
    (None, pattern)
}

fn host_matches(want: &str, host: &str) -> bool {
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    want.eq_ignore_ascii_case(host) || want.eq_ignore_ascii_case(host.trim_end_matches('.'))
}

fn strip_trailing_slash(path: &str) -> &str {
    if path.len() > 1 {
        path.strip_suffix('/').unwrap_or(path)
    } else {
        path
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

pub(crate) fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_ident_char)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Option<Params> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn netlify_rule_table() {
        let cases: &[(&str, &str, Option<Params>)] = &[
            ("/", "/", params(&[])),
            ("/", "/a", None),
            ("/about", "/about", params(&[])),
            ("/about", "/about/", params(&[])),
            ("/about/", "/about", params(&[])),
            ("/about", "/About", None),
            ("/about", "/about/x", None),
            ("/news/*", "/news/2024/a", params(&[("splat", "2024/a")])),
            ("/news/*", "/news/", params(&[("splat", "")])),
            ("/news/*", "/news", params(&[("splat", "")])),
            ("/news/*", "/newsroom", None),
            ("/*", "/", params(&[("splat", "")])),
            ("/*", "/x/y", params(&[("splat", "x/y")])),
            (
                "/news/:year/:month/*",
                "/news/2024/05/hello",
                params(&[("year", "2024"), ("month", "05"), ("splat", "hello")]),
            ),
            ("/news/:year", "/news/", None),
            ("/news/:year", "/news/2024/x", None),
            ("/*.js", "/app.js", params(&[])),
            ("/*.js", "/app.css", None),
            ("/*.js", "/dir/app.js", None),
            ("/assets/*.css", "/assets/a.b.css", params(&[])),
            ("/a/*/c", "/a/b/c", params(&[])),
            ("/a/*/c", "/a/b/d/c", None),
            ("/café", "/café", params(&[])),
        ];
        for (pattern, path, want) in cases {
            let p = Pattern::netlify_rule(pattern).unwrap();
            assert_eq!(&p.matches("example.com", path), want, "{pattern} vs {path}");
        }
    }

    #[test]
    fn netlify_rules_may_name_a_host() {
        let p = Pattern::netlify_rule("https://old.example.com/*").unwrap();
        assert_eq!(
            p.matches("old.example.com", "/x"),
            params(&[("splat", "x")])
        );
        assert_eq!(
            p.matches("OLD.example.com:8080", "/x"),
            params(&[("splat", "x")])
        );
        assert_eq!(p.matches("new.example.com", "/x"), None);
        let bare = Pattern::netlify_rule("https://old.example.com").unwrap();
        assert_eq!(bare.matches("old.example.com", "/"), params(&[]));
    }

    #[test]
    fn urlpattern_table() {
        let cases: &[(&str, &str, Option<Params>)] = &[
            ("/api/:id", "/api/42", params(&[("id", "42")])),
            ("/api/:id", "/api/42/", None),
            ("/api/:id", "/api/", None),
            ("/api/:id", "/api", None),
            ("/blog/*", "/blog/a/b", params(&[("0", "a/b")])),
            ("/blog/*", "/blog/", params(&[("0", "")])),
            ("/blog/*", "/blog", None),
            (
                "/files/:name.json",
                "/files/a.b.json",
                params(&[("name", "a.b")]),
            ),
            ("/a/:x?", "/a", params(&[])),
            ("/a/:x?", "/a/1", params(&[("x", "1")])),
            ("/a/:x?", "/a/1/2", None),
            ("/a/:rest*", "/a", params(&[])),
            ("/a/:rest*", "/a/1/2", params(&[("rest", "1/2")])),
            ("/a/:rest+", "/a", None),
            ("/a/:rest+", "/a/1/2", params(&[("rest", "1/2")])),
            (
                "/u/:user/posts/:post",
                "/u/ann/posts/7",
                params(&[("post", "7"), ("user", "ann")]),
            ),
            ("/*/x/*", "/a/b/x/c", params(&[("0", "a/b"), ("1", "c")])),
            ("/literal\\:colon", "/literal:colon", params(&[])),
        ];
        for (pattern, path, want) in cases {
            let p = Pattern::urlpattern(pattern).unwrap();
            assert_eq!(&p.matches("h", path), want, "{pattern} vs {path}");
        }
        for bad in ["/a/(\\d+)", "/a{/:b}?", "/a/:", "a"] {
            assert!(Pattern::urlpattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn edgeone_file_table() {
        let cases: &[(&str, &str, Option<Params>)] = &[
            ("/", "/", params(&[])),
            ("/hello", "/hello", params(&[])),
            ("/hello", "/hello/", params(&[])),
            ("/users/[id]", "/users/7", params(&[("id", "7")])),
            ("/users/[id]", "/users", None),
            ("/users/[id]", "/users/7/x", None),
            ("/koa/[[default]]", "/koa", params(&[("default", "")])),
            ("/koa/[[default]]", "/koa/", params(&[("default", "")])),
            (
                "/koa/[[default]]",
                "/koa/a/b",
                params(&[("default", "a/b")]),
            ),
            ("/koa/[[default]]", "/koala", None),
            ("/[[default]]", "/", params(&[("default", "")])),
            ("/[[default]]", "/x/y", params(&[("default", "x/y")])),
        ];
        for (pattern, path, want) in cases {
            let p = Pattern::edgeone_file(pattern).unwrap();
            assert_eq!(&p.matches("h", path), want, "{pattern} vs {path}");
        }
        for bad in ["/a/[[x]]/b", "/a/[]", "/a/x[y]", "users"] {
            assert!(Pattern::edgeone_file(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn literal_beats_dynamic_beats_catch_all() {
        let mut routes = [
            Pattern::edgeone_file("/api/[[rest]]").unwrap(),
            Pattern::edgeone_file("/api/[id]").unwrap(),
            Pattern::edgeone_file("/api/users").unwrap(),
            Pattern::edgeone_file("/api/[id]/edit").unwrap(),
        ];
        routes.sort_by(Pattern::precedence_cmp);
        let first_match = |path: &str| {
            routes
                .iter()
                .position(|r| r.matches("h", path).is_some())
                .unwrap()
        };
        assert_eq!(first_match("/api/users"), 0);
        assert_eq!(
            routes[first_match("/api/7")],
            Pattern::edgeone_file("/api/[id]").unwrap()
        );
        assert_eq!(
            routes[first_match("/api/7/edit")],
            Pattern::edgeone_file("/api/[id]/edit").unwrap()
        );
        assert_eq!(
            routes[first_match("/api/7/other")],
            Pattern::edgeone_file("/api/[[rest]]").unwrap()
        );
        let mut mixed = [
            Pattern::urlpattern("/blog/*").unwrap(),
            Pattern::urlpattern("/blog/:slug").unwrap(),
            Pattern::urlpattern("/blog/new").unwrap(),
        ];
        mixed.sort_by(Pattern::precedence_cmp);
        assert_eq!(mixed[0], Pattern::urlpattern("/blog/new").unwrap());
        assert_eq!(mixed[2], Pattern::urlpattern("/blog/*").unwrap());
    }

    #[test]
    fn pathological_patterns_stay_fast() {
        let p = Pattern::urlpattern(&"/*a".repeat(30)).unwrap();
        let path = format!("/{}", "a/".repeat(2000));
        assert_eq!(p.matches("h", &path), None);
        let q = Pattern::netlify_rule(&format!("/{}", "*a".repeat(40))).unwrap();
        assert_eq!(q.matches("h", &format!("/{}b", "a".repeat(3000))), None);
    }
}
