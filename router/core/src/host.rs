//! Host names as the router compares them: the `Host` header (or `:authority`) without its
//! port, without a trailing dot, in lower case.

/// `host` without a `:port` suffix; an IPv6 literal (`[::1]:8080`) loses its brackets too.
pub fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// The form hosts are looked up in: no port, no trailing dot, lower case.
pub fn normalize(host: &str) -> String {
    strip_port(host).trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_compare_without_port_dot_or_case() {
        for (raw, want) in [
            ("Example.COM", "example.com"),
            ("example.com:8080", "example.com"),
            ("example.com.", "example.com"),
            ("example.com.:443", "example.com"),
            ("[::1]:8788", "::1"),
            ("[::1]", "::1"),
            ("127.0.0.1:80", "127.0.0.1"),
            ("weird:port", "weird:port"),
        ] {
            assert_eq!(normalize(raw), want, "{raw}");
        }
    }
}
