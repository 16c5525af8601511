//! Static files from object storage through an in-memory cache bounded in bytes.
//!
//! Blobs are immutable and named by digest, so the digest is the ETag, a cached copy never
//! goes stale, and compressed variants are cached next to the original under the same
//! digest. Files too large for the cache stream straight from storage (verified as they go).

use std::io::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use kpages_crds::Digest;
use kpages_crds::manifest::StaticFile;
use kpages_routing::rules::RequestFacts;
use kpages_store::{BlobStore, StoreError};

use crate::body::{self, Body, json_status};

use crate::observe::metrics::Metrics;
use crate::table::Deploy;

/// Default `Cache-Control` of static files: browsers revalidate (cheap, thanks to the
/// ETag), so a new deploy shows at once; Netlify's default too.
pub const DEFAULT_CACHE_CONTROL: &str = "public, max-age=0, must-revalidate";

/// Smallest file worth compressing.
const MIN_COMPRESS_BYTES: usize = 256;

/// A content encoding the router serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// As stored.
    Identity,
    /// gzip.
    Gzip,
    /// Brotli.
    Brotli,
}

impl Encoding {
    fn token(self) -> Option<&'static str> {
        match self {
            Self::Identity => None,
            Self::Gzip => Some("gzip"),
            Self::Brotli => Some("br"),
        }
    }

    fn etag(self, digest: &Digest) -> String {
        match self {
            Self::Identity => format!("\"{}\"", digest.hex()),
            Self::Gzip => format!("\"{}-gzip\"", digest.hex()),
            Self::Brotli => format!("\"{}-br\"", digest.hex()),
        }
    }

    /// [`Self::etag`] as a header value, built in a stack buffer. Cached files keep theirs
    /// (see [`Blob`]), so this runs once per cached file and encoding, and per request only
    /// for 304s and files streamed past the cache.
    fn etag_value(self, digest: &Digest) -> HeaderValue {
        let mut buf = [0u8; 72];
        buf[0] = b'"';
        let mut n = 1;
        // 32 bytes always fit 64 hex digits.
        if hex::encode_to_slice(digest.as_bytes(), &mut buf[1..65]).is_ok() {
            n = 65;
        }
        let suffix: &[u8] = match self {
            Self::Identity => b"\"",
            Self::Gzip => b"-gzip\"",
            Self::Brotli => b"-br\"",
        };
        buf[n..n + suffix.len()].copy_from_slice(suffix);
        n += suffix.len();
        HeaderValue::from_bytes(&buf[..n]).unwrap_or_else(|_| HeaderValue::from_static("\"\""))
    }
}

/// The best encoding the client accepts: brotli, then gzip, then identity (q=0 excludes).
pub fn negotiate(accept_encoding: Option<&str>) -> Encoding {
    let Some(header) = accept_encoding else {
        return Encoding::Identity;
    };
    let mut br = false;
    let mut gzip = false;
    for part in header.split(',') {
        let mut it = part.split(';');
        let token = it.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = it
            .find_map(|p| p.trim().strip_prefix("q="))
            .and_then(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if q <= 0.0 {
            continue;
        }
        match token.as_str() {
            "br" => br = true,
            "gzip" | "x-gzip" => gzip = true,
            "*" => {
                br = true;
                gzip = true;
            }
            _ => {}
        }
    }
    if br {
        Encoding::Brotli
    } else if gzip {
        Encoding::Gzip
    } else {
        Encoding::Identity
    }
}

/// Whether a media type compresses well.
pub fn compressible(content_type: &str) -> bool {
    let t = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    t.starts_with("text/")
        || t.contains("json")
        || t.contains("javascript")
        || t.contains("xml")
        || matches!(
            t.as_str(),
            "application/wasm" | "font/ttf" | "font/otf" | "application/vnd.ms-fontobject"
        )
}

/// A byte range request's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No (usable) range: send everything.
    Full,
    /// Send `start..=end`.
    Partial(u64, u64),
    /// The range lies outside the file: 416.
    Unsatisfiable,
}

/// Parses a single-range `Range` header against a file of `len` bytes. Multiple ranges and
/// other units are answered in full, which RFC 9110 allows.
pub fn parse_range(header: &str, len: u64) -> RangeRequest {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.is_empty(), b.is_empty()) {
        (true, true) => return RangeRequest::Full,
        (true, false) => match b.parse::<u64>() {
            Ok(0) => return RangeRequest::Unsatisfiable,
            Ok(n) => Some((len.saturating_sub(n), len.saturating_sub(1))),
            Err(_) => None,
        },
        (false, true) => a.parse::<u64>().ok().map(|s| (s, len.saturating_sub(1))),
        (false, false) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(s), Ok(e)) if s <= e => Some((s, e.min(len.saturating_sub(1)))),
            (Ok(_), Ok(_)) => return RangeRequest::Full,
            _ => None,
        },
    };
    match parsed {
        None => RangeRequest::Full,
        Some((s, _)) if len == 0 || s >= len => RangeRequest::Unsatisfiable,
        Some((s, e)) => RangeRequest::Partial(s, e),
    }
}

