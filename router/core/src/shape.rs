//! Route patterns compared and translated: the shape two routes share when the router cannot
//! tell them apart (the build's conflict check), and EdgeOne file routes written as the
//! URLPatterns the operator puts in the FunctionRoutes it generates.

use crate::pattern::{Syntax, is_ident};

/// The comparable shape of a route: literal segments as written (case-sensitive), any
/// one-segment parameter (`[id]`, `:id`) as `:`, any catch-all (`[[rest]]`, `*`) as `*`, and no
/// trailing slash. Two routes of one shape are the same route to the router, whatever their
/// parameters are called, so `kpages build` refuses two functions that claim one shape.
pub fn shape(syntax: Syntax, pattern: &str) -> String {
    let mapped: Vec<String> = pattern
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|seg| match syntax {
            Syntax::EdgeoneFile if seg.starts_with("[[") && seg.ends_with("]]") => "*".into(),
            Syntax::EdgeoneFile if seg.starts_with('[') && seg.ends_with(']') => ":".into(),
            Syntax::UrlPattern | Syntax::NetlifyRule if seg == "*" => "*".into(),
            Syntax::UrlPattern | Syntax::NetlifyRule
                if seg.strip_prefix(':').is_some_and(is_ident) =>
            {
                ":".into()
            }
            _ => seg.to_string(),
        })
        .collect();
    format!("/{}", mapped.join("/"))
}

/// An EdgeOne file route written as URLPattern pathnames that match the same paths: `[id]`
/// becomes `:id`, and a `[[rest]]` catch-all becomes the base path plus `base/*` (URLPattern's
/// `*` needs at least one character after the slash; the file route also matches the base).
/// The operator writes these into the FunctionRoutes it generates.
pub fn edgeone_file_as_urlpatterns(pattern: &str) -> Vec<String> {
    let mut catch_all = false;
    let segments: Vec<String> = pattern
        .split('/')
        .map(|seg| {
            if let Some(name) = seg.strip_prefix("[[").and_then(|s| s.strip_suffix("]]")) {
                catch_all = !name.is_empty();
                "*".to_string()
            } else if let Some(name) = seg.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                format!(":{name}")
            } else {
                seg.to_string()
            }
        })
        .collect();
    let joined = segments.join("/");
    if catch_all {
        let bare = joined.trim_end_matches("/*");
        let bare = if bare.is_empty() { "/" } else { bare };
        vec![bare.to_string(), joined]
    } else {
        vec![joined]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::Pattern;

    #[test]
    fn shapes_ignore_parameter_names_and_trailing_slashes() {
        use Syntax::*;
        let cases = [
            (EdgeoneFile, "/users/[id]", "/users/:"),
            (UrlPattern, "/users/:slug", "/users/:"),
            (EdgeoneFile, "/a/[[rest]]", "/a/*"),
            (UrlPattern, "/a/*", "/a/*"),
            (UrlPattern, "/a/", "/a"),
            (EdgeoneFile, "/", "/"),
            (EdgeoneFile, "/Api", "/Api"),
            (UrlPattern, "/x/:id?", "/x/:id?"),
        ];
        for (syntax, pattern, want) in cases {
            assert_eq!(shape(syntax, pattern), want, "{pattern}");
        }
    }

    /// The URLPatterns the operator writes for an EdgeOne file route match exactly the paths
    /// the file route matches, with the same parameter values.
    #[test]
    fn edgeone_file_routes_as_urlpatterns_match_the_same_paths() {
        let cases = [
            ("/users/[id]", vec!["/users/:id"]),
            ("/koa/[[default]]", vec!["/koa", "/koa/*"]),
            ("/[[all]]", vec!["/", "/*"]),
            ("/plain", vec!["/plain"]),
        ];
        let paths = [
            "/",
            "/users",
            "/users/7",
            "/users/7/x",
            "/koa",
            "/koa/a",
            "/koa/a/b",
            "/plain",
            "/plainer",
        ];
        for (file, want) in cases {
            let translated = edgeone_file_as_urlpatterns(file);
            assert_eq!(translated, want, "{file}");
            let file_pattern = Pattern::edgeone_file(file).unwrap();
            let compiled: Vec<Pattern> = translated
                .iter()
                .map(|p| Pattern::urlpattern(p).unwrap())
                .collect();
            for path in paths {
                let by_file = file_pattern.matches("", path).is_some();
                let by_urlpattern = compiled.iter().any(|p| p.matches("", path).is_some());
                assert_eq!(by_file, by_urlpattern, "{file} vs {translated:?} on {path}");
            }
        }
    }
}
