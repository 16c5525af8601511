//! A real `nats-server` with JetStream on loopback for one test: own ports, own data
//! directory (kept across restarts), killed when dropped. `scripts/install-deps` builds the
//! binary from the Go module proxy.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    monitor: u16,
    dir: tempfile::TempDir,
}

/// The nats-server binary: `$KPAGES_NATS_BIN`, else the newest one `scripts/install-deps`
/// cached under `$KPAGES_CACHE` (default `~/.cache/kpages`).
fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("KPAGES_NATS_BIN") {
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
                .is_some_and(|n| n.to_string_lossy().starts_with("nats-server-"))
        })
        .map(|p| p.join("nats-server"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "nats-server is not installed: run scripts/install-deps (it builds nats-server from \
             the Go module proxy into {}) or set KPAGES_NATS_BIN to a nats-server binary",
            cache.join("bin").display()
        )
    })
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl NatsServer {
    /// Starts nats-server with JetStream and waits until JetStream is ready.
    pub fn start() -> Self {
        let mut server = Self {
            child: None,
            port: free_port(),
            monitor: free_port(),
            dir: tempfile::tempdir().unwrap(),
        };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(binary())
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-m", &self.monitor.to_string()])
            .arg("-js")
            .arg("-sd")
            .arg(self.dir.path().join("jetstream"))
            .args(["--server_name", "kpages-test"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                panic!("nats-server exited with {status} before becoming ready:\n{log}");
            }
            if healthy(self.monitor) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server not ready after 30 s"
            );
            // Polling a local readiness endpoint; there is no event to wait on.
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Kills the server (SIGKILL: no clean shutdown) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same ports and data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

/// JetStream-aware health: 200 only once JetStream has recovered its streams.
fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /healthz HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.0 200")
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
