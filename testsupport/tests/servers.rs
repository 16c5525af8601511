//! The servers start for real, are reachable as their handles say, and survive what tests do
//! to them (a NATS restart keeps its address).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use kpages_testsupport::{MinIo, Nats, eventually_async};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minio_serves_its_bucket_with_the_config_it_hands_out() {
    let minio = MinIo::start_async("blobs").await;
    assert_eq!(minio.bucket(), "blobs");
    assert!(minio.data_dir().join("blobs").is_dir());
    assert_eq!(
        minio.url("p"),
        format!(
            "s3://blobs/p?endpoint=http://127.0.0.1:{}&path_style=true",
            minio.port()
        )
    );
    let store = minio.config("prefix").open().unwrap();
    let digest = store.put_bytes(Bytes::from_static(b"hi")).await.unwrap();
    assert_eq!(
        store.get_bytes(&digest, 16).await.unwrap(),
        Bytes::from_static(b"hi")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_comes_back_on_the_same_port_after_a_kill() {
    let mut nats = Nats::start_async().await;
    let connected = |port| async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    };
    assert!(connected(nats.port()).await);
    tokio::task::block_in_place(|| nats.kill());
    eventually_async(
        Duration::from_secs(5),
        "the killed server's port to close",
        || {
            let port = nats.port();
            async move { !connected(port).await }
        },
    )
    .await;
    tokio::task::block_in_place(|| nats.restart());
    assert!(connected(nats.port()).await, "{}", nats.url());
}
