//! Content digests: the names of every blob kpages stores.
//!
//! A digest is written `sha256:<64 lowercase hex>`, the form OCI uses. Deploys, files and
//! function bundles are all referred to by digest, so parsing is strict: upper-case hex, other
//! algorithms and wrong lengths are rejected with a message that says what is accepted.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// The regular expression every digest matches; also used in the CRD and manifest schemas.
pub const DIGEST_PATTERN: &str = "^sha256:[0-9a-f]{64}$";

const PREFIX: &str = "sha256:";

/// A SHA-256 content digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest {input:?}: {reason}; expected sha256:<64 lowercase hex digits>")]
pub struct DigestError {
    input: String,
    reason: &'static str,
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Wraps a finished SHA-256 hash.
    pub fn from_sha256(hash: [u8; 32]) -> Self {
        Self(hash)
    }

    /// The 64 lowercase hex digits, without the `sha256:` prefix (the blob's file name).
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A short form for logs and Kubernetes object names: the first 12 hex digits.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| DigestError {
            input: s.chars().take(80).collect(),
            reason,
        };
        let hex_part = s
            .strip_prefix(PREFIX)
            .ok_or_else(|| err("missing the sha256: prefix"))?;
        if hex_part.len() != 64 {
            return Err(err("the hex part must be exactly 64 digits"));
        }
        if !hex_part
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(err("only lowercase hex digits 0-9 a-f are allowed"));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| err("not hex"))?;
        Ok(Self(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Digest {
    fn schema_name() -> Cow<'static, str> {
        "Digest".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DIGEST_PATTERN,
            "description": "A SHA-256 content digest: sha256:<64 lowercase hex digits>.",
        })
    }
}

/// An incremental digest computation, for streaming readers and writers.
#[derive(Default, Clone)]
pub struct Hasher(Sha256);

impl Hasher {
    /// Starts an empty hash.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digest_of_empty_input_is_the_well_known_value() {
        assert_eq!(Digest::of(b"").to_string(), EMPTY);
        assert_eq!(EMPTY.parse::<Digest>().unwrap(), Digest::of(b""));
    }

    #[test]
    fn streaming_hash_equals_one_shot_hash() {
        let mut h = Hasher::new();
        h.update(b"hello ");
        h.update(b"world");
        assert_eq!(h.finish(), Digest::of(b"hello world"));
    }

    #[test]
    fn malformed_digests_are_rejected_with_the_reason() {
        let cases = [
            (
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "prefix",
            ),
            ("sha256:e3b0", "exactly 64"),
            (
                "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "prefix",
            ),
            (
                "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                "lowercase",
            ),
            (
                "sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "lowercase",
            ),
        ];
        for (input, reason) in cases {
            let err = input.parse::<Digest>().unwrap_err().to_string();
            assert!(err.contains(reason), "{input}: {err}");
            assert!(
                err.contains("expected sha256:<64 lowercase hex digits>"),
                "{err}"
            );
        }
    }

    #[test]
    fn serde_uses_the_prefixed_string_form() {
        let d = Digest::of(b"x");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:00\"").is_err());
    }
}
