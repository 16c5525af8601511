//! The job message on the wire (pure): a versioned JSON envelope carrying everything a worker
//! needs to invoke the function, with the body inline (base64) when small or as a reference
//! to a content-addressed blob in the router's object store when not. Also the subject tokens
//! and timestamps the queue uses.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use kpages_crds::Digest;
use serde::{Deserialize, Serialize};

use crate::jobs::queue::{CallState, CallStatus, Job};

/// The envelope version this router writes and reads.
pub const VERSION: u32 = 1;

/// A queued job as published to the jobs stream (and, with [`Envelope::dead`] set, to the
/// dead-letter stream).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// [`VERSION`].
    pub v: u32,
    /// The call id (also the message's `Nats-Msg-Id` and the status key).
    pub call_id: String,
    /// The deploy the job was accepted for.
    pub deploy_id: String,
    /// The site.
    pub site: String,
    /// The function.
    pub function: String,
    /// `x-kpages-params` JSON.
    pub params: String,
    /// `background` or `schedule`.
    pub invocation: String,
    /// Request method.
    pub method: String,
    /// Public path and query.
    pub path: String,
    /// Request headers (control headers already set).
    pub headers: Vec<(String, HeaderText)>,
    /// The body, inline or by reference.
    pub body: BodyRef,
    /// When the router accepted the job (Unix milliseconds).
    pub accepted_at_ms: i64,
    /// Where the outcome is POSTed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// Set on dead letters: why and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead: Option<DeadLetter>,
}

/// A header value: text when it is, base64 otherwise (headers may carry any bytes but tab
/// and control characters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HeaderText {
    /// A visible-ASCII value.
    Text(String),
    /// Any other value.
    Bytes {
        /// The value, base64.
        b64: String,
    },
}

/// Where the body is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum BodyRef {
    /// In the message, base64.
    Inline {
        /// The body, base64.
        b64: String,
    },
    /// A blob in the router's object store (put before the message was published).
    Blob {
        /// `sha256:<hex>`.
        digest: String,
        /// Its size in bytes.
        size: u64,
    },
}

/// Why a job is in the dead letters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// Attempts made.
    pub attempts: u32,
    /// The last failure.
    pub last_error: String,
    /// When it was dead-lettered (Unix milliseconds).
    pub dead_at_ms: i64,
}

/// The envelope cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Not JSON of the expected shape.
    #[error("not a job envelope: {0}")]
    Json(#[from] serde_json::Error),
    /// Written by a newer router.
    #[error("job envelope version {0} is not supported (this router reads {VERSION})")]
    Version(u32),
    /// A field does not parse.
    #[error("job envelope field {0}: {1}")]
    Field(&'static str, String),
}

impl Envelope {
    /// The envelope of `job`, its body given as `body`.
    pub fn new(job: &Job, body: BodyRef, accepted_at_ms: i64) -> Self {
        let headers = job
            .headers
            .iter()
            .map(|(name, value)| {
                let text = match value.to_str() {
                    Ok(s) => HeaderText::Text(s.to_string()),
                    Err(_) => HeaderText::Bytes {
                        b64: BASE64.encode(value.as_bytes()),
                    },
                };
                (name.as_str().to_string(), text)
            })
            .collect();
        Self {
            v: VERSION,
            call_id: job.call_id.clone(),
            deploy_id: job.deploy_id.clone(),
            site: job.site.clone(),
            function: job.function.clone(),
            params: job.params.clone(),
            invocation: job.invocation.to_string(),
            method: job.method.as_str().to_string(),
            path: job.path_and_query.clone(),
            headers,
            body,
            accepted_at_ms,
            callback_url: job.callback_url.clone(),
            dead: None,
        }
    }

    /// The body inline.
    pub fn inline(body: &[u8]) -> BodyRef {
        BodyRef::Inline {
            b64: BASE64.encode(body),
        }
    }

    /// JSON bytes.
    pub fn encode(&self) -> Bytes {
        // Serialising plain data to a Vec cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads an envelope.
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let env: Self = serde_json::from_slice(bytes)?;
        if env.v != VERSION {
            return Err(EnvelopeError::Version(env.v));
        }
        Ok(env)
    }

    /// The blob the body lives in, if it is not inline.
    pub fn body_blob(&self) -> Result<Option<(Digest, u64)>, EnvelopeError> {
        match &self.body {
            BodyRef::Inline { .. } => Ok(None),
            BodyRef::Blob { digest, size } => digest
                .parse::<Digest>()
                .map(|d| Some((d, *size)))
                .map_err(|e| EnvelopeError::Field("body.digest", e.to_string())),
        }
    }

    /// The job to run, with its body (read from the blob by the caller when not inline).
    pub fn to_job(&self, blob_body: Option<Bytes>) -> Result<Job, EnvelopeError> {
        let body = match (&self.body, blob_body) {
            (BodyRef::Inline { b64 }, _) => Bytes::from(
                BASE64
                    .decode(b64)
                    .map_err(|e| EnvelopeError::Field("body.b64", e.to_string()))?,
            ),
            (BodyRef::Blob { .. }, Some(b)) => b,
            (BodyRef::Blob { .. }, None) => {
                return Err(EnvelopeError::Field("body", "blob not read".into()));
            }
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| EnvelopeError::Field("headers", e.to_string()))?;
            let value = match value {
                HeaderText::Text(s) => HeaderValue::from_str(s),
                HeaderText::Bytes { b64 } => {
                    let raw = BASE64
                        .decode(b64)
                        .map_err(|e| EnvelopeError::Field("headers", e.to_string()))?;
                    HeaderValue::from_bytes(&raw)
                }
            }
            .map_err(|e| EnvelopeError::Field("headers", e.to_string()))?;
            headers.append(name, value);
        }
        Ok(Job {
            call_id: self.call_id.clone(),
            deploy_id: self.deploy_id.clone(),
            site: self.site.clone(),
            function: self.function.clone(),
            params: self.params.clone(),
            invocation: if self.invocation == "schedule" {
                "schedule"
            } else {
                "background"
            },
            method: Method::from_bytes(self.method.as_bytes())
                .map_err(|e| EnvelopeError::Field("method", e.to_string()))?,
            path_and_query: self.path.clone(),
            headers,
            body,
            attempt: 0,
            idempotency_key: None,
            callback_url: self.callback_url.clone(),
        })
    }

    /// A fresh status record for this call.
    pub fn status(&self, state: CallState, max_attempts: u32, now_ms: i64) -> CallStatus {
        CallStatus {
            call_id: self.call_id.clone(),
            site: self.site.clone(),
            function: self.function.clone(),
            deploy_id: self.deploy_id.clone(),
            state,
            attempts: 0,
            max_attempts,
            accepted_at: rfc3339_ms(self.accepted_at_ms),
            started_at: None,
            finished_at: None,
            next_attempt_at: None,
            last_error: None,
            redrives: 0,
            updated_at: rfc3339_ms(now_ms),
        }
    }
}

