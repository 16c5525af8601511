//! Patterns in all three syntaxes compile or fail cleanly, and matching never panics, on
//! arbitrary patterns and paths; a whole deploy's resolution never panics either.
#![no_main]

use std::sync::Arc;

use kpages_crds::Manifest;
use kpages_router::pattern::Pattern;
use kpages_router::resolve::CompiledDeploy;
use kpages_router::rules::{RequestFacts, rule};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // "pattern\npath\nquery"
    let mut parts = text.splitn(3, '\n');
    let pattern = parts.next().unwrap_or("");
    let raw_path = parts.next().unwrap_or("/");
    let query = parts.next().unwrap_or("");
    let Ok(path) = kpages_router::path::normalize(raw_path) else {
        return;
    };
    for compiled in [
        Pattern::netlify_rule(pattern),
        Pattern::urlpattern(pattern),
        Pattern::edgeone_file(pattern),
    ]
    .into_iter()
    .flatten()
    {
        let _ = compiled.matches("example.com", &path);
    }
    let mut m = Manifest::new();
    m.rules.redirects.push(rule(pattern, "/:splat/:x?a=:y", 200));
    m.rules.redirects.push(rule(pattern, "https://e.example/:splat", 301));
    let deploy = CompiledDeploy::compile(Arc::new(m));
    let facts = RequestFacts {
        method: "GET".into(),
        host: "example.com".into(),
        path,
        query: query.into(),
        ..Default::default()
    };
    let _ = deploy.resolve(&facts, None);
});
