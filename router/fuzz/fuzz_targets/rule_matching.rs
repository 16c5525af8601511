//! Route and rule patterns in all three syntaxes (Netlify rules, URLPattern, EdgeOne files)
//! compile or fail cleanly, and matching never panics and stays fast, on arbitrary patterns
//! and normalised paths. Input: "pattern\nhost\npath".
#![no_main]

use kpages_routing::path;
use kpages_routing::pattern::Pattern;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\n');
    let source = parts.next().unwrap_or("");
    let host = parts.next().unwrap_or("example.com");
    let Ok(path) = path::normalize(parts.next().unwrap_or("/")) else {
        return;
    };
    let compiled: Vec<Pattern> = [
        Pattern::netlify_rule(source),
        Pattern::urlpattern(source),
        Pattern::edgeone_file(source),
    ]
    .into_iter()
    .flatten()
    .collect();
    for p in &compiled {
        if let Some(params) = p.matches(host, &path) {
            // Captured values are pieces of the path (or of the base path for splats).
            for v in params.values() {
                assert!(v.len() <= path.len() + 1, "{v:?} longer than {path:?}");
            }
        }
        for q in &compiled {
            // Precedence is a total order: comparing twice agrees with its reverse.
            assert_eq!(p.precedence_cmp(q), q.precedence_cmp(p).reverse());
        }
    }
});