/// A site or function name as one subject token: characters NATS gives meaning to (`.`, `*`,
/// `>`, whitespace) and anything else outside `[A-Za-z0-9_-]` become `_`. Two names may share
/// a token; the envelope carries the real names, subjects only group and filter.
pub fn token(name: &str) -> String {
    let t: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if t.is_empty() { "_".into() } else { t }
}

/// Whether `id` can be a key of the status bucket (call ids are hex; anything else is not one).
pub fn valid_call_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    let secs = kpages_crds::schedule::iso8601(ms.div_euclid(1000));
    // iso8601 ends in ".000Z"; keep "YYYY-MM-DDTHH:MM:SS." and put the milliseconds in.
    format!("{}{:03}Z", &secs[..20], ms.rem_euclid(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.append("x-multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("b"));
        headers.insert("x-bin", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        Job {
            call_id: "abc123".into(),
            deploy_id: "sha256:00".into(),
            site: "blog".into(),
            function: "send-background".into(),
            params: r#"{"id":"1"}"#.into(),
            invocation: "background",
            method: Method::PUT,
            path_and_query: "/api/x?y=1".into(),
            headers,
            body: Bytes::from_static(b"\x00\x01body"),
            attempt: 0,
            idempotency_key: Some("k".into()),
            callback_url: Some("http://cb.test/done".into()),
        }
    }

    #[test]
    fn an_inline_job_round_trips() {
        let j = job();
        let env = Envelope::new(&j, Envelope::inline(&j.body), 1_700_000_000_123);
        let back = Envelope::decode(&env.encode()).unwrap();
        assert_eq!(back, env);
        let again = back.to_job(None).unwrap();
        assert_eq!(again.body, j.body);
        assert_eq!(again.headers, j.headers);
        assert_eq!(again.method, Method::PUT);
        assert_eq!(again.path_and_query, j.path_and_query);
        assert_eq!(again.callback_url, j.callback_url);
        assert_eq!(again.invocation, "background");
    }

    #[test]
    fn a_blob_body_needs_the_blob() {
        let j = job();
        let digest = Digest::of(&j.body);
        let env = Envelope::new(
            &j,
            BodyRef::Blob {
                digest: digest.to_string(),
                size: j.body.len() as u64,
            },
            0,
        );
        assert_eq!(env.body_blob().unwrap(), Some((digest, 6)));
        assert!(env.to_job(None).is_err());
        assert_eq!(env.to_job(Some(j.body.clone())).unwrap().body, j.body);
    }

    #[test]
    fn other_versions_and_garbage_are_refused() {
        let j = job();
        let mut env = Envelope::new(&j, Envelope::inline(b""), 0);
        env.v = 2;
        assert!(matches!(
            Envelope::decode(&env.encode()),
            Err(EnvelopeError::Version(2))
        ));
        assert!(Envelope::decode(b"{").is_err());
    }

    #[test]
    fn tokens_and_times() {
        for (name, want) in [
            ("blog", "blog"),
            ("my.site", "my_site"),
            ("a b*>", "a_b__"),
            ("", "_"),
            ("send-email_2", "send-email_2"),
        ] {
            assert_eq!(token(name), want, "{name}");
        }
        assert_eq!(rfc3339_ms(1_715_769_030_042), "2024-05-15T10:30:30.042Z");
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert!(valid_call_id("0123abcdef"));
        assert!(!valid_call_id("a.b"));
        assert!(!valid_call_id(""));
    }
}
