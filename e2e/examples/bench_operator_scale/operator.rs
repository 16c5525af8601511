//! The operator under test as a host process (not a pod), so its memory and CPU can be read
//! from `/proc` and its reconcile counters from its own /metrics.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kpages_e2e::Cluster;
use kpages_testsupport::{MinIo, eventually_async, free_port};
use serde_json::json;

/// The operator as a host process; killed when dropped.
pub struct Operator {
    child: tokio::process::Child,
    /// Its process id on the host.
    pub pid: u32,
    metrics_port: u16,
    log: PathBuf,
}

impl Operator {
    /// Starts `bin` against `cluster`, scoped to namespace `ns`, and waits until it leads.
    pub async fn start(bin: &Path, cluster: &Cluster, ns: &str, store: &str, log: PathBuf) -> Self {
        let metrics_port = free_port();
        let file = std::fs::File::create(&log).expect("operator log");
        let child = tokio::process::Command::new(bin)
            .args(["run", "--store-url", store, "--namespace", ns])
            .args(["--lease-namespace", ns, "--identity", "bench-operator"])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(["--kpages-image", kpages_e2e::KPAGES_IMAGE_NAME])
            .args(["--node-image", "localhost/kpages/node:20"])
            .args(["--url-scheme", "http"])
            .env("KUBECONFIG", cluster.kubeconfig())
            .env("AWS_ACCESS_KEY_ID", MinIo::USER)
            .env("AWS_SECRET_ACCESS_KEY", MinIo::PASSWORD)
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone().expect("operator log"))
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let pid = child.id().expect("the operator's pid");
        let mut op = Self {
            child,
            pid,
            metrics_port,
            log,
        };
        // Leading (it holds the Lease) means its controllers are starting.
        eventually_async(Duration::from_secs(60), "kpages-operator to lead", || {
            if let Ok(Some(status)) = op.child.try_wait() {
                panic!("kpages-operator exited with {status}:\n{}", op.log_tail());
            }
            let (port, tail) = (op.metrics_port, op.log_tail());
            async move {
                if metric_text(port).await.contains("kpages_operator_leader 1") {
                    Ok(())
                } else {
                    Err(format!("its log ends:\n{tail}"))
                }
            }
        })
        .await;
        op
    }

    /// Its exit status, once it has exited.
    pub fn child_exited(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        self.child.try_wait()
    }

    /// The last 40 lines of its log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Reconciles, errors and reconcile time per controller, from its /metrics.
    pub async fn reconcile_metrics(&self) -> serde_json::Value {
        let text = metric_text(self.metrics_port).await;
        let mut out = serde_json::Map::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let key = if let Some(rest) = name.strip_prefix("kpages_operator_reconciles_total") {
                format!("reconciles {}", labels(rest))
            } else if let Some(rest) = name.strip_prefix("kpages_operator_reconcile_errors_total") {
                format!("errors {}", labels(rest))
            } else if let Some(rest) =
                name.strip_prefix("kpages_operator_reconcile_duration_seconds_sum")
            {
                format!("reconcile_seconds {}", labels(rest))
            } else {
                continue;
            };
            out.insert(key, json!(value));
        }
        serde_json::Value::Object(out)
    }

    /// (VmHWM, VmRSS) in KiB.
    pub fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .unwrap_or_else(|e| panic!("reading the operator's /proc status: {e}"));
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/{}/status", self.pid))
        };
        (field("VmHWM:"), field("VmRSS:"))
    }

    /// User + system CPU seconds so far.
    pub fn cpu_seconds(&self, ticks_per_second: f64) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .unwrap_or_else(|e| panic!("reading the operator's /proc stat: {e}"));
        // Fields 14 and 15 (utime, stime) follow the ")" that closes the command name.
        let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or_default();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = [11, 12]
            .iter()
            .map(|&i| {
                fields
                    .get(i)
                    .and_then(|f| f.parse::<f64>().ok())
                    .unwrap_or(0.0)
            })
            .sum();
        ticks / ticks_per_second
    }
}

/// `GET /metrics` on 127.0.0.1:`port` (empty when it does not answer).
async fn metric_text(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return String::new();
    };
    let req = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if s.write_all(req.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf).await;
    buf
}

/// `{controller="site",stage="apply"}` → `site/apply`.
fn labels(raw: &str) -> String {
    raw.trim_matches(|c| c == '{' || c == '}')
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(_, v)| v.trim_matches('"'))
        .collect::<Vec<_>>()
        .join("/")
}
