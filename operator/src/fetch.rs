//! `kpages-operator fetch-bundles`: what a function pod's init container runs. It lays out one
//! deploy's functions for the Node host in a shared volume, so the main container can be a
//! plain Node image that contains nothing of kpages:
//!
//! ```text
//!  OUT/functions.json             the host's functions file (names, files, dialects, timeouts)
//!  OUT/functions/<name>/<name>.mjs    each bundle, fetched by digest and verified
//!  OUT/functions/<name>/<included>    files the function reads at run time, verified
//!  OUT/runtime/{package.json,src/}    the function host, copied from the kpages image
//! ```
//!
//! Every blob is written to a temporary name and renamed only once its digest matches, and
//! `functions.json` is written last, so a failed fetch never leaves a directory the host would
//! start from.

use std::path::{Component, Path, PathBuf};

use futures::{StreamExt, TryStreamExt, stream};
use kpages_crds::Digest;
use kpages_crds::host::FunctionsFile;
use kpages_crds::limits::CallLimits;
use kpages_crds::manifest::Limits;
use kpages_store::{BlobStore, StoreError};

/// How many blobs are downloaded at once.
const CONCURRENCY: usize = 8;

/// What to fetch and where.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// The deploy's manifest.
    pub manifest: Digest,
    /// Directory to fill.
    pub out: PathBuf,
    /// The function host to copy (a `runtime/` directory with `src/host.mjs`); `None` skips it.
    pub runtime: Option<PathBuf>,
    /// Sync timeout of functions that set none, in seconds (the Site's default).
    pub timeout_seconds: u32,
    /// Background and scheduled timeout of functions that set none, in seconds.
    pub background_timeout_seconds: u32,
}

/// What was fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchReport {
    /// Functions laid out.
    pub functions: usize,
    /// Blobs downloaded (bundles and included files).
    pub blobs: usize,
}

/// Why a fetch failed. Messages name the blob or file, because they end up in the pod's
/// termination message and the Deploy's status.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The manifest or a blob could not be read (missing, corrupt, store unreachable).
    #[error("{what}: {source}")]
    Store {
        /// Which blob, in the user's words.
        what: String,
        /// The cause.
        #[source]
        source: StoreError,
    },
    /// An included file's path would escape its function's directory.
    #[error(
        "function {function:?}: included file path {path:?} must be relative and stay inside the function's directory"
    )]
    UnsafePath {
        /// The function.
        function: String,
        /// The offending path.
        path: String,
    },
    /// A local file could not be written or copied.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The runtime directory has no `src/host.mjs`.
    #[error("{0} does not contain src/host.mjs: pass --runtime the kpages function host directory")]
    NoRuntime(PathBuf),
}

