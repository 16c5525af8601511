//! Uploading a build to object storage: ask which blobs are missing, send only those (several
//! at once, each retried with backoff), and the manifest last, so a manifest in storage always
//! means every blob it names is there too.
//!
//! ```text
//!  build out/blobs/sha256/<hex> ──► minus blobs named by earlier deploys' manifests (known stored)
//!    ──► missing(the rest: HEADs, 32 at once) ──► put_file × N (bounded) ──► put_file(manifest) last
//! ```
//!
//! A manifest is stored only after every blob it names, and blobs are never deleted (content
//! addressed, written once), so a manifest the store can give back vouches for all its blobs:
//! a redeploy that changed one file of 10,000 asks about one blob and one manifest, not 10,001.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use kpages_crds::Digest;
use kpages_store::{BackoffConfig, BlobStore, RetryConfig, StoreError};

/// How uploads run.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Blobs uploaded at once.
    pub concurrency: usize,
    /// Tries per blob (and for the "which blobs are missing" check) before giving up.
    pub attempts: u32,
    /// Wait before the second try; doubles with each further try.
    pub first_backoff: Duration,
    /// Draw a progress line on stderr.
    pub progress: bool,
}

impl Default for UploadOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            attempts: 4,
            first_backoff: Duration::from_millis(500),
            progress: std::io::stderr().is_terminal(),
        }
    }
}

/// The request-level retries of the store client. Short, because [`upload`] retries whole
/// blobs itself (which also restarts a multipart upload that failed half-way), and an
/// unreachable store should be reported in seconds, not after `object_store`'s default
/// three minutes.
pub fn store_retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
        },
        max_retries: 2,
        retry_timeout: Duration::from_secs(30),
    }
}

/// Blobs known stored without asking: see [`BlobStore::known_blobs`].
pub use kpages_store::KnownBlobs;

/// Reads the manifests of earlier deploys (see [`BlobStore::known_blobs`]) and notes on
/// stderr those that failed for another reason than not being in this store.
pub async fn known_blobs(store: &BlobStore, manifests: &[Digest]) -> KnownBlobs {
    let known = store.known_blobs(manifests).await;
    for (digest, e) in &known.unreadable {
        if !matches!(e, StoreError::NotFound { .. }) {
            eprintln!(
                "note: could not read manifest {digest} of an earlier deploy ({e}); checking its blobs instead"
            );
        }
    }
    known
}

/// What an upload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadReport {
    /// Blobs the deploy needs, the manifest included.
    pub blobs: usize,
    /// Blobs the store was asked about (one HEAD each); the others were known stored.
    pub checked: usize,
    /// Blobs sent (the manifest included when it was sent).
    pub uploaded: usize,
    /// Bytes sent.
    pub uploaded_bytes: u64,
    /// The digests sent, manifest last.
    pub sent: Vec<Digest>,
}

/// Why an upload failed. Nothing that names the deploy was stored.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The store could not be asked which blobs it has.
    #[error(
        "object store {store} is unreachable or refused the request after {attempts} tries: {source}; check --store (or KPAGES_STORE_URL) and the AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY credentials"
    )]
    Unreachable {
        /// The store.
        store: String,
        /// Tries made.
        attempts: u32,
        /// The last error.
        #[source]
        source: StoreError,
    },
    /// The build output lacks a blob its manifest names.
    #[error("the build output is missing blob {digest} ({path}); run the deploy again")]
    MissingLocal {
        /// The blob.
        digest: Digest,
        /// Where it should be.
        path: PathBuf,
    },
    /// A blob could not be stored.
    #[error(
        "uploading {path} ({digest}) to {store} failed after {attempts} tries: {source}; nothing was deployed"
    )]
    Blob {
        /// The blob.
        digest: Digest,
        /// Its file.
        path: PathBuf,
        /// The store.
        store: String,
        /// Tries made.
        attempts: u32,
        /// The last error.
        #[source]
        source: StoreError,
    },
    /// A file hashed differently from its name (changed under the build).
    #[error(
        "{path} does not hash to its name {expected} (it is {actual}); rebuild and deploy again"
    )]
    Changed {
        /// The file.
        path: PathBuf,
        /// Its name.
        expected: Digest,
        /// What it hashes to.
        actual: Digest,
    },
}

