//! Benchmark helper for `bench/run` (row 5): uploads one built deploy from a local build
//! output to another store the way a deploy does — ask the target which blobs are
//! [`missing`](kpages_store::BlobStore::missing), send only those, the manifest last — and
//! prints what it did as one JSON line. Given the manifests of earlier deploys (as
//! `kpages deploy` reads them from the Site's Deploys), it asks only about the blobs they do
//! not name ([`known_blobs`](kpages_store::BlobStore::known_blobs)), as `kpages deploy` does.
//!
//! ```sh
//! cargo run --release -p kpages-store --example upload_deploy -- \
//!     SITE/.kpages/out sha256:<manifest hex> 's3://bucket?endpoint=http://127.0.0.1:9000' \
//!     [sha256:<earlier manifest>,…]
//! ```
//!
//! S3 credentials come from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, as for every store.

use std::process::ExitCode;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt, stream};
use kpages_crds::{Digest, Manifest};
use kpages_store::{BlobStore, StoreError};

/// Blob uploads in flight at once.
const UPLOAD_CONCURRENCY: usize = 16;

/// Largest blob this helper reads into memory (build outputs of the benchmark are small).
const MAX_BLOB: u64 = 1 << 30;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (from, manifest, to, previous) = match args.as_slice() {
        [from, manifest, to] => (from, manifest, to, ""),
        [from, manifest, to, previous] => (from, manifest, to, previous.as_str()),
        _ => {
            eprintln!(
                "usage: upload_deploy BUILD_OUT_DIR MANIFEST_DIGEST TARGET_STORE_URL [EARLIER_MANIFESTS]"
            );
            return ExitCode::FAILURE;
        }
    };
    match run(from, manifest, to, previous).await {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("upload_deploy: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    from: &str,
    manifest: &str,
    to: &str,
    previous: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let manifest_digest: Digest = manifest
        .parse()
        .map_err(|e| format!("manifest digest {manifest:?}: {e}"))?;
    let previous: Vec<Digest> = previous
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().map_err(|e| format!("manifest digest {p:?}: {e}")))
        .collect::<Result<_, _>>()?;
    let source = BlobStore::local(from)?;
    let target = BlobStore::from_url(to)?;
    let manifest: Manifest = source.get_manifest(&manifest_digest).await?;
    let blobs = referenced_blobs(&manifest);

    let started = Instant::now();
    let known = target.known_blobs(&previous).await;
    let ask = known.unknown(&blobs);
    let missing = target.missing(&ask).await?;
    let checked = started.elapsed();
    stream::iter(missing.iter().copied())
        .map(|d| copy(&source, &target, d))
        .buffer_unordered(UPLOAD_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    // The manifest goes last: a deploy exists only once every blob it names is stored.
    let manifest_uploaded =
        !known.digests.contains(&manifest_digest) && !target.contains(&manifest_digest).await?;
    if manifest_uploaded {
        copy(&source, &target, manifest_digest).await?;
    }
    let total = started.elapsed();
    Ok(format!(
        "{{\"blobs\":{},\"known\":{},\"checked\":{},\"missing\":{},\"manifest_uploaded\":{},\"check_seconds\":{:.3},\"total_seconds\":{:.3}}}",
        blobs.len(),
        blobs.len() - ask.len(),
        ask.len(),
        missing.len(),
        manifest_uploaded,
        checked.as_secs_f64(),
        total.as_secs_f64()
    ))
}

/// Every blob a manifest names, the manifest itself excluded.
fn referenced_blobs(manifest: &Manifest) -> Vec<Digest> {
    let files = manifest.files.values().map(|f| f.digest);
    let functions = manifest
        .functions
        .iter()
        .flat_map(|f| std::iter::once(f.bundle).chain(f.included_files.iter().map(|i| i.digest)));
    files.chain(functions).collect()
}

async fn copy(source: &BlobStore, target: &BlobStore, digest: Digest) -> Result<(), StoreError> {
    let bytes = source.get_bytes(&digest, MAX_BLOB).await?;
    target.put_bytes(bytes).await.map(|_| ())
}
