//! A real MinIO server on loopback for one test: own data directory, own port, stopped when
//! dropped. The binary is built from the Go module proxy by `scripts/install-deps`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kpages_store::{S3Config, S3Credentials, StoreConfig};

const USER: &str = "kpagestest";
const PASSWORD: &str = "kpagestest-secret";

pub struct MinIo {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

/// The MinIO binary: `$KPAGES_MINIO_BIN`, else the newest one `scripts/install-deps` cached.
fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("KPAGES_MINIO_BIN") {
        return bin.into();
    }
    let cache = std::env::var_os("KPAGES_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/kpages")
        });
    let mut found: Vec<PathBuf> = std::fs::read_dir(cache.join("bin"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("minio-"))
        })
        .map(|p| p.join("minio"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "MinIO is not installed: run scripts/install-deps (it builds MinIO from the Go module \
             proxy into {}) or set KPAGES_MINIO_BIN to a minio binary",
            cache.join("bin").display()
        )
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl MinIo {
    /// Starts MinIO with one (empty) bucket and waits until it is ready.
    pub fn start(bucket: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // In single-drive mode a directory in the data dir is a bucket.
        std::fs::create_dir_all(dir.path().join("data").join(bucket)).unwrap();
        let port = free_port();
        let console = free_port();
        let log = std::fs::File::create(dir.path().join("minio.log")).unwrap();
        let child = Command::new(binary())
            .arg("server")
            .arg(dir.path().join("data"))
            .args(["--address", &format!("127.0.0.1:{port}")])
            .args(["--console-address", &format!("127.0.0.1:{console}")])
            .env("MINIO_ROOT_USER", USER)
            .env("MINIO_ROOT_PASSWORD", PASSWORD)
            .env("MINIO_BROWSER", "off")
            .env("MINIO_UPDATE", "off")
            .env("MINIO_CI_CD", "1")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start minio");
        let mut server = Self { child, port, dir };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log =
                    std::fs::read_to_string(self.dir.path().join("minio.log")).unwrap_or_default();
                panic!("minio exited with {status} before becoming ready:\n{log}");
            }
            if health(self.port) {
                return;
            }
            assert!(Instant::now() < deadline, "minio not ready after 60 s");
            // Polling a local readiness endpoint; there is no event to wait on.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A store config for `prefix` in the bucket with this server's credentials.
    pub fn config(&self, prefix: &str) -> StoreConfig {
        let bucket = std::fs::read_dir(self.data_dir())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| !n.starts_with('.'))
            .unwrap();
        StoreConfig::S3(S3Config {
            bucket,
            prefix: prefix.into(),
            endpoint: Some(format!("http://127.0.0.1:{}", self.port)),
            region: "us-east-1".into(),
            path_style: true,
            credentials: Some(S3Credentials {
                access_key_id: USER.into(),
                secret_access_key: PASSWORD.into(),
            }),
        })
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

fn health(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /minio/health/ready HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.0 200")
}

impl Drop for MinIo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
