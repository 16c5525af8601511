//! Real servers on the host's loopback for cluster tests, and socat bridges between the host
//! and the testbed's network namespace.
//!
//! ```text
//!  host 127.0.0.1:<p> (MinIO, nats-server) ◄── Bridge ── pods reach 10.200.0.1:<p'>
//!  host 127.0.0.1:<local> ── Forward ──► a Service or pod IP inside the namespace (the router)
//! ```
//!
//! Both bridges go through a unix socket: the file system is shared with the namespace, the
//! network is not. Everything started here dies with the value that owns it.

use std::path::PathBuf;
use std::time::Duration;

use crate::Cluster;

/// MinIO's root user in tests.
pub const MINIO_USER: &str = "kpagese2e";
/// MinIO's root password in tests.
pub const MINIO_PASSWORD: &str = "kpagese2e-secret";
/// The bucket every test store lives in.
pub const BUCKET: &str = "kpages";
/// The node's IP inside the namespace, where bridged host ports appear.
pub const NODE_IP: &str = "10.200.0.1";

/// A binary `scripts/install-deps` builds into `~/.cache/kpages/bin/<name>-<version>/<name>`,
/// or `$<env>`; panics with what to install when missing.
pub fn cached_binary(name: &str, env: &str) -> PathBuf {
    if let Some(bin) = std::env::var_os(env) {
        return bin.into();
    }
    let cache = std::env::var_os("KPAGES_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/kpages")
        });
    let mut found: Vec<_> = std::fs::read_dir(cache.join("bin"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{name}-")))
        })
        .map(|p| p.join(name))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "{name} is not installed: run scripts/install-deps (it builds {name} into {}) or set {env}",
            cache.join("bin").display()
        )
    })
}

/// A free TCP port on the host's loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
}

/// A child process that is killed when dropped, with its log file.
struct Server {
    child: std::process::Child,
    dir: tempfile::TempDir,
    name: &'static str,
}

impl Server {
    fn spawn(name: &'static str, mut cmd: std::process::Command, dir: tempfile::TempDir) -> Self {
        let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
        let child = cmd
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Self { child, dir, name }
    }

    /// Polls `ready` until it holds; panics with the log if the process exits or 60 s pass.
    async fn wait(
        &mut self,
        port: u16,
        ready: fn(u16) -> futures::future::BoxFuture<'static, bool>,
    ) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited with {status}:\n{}", self.name, self.log());
            }
            if ready(port).await {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} not ready after 60 s:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on 127.0.0.1:port answers 200.
async fn get_ok(port: u16, path: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf).await;
    buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.0 200")
}

/// A real MinIO on the host's 127.0.0.1: own data directory, one bucket, killed when dropped.
pub struct MinIo {
    server: Server,
    /// Its S3 port on 127.0.0.1.
    pub port: u16,
}

impl MinIo {
    /// Starts MinIO and waits until it is ready.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // In single-drive mode a directory in the data dir is a bucket.
        std::fs::create_dir_all(dir.path().join("data").join(BUCKET)).expect("bucket dir");
        let (port, console) = (free_port(), free_port());
        let mut cmd = std::process::Command::new(cached_binary("minio", "KPAGES_MINIO_BIN"));
        cmd.arg("server")
            .arg(dir.path().join("data"))
            .args(["--address", &format!("127.0.0.1:{port}")])
            .args(["--console-address", &format!("127.0.0.1:{console}")])
            .env("MINIO_ROOT_USER", MINIO_USER)
            .env("MINIO_ROOT_PASSWORD", MINIO_PASSWORD)
            .env("MINIO_BROWSER", "off")
            .env("MINIO_UPDATE", "off")
            .env("MINIO_CI_CD", "1");
        let mut server = Server::spawn("minio", cmd, dir);
        server
            .wait(port, |p| Box::pin(get_ok(p, "/minio/health/ready")))
            .await;
        Self { server, port }
    }

    /// The store at `endpoint` (how the reader reaches this server), `prefix` in the bucket.
    pub fn store_config(&self, endpoint: &str, prefix: &str) -> kpages_store::StoreConfig {
        let _ = &self.server;
        kpages_store::StoreConfig::S3(kpages_store::S3Config {
            bucket: BUCKET.into(),
            prefix: prefix.into(),
            endpoint: Some(endpoint.into()),
            region: "us-east-1".into(),
            path_style: true,
            credentials: Some(kpages_store::S3Credentials {
                access_key_id: MINIO_USER.into(),
                secret_access_key: MINIO_PASSWORD.into(),
            }),
        })
    }

    /// The `s3://` URL of `prefix` at `endpoint` (credentials go in the environment).
    pub fn url(endpoint: &str, prefix: &str) -> String {
        format!("s3://{BUCKET}/{prefix}?endpoint={endpoint}&path_style=true")
    }
}