/// Whether `If-None-Match` names one of `etags` (weak comparison, `*` matches anything).
pub fn none_match(if_none_match: &str, etags: &[String]) -> bool {
    if_none_match.split(',').any(|t| {
        let t = t.trim();
        t == "*" || etags.iter().any(|e| t.trim_start_matches("W/") == e)
    })
}

/// Why a static file could not be served.
#[derive(Debug, thiserror::Error)]
pub enum StaticError {
    /// Storage failed or holds a corrupt blob.
    #[error("reading static file {digest} from storage: {source}")]
    Store {
        /// The blob.
        digest: Digest,
        /// The cause.
        #[source]
        source: Arc<StoreError>,
    },
}

/// A cached file (or compressed variant) with its `ETag` header value, built once when it
/// enters the cache rather than formatted per response.
#[derive(Clone)]
struct Blob {
    bytes: Bytes,
    etag: HeaderValue,
}

impl Blob {
    fn new(bytes: Bytes, digest: &Digest, encoding: Encoding) -> Self {
        Self {
            bytes,
            etag: encoding.etag_value(digest),
        }
    }
}

#[derive(Clone)]
struct ByteWeight;

impl quick_cache::Weighter<(Digest, Encoding), Blob> for ByteWeight {
    fn weight(&self, _: &(Digest, Encoding), v: &Blob) -> u64 {
        // Count the entry's bookkeeping (and ETag) too, so empty files are not free.
        v.bytes.len() as u64 + 64 + v.etag.len() as u64
    }
}

/// Serves static files.
pub struct StaticFiles {
    store: BlobStore,
    cache: quick_cache::sync::Cache<(Digest, Encoding), Blob, ByteWeight>,
    max_cached_file: u64,
    metrics: Arc<Metrics>,
}

/// What the pipeline knows about a static answer.
pub struct StaticRequest<'a> {
    /// The file.
    pub file: &'a StaticFile,
    /// 200, a rule's custom status, or 404 for the not-found page.
    pub status: StatusCode,
    /// Request method.
    pub method: &'a Method,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// `Cache-Control` from a cache rule, instead of the default.
    pub cache_control: Option<String>,
}

