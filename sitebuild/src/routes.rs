//! Detecting two functions that claim the same route.
//!
//! Routes are compared by shape: literal segments as written (case-sensitive), any one-segment
//! parameter (`[id]`, `:id`) alike, any catch-all (`[[rest]]`, `*`) alike, and a trailing slash
//! ignored — because the router cannot tell `/users/[id]` from `/users/[slug]`. Two claims
//! conflict only when their methods overlap (no methods means all).

use std::collections::BTreeMap;

use kpages_crds::manifest::{Function, Route, RouteSyntax};
use kpages_routing::pattern::Syntax;

use crate::error::BuildError;

/// The comparable shape of a route pattern (see [`kpages_routing::shape::shape`]).
pub fn shape(route: &Route) -> String {
    let syntax = match route.syntax {
        RouteSyntax::File => Syntax::EdgeoneFile,
        RouteSyntax::Urlpattern => Syntax::UrlPattern,
    };
    kpages_routing::shape::shape(syntax, &route.pattern)
}

/// Fails when two functions claim one route with overlapping methods.
pub fn check_conflicts(functions: &[Function]) -> Result<(), BuildError> {
    let mut claims: BTreeMap<String, Vec<(&Function, &Route)>> = BTreeMap::new();
    for f in functions {
        for r in &f.routes {
            let key = shape(r);
            for (other, _) in claims.get(&key).into_iter().flatten() {
                let overlap = f.methods.is_empty()
                    || other.methods.is_empty()
                    || f.methods.iter().any(|m| other.methods.contains(m));
                if overlap && other.name != f.name {
                    return Err(BuildError::RouteConflict {
                        route: r.pattern.clone(),
                        first: describe(other),
                        second: describe(f),
                    });
                }
            }
            claims.entry(key).or_default().push((f, r));
        }
    }
    Ok(())
}

fn describe(f: &Function) -> String {
    match &f.source {
        Some(s) => format!("{s} (function {:?})", f.name),
        None => format!("function {:?}", f.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(p: &str, syntax: RouteSyntax) -> Route {
        Route {
            pattern: p.into(),
            syntax,
        }
    }

    fn function(name: &str, routes: Vec<Route>, methods: &[&str]) -> Function {
        Function {
            routes,
            methods: methods.iter().map(|m| m.to_string()).collect(),
            source: Some(format!("src/{name}.js")),
            ..kpages_testsupport::fixtures::function(name)
        }
    }

    #[test]
    fn shapes_follow_the_route_syntax() {
        assert_eq!(shape(&route("/users/[id]", RouteSyntax::File)), "/users/:");
        assert_eq!(
            shape(&route("/users/:id", RouteSyntax::Urlpattern)),
            "/users/:"
        );
        assert_eq!(shape(&route("/[x]", RouteSyntax::Urlpattern)), "/[x]");
    }

    #[test]
    fn conflicts_need_the_same_shape_and_overlapping_methods() {
        use RouteSyntax::*;
        let cases = [
            (
                vec![
                    ("a", "/x", File, &[][..]),
                    ("b", "/x/", Urlpattern, &[][..]),
                ],
                true,
            ),
            (
                vec![
                    ("a", "/u/[id]", File, &[][..]),
                    ("b", "/u/[slug]", File, &[][..]),
                ],
                true,
            ),
            (
                vec![
                    ("a", "/x", Urlpattern, &["GET"][..]),
                    ("b", "/x", Urlpattern, &["POST"][..]),
                ],
                false,
            ),
            (
                vec![
                    ("a", "/x", Urlpattern, &["GET"][..]),
                    ("b", "/x", Urlpattern, &[][..]),
                ],
                true,
            ),
            (
                vec![
                    ("a", "/x", Urlpattern, &[][..]),
                    ("b", "/X", Urlpattern, &[][..]),
                ],
                false,
            ),
            (
                vec![
                    ("a", "/u/[id]", File, &[][..]),
                    ("b", "/u/me", File, &[][..]),
                ],
                false,
            ),
        ];
        for (claims, conflict) in cases {
            let fns: Vec<_> = claims
                .iter()
                .map(|(n, p, s, m)| function(n, vec![route(p, *s)], m))
                .collect();
            let got = check_conflicts(&fns);
            assert_eq!(got.is_err(), conflict, "{claims:?}");
            if let Err(e) = got {
                let e = e.to_string();
                assert!(e.contains("src/a.js") && e.contains("src/b.js"), "{e}");
            }
        }
    }
}
