//! The blob store against a real S3-compatible server: MinIO, started on loopback by the test.

mod common;

use common::Backend;
use kpages_store::StoreConfig;
use kpages_testsupport::MinIo;

#[tokio::test]
async fn s3_backend_conforms_against_minio() {
    let minio = MinIo::start_async("kpages-blobs").await;
    let config = minio.config("deploys/prod");
    let store = config.open().unwrap();
    // The raw handle sees the whole bucket; blob paths include the store's prefix.
    let (raw, prefix) = config.object_store().unwrap();
    assert_eq!(prefix, "deploys/prod");
    let d = kpages_crds::Digest::of(b"a");
    assert_eq!(
        store.blob_path(&d).as_ref(),
        format!("deploys/prod/blobs/sha256/{}", d.hex())
    );
    common::conformance(Backend { store, raw }).await;
    // The blobs really are in MinIO's bucket, under the prefix.
    assert!(
        minio
            .data_dir()
            .join("kpages-blobs/deploys/prod/blobs/sha256")
            .is_dir()
    );
}

#[tokio::test]
async fn wrong_credentials_are_a_backend_error_not_a_missing_blob() {
    let minio = MinIo::start_async("kpages-auth").await;
    let mut config = minio.config("");
    if let StoreConfig::S3(s3) = &mut config {
        s3.credentials.as_mut().unwrap().secret_access_key = "wrong-secret".into();
    }
    let store = config.open().unwrap();
    let err = store
        .contains(&kpages_crds::Digest::of(b"x"))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("object store"), "{err}");
}

#[tokio::test]
async fn a_missing_bucket_is_reported() {
    let minio = MinIo::start_async("kpages-present").await;
    let mut config = minio.config("");
    if let StoreConfig::S3(s3) = &mut config {
        s3.bucket = "no-such-bucket".into();
    }
    let err = config
        .open()
        .unwrap()
        .put_bytes(bytes::Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no-such-bucket") || err.to_string().contains("NoSuchBucket"),
        "{err}"
    );
}