impl StaticFiles {
    /// A server reading `store`, caching up to `cache_bytes` bytes; files larger than
    /// `max_cached_file` stream without caching.
    pub fn new(
        store: BlobStore,
        cache_bytes: u64,
        max_cached_file: u64,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            cache: quick_cache::sync::Cache::with_weighter(4096, cache_bytes.max(1), ByteWeight),
            max_cached_file: max_cached_file.min(cache_bytes),
            metrics,
        }
    }

    async fn cached(&self, digest: Digest, max: u64) -> Result<Blob, StaticError> {
        let key = (digest, Encoding::Identity);
        if let Some(b) = self.cache.get(&key) {
            self.metrics.cache_lookup(true);
            return Ok(b);
        }
        self.metrics.cache_lookup(false);
        self.cache
            .get_or_insert_async(&key, async {
                self.store
                    .get_bytes(&digest, max)
                    .await
                    .map(|b| Blob::new(b, &digest, Encoding::Identity))
                    .map_err(|e| StaticError::Store {
                        digest,
                        source: Arc::new(e),
                    })
            })
            .await
    }

    /// The compressed variant, compressed and cached on first use; `None` if compression
    /// failed.
    async fn variant(&self, digest: Digest, encoding: Encoding, identity: Bytes) -> Option<Blob> {
        let key = (digest, encoding);
        if let Some(b) = self.cache.get(&key) {
            return Some(b);
        }
        let compressed = tokio::task::spawn_blocking(move || compress(&identity, encoding))
            .await
            .ok()
            .flatten()?;
        let blob = Blob::new(compressed, &digest, encoding);
        self.cache.insert(key, blob.clone());
        Some(blob)
    }

    /// Answers a request for a static file.
    pub async fn serve(&self, req: StaticRequest<'_>) -> Result<Response<Body>, StaticError> {
        let file = req.file;
        let digest = file.digest;
        let is_head = req.method == Method::HEAD;
        let cacheable_status = req.status == StatusCode::OK;
        let can_compress = compressible(&file.content_type)
            && file.size as usize >= MIN_COMPRESS_BYTES
            && file.size <= self.max_cached_file;
        let header = |name: header::HeaderName| req.headers.get(name).and_then(|v| v.to_str().ok());
        let range = header(header::RANGE).filter(|_| cacheable_status && can_range(req.method));
        let encoding = if can_compress && range.is_none() {
            negotiate(header(header::ACCEPT_ENCODING))
        } else {
            Encoding::Identity
        };
        // Headers are set on the map directly with constant names and, where they are fixed,
        // static values: no builder, no per-response parsing of names.
        let mut headers = HeaderMap::with_capacity(8);
        if let Ok(v) = HeaderValue::from_str(&file.content_type) {
            headers.insert(header::CONTENT_TYPE, v);
        }
        let cache_control = match req.cache_control.as_deref() {
            None => Ok(HeaderValue::from_static(DEFAULT_CACHE_CONTROL)),
            Some(cc) => HeaderValue::from_str(cc),
        };
        if let Ok(v) = cache_control {
            headers.insert(header::CACHE_CONTROL, v);
        }
        if cacheable_status {
            headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        }
        if can_compress {
            headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        if cacheable_status && let Some(inm) = header(header::IF_NONE_MATCH) {
            let all =
                [Encoding::Identity, Encoding::Gzip, Encoding::Brotli].map(|e| e.etag(&digest));
            if none_match(inm, &all) {
                headers.insert(header::ETAG, encoding.etag_value(&digest));
                return Ok(respond(StatusCode::NOT_MODIFIED, headers, body::empty()));
            }
        }
        if file.size > self.max_cached_file {
            let (size, stream) =
                self.store
                    .get_stream(&digest)
                    .await
                    .map_err(|e| StaticError::Store {
                        digest,
                        source: Arc::new(e),
                    })?;
            if cacheable_status {
                headers.insert(header::ETAG, encoding.etag_value(&digest));
            }
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            if is_head {
                return Ok(respond(req.status, headers, body::empty()));
            }
            let frames = futures::StreamExt::map(stream, blob_frame);
            return Ok(respond(
                req.status,
                headers,
                body::boxed_dyn(http_body_util::StreamBody::new(frames)),
            ));
        }
        let identity = self.cached(digest, self.max_cached_file).await?;
        let len = identity.bytes.len() as u64;
        if let Some(range) = range {
            // A range is only served in identity encoding, so the identity ETag is the one.
            if cacheable_status {
                headers.insert(header::ETAG, identity.etag.clone());
            }
            let if_range_ok = header(header::IF_RANGE)
                .is_none_or(|v| v.trim().as_bytes() == identity.etag.as_bytes());
            if if_range_ok {
                match parse_range(range, len) {
                    RangeRequest::Partial(s, e) => {
                        let part = identity.bytes.slice(s as usize..=e as usize);
                        headers.insert(
                            header::CONTENT_RANGE,
                            content_range(&format!("bytes {s}-{e}/{len}")),
                        );
                        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(part.len()));
                        let body = if is_head {
                            body::empty()
                        } else {
                            body::full(part)
                        };
                        return Ok(respond(StatusCode::PARTIAL_CONTENT, headers, body));
                    }
                    RangeRequest::Unsatisfiable => {
                        headers.insert(
                            header::CONTENT_RANGE,
                            content_range(&format!("bytes */{len}")),
                        );
                        return Ok(respond(
                            StatusCode::RANGE_NOT_SATISFIABLE,
                            headers,
                            body::empty(),
                        ));
                    }
                    RangeRequest::Full => {}
                }
            }
        }
        let (payload, encoding) = match encoding {
            Encoding::Identity => (identity, Encoding::Identity),
            e => match self.variant(digest, e, identity.bytes.clone()).await {
                Some(c) => (c, e),
                None => (identity, Encoding::Identity),
            },
        };
        if cacheable_status {
            headers.insert(header::ETAG, payload.etag);
        }
        headers.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(payload.bytes.len()),
        );
        if let Some(token) = encoding.token() {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(token));
        }
        let body = if is_head {
            body::empty()
        } else {
            body::full(payload.bytes)
        };
        Ok(respond(req.status, headers, body))
    }
}

fn content_range(v: &str) -> HeaderValue {
    // Digits, spaces, '-', '/' and '*' only: always a valid value.
    HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static("bytes */0"))
}

fn blob_frame(
    chunk: Result<Bytes, StoreError>,
) -> Result<hyper::body::Frame<Bytes>, body::BoxError> {
    match chunk {
        Ok(b) => Ok(hyper::body::Frame::data(b)),
        Err(e) => Err(Box::new(e)),
    }
}

