//! Netlify's `_headers` file: a path line, then indented `Name: value` lines.
//!
//! ```text
//! /*
//!   X-Frame-Options: DENY
//! /secret/*
//!   Basic-Auth: user:pass
//! ```

use kpages_crds::manifest::{HeaderRule, HeaderValue};

use crate::error::BuildError;
use crate::netlify::redirects::is_path_or_url;

/// Parses a `_headers` file. `file` is its path relative to the site.
pub fn parse(text: &str, file: &str) -> Result<Vec<HeaderRule>, BuildError> {
    let err = |line: usize, message: String| BuildError::Line {
        file: file.to_string(),
        line,
        message,
    };
    let mut rules: Vec<(usize, HeaderRule)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if is_path_or_url(line) {
            if line.contains(char::is_whitespace) {
                return Err(err(n, format!("path {line:?} contains whitespace")));
            }
            rules.push((
                n,
                HeaderRule {
                    for_path: line.to_string(),
                    values: Vec::new(),
                    origin: Some(format!("{file}:{n}")),
                },
            ));
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(err(
                n,
                format!(
                    "expected a path (starting with '/') or an indented `Name: value` header, found {line:?}"
                ),
            ));
        };
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(err(n, format!("{name:?} is not a valid header name")));
        }
        let Some((_, rule)) = rules.last_mut() else {
            return Err(err(
                n,
                format!(
                    "header {name:?} comes before any path; put a path line such as `/*` above it"
                ),
            ));
        };
        rule.values.push(HeaderValue {
            name: name.to_string(),
            value: value.trim().to_string(),
        });
    }
    rules
        .into_iter()
        .map(|(n, rule)| {
            if rule.values.is_empty() {
                Err(err(
                    n,
                    format!("path {:?} has no headers under it", rule.for_path),
                ))
            } else {
                Ok(rule)
            }
        })
        .collect()
}

/// RFC 9110 token characters, the only ones a header name may use.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_parse_in_order_with_repeated_names() {
        let text = "# security\n/*\n  X-Frame-Options: DENY\n  Link: </a.css>; rel=preload\n  Link: </b.js>; rel=preload\n\n/secret/*\n  Basic-Auth: user:pass other:pw\n";
        let rules = parse(text, "_headers").unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].for_path, "/*");
        assert_eq!(rules[0].origin.as_deref(), Some("_headers:2"));
        let names: Vec<_> = rules[0].values.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["X-Frame-Options", "Link", "Link"]);
        assert_eq!(rules[0].values[1].value, "</a.css>; rel=preload");
        assert_eq!(rules[1].values[0].value, "user:pass other:pw");
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let cases = [
            ("  X-A: b\n", 1, "before any path"),
            ("/a\n  no colon here\n", 2, "expected a path"),
            ("/a\n  Bad Name: x\n", 2, "not a valid header name"),
            ("/a\n/b\n  X: y\n", 1, "no headers"),
        ];
        for (text, line, want) in cases {
            let err = parse(text, "public/_headers").unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("public/_headers:{line}: ")),
                "{text}: {err}"
            );
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