/// Uploads what `store` lacks of `blobs` (read from `blob_dir/<hex>`), then the manifest.
/// Blobs in `known` are taken as stored without asking.
pub async fn upload(
    store: &BlobStore,
    blob_dir: &Path,
    blobs: &[Digest],
    manifest: Digest,
    known: &KnownBlobs,
    options: &UploadOptions,
) -> Result<UploadReport, UploadError> {
    let mut wanted: Vec<Digest> = blobs.iter().copied().filter(|d| *d != manifest).collect();
    wanted.sort_unstable();
    wanted.dedup();
    wanted.push(manifest);
    let check = known.unknown(&wanted);
    let missing =
        retry(options, || store.missing(&check))
            .await
            .map_err(|(source, attempts)| UploadError::Unreachable {
                store: store.to_string(),
                attempts,
                source,
            })?;
    let manifest_missing = missing.contains(&manifest);
    let mut todo = Vec::with_capacity(missing.len());
    for digest in missing.into_iter().filter(|d| *d != manifest) {
        let path = blob_dir.join(digest.hex());
        let size = std::fs::metadata(&path)
            .map_err(|_| UploadError::MissingLocal {
                digest,
                path: path.clone(),
            })?
            .len();
        todo.push((digest, path, size));
    }
    let manifest_path = blob_dir.join(manifest.hex());
    let manifest_size = match std::fs::metadata(&manifest_path) {
        Ok(meta) => meta.len(),
        Err(_) if manifest_missing => {
            return Err(UploadError::MissingLocal {
                digest: manifest,
                path: manifest_path,
            });
        }
        Err(_) => 0,
    };
    let mut progress = Progress::new(
        options.progress && !todo.is_empty(),
        todo.len() + usize::from(manifest_missing),
        todo.iter().map(|(_, _, size)| size).sum::<u64>()
            + if manifest_missing { manifest_size } else { 0 },
    );
    let mut report = UploadReport {
        blobs: wanted.len(),
        checked: check.len(),
        ..UploadReport::default()
    };
    let mut sent = stream::iter(todo)
        .map(|(digest, path, size)| async move {
            put(store, &path, digest, options)
                .await
                .map(|()| (digest, size))
        })
        .buffer_unordered(options.concurrency.max(1));
    let result = async {
        while let Some((digest, size)) = sent.try_next().await? {
            report.uploaded += 1;
            report.uploaded_bytes += size;
            report.sent.push(digest);
            progress.advance(size);
        }
        if manifest_missing {
            put(store, &manifest_path, manifest, options).await?;
            report.uploaded += 1;
            report.uploaded_bytes += manifest_size;
            report.sent.push(manifest);
            progress.advance(manifest_size);
        }
        Ok(())
    }
    .await;
    progress.finish();
    result.map(|()| report)
}

/// Stores one file, retrying transient failures, and checks it was stored under its name.
async fn put(
    store: &BlobStore,
    path: &Path,
    expected: Digest,
    options: &UploadOptions,
) -> Result<(), UploadError> {
    let actual = retry(options, || store.put_file(path))
        .await
        .map_err(|(source, attempts)| UploadError::Blob {
            digest: expected,
            path: path.to_path_buf(),
            store: store.to_string(),
            attempts,
            source,
        })?;
    if actual != expected {
        return Err(UploadError::Changed {
            path: path.to_path_buf(),
            expected,
            actual,
        });
    }
    Ok(())
}

/// Runs `call` until it succeeds, fails for good, or `options.attempts` tries are used, waiting
/// `first_backoff`, then twice that, … between tries. Returns the last error and the tries made.
pub async fn retry<T, F, Fut>(options: &UploadOptions, mut call: F) -> Result<T, (StoreError, u32)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut delay = options.first_backoff;
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(e) if e.is_transient() && attempt < options.attempts => {
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
                attempt += 1;
            }
            Err(e) => return Err((e, attempt)),
        }
    }
}

/// A self-drawn progress line on stderr (only when it is a terminal).
struct Progress {
    enabled: bool,
    total: usize,
    total_bytes: u64,
    done: usize,
    done_bytes: u64,
    drawn: Option<Instant>,
}

impl Progress {
    fn new(enabled: bool, total: usize, total_bytes: u64) -> Self {
        let mut p = Self {
            enabled,
            total,
            total_bytes,
            done: 0,
            done_bytes: 0,
            drawn: None,
        };
        p.draw();
        p
    }