fn can_range(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

fn respond(status: StatusCode, headers: HeaderMap, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// Compresses for an encoding; `None` for identity or if the encoder failed.
fn compress(bytes: &[u8], encoding: Encoding) -> Option<Bytes> {
    match encoding {
        Encoding::Identity => None,
        Encoding::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(bytes).ok()?;
            enc.finish().ok().map(Bytes::from)
        }
        Encoding::Brotli => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 9, 22);
                w.write_all(bytes).ok()?;
                w.flush().ok()?;
            }
            Some(Bytes::from(out))
        }
    }
}

/// The `Cache-Control` value of a cache rule's TTL.
pub fn cache_control_for_ttl(ttl: u64) -> String {
    format!("public, max-age={ttl}")
}

/// Static answers of the pipeline.
impl super::Backends {
    pub(crate) async fn serve_static(
        &self,
        deploy: &Deploy,
        facts: &RequestFacts,
        method: &Method,
        headers: &HeaderMap,
        file: &str,
        status: u16,
    ) -> Result<Response<Body>, StaticError> {
        let Some(entry) = deploy.routes.manifest.files.get(file) else {
            return Ok(json_status(StatusCode::NOT_FOUND, "not found", ""));
        };
        if status == 200 && method != Method::GET && method != Method::HEAD {
            let mut resp = Response::new(body::full("method not allowed\n"));
            *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return Ok(resp);
        }
        let cache_control = deploy
            .routes
            .cache
            .ttl_for(&facts.host, &facts.path)
            .map(cache_control_for_ttl);
        let mut resp = self
            .statics
            .serve(StaticRequest {
                file: entry,
                status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                method,
                headers,
                cache_control,
            })
            .await?;
        decorate(deploy, facts, resp.headers_mut());
        Ok(resp)
    }
}

/// Adds the header rules that match the request (static answers only, as on Netlify).
pub(crate) fn decorate(deploy: &Deploy, facts: &RequestFacts, headers: &mut HeaderMap) {
    for (name, value) in deploy.routes.headers.headers_for(&facts.host, &facts.path) {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(n, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_table() {
        let cases = [
            (None, Encoding::Identity),
            (Some(""), Encoding::Identity),
            (Some("gzip"), Encoding::Gzip),
            (Some("gzip, deflate, br"), Encoding::Brotli),
            (Some("br;q=0, gzip"), Encoding::Gzip),
            (Some("BR"), Encoding::Brotli),
            (Some("identity"), Encoding::Identity),
            (Some("*"), Encoding::Brotli),
            (Some("gzip;q=0"), Encoding::Identity),
        ];
        for (h, want) in cases {
            assert_eq!(negotiate(h), want, "{h:?}");
        }
    }

    #[test]
    fn range_table() {
        use RangeRequest::*;
        let cases = [
            ("bytes=0-9", 100, Partial(0, 9)),
            ("bytes=90-", 100, Partial(90, 99)),
            ("bytes=-10", 100, Partial(90, 99)),
            ("bytes=-200", 100, Partial(0, 99)),
            ("bytes=50-500", 100, Partial(50, 99)),
            ("bytes=100-", 100, Unsatisfiable),
            ("bytes=-0", 100, Unsatisfiable),
            ("bytes=0-0", 0, Unsatisfiable),
            ("bytes=9-1", 100, Full),
            ("bytes=0-1,5-6", 100, Full),
            ("items=0-1", 100, Full),
            ("bytes=x-1", 100, Full),
            ("bytes=-", 100, Full),
        ];
        for (h, len, want) in cases {
            assert_eq!(parse_range(h, len), want, "{h} of {len}");
        }
    }

    #[test]
    fn etag_matching() {
        let tags = vec!["\"abc\"".to_string(), "\"abc-br\"".to_string()];
        assert!(none_match("\"abc\"", &tags));
        assert!(none_match("W/\"abc-br\"", &tags));
        assert!(none_match("\"x\", \"abc\"", &tags));
        assert!(none_match("*", &tags));
        assert!(!none_match("\"abcd\"", &tags));
    }

    #[test]
    fn compressible_types() {
        for t in [
            "text/html; charset=utf-8",
            "application/json",
            "text/javascript",
            "image/svg+xml",
        ] {
            assert!(compressible(t), "{t}");
        }
        for t in ["image/png", "application/octet-stream", "video/mp4"] {
            assert!(!compressible(t), "{t}");
        }
    }

    #[test]
    fn compression_round_trips() {
        use std::io::Read as _;
        let text = "hello world ".repeat(100);
        let gz = compress(text.as_bytes(), Encoding::Gzip).unwrap();
        let mut out = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, text);
        let br = compress(text.as_bytes(), Encoding::Brotli).unwrap();
        let mut out = String::new();
        brotli::Decompressor::new(&br[..], 4096)
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, text);
        assert!(br.len() < text.len());
    }
}
