//! Who the client is: its IP address (from the peer, or from `X-Forwarded-For` when the peer
//! is a trusted proxy), and the W3C trace context passed on to functions.

use std::net::IpAddr;

use ipnet::IpNet;

/// The client's IP. `X-Forwarded-For` is believed only when the peer is a trusted proxy, and
/// then read right to left, skipping further trusted proxies: the first untrusted address is
/// the client. Anything unparsable stops the walk at the last address that was believable.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = canonical(peer);
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(header) = forwarded_for else {
        return peer;
    };
    let mut client = peer;
    for hop in header.rsplit(',') {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = canonical(ip);
        if !is_trusted(&client) {
            break;
        }
    }
    client
}

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`) as plain IPv4, so trust lists and geo see one form.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A `traceparent` for the call to the function: the client's trace id and flags when it
/// sent a valid one, else a new trace; always a new span id.
///
/// Ids come from uuid's thread-local generator (`fast-rng`: rand's `ThreadRng`, a ChaCha
/// CSPRNG seeded from the OS once per thread), not a `getrandom` syscall per id. A new trace
/// id is a v4 UUID's 32 hex digits (122 random bits; W3C asks for random trace ids); the span
/// id folds one UUID's halves together so all 64 bits are random (the version and variant
/// bits sit in different positions of the two halves).
pub fn child_traceparent(incoming: Option<&str>) -> String {
    use std::fmt::Write as _;
    let v = uuid::Uuid::new_v4().as_u128();
    let span = ((v as u64) ^ ((v >> 64) as u64)).max(1); // all-zero is an invalid span id
    let mut out = String::with_capacity(55);
    out.push_str("00-");
    match incoming.and_then(parse_traceparent) {
        Some((trace, flags)) => {
            let _ = write!(out, "{trace}-{span:016x}-{flags}");
        }
        None => {
            let mut buf = uuid::Uuid::encode_buffer();
            let trace = uuid::Uuid::new_v4().simple().encode_lower(&mut buf);
            let _ = write!(out, "{trace}-{span:016x}-01");
        }
    }
    out
}

/// The trace id and flags of a valid version-00 `traceparent`.
fn parse_traceparent(v: &str) -> Option<(&str, &str)> {
    let mut parts = v.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let ok = version == "00"
        && parts.next().is_none()
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0');
    ok.then_some((trace, flags))
}

/// A new request id: 32 lowercase hex digits (a v4 UUID from the thread-local generator).
pub fn request_id() -> String {
    let mut buf = uuid::Uuid::encode_buffer();
    uuid::Uuid::new_v4()
        .simple()
        .encode_lower(&mut buf)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ip_table() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let cases = [
            ("203.0.113.9", Some("1.2.3.4"), "203.0.113.9"),
            ("10.0.0.2", None, "10.0.0.2"),
            ("10.0.0.2", Some("1.2.3.4"), "1.2.3.4"),
            ("10.0.0.2", Some("6.6.6.6, 1.2.3.4"), "1.2.3.4"),
            ("10.0.0.2", Some("6.6.6.6, 1.2.3.4, 10.1.1.1"), "1.2.3.4"),
            ("10.0.0.2", Some("garbage, 1.2.3.4"), "1.2.3.4"),
            ("10.0.0.2", Some("1.2.3.4, garbage"), "10.0.0.2"),
            ("10.0.0.2", Some("10.0.0.3"), "10.0.0.3"),
            ("::1", Some("2001:db8::1"), "2001:db8::1"),
            ("::ffff:10.0.0.2", Some("1.2.3.4"), "1.2.3.4"),
            ("::ffff:203.0.113.9", None, "203.0.113.9"),
        ];
        for (peer, xff, want) in cases {
            assert_eq!(
                client_ip(ip(peer), xff, &trusted),
                ip(want),
                "{peer} {xff:?}"
            );
        }
    }

    #[test]
    fn traceparent_keeps_the_trace_and_makes_a_new_span() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let out = child_traceparent(Some(incoming));
        assert!(
            out.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{out}"
        );
        assert!(out.ends_with("-01"));
        assert_ne!(out, incoming);
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            let out = child_traceparent(Some(bad));
            assert!(!out.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{bad}");
            assert_eq!(parse_traceparent(&out).map(|(t, _)| t.len()), Some(32));
        }
        assert_eq!(request_id().len(), 32);
    }

    #[test]
    fn new_ids_are_well_formed_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let tp = child_traceparent(None);
            assert_eq!(tp.len(), 55, "{tp}");
            let (trace, _) = parse_traceparent(&tp).expect("valid traceparent");
            let span = &tp[36..52];
            assert!(seen.insert(trace.to_string()), "repeated trace id {trace}");
            assert!(seen.insert(span.to_string()), "repeated span id {span}");
            assert!(tp.ends_with("-01"), "{tp}");
            let id = request_id();
            assert_eq!(id.len(), 32);
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            assert!(seen.insert(id.clone()), "repeated request id {id}");
        }
    }
}

/// Roles from a Netlify Identity style JWT (`nf_jwt` cookie): `app_metadata.roles`, only if
/// the token is HS256-signed with `secret` and not expired at `now` (Unix seconds). Anything
/// else yields no roles, so a forged token never satisfies a `Role` condition.
pub fn jwt_roles(token: &str, secret: &[u8], now: i64) -> Vec<String> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: Option<i64>,
        #[serde(default)]
        app_metadata: serde_json::Value,
    }
    let mut validation = Validation::new(Algorithm::HS256);
    // Expiry is checked below against `now`; a token without `exp` never expires, as on
    // Netlify.
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    let Ok(data) = jsonwebtoken::decode::<Claims>(
        token.trim(),
        &DecodingKey::from_secret(secret),
        &validation,
    ) else {
        return vec![];
    };
    if data.claims.exp.is_some_and(|exp| exp <= now) {
        return vec![];
    }
    data.claims
        .app_metadata
        .get("roles")
        .and_then(|r| r.as_array())
        .map(|roles| {
            roles
                .iter()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod jwt_tests {
    use super::*;
    use base64::Engine as _;
    use hmac::{KeyInit, Mac};

    fn token(secret: &[u8], alg: &str, claims: serde_json::Value) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let h = b64.encode(serde_json::json!({"alg": alg, "typ": "JWT"}).to_string());
        let p = b64.encode(claims.to_string());
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(format!("{h}.{p}").as_bytes());
        let s = b64.encode(mac.finalize().into_bytes());
        format!("{h}.{p}.{s}")
    }

    #[test]
    fn only_valid_unexpired_hs256_tokens_give_roles() {
        let claims =
            serde_json::json!({"exp": 2000, "app_metadata": {"roles": ["admin", "editor"]}});
        let good = token(b"k", "HS256", claims.clone());
        assert_eq!(jwt_roles(&good, b"k", 1000), vec!["admin", "editor"]);
        assert!(jwt_roles(&good, b"other", 1000).is_empty());
        assert!(jwt_roles(&good, b"k", 2000).is_empty());
        assert!(jwt_roles(&token(b"k", "none", claims), b"k", 1000).is_empty());
        assert!(jwt_roles("a.b", b"k", 0).is_empty());
        let tampered = good.replacen('.', ".x", 1);
        assert!(jwt_roles(&tampered, b"k", 1000).is_empty());
    }
}