    fn advance(&mut self, bytes: u64) {
        self.done += 1;
        self.done_bytes += bytes;
        // Redraw at most ten times a second, and always at the end.
        if self.done == self.total || self.drawn.is_none_or(|t| t.elapsed().as_millis() >= 100) {
            self.draw();
        }
    }

    fn draw(&mut self) {
        if !self.enabled {
            return;
        }
        let line = progress_line(self.done, self.total, self.done_bytes, self.total_bytes);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{line}\x1b[K");
        let _ = err.flush();
        self.drawn = Some(Instant::now());
    }

    fn finish(&mut self) {
        if self.enabled && self.drawn.is_some() {
            let _ = writeln!(std::io::stderr());
        }
        self.enabled = false;
    }
}

/// `uploading [########------------]  12/40 blobs  1.2/3.4 MiB`
fn progress_line(done: usize, total: usize, done_bytes: u64, total_bytes: u64) -> String {
    const WIDTH: usize = 24;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    format!(
        "uploading [{}{}] {done}/{total} blobs  {}/{}",
        "#".repeat(filled),
        "-".repeat(WIDTH - filled),
        human_bytes(done_bytes),
        human_bytes(total_bytes)
    )
}

/// `512 B`, `3.4 KiB`, `1.2 MiB`, `2.0 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::cell::Cell;

    fn quick() -> UploadOptions {
        UploadOptions {
            concurrency: 4,
            attempts: 3,
            first_backoff: Duration::from_millis(1),
            progress: false,
        }
    }

    fn transient() -> StoreError {
        StoreError::Io {
            path: "x".into(),
            source: std::io::Error::other("connection reset"),
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_the_budget_is_spent() {
        let calls = Cell::new(0);
        let ok = retry(&quick(), || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move { if n < 3 { Err(transient()) } else { Ok(n) } }
        })
        .await
        .unwrap();
        assert_eq!(ok, 3);

        calls.set(0);
        let (_, tries) = retry(&quick(), || {
            calls.set(calls.get() + 1);
            async { Err::<(), _>(transient()) }
        })
        .await
        .unwrap_err();
        assert_eq!((tries, calls.get()), (3, 3));
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried() {
        let calls = Cell::new(0);
        let (err, tries) = retry(&quick(), || {
            calls.set(calls.get() + 1);
            async { Err::<(), _>(StoreError::Config("bad".into())) }
        })
        .await
        .unwrap_err();
        assert!(matches!(err, StoreError::Config(_)));
        assert_eq!((tries, calls.get()), (1, 1));
    }

    /// A build output with these blobs; returns the directory of `<hex>` files and digests.
    fn artifact(dir: &Path, contents: &[&[u8]]) -> (PathBuf, Vec<Digest>) {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let digests = contents
            .iter()
            .map(|c| {
                let d = Digest::of(c);
                std::fs::write(blobs.join(d.hex()), c).unwrap();
                d
            })
            .collect();
        (blobs, digests)
    }

    #[tokio::test]
    async fn only_missing_blobs_are_sent_and_the_manifest_goes_last() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, d) = artifact(tmp.path(), &[b"a", b"b", b"c", b"{manifest}"]);
        let manifest = d[3];
        let store = BlobStore::local(tmp.path().join("store")).unwrap();

        let first = upload(
            &store,
            &dir,
            &d[..3],
            manifest,
            &KnownBlobs::default(),
            &quick(),
        )
        .await
        .unwrap();
        assert_eq!((first.blobs, first.uploaded), (4, 4));
        assert_eq!(first.sent.last(), Some(&manifest));

        let again = upload(
            &store,
            &dir,
            &d[..3],
            manifest,
            &KnownBlobs::default(),
            &quick(),
        )
        .await
        .unwrap();
        assert_eq!((again.uploaded, again.uploaded_bytes), (0, 0));

        let (_, extra) = artifact(tmp.path(), &[b"d", b"{manifest 2}"]);
        let blobs = [d[0], d[1], extra[0]];
        let next = upload(
            &store,
            &dir,
            &blobs,
            extra[1],
            &KnownBlobs::default(),
            &quick(),
        )
        .await
        .unwrap();
        assert_eq!(next.sent, vec![extra[0], extra[1]]);
        assert_eq!(next.uploaded_bytes, 1 + 12);
    }

