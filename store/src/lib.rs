//! Content-addressed blob storage for deploys.
//!
//! Every static file, function bundle and manifest is a blob at `blobs/sha256/<hex>`: written
//! once, never changed, and verified against its digest on every read, so a corrupt or
//! tampered object is an error and never served. Blobs stream in both directions, so a large
//! bundle never sits whole in memory.
//!
//! ```text
//!   BlobStore ── prefix/blobs/sha256/<hex> ──► object_store ─┬─ LocalFileSystem  (file://, default)
//!                                                            ├─ AmazonS3         (s3://, MinIO, R2, Ceph…)
//!                                                            └─ InMemory         (memory://, unit tests)
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use kpages_crds::{Digest, Hasher, Manifest, ManifestError};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod config;

pub use config::{S3Config, S3Credentials, StoreConfig};
/// Request retry settings of network backends, for [`StoreConfig::open_with_retry`].
pub use object_store::{BackoffConfig, RetryConfig};

/// Blobs smaller than this are uploaded in one request; larger ones stream as multipart
/// uploads in parts of this size (S3 requires parts of at least 5 MiB).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// How many existence checks `missing` runs at once.
const CHECK_CONCURRENCY: usize = 32;

/// Largest manifest `get_manifest` reads.
pub const MAX_MANIFEST_BYTES: u64 = 64 * 1024 * 1024;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No blob with this digest is stored.
    #[error("blob {digest} not found in {store}")]
    NotFound {
        /// The digest asked for.
        digest: Digest,
        /// The store, for the message.
        store: String,
    },
    /// The stored bytes do not hash to the digest: the blob is corrupt and was not returned.
    #[error("blob {expected} is corrupt in {store}: its content hashes to {actual}")]
    DigestMismatch {
        /// The digest asked for.
        expected: Digest,
        /// The digest of what was read.
        actual: Digest,
        /// The store, for the message.
        store: String,
    },
    /// The blob is larger than the caller accepts.
    #[error("blob {digest} is {size} bytes, more than the {limit} bytes allowed here")]
    TooLarge {
        /// The digest asked for.
        digest: Digest,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The store URL or settings are wrong.
    #[error("invalid object store configuration: {0}")]
    Config(String),
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The backend failed (network, permissions, …).
    #[error("object store {store}: {source}")]
    Backend {
        /// The store, for the message.
        store: String,
        /// The cause.
        #[source]
        source: object_store::Error,
    },
    /// The blob is not a valid manifest.
    #[error("manifest {digest}: {source}")]
    Manifest {
        /// The manifest's digest.
        digest: Digest,
        /// Why it is invalid.
        #[source]
        source: ManifestError,
    },
}

impl StoreError {
    /// Whether retrying the same call may succeed (network or server trouble), as opposed to
    /// a missing, corrupt or invalid blob.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Backend { .. } | StoreError::Io { .. })
    }
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A stream of a blob's bytes; its last item is an error if the content did not match the
/// digest, so a consumer that reads to the end never mistakes a corrupt blob for a good one.
pub type BlobStream = BoxStream<'static, Result<Bytes>>;

/// Content-addressed storage of deploy blobs. Cheap to clone.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
    prefix: String,
    name: Arc<str>,
}

impl fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobStore")
            .field("store", &self.name)
            .finish()
    }
}

impl fmt::Display for BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl BlobStore {
    /// Opens the store a URL names: `file:///dir` (or a plain path), `s3://bucket/prefix?…`
    /// or `memory://`. See [`StoreConfig::parse`].
    pub fn from_url(url: &str) -> Result<Self> {
        StoreConfig::parse(url)?.open()
    }

    /// A store in a local directory, created if missing.
    pub fn local(dir: impl AsRef<Path>) -> Result<Self> {
        StoreConfig::Local(dir.as_ref().to_path_buf()).open()
    }

    /// A store in memory, for tests.
    pub fn memory() -> Self {
        Self::with_object_store(
            Arc::new(object_store::memory::InMemory::new()),
            "",
            "memory://",
        )
    }

    /// Wraps any `object_store` backend; blobs live under `prefix`.
    pub fn with_object_store(inner: Arc<dyn ObjectStore>, prefix: &str, name: &str) -> Self {
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        Self {
            inner,
            prefix,
            name: name.into(),
        }
    }

    /// Where a blob lives: `<prefix>blobs/sha256/<hex>`.
    pub fn blob_path(&self, digest: &Digest) -> ObjectPath {
        ObjectPath::from(format!("{}blobs/sha256/{}", self.prefix, digest.hex()))
    }

    fn backend(&self, source: object_store::Error) -> StoreError {
        StoreError::Backend {
            store: self.name.to_string(),
            source,
        }
    }

    fn not_found_or_backend(&self, digest: &Digest, source: object_store::Error) -> StoreError {
        match source {
            object_store::Error::NotFound { .. } => StoreError::NotFound {
                digest: *digest,
                store: self.name.to_string(),
            },
            other => self.backend(other),
        }
    }