impl FetchError {
    /// Whether the failure was a digest mismatch (a corrupt or tampered blob).
    pub fn is_digest_mismatch(&self) -> bool {
        matches!(
            self,
            FetchError::Store {
                source: StoreError::DigestMismatch { .. },
                ..
            }
        )
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Fetches a deploy's function bundles into `opts.out` (see the module docs).
pub async fn fetch_bundles(
    store: &BlobStore,
    opts: &FetchOptions,
) -> Result<FetchReport, FetchError> {
    let manifest =
        store
            .get_manifest(&opts.manifest)
            .await
            .map_err(|source| FetchError::Store {
                what: format!("manifest {}", opts.manifest),
                source,
            })?;
    let mut downloads: Vec<(String, Digest, PathBuf)> = Vec::new();
    for f in &manifest.functions {
        let dir = opts.out.join("functions").join(&f.name);
        downloads.push((
            format!("bundle of function {:?}", f.name),
            f.bundle,
            dir.join(bundle_file_name(&f.name)),
        ));
        for inc in &f.included_files {
            let rel = safe_relative(&inc.path).ok_or_else(|| FetchError::UnsafePath {
                function: f.name.clone(),
                path: inc.path.clone(),
            })?;
            downloads.push((
                format!("included file {:?} of function {:?}", inc.path, f.name),
                inc.digest,
                dir.join(rel),
            ));
        }
    }
    let blobs = downloads.len();
    stream::iter(downloads)
        .map(|(what, digest, dest)| async move {
            store
                .download_to(&digest, &dest)
                .await
                .map_err(|source| FetchError::Store { what, source })
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    if let Some(runtime) = &opts.runtime {
        let (from, to) = (runtime.clone(), opts.out.join("runtime"));
        tokio::task::spawn_blocking(move || copy_runtime(&from, &to))
            .await
            .map_err(|e| FetchError::Io {
                path: opts.out.join("runtime"),
                source: std::io::Error::other(e),
            })??;
    }
    let file = opts.out.join(FunctionsFile::NAME);
    // The Site object's timeouts (or the platform's) sit under the function's and the
    // manifest's own, as the router enforces them.
    let site = Limits {
        timeout_seconds: Some(opts.timeout_seconds),
        background_timeout_seconds: Some(opts.background_timeout_seconds),
        ..Limits::default()
    };
    let body = FunctionsFile::new(&manifest, &site, CallLimits::default(), |name| {
        format!("functions/{name}/{}", bundle_file_name(name))
    });
    let tmp = opts.out.join(".functions.json.partial");
    tokio::fs::create_dir_all(&opts.out)
        .await
        .map_err(io(&opts.out))?;
    tokio::fs::write(&tmp, serde_json::to_vec_pretty(&body).unwrap_or_default())
        .await
        .map_err(io(&tmp))?;
    tokio::fs::rename(&tmp, &file).await.map_err(io(&file))?;
    Ok(FetchReport {
        functions: manifest.functions.len(),
        blobs,
    })
}

/// The bundle's file name: ESM, named after the function so stack traces say which.
fn bundle_file_name(function: &str) -> String {
    format!("{function}.mjs")
}

/// `path` as a relative path with only normal components, or `None`.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    let ok = !path.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    ok.then(|| p.to_path_buf())
}

/// Copies the host's `package.json` (it declares ESM) and `src/` — not its tests or
/// development dependencies.
fn copy_runtime(from: &Path, to: &Path) -> Result<(), FetchError> {
    if !from.join("src/host.mjs").is_file() {
        return Err(FetchError::NoRuntime(from.to_path_buf()));
    }
    copy_tree(&from.join("src"), &to.join("src"))?;
    let pkg = from.join("package.json");
    if pkg.is_file() {
        std::fs::copy(&pkg, to.join("package.json")).map_err(io(&pkg))?;
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), FetchError> {
    std::fs::create_dir_all(to).map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let src = entry.path();
        let dest = to.join(entry.file_name());
        let kind = entry.file_type().map_err(io(&src))?;
        if kind.is_dir() {
            copy_tree(&src, &dest)?;
        } else if kind.is_file() {
            std::fs::copy(&src, &dest).map_err(io(&src))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::fixtures;
    use kpages_crds::Manifest;
    use kpages_crds::manifest::{IncludedFile, InvocationKind};

    async fn stored_manifest(store: &BlobStore) -> Manifest {
        let bundle = store
            .put_bytes("export default () => new Response('hi')".into())
            .await
            .unwrap();
        let data = store.put_bytes("{\"a\":1}".into()).await.unwrap();
        let mut f = fixtures::function("hello", InvocationKind::Sync);
        f.bundle = bundle;
        f.limits.timeout_seconds = Some(5);
        f.included_files = vec![IncludedFile {
            path: "data/a.json".into(),
            digest: data,
            size: 7,
        }];
        let mut m = Manifest::new();
        m.functions = vec![f];
        store.put_manifest(&m).await.unwrap();
        m
    }

    fn opts(m: &Manifest, out: &Path, runtime: Option<PathBuf>) -> FetchOptions {
        FetchOptions {
            manifest: m.digest(),
            out: out.to_path_buf(),
            runtime,
            timeout_seconds: 30,
            background_timeout_seconds: 900,
        }
    }

    #[tokio::test]
    async fn lays_out_bundles_included_files_runtime_and_functions_json() {
        let store = BlobStore::memory();
        let m = stored_manifest(&store).await;
        let out = tempfile::tempdir().unwrap();
        let runtime = Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime");
        let report = fetch_bundles(&store, &opts(&m, out.path(), Some(runtime)))
            .await
            .unwrap();
        assert_eq!(
            report,
            FetchReport {
                functions: 1,
                blobs: 2
            }
        );
        let bundle = std::fs::read_to_string(out.path().join("functions/hello/hello.mjs")).unwrap();
        assert!(bundle.contains("Response('hi')"));
        assert!(out.path().join("functions/hello/data/a.json").is_file());
        assert!(out.path().join("runtime/src/host.mjs").is_file());
        assert!(!out.path().join("runtime/test").exists());
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.path().join("functions.json")).unwrap())
                .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"functions": [{"name": "hello", "file": "functions/hello/hello.mjs",
                "dialect": "netlify", "catchAll": null, "timeoutMs": 5000,
                "backgroundTimeoutMs": 900000}]})
        );
    }

    #[tokio::test]
    async fn a_missing_bundle_fails_and_writes_no_functions_json() {
        let store = BlobStore::memory();
        let mut m = Manifest::new();
        m.functions = vec![fixtures::function("gone", InvocationKind::Sync)];
        store.put_manifest(&m).await.unwrap();
        let out = tempfile::tempdir().unwrap();
        let err = fetch_bundles(&store, &opts(&m, out.path(), None))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("bundle of function \"gone\""),
            "{err}"
        );
        assert!(!out.path().join("functions.json").exists());
    }

    #[tokio::test]
    async fn a_missing_manifest_is_named() {
        let store = BlobStore::memory();
        let out = tempfile::tempdir().unwrap();
        let err = fetch_bundles(&store, &opts(&Manifest::new(), out.path(), None))
            .await
            .unwrap_err();
        assert!(err.to_string().starts_with("manifest sha256:"), "{err}");
    }

    #[tokio::test]
    async fn included_files_cannot_escape() {
        let store = BlobStore::memory();
        let mut m = stored_manifest(&store).await;
        m.functions[0].included_files[0].path = "../../etc/passwd".into();
        store.put_manifest(&m).await.unwrap();
        let out = tempfile::tempdir().unwrap();
        let err = fetch_bundles(&store, &opts(&m, out.path(), None))
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::UnsafePath { .. }), "{err}");
    }
}
