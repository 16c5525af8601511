//! Request path normalisation: the one place a client's path becomes the path the router
//! matches rules against and looks files up by.
//!
//! The result is decoded (`%20` → space), absolute, without `.`/`..` segments or repeated
//! slashes, and keeps a trailing slash (it decides between `about.html` and
//! `about/index.html`). Percent-encoded dots and slashes are decoded *before* dot segments are
//! resolved, and backslashes count as slashes, so no spelling of `..` can climb out of the
//! site; `..` at the root stays at the root, as browsers do. NUL and other control characters
//! and invalid UTF-8 are refused: there is no safe file name to map them to.

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// Why a request path cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with `/` (absolute-form and authority-form targets have been
    /// reduced to their path before this point).
    #[error("the request path must start with '/'")]
    NotAbsolute,
    /// The decoded path holds a NUL or another control character.
    #[error("the request path contains a control character (NUL, newline, …)")]
    ControlCharacter,
    /// The decoded path is not UTF-8.
    #[error("the request path is not valid UTF-8 once percent-decoded")]
    NotUtf8,
    /// The path is longer than the router accepts.
    #[error("the request path is longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
}

/// Longest raw request path accepted.
pub const MAX_PATH_BYTES: usize = 8 * 1024;

/// Normalises a raw (percent-encoded) request path; see the module docs for the rules.
pub fn normalize(raw: &str) -> Result<String, PathError> {
    if raw.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    if !raw.starts_with('/') && !raw.starts_with('\\') {
        return Err(PathError::NotAbsolute);
    }
    let decoded: Vec<u8> = percent_decode_str(raw).collect();
    let decoded = String::from_utf8(decoded).map_err(|_| PathError::NotUtf8)?;
    if decoded.chars().any(char::is_control) {
        return Err(PathError::ControlCharacter);
    }
    let unified = decoded.replace('\\', "/");
    let trailing_slash = unified.ends_with('/') || ends_with_dot_segment(&unified);
    let mut out: Vec<&str> = Vec::new();
    for seg in unified.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut path = String::with_capacity(unified.len());
    for seg in &out {
        path.push('/');
        path.push_str(seg);
    }
    if path.is_empty() || trailing_slash {
        path.push('/');
    }
    Ok(path)
}

/// `/a/.` and `/a/..` name directories, so they keep a trailing slash once resolved.
fn ends_with_dot_segment(path: &str) -> bool {
    path.ends_with("/.") || path.ends_with("/..")
}

/// Characters escaped when a decoded path (or part of one) is put back into a URL.
const PATH_ESCAPE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// Percent-encodes a decoded path so it can travel in a URL again; `/` is kept.
pub fn encode(decoded: &str) -> String {
    utf8_percent_encode(decoded, PATH_ESCAPE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_table() {
        let ok = [
            ("/", "/"),
            ("/index.html", "/index.html"),
            ("/about/", "/about/"),
            ("//a///b", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/a/../../../etc/passwd", "/etc/passwd"),
            ("/%2e%2e/%2e%2e/etc/passwd", "/etc/passwd"),
            ("/%2E%2E%2Fetc%2Fpasswd", "/etc/passwd"),
            ("/a%2f..%2f..%2fsecret", "/secret"),
            ("/..\\..\\windows\\win.ini", "/windows/win.ini"),
            ("\\evil", "/evil"),
            ("/a%5c..%5c..%5cb", "/b"),
            ("/hello%20world.html", "/hello world.html"),
            ("/%252e%252e/x", "/%2e%2e/x"),
            ("/caf%C3%A9", "/café"),
            ("/.", "/"),
            ("/..", "/"),
            ("/.well-known/x", "/.well-known/x"),
            ("/a/...", "/a/..."),
        ];
        for (raw, want) in ok {
            assert_eq!(normalize(raw).as_deref(), Ok(want), "{raw}");
        }
        let bad = [
            ("", PathError::NotAbsolute),
            ("a/b", PathError::NotAbsolute),
            ("/a%00b", PathError::ControlCharacter),
            ("/a%0ab", PathError::ControlCharacter),
            ("/a\0b", PathError::ControlCharacter),
            ("/%ff%fe", PathError::NotUtf8),
        ];
        for (raw, want) in bad {
            assert_eq!(normalize(raw), Err(want), "{raw:?}");
        }
        assert_eq!(
            normalize(&format!("/{}", "a".repeat(MAX_PATH_BYTES))),
            Err(PathError::TooLong)
        );
    }

    #[test]
    fn normalised_paths_are_fixed_points() {
        for raw in ["/a/../b/", "/x//y/./z", "/%2e%2e/q", "/a b/c"] {
            let once = normalize(raw).unwrap();
            let twice = normalize(&encode(&once)).unwrap();
            assert_eq!(once, twice, "{raw}");
        }
    }

    #[test]
    fn re_encoding_can_outgrow_the_limit() {
        // 2,048 two-byte characters are 4 KiB raw but 12 KiB once percent-encoded: the
        // re-encoded form is refused as too long, not silently truncated or accepted.
        let raw = format!("/{}", "é".repeat(2048));
        let once = normalize(&raw).unwrap();
        assert_eq!(normalize(&encode(&once)), Err(PathError::TooLong));
    }

    #[test]
    fn encode_keeps_slashes_and_escapes_the_rest() {
        assert_eq!(encode("/a b/c%d?e#f"), "/a%20b/c%25d%3Fe%23f");
        assert_eq!(encode("/café"), "/caf%C3%A9");
    }
}