/// A real nats-server with JetStream on the host's 127.0.0.1, killed when dropped.
pub struct Nats {
    _server: Server,
    /// Its client port on 127.0.0.1.
    pub port: u16,
}

impl Nats {
    /// Starts nats-server with JetStream (file storage in a temp dir) and waits until healthy.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (port, monitor) = (free_port(), free_port());
        let mut cmd = std::process::Command::new(cached_binary("nats-server", "KPAGES_NATS_BIN"));
        cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(["-m", &monitor.to_string()])
            .arg("-js")
            .arg("-sd")
            .arg(dir.path().join("js"));
        let mut server = Server::spawn("nats-server", cmd, dir);
        server
            .wait(monitor, |p| {
                Box::pin(get_ok(p, "/healthz?js-enabled-only=true"))
            })
            .await;
        Self {
            _server: server,
            port,
        }
    }
}

/// Spawns `cmd` (a `socat -d -d …`) and waits for its "listening on" line; the rest of its log is
/// drained in the background so it never blocks on a full pipe. Returns None if it exited first.
async fn spawn_listening(mut cmd: tokio::process::Command) -> Option<tokio::process::Child> {
    use tokio::io::AsyncBufReadExt;
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting socat (install it: apt-get install socat): {e}"));
    let mut lines = tokio::io::BufReader::new(child.stderr.take()?).lines();
    let mut seen = Vec::new();
    let listening = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let ok = line.contains("listening on");
            seen.push(line);
            if ok {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    if !listening {
        eprintln!("socat did not listen:\n{}", seen.join("\n"));
        return None;
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Some(child)
}

/// Makes a port on the host's loopback reachable inside the testbed's network namespace at
/// [`NODE_IP`]`:<port>`, the way the testbed bridges the apiserver.
pub struct Bridge {
    /// The port on [`NODE_IP`] inside the namespace.
    pub port: u16,
    _host: tokio::process::Child,
    _netns: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Bridge {
    /// Bridges 127.0.0.1:`host_port` into the namespace.
    pub async fn start(cluster: &Cluster, host_port: u16) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let sock = dir.path().join("bridge.sock");
        let mut host = tokio::process::Command::new("socat");
        host.args([
            "-d",
            "-d",
            &format!("UNIX-LISTEN:{},fork,unlink-early", sock.display()),
            &format!("TCP:127.0.0.1:{host_port}"),
        ]);
        let host = spawn_listening(host).await.expect("host-side socat");
        // The namespace's ports are its own: start with the host port's number (free on the
        // host, so unlikely to be taken there) and take another if it is.
        for attempt in 0..5 {
            let port = if attempt == 0 { host_port } else { free_port() };
            let netns = cluster.netns_command(&[
                "socat",
                "-d",
                "-d",
                &format!("TCP-LISTEN:{port},bind={NODE_IP},reuseaddr,fork"),
                &format!("UNIX-CONNECT:{}", sock.display()),
            ]);
            if let Some(netns) = spawn_listening(netns).await {
                return Self {
                    port,
                    _host: host,
                    _netns: netns,
                    _dir: dir,
                };
            }
        }
        panic!("no port on {NODE_IP} in the testbed's namespace for the bridge of {host_port}");
    }
}

/// Makes `target` (an `ip:port` inside the namespace: a Service's ClusterIP, a pod) reachable
/// from the host at 127.0.0.1:[`Forward::port`].
pub struct Forward {
    /// The port on the host's 127.0.0.1.
    pub port: u16,
    _host: tokio::process::Child,
    _netns: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Forward {
    /// Forwards 127.0.0.1:<port> on the host to `target` in the namespace.
    pub async fn start(cluster: &Cluster, target: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let sock = dir.path().join("forward.sock");
        let netns = cluster.netns_command(&[
            "socat",
            "-d",
            "-d",
            &format!("UNIX-LISTEN:{},fork,unlink-early", sock.display()),
            &format!("TCP:{target}"),
        ]);
        let netns = spawn_listening(netns).await.expect("namespace-side socat");
        for _ in 0..5 {
            let port = free_port();
            let mut host = tokio::process::Command::new("socat");
            host.args([
                "-d",
                "-d",
                &format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"),
                &format!("UNIX-CONNECT:{}", sock.display()),
            ]);
            if let Some(host) = spawn_listening(host).await {
                return Self {
                    port,
                    _host: host,
                    _netns: netns,
                    _dir: dir,
                };
            }
        }
        panic!("no port on 127.0.0.1 for the forward to {target}");
    }
}
