//! The behaviour every backend must have, run against each one by `local.rs`, `memory.rs` and
//! `s3.rs`.

// Test support: a failed setup step should panic with its cause.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use kpages_crds::{Digest, Manifest};
use kpages_store::{BlobStore, StoreError};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// A store plus a raw handle on the same backend, to plant corrupt objects behind its back.
pub struct Backend {
    pub store: BlobStore,
    pub raw: Arc<dyn ObjectStore>,
}

/// Deterministic pseudo-random bytes (incompressible, unlike a repeated pattern).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub async fn round_trip_and_idempotent_put(b: &Backend) {
    let d = b
        .store
        .put_bytes(Bytes::from_static(b"hello blob"))
        .await
        .unwrap();
    assert_eq!(d, Digest::of(b"hello blob"));
    assert_eq!(
        b.store
            .put_bytes(Bytes::from_static(b"hello blob"))
            .await
            .unwrap(),
        d
    );
    assert_eq!(
        b.store.get_bytes(&d, 1024).await.unwrap(),
        Bytes::from_static(b"hello blob")
    );
    assert!(b.store.contains(&d).await.unwrap());
    let meta = b.raw.head(&b.store.blob_path(&d)).await.unwrap();
    assert!(
        meta.location
            .as_ref()
            .ends_with(&format!("blobs/sha256/{}", d.hex()))
    );
}

pub async fn missing_lists_only_absent_digests_once_in_order(b: &Backend) {
    let present = b
        .store
        .put_bytes(Bytes::from_static(b"present"))
        .await
        .unwrap();
    let absent1 = Digest::of(b"absent one");
    let absent2 = Digest::of(b"absent two");
    let asked = [absent2, present, absent1, absent2, present];
    assert_eq!(
        b.store.missing(&asked).await.unwrap(),
        vec![absent2, absent1]
    );
    assert!(b.store.missing(&[present]).await.unwrap().is_empty());
}

pub async fn unknown_blob_is_not_found(b: &Backend) {
    let d = Digest::of(b"never stored");
    assert!(!b.store.contains(&d).await.unwrap());
    let err = b.store.get_bytes(&d, 10).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains(&d.to_string()));
}

pub async fn corrupt_blob_is_never_returned(b: &Backend) {
    let d = Digest::of(b"the real content");
    b.raw
        .put(
            &b.store.blob_path(&d),
            PutPayload::from_static(b"tampered content"),
        )
        .await
        .unwrap();
    let err = b.store.get_bytes(&d, 1024).await.unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains("corrupt"), "{err}");

    let (_, mut chunks) = b.store.get_stream(&d).await.unwrap();
    let mut last = None;
    while let Some(item) = chunks.next().await {
        last = Some(item);
    }
    assert!(
        matches!(last, Some(Err(StoreError::DigestMismatch { .. }))),
        "stream must end in an error"
    );

    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out.bin");
    assert!(b.store.download_to(&d, &dest).await.is_err());
    assert!(!dest.exists(), "a corrupt download must leave no file");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "and no temporary file"
    );
}

pub async fn too_large_blob_is_refused_before_reading(b: &Backend) {
    let d = b
        .store
        .put_bytes(Bytes::from(vec![7u8; 4096]))
        .await
        .unwrap();
    let err = b.store.get_bytes(&d, 1024).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::TooLarge {
                size: 4096,
                limit: 1024,
                ..
            }
        ),
        "{err}"
    );
}

/// A file larger than several multipart parts streams up and down intact.
pub async fn large_file_streams_both_ways(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bundle.mjs");
    let content = noise(kpages_store::PART_SIZE * 2 + 12345, 42);
    std::fs::write(&src, &content).unwrap();
    let d = b.store.put_file(&src).await.unwrap();
    assert_eq!(d, Digest::of(&content));
    assert!(b.store.contains(&d).await.unwrap());
    // Uploading again finds the blob and sends nothing.
    assert_eq!(b.store.put_file(&src).await.unwrap(), d);

    let (size, mut chunks) = b.store.get_stream(&d).await.unwrap();
    assert_eq!(size, content.len() as u64);
    let mut hasher = kpages_crds::Hasher::new();
    let mut n = 0;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.unwrap();
        n += chunk.len();
        hasher.update(&chunk);
    }
    assert_eq!((n, hasher.finish()), (content.len(), d));

    let dest = dir.path().join("nested/dir/copy.mjs");
    b.store.download_to(&d, &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), content);
}

pub async fn small_file_and_manifest_round_trip(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("index.html");
    std::fs::write(&src, b"<h1>hi</h1>").unwrap();
    let d = b.store.put_file(&src).await.unwrap();
    assert_eq!(d, Digest::of(b"<h1>hi</h1>"));

    let mut m = Manifest::new();
    m.files.insert(
        "/index.html".into(),
        kpages_crds::manifest::StaticFile {
            digest: d,
            size: 11,
            content_type: "text/html".into(),
        },
    );
    let md = b.store.put_manifest(&m).await.unwrap();
    assert_eq!(md, m.digest());
    assert_eq!(b.store.get_manifest(&md).await.unwrap(), m);

    // A blob that is not a manifest is reported as such.
    let err = b.store.get_manifest(&d).await.unwrap_err();
    assert!(matches!(err, StoreError::Manifest { .. }), "{err}");
}

/// Runs every check against one backend.
pub async fn conformance(b: Backend) {
    round_trip_and_idempotent_put(&b).await;
    missing_lists_only_absent_digests_once_in_order(&b).await;
    unknown_blob_is_not_found(&b).await;
    corrupt_blob_is_never_returned(&b).await;
    too_large_blob_is_refused_before_reading(&b).await;
    large_file_streams_both_ways(&b).await;
    small_file_and_manifest_round_trip(&b).await;
}
