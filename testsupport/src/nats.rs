//! A real `nats-server` with JetStream on loopback for one test: its own ports and data
//! directory, which survives [`Nats::restart`] so streams outlive a crash. The binary comes
//! from `scripts/install-deps`, or `$KPAGES_NATS_BIN`.

use std::process::Command;
use std::time::Duration;

use crate::process::{Process, cached_binary, http_ok, off_runtime};

/// How long nats-server may take to become ready, JetStream streams recovered.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running nats-server with JetStream; killed when dropped.
pub struct Nats {
    process: Option<Process>,
    port: u16,
    monitor: u16,
    dir: tempfile::TempDir,
}

impl Nats {
    /// Starts nats-server with JetStream (file storage) and waits until it is healthy.
    pub fn start() -> Self {
        let mut server = Self {
            process: None,
            port: crate::free_port(),
            monitor: crate::free_port(),
            dir: tempfile::tempdir().unwrap(),
        };
        server.spawn();
        server
    }

    /// [`Nats::start`] from async code: waits on a blocking thread, not on the runtime's.
    pub async fn start_async() -> Self {
        off_runtime(Self::start).await
    }

    /// Its client port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its client URL: `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: no clean shutdown) and waits for it to exit.
    pub fn kill(&mut self) {
        self.process = None;
    }

    /// Starts the server again on the same ports and data directory, and waits until healthy.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn spawn(&mut self) {
        let mut process = Process::spawn(
            "nats-server",
            Command::new(cached_binary("nats-server", "KPAGES_NATS_BIN"))
                .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-m", &self.monitor.to_string()])
                .arg("-js")
                .arg("-sd")
                .arg(self.dir.path().join("jetstream"))
                .args(["--server_name", "kpages-test"]),
            &self.dir.path().join("nats.log"),
        );
        let monitor = self.monitor;
        // Plain /healthz answers 200 only once JetStream has recovered its streams.
        crate::eventually(START_TIMEOUT, "nats-server to become healthy", || {
            process.assert_running();
            http_ok(monitor, "/healthz")
        });
        self.process = Some(process);
    }
}