    /// Whether the blob is stored.
    pub async fn contains(&self, digest: &Digest) -> Result<bool> {
        match self.inner.head(&self.blob_path(digest)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.backend(e)),
        }
    }

    /// The digests among `digests` that are not stored, in their first-seen order, each once.
    /// An upload sends only these.
    pub async fn missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<(usize, Digest)> = digests
            .iter()
            .copied()
            .filter(|d| seen.insert(*d))
            .enumerate()
            .collect();
        let mut missing: Vec<(usize, Digest)> = stream::iter(unique)
            .map(|(i, d)| async move { self.contains(&d).await.map(|found| (i, d, found)) })
            .buffer_unordered(CHECK_CONCURRENCY)
            .try_filter_map(|(i, d, found)| async move { Ok((!found).then_some((i, d))) })
            .try_collect()
            .await?;
        missing.sort_unstable_by_key(|(i, _)| *i);
        Ok(missing.into_iter().map(|(_, d)| d).collect())
    }

    /// Stores `bytes` and returns their digest. Storing a blob that exists is a no-op.
    pub async fn put_bytes(&self, bytes: Bytes) -> Result<Digest> {
        let digest = Digest::of(&bytes);
        self.put_verified(&digest, bytes).await?;
        Ok(digest)
    }

    /// Stores bytes already known to hash to `digest`.
    async fn put_verified(&self, digest: &Digest, bytes: Bytes) -> Result<()> {
        let path = self.blob_path(digest);
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .inner
            .put_opts(&path, PutPayload::from_bytes(bytes.clone()), create)
            .await
        {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            // Some S3-compatible servers lack conditional writes. Blobs are content-addressed,
            // so a plain overwrite can only write the same bytes again.
            Err(object_store::Error::NotImplemented { .. })
            | Err(object_store::Error::NotSupported { .. }) => self
                .inner
                .put(&path, PutPayload::from_bytes(bytes))
                .await
                .map(|_| ())
                .map_err(|e| self.backend(e)),
            Err(e) => Err(self.backend(e)),
        }
    }

    /// Stores a local file, streaming it, and returns its digest. The file is hashed first so
    /// an existing blob is not uploaded again; large files go up as multipart uploads that
    /// become visible only when complete, and are aborted if the file changed meanwhile.
    pub async fn put_file(&self, path: &Path) -> Result<Digest> {
        let io = |source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        let (digest, size) = hash_file(path).await.map_err(io)?;
        if self.contains(&digest).await? {
            return Ok(digest);
        }
        if size < PART_SIZE as u64 {
            let bytes = tokio::fs::read(path).await.map_err(io)?;
            if Digest::of(&bytes) != digest {
                return Err(io(changed_while_reading()));
            }
            self.put_verified(&digest, bytes.into()).await?;
            return Ok(digest);
        }
        let upload = self
            .inner
            .put_multipart(&self.blob_path(&digest))
            .await
            .map_err(|e| self.backend(e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut file = tokio::fs::File::open(path).await.map_err(io)?;
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(io(e));
                }
            };
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            // Bounds memory: at most two parts are in flight.
            if let Err(e) = writer.wait_for_capacity(2).await {
                return Err(self.backend(e));
            }
            writer.write(&buf[..n]);
        }
        if hasher.finish() != digest {
            let _ = writer.abort().await;
            return Err(io(changed_while_reading()));
        }
        writer.finish().await.map_err(|e| self.backend(e))?;
        Ok(digest)
    }

    /// Reads a whole blob, at most `max_len` bytes, verified against its digest.
    pub async fn get_bytes(&self, digest: &Digest, max_len: u64) -> Result<Bytes> {
        let result = self
            .inner
            .get(&self.blob_path(digest))
            .await
            .map_err(|e| self.not_found_or_backend(digest, e))?;
        let size = result.meta.size;
        if size > max_len {
            return Err(StoreError::TooLarge {
                digest: *digest,
                size,
                limit: max_len,
            });
        }
        let bytes = result
            .bytes()
            .await
            .map_err(|e| self.not_found_or_backend(digest, e))?;
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(self.mismatch(digest, actual));
        }
        Ok(bytes)
    }

    fn mismatch(&self, expected: &Digest, actual: Digest) -> StoreError {
        tracing::error!(%expected, %actual, store = %self.name, "corrupt blob refused");
        StoreError::DigestMismatch {
            expected: *expected,
            actual,
            store: self.name.to_string(),
        }
    }

    /// Streams a blob; returns its size and the stream. The digest is checked as the last
    /// chunk passes: on a mismatch the stream ends with [`StoreError::DigestMismatch`] instead
    /// of ending cleanly.
    pub async fn get_stream(&self, digest: &Digest) -> Result<(u64, BlobStream)> {
        let result = self
            .inner
            .get(&self.blob_path(digest))
            .await
            .map_err(|e| self.not_found_or_backend(digest, e))?;
        let size = result.meta.size;
        let this = self.clone();
        let expected = *digest;
        let chunks = result.into_stream();
        let verified = stream::unfold(
            (chunks, Some(Hasher::new())),
            move |(mut chunks, hasher)| {
                let this = this.clone();
                async move {
                    let mut hasher = hasher?;
                    match chunks.next().await {
                        Some(Ok(chunk)) => {
                            hasher.update(&chunk);
                            Some((Ok(chunk), (chunks, Some(hasher))))
                        }
                        Some(Err(e)) => {
                            Some((Err(this.not_found_or_backend(&expected, e)), (chunks, None)))
                        }
                        None => {
                            let actual = hasher.finish();
                            if actual == expected {
                                None
                            } else {
                                Some((Err(this.mismatch(&expected, actual)), (chunks, None)))
                            }
                        }
                    }
                }
            },
        );
        Ok((size, verified.boxed()))
    }

    /// Writes a blob to `dest`, verified: it goes to a temporary file beside `dest` and is
    /// renamed into place only when its digest matches, so `dest` is never partial or corrupt.
    pub async fn download_to(&self, digest: &Digest, dest: &Path) -> Result<()> {
        let io = |source| StoreError::Io {
            path: dest.to_path_buf(),
            source,
        };
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
        let tmp = dir.join(format!(
            ".{}.partial-{}",
            digest.short(),
            std::process::id()
        ));
        let result = async {
            let (_, mut chunks) = self.get_stream(digest).await?;
            let mut file = tokio::fs::File::create(&tmp).await.map_err(io)?;
            while let Some(chunk) = chunks.next().await {
                file.write_all(&chunk?).await.map_err(io)?;
            }
            file.sync_all().await.map_err(io)?;
            tokio::fs::rename(&tmp, dest).await.map_err(io)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    /// Stores a manifest and returns its digest (the deploy's identity).
    pub async fn put_manifest(&self, manifest: &Manifest) -> Result<Digest> {
        self.put_bytes(manifest.to_json().into()).await
    }

    /// Reads and checks a manifest.
    pub async fn get_manifest(&self, digest: &Digest) -> Result<Manifest> {
        let bytes = self.get_bytes(digest, MAX_MANIFEST_BYTES).await?;
        Manifest::from_json(&bytes).map_err(|source| StoreError::Manifest {
            digest: *digest,
            source,
        })
    }

    /// The blobs that `manifests` (earlier deploys) vouch for, read a few at once: each
    /// manifest this store gives back, and every blob it names. A manifest is stored only after
    /// every blob it names and blobs are never deleted, so these need no existence check. A
    /// manifest that cannot be read vouches for nothing (its blobs are then checked like any
    /// other): a failure here costs requests, never correctness.
    pub async fn known_blobs(&self, manifests: &[Digest]) -> KnownBlobs {
        let mut unique: Vec<Digest> = manifests.to_vec();
        unique.sort_unstable();
        unique.dedup();
        let fetched: Vec<(Digest, Result<Manifest>)> = stream::iter(unique)
            .map(|d| async move { (d, self.get_manifest(&d).await) })
            .buffer_unordered(MANIFEST_READ_CONCURRENCY)
            .collect()
            .await;
        let mut known = KnownBlobs::default();
        for (digest, result) in fetched {
            match result {
                Ok(manifest) => known.add(digest, &manifest),
                Err(e) => known.unreadable.push((digest, e)),
            }
        }
        known
    }
}

/// How many manifests [`BlobStore::known_blobs`] reads at once.
const MANIFEST_READ_CONCURRENCY: usize = 4;

/// Blobs known to be stored without asking the store: manifests read back from it and every
/// blob they name (see [`BlobStore::known_blobs`]).
#[derive(Debug, Default)]
pub struct KnownBlobs {
    /// The blobs, the manifests included.
    pub digests: std::collections::HashSet<Digest>,
    /// The manifests read.
    pub manifests: Vec<Digest>,
    /// Manifests that could not be read, and why (not found: a deploy made against another
    /// store, or never uploaded).
    pub unreadable: Vec<(Digest, StoreError)>,
}

impl KnownBlobs {
    /// Adds a manifest read back from the store, and every blob it names.
    pub fn add(&mut self, digest: Digest, manifest: &Manifest) {
        self.digests.insert(digest);
        self.digests.extend(manifest.blobs());
        self.manifests.push(digest);
    }

    /// The digests among `wanted` the store must still be asked about, in order.
    pub fn unknown(&self, wanted: &[Digest]) -> Vec<Digest> {
        wanted
            .iter()
            .copied()
            .filter(|d| !self.digests.contains(d))
            .collect()
    }
}

fn changed_while_reading() -> std::io::Error {
    std::io::Error::other("the file changed while it was being stored; try again")
}

/// Hashes a file by streaming it.
pub async fn hash_file(path: &Path) -> std::io::Result<(Digest, u64)> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 1024 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok((hasher.finish(), size));
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
}
