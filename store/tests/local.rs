//! The blob store on the local filesystem (the embedded default) and in memory.

mod common;

use std::sync::Arc;

use common::Backend;
use kpages_store::{BlobStore, StoreConfig};

#[tokio::test]
async fn local_filesystem_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::parse(dir.path().to_str().unwrap()).unwrap();
    let store = config.open().unwrap();
    let (raw, _) = config.object_store().unwrap();
    common::conformance(Backend { store, raw }).await;
    // Blobs are plain files at the documented layout.
    let blobs = dir.path().join("blobs/sha256");
    assert!(std::fs::read_dir(blobs).unwrap().count() >= 5);
}

#[tokio::test]
async fn memory_backend_conforms() {
    let raw: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let store = BlobStore::with_object_store(raw.clone(), "", "memory://");
    common::conformance(Backend { store, raw }).await;
}

#[tokio::test]
async fn a_prefix_keeps_blobs_under_it() {
    let raw: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let store = BlobStore::with_object_store(raw, "/tenant-a/", "memory://tenant-a");
    let d = kpages_crds::Digest::of(b"x");
    assert_eq!(
        store.blob_path(&d).as_ref(),
        format!("tenant-a/blobs/sha256/{}", d.hex())
    );
}