    #[tokio::test]
    async fn a_blob_missing_from_the_build_output_stops_before_the_manifest() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, d) = artifact(tmp.path(), &[b"{manifest}"]);
        let store = BlobStore::local(tmp.path().join("store")).unwrap();
        let absent = Digest::of(b"never built");
        let err = upload(
            &store,
            &dir,
            &[absent],
            d[0],
            &KnownBlobs::default(),
            &quick(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, UploadError::MissingLocal { .. }), "{err}");
        assert!(!store.contains(&d[0]).await.unwrap());
    }

    fn manifest_naming(files: &[Digest]) -> kpages_crds::Manifest {
        let mut m: kpages_crds::Manifest = serde_json::from_value(serde_json::json!({
            "version": 1, "files": {}, "functions": []
        }))
        .unwrap();
        for (i, d) in files.iter().enumerate() {
            m.files.insert(
                format!("/f{i}.html"),
                serde_json::from_value(serde_json::json!({
                    "digest": d.to_string(), "size": 1, "contentType": "text/html"
                }))
                .unwrap(),
            );
        }
        m
    }

    #[test]
    fn blobs_named_by_a_known_manifest_are_not_checked() {
        let d: Vec<Digest> = (0..5u8).map(|i| Digest::of(&[i])).collect();
        let old_manifest = Digest::of(b"old");
        let mut known = KnownBlobs::default();
        assert_eq!(known.unknown(&d), d, "nothing known: everything is checked");
        known.add(old_manifest, &manifest_naming(&d[..3]));
        assert_eq!(known.unknown(&d), vec![d[3], d[4]]);
        // The old manifest itself is known stored; a new manifest is not.
        assert_eq!(known.unknown(&[old_manifest, d[4]]), vec![d[4]]);
        assert_eq!(known.manifests, vec![old_manifest]);
    }

    #[tokio::test]
    async fn known_blobs_come_from_manifests_the_store_gives_back() {
        let tmp = tempfile::tempdir().unwrap();
        let store = BlobStore::local(tmp.path()).unwrap();
        let blobs: Vec<Digest> = (0..3u8).map(|i| Digest::of(&[i])).collect();
        let manifest = manifest_naming(&blobs);
        let stored = store.put_manifest(&manifest).await.unwrap();
        let absent = Digest::of(b"a manifest this store never saw");
        let known = known_blobs(&store, &[absent, stored, stored]).await;
        assert_eq!(known.manifests, vec![stored]);
        assert!(blobs.iter().all(|b| known.digests.contains(b)));
        assert!(known.digests.contains(&stored) && !known.digests.contains(&absent));
        assert!(matches!(known.unreadable[..], [(d, StoreError::NotFound { .. })] if d == absent));
        // No manifest readable: nothing known, so every blob is checked (the fallback).
        let none = known_blobs(&store, &[absent]).await;
        assert!(none.digests.is_empty() && none.manifests.is_empty());
    }

    #[tokio::test]
    async fn a_redeploy_checks_only_what_earlier_manifests_do_not_name() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, d) = artifact(tmp.path(), &[b"a", b"b", b"c", b"d"]);
        let store = BlobStore::local(tmp.path().join("store")).unwrap();
        let first_manifest = manifest_naming(&d[..3]);
        let (_, m1) = artifact(tmp.path(), &[&serde_json::to_vec(&first_manifest).unwrap()]);
        let first = upload(
            &store,
            &dir,
            &d[..3],
            m1[0],
            &KnownBlobs::default(),
            &quick(),
        )
        .await
        .unwrap();
        assert_eq!((first.checked, first.uploaded), (4, 4));

        // The second deploy: two old blobs, one new; the first deploy's manifest is known.
        let known = known_blobs(&store, &[m1[0]]).await;
        let (_, m2) = artifact(tmp.path(), &[b"{second manifest}"]);
        let blobs = [d[0], d[1], d[3]];
        let next = upload(&store, &dir, &blobs, m2[0], &known, &quick())
            .await
            .unwrap();
        assert_eq!(next.blobs, 4);
        assert_eq!(
            next.checked, 2,
            "only the new blob and the new manifest are asked about"
        );
        assert_eq!(next.sent, vec![d[3], m2[0]]);
    }

    #[test]
    fn the_progress_line_fills_with_completed_blobs() {
        assert_eq!(
            progress_line(1, 4, 1536, 3 * 1024 * 1024),
            "uploading [######------------------] 1/4 blobs  1.5 KiB/3.0 MiB"
        );
        assert!(progress_line(0, 0, 0, 0).contains("[########################] 0/0"));
        assert_eq!(human_bytes(512), "512 B");
    }
}
