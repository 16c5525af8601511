//! Netlify's `_redirects` file: one rule per line,
//! `from [query=:param …] to [status][!] [Condition=value,… …]`.

use std::collections::BTreeMap;

use kpages_crds::manifest::{RedirectRule, RuleConditions};

use crate::error::BuildError;

/// Parses a `_redirects` file. `file` is its path relative to the site, used in errors and
/// in each rule's `origin`.
pub fn parse(text: &str, file: &str) -> Result<Vec<RedirectRule>, BuildError> {
    let mut rules = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let rule = parse_line(line).map_err(|message| BuildError::Line {
            file: file.to_string(),
            line: i + 1,
            message,
        })?;
        rules.push(RedirectRule {
            origin: Some(format!("{file}:{}", i + 1)),
            ..rule
        });
    }
    Ok(rules)
}

/// Whether `s` can be a rule's source or target: a path or an absolute http(s) URL.
pub(crate) fn is_path_or_url(s: &str) -> bool {
    s.starts_with('/') || s.starts_with("http://") || s.starts_with("https://")
}

fn parse_line(line: &str) -> Result<RedirectRule, String> {
    // A trailing `# comment` after whitespace is allowed, as on Netlify.
    let line = line.split(" #").next().unwrap_or(line);
    let mut tokens = line.split_whitespace().peekable();
    let from = tokens.next().ok_or("empty rule")?;
    if !is_path_or_url(from) {
        return Err(format!(
            "the source {from:?} must be a path starting with '/' or an absolute http(s) URL"
        ));
    }
    let mut query = BTreeMap::new();
    while let Some(tok) = tokens.peek() {
        if is_path_or_url(tok) {
            break;
        }
        let Some((k, v)) = tok.split_once('=') else {
            return Err(format!(
                "expected a target path or URL after {from:?}, found {tok:?}; write `from to [status]`"
            ));
        };
        if k.is_empty() {
            return Err(format!("query parameter {tok:?} has no name"));
        }
        query.insert(k.to_string(), v.to_string());
        tokens.next();
    }
    let to = tokens
        .next()
        .ok_or_else(|| format!("rule for {from:?} has no target; write `from to [status]`"))?;
    let (mut status, mut force) = (301, false);
    if let Some(tok) = tokens.peek()
        && tok.starts_with(|c: char| c.is_ascii_digit())
    {
        let digits = tok.strip_suffix('!').unwrap_or(tok);
        force = digits.len() != tok.len();
        status = digits
            .parse::<u16>()
            .ok()
            .filter(|s| is_rule_status(*s))
            .ok_or_else(|| {
                format!(
                    "status {tok:?} is not one of 200, 301, 302, 303, 307, 308 or 4xx/5xx (optionally followed by '!')"
                )
            })?;
        tokens.next();
    }
    let mut conditions = RuleConditions::default();
    for tok in tokens {
        let Some((key, value)) = tok.split_once('=') else {
            return Err(format!(
                "unexpected {tok:?} after the status; conditions are written Country=…, Language=…, Role=… or Cookie=…"
            ));
        };
        let values: Vec<String> = value
            .split(',')
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect();
        if values.is_empty() {
            return Err(format!("condition {key:?} has no value"));
        }
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
        slot.extend(values);
    }
    Ok(RedirectRule {
        from: from.to_string(),
        to: to.to_string(),
        status,
        force,
        important: false,
        query,
        conditions,
        headers: BTreeMap::new(),
        origin: None,
    })
}

/// Statuses a rule may have (the manifest accepts the same set).
pub(crate) fn is_rule_status(s: u16) -> bool {
    matches!(s, 200 | 301 | 302 | 303 | 307 | 308 | 400..=599)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(from: &str, to: &str, status: u16) -> RedirectRule {
        RedirectRule::new(from, to, status)
    }

    #[test]
    fn lines_parse_into_rules() {
        let q = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        let cases: Vec<(&str, RedirectRule)> = vec![
            ("/old /new", rule("/old", "/new", 301)),
            ("/old   /new   302", rule("/old", "/new", 302)),
            (
                "/app/*  /index.html  200",
                rule("/app/*", "/index.html", 200),
            ),
            (
                "/shop/*  /store/:splat  301!",
                RedirectRule {
                    force: true,
                    ..rule("/shop/*", "/store/:splat", 301)
                },
            ),
            (
                "/api/*  https://api.example.com/:splat  200",
                rule("/api/*", "https://api.example.com/:splat", 200),
            ),
            (
                "/store id=:id  /blog/:id  301",
                RedirectRule {
                    query: q(&[("id", ":id")]),
                    ..rule("/store", "/blog/:id", 301)
                },
            ),
            (
                "/  /fr  302  Country=fr,be  Language=fr",
                RedirectRule {
                    conditions: RuleConditions {
                        country: vec!["fr".into(), "be".into()],
                        language: vec!["fr".into()],
                        ..RuleConditions::default()
                    },
                    ..rule("/", "/fr", 302)
                },
            ),
            (
                "/admin/*  /admin/:splat  200!  Role=admin  Cookie=session",
                RedirectRule {
                    force: true,
                    conditions: RuleConditions {
                        role: vec!["admin".into()],
                        cookie: vec!["session".into()],
                        ..RuleConditions::default()
                    },
                    ..rule("/admin/*", "/admin/:splat", 200)
                },
            ),
            (
                "/gone  /404.html  404  # gone for good",
                rule("/gone", "/404.html", 404),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse_line(line).unwrap(), want, "{line}");
        }
    }

    #[test]
    fn bad_lines_are_reported_with_file_and_line() {
        let cases = [
            ("/only-source", "no target"),
            ("old /new", "must be a path"),
            ("/a /b 299", "status \"299\""),
            ("/a /b 30x", "status"),
            ("/a /b 301 Planet=mars", "unsupported condition \"Planet\""),
            ("/a /b 301 stray", "unexpected \"stray\""),
            ("/a notapath", "expected a target"),
        ];
        for (line, want) in cases {
            let text = format!("# header\n\n/fine /ok\n{line}\n");
            let err = parse(&text, "_redirects").unwrap_err().to_string();
            assert!(err.starts_with("_redirects:4: "), "{line}: {err}");
            assert!(err.contains(want), "{line}: {err}");
        }
    }

    #[test]
    fn origins_record_file_and_line() {
        let rules = parse("# c\n/a /b\n\n/c /d 302\n", "public/_redirects").unwrap();
        let origins: Vec<_> = rules.iter().map(|r| r.origin.clone().unwrap()).collect();
        assert_eq!(origins, ["public/_redirects:2", "public/_redirects:4"]);
    }
}
