//! Bridges between the host and the testbed's network namespace, through socat, for the real
//! servers (`kpages_testsupport::{MinIo, Nats}`) that cluster tests run on the host's loopback.
//!
//! ```text
//!  host 127.0.0.1:<p> (MinIO, nats-server) ◄── Bridge ── pods reach 10.200.0.1:<p'>
//!  host 127.0.0.1:<local> ── Forward ──► a Service or pod IP inside the namespace (the router)
//! ```
//!
//! Both bridges go through a unix socket: the file system is shared with the namespace, the
//! network is not. Everything started here dies with the value that owns it.

use std::time::Duration;

use kpages_testsupport::free_port;

use crate::Cluster;

/// The node's IP inside the namespace, where bridged host ports appear.
pub const NODE_IP: &str = "10.200.0.1";

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
