//! A real MinIO server on loopback for one test: its own data directory, port and bucket.
//!
//! ```text
//!  MinIo::start("sites") ── minio server <tmp>/data (bucket = directory <tmp>/data/sites)
//!     ├── config("prod")               ── StoreConfig::S3 at http://127.0.0.1:<port>, prefix prod
//!     ├── config_at(endpoint, "prod")  ── the same store as another host reaches it
//!     └── url("prod") / url_at(..)     ── s3://sites/prod?endpoint=…&path_style=true
//! ```
//!
//! The credentials are [`MinIo::USER`] and [`MinIo::PASSWORD`] (`AWS_ACCESS_KEY_ID` and
//! `AWS_SECRET_ACCESS_KEY` for a process that reads the URL). The binary comes from `scripts/install-deps`, or
//! `$KPAGES_MINIO_BIN`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use kpages_store::{S3Config, S3Credentials, StoreConfig};

use crate::process::{Process, cached_binary, http_ok, off_runtime};

/// How long MinIO may take to become ready (its first start formats the drive).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running MinIO server with one bucket; killed when dropped.
pub struct MinIo {
    _process: Process,
    port: u16,
    bucket: String,
    dir: tempfile::TempDir,
}

impl MinIo {
    /// MinIO's root user: the S3 access key id.
    pub const USER: &str = "kpagestest";
    /// MinIO's root password: the S3 secret access key.
    pub const PASSWORD: &str = "kpagestest-secret";

    /// Starts MinIO with one empty bucket and waits until it is ready.
    pub fn start(bucket: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // In single-drive mode a directory in the data dir is a bucket.
        std::fs::create_dir_all(dir.path().join("data").join(bucket)).unwrap();
        let (port, console) = (crate::free_port(), crate::free_port());
        let mut process = Process::spawn(
            "minio",
            Command::new(cached_binary("minio", "KPAGES_MINIO_BIN"))
                .arg("server")
                .arg(dir.path().join("data"))
                .args(["--address", &format!("127.0.0.1:{port}")])
                .args(["--console-address", &format!("127.0.0.1:{console}")])
                .env("MINIO_ROOT_USER", Self::USER)
                .env("MINIO_ROOT_PASSWORD", Self::PASSWORD)
                .env("MINIO_BROWSER", "off")
                .env("MINIO_UPDATE", "off")
                .env("MINIO_CI_CD", "1"),
            &dir.path().join("minio.log"),
        );
        crate::eventually(START_TIMEOUT, "minio to become ready", || {
            process.assert_running();
            http_ok(port, "/minio/health/ready")
        });
        Self {
            _process: process,
            port,
            bucket: bucket.into(),
            dir,
        }
    }

    /// [`MinIo::start`] from async code: waits on a blocking thread, not on the runtime's.
    pub async fn start_async(bucket: &str) -> Self {
        let bucket = bucket.to_string();
        off_runtime(move || Self::start(&bucket)).await
    }

    /// Its S3 port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its S3 endpoint on the host: `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The bucket it was started with.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The store at `prefix` in the bucket, reached at [`MinIo::endpoint`].
    pub fn config(&self, prefix: &str) -> StoreConfig {
        self.config_at(&self.endpoint(), prefix)
    }

    /// The store at `prefix` in the bucket as a reader reaches it at `endpoint` (through a
    /// bridge into a cluster, say), with this server's credentials.
    pub fn config_at(&self, endpoint: &str, prefix: &str) -> StoreConfig {
        StoreConfig::S3(S3Config {
            bucket: self.bucket.clone(),
            prefix: prefix.into(),
            endpoint: Some(endpoint.into()),
            region: "us-east-1".into(),
            path_style: true,
            credentials: Some(S3Credentials {
                access_key_id: Self::USER.into(),
                secret_access_key: Self::PASSWORD.into(),
            }),
        })
    }

    /// The `s3://` URL of `prefix` at [`MinIo::endpoint`] (the credentials go in the
    /// environment: [`MinIo::USER`], [`MinIo::PASSWORD`]).
    pub fn url(&self, prefix: &str) -> String {
        self.url_at(&self.endpoint(), prefix)
    }

    /// The `s3://` URL of `prefix` as a reader reaches the server at `endpoint`.
    pub fn url_at(&self, endpoint: &str, prefix: &str) -> String {
        format!(
            "s3://{}/{prefix}?endpoint={endpoint}&path_style=true",
            self.bucket
        )
    }

    /// MinIO's data directory: the bucket is a directory in it.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}
