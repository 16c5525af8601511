//! Harness for kpages' cluster tier: a real single-node Kubernetes that `e2e/cluster` builds and
//! runs inside a network namespace of its own (see `e2e/README.md`).
//!
//! ```text
//!  test ──► Cluster::get()  ── runs `e2e/cluster up` once per test binary (idempotent: reuses a
//!    │                          running cluster), keeps the kubeconfig path it prints last
//!    ├──► cluster.client()  ── a kube Client on 127.0.0.1 (the forwarder to the namespace)
//!    ├──► TestNamespace     ── a fresh namespace per test; on failure its pods, events and logs
//!    │                          are printed; deleted afterwards unless KPAGES_E2E_KEEP=1
//!    ├──► wait::until(...)  ── watch-based waits on conditions, each with a deadline
//!    ├──► cluster.netns(..) ── a command run inside the cluster's network namespace (curl a pod IP)
//!    ├──► platform::…       ── helm install of the chart, the kpages CLI (platform test, benchmarks)
//!    └──► chart::render(..) ── helm template of the chart, parsed (chart tests; no cluster needed)
//! ```
//!
//! Clients are made per test because every `#[tokio::test]` has its own runtime, and a kube client's
//! connection tasks die with the runtime that spawned them.

pub mod bench;
pub mod chart;
pub mod namespace;
pub mod platform;
pub mod services;
pub mod wait;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

pub use namespace::TestNamespace;

/// What can go wrong in the harness. Test bodies usually `expect` these away.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `e2e/cluster up` failed; its stderr went to the test's output.
    #[error("e2e/cluster up failed: {0}")]
    ClusterUp(String),
    /// A command could not be started.
    #[error("running {command}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    /// The kubeconfig `e2e/cluster up` printed could not be used.
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: PathBuf, message: String },
    /// An API call failed.
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// `e2e/cluster load-images` failed; its stderr went to the test's output.
    #[error("e2e/cluster load-images failed: {0}")]
    LoadImages(String),
    /// A wait reached its deadline.
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout { what: String, seconds: u64 },
    /// A watch used by a wait failed.
    #[error("waiting for {what}: {message}")]
    Wait { what: String, message: String },
}

/// The running testbed cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    kubeconfig: PathBuf,
    bin_dir: PathBuf,
}

static UP: OnceLock<Result<Cluster, String>> = OnceLock::new();
static KPAGES_IMAGE: OnceLock<Result<(), String>> = OnceLock::new();

/// The image of the workspace's binaries and the function host that `e2e/cluster load-images`
/// builds (function pods' init containers, schedule jobs).
pub const KPAGES_IMAGE_NAME: &str = "localhost/kpages/kpages:dev";

impl Cluster {
    /// Starts the cluster (or reuses the running one) the first time a test binary asks, by running
    /// `e2e/cluster up`; later calls return the same cluster.
    pub fn get() -> Result<Cluster, Error> {
        UP.get_or_init(|| Self::up().map_err(|e| e.to_string()))
            .clone()
            .map_err(Error::ClusterUp)
    }

    fn up() -> Result<Cluster, Error> {
        // Set by e2e/run-tests, which has just run `up`: saves every test binary a second `up`.
        if let (Ok(kubeconfig), Ok(bin_dir)) = (
            std::env::var("KPAGES_E2E_KUBECONFIG"),
            std::env::var("KPAGES_E2E_BIN_DIR"),
        ) {
            return Ok(Cluster {
                kubeconfig: kubeconfig.into(),
                bin_dir: bin_dir.into(),
            });
        }
        let script = script();
        // stderr is inherited: the build and start-up progress belongs in the test output.
        let out = Command::new(&script)
            .arg("up")
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|source| Error::Spawn {
                command: format!("{} up", script.display()),
                source,
            })?;
        if !out.status.success() {
            return Err(Error::ClusterUp(format!("exit status {}", out.status)));
        }
        let kubeconfig = last_line(&out.stdout)
            .ok_or_else(|| Error::ClusterUp("printed no kubeconfig path".into()))?;
        let bin = Command::new(&script)
            .arg("bin-dir")
            .output()
            .map_err(|source| Error::Spawn {
                command: format!("{} bin-dir", script.display()),
                source,
            })?;
        let bin_dir = last_line(&bin.stdout)
            .ok_or_else(|| Error::ClusterUp("e2e/cluster bin-dir printed nothing".into()))?;
        Ok(Cluster {
            kubeconfig: PathBuf::from(kubeconfig),
            bin_dir: PathBuf::from(bin_dir),
        })
    }

    /// The admin kubeconfig (server on 127.0.0.1).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A new client for the calling test's runtime.
    pub async fn client(&self) -> Result<Client, Error> {
        // Fails only when a provider is already installed, which is what we want.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let kubeconfig_error = |message: String| Error::Kubeconfig {
            path: self.kubeconfig.clone(),
            message,
        };
        let kc =
            Kubeconfig::read_from(&self.kubeconfig).map_err(|e| kubeconfig_error(e.to_string()))?;
        let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(|e| kubeconfig_error(e.to_string()))?;
        Ok(Client::try_from(config)?)
    }

    /// Runs the testbed's own kubectl against the cluster.
    pub async fn kubectl(&self, args: &[&str]) -> Result<Output, Error> {
        let kubectl = self.bin_dir.join("kubectl");
        let mut cmd = tokio::process::Command::new(&kubectl);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        run(cmd, &format!("kubectl {}", args.join(" "))).await
    }

    /// Runs the testbed's own helm (v3, defaulting to the cluster's Kubernetes minor) against the cluster.
    pub async fn helm(&self, args: &[&str]) -> Result<Output, Error> {
        let helm = self.bin_dir.join("helm");
        let mut cmd = tokio::process::Command::new(&helm);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        run(cmd, &format!("helm {}", args.join(" "))).await
    }

    /// Makes sure [`KPAGES_IMAGE_NAME`] in the cluster holds the current code: runs
    /// `e2e/cluster load-images` once per test binary. Cargo rebuilds only what changed, the
    /// archive is rebuilt only when a binary or the function host changed, and the import is
    /// skipped when containerd already has that digest; so after the first time this costs
    /// seconds. Blocking (a cargo build may run): call it before deadlines start.
    pub fn load_kpages_image(&self) -> Result<(), Error> {
        KPAGES_IMAGE
            .get_or_init(|| {
                let script = script();
                let mut cmd = Command::new(&script);
                // Cargo gives a test the package's CARGO_PKG_*, CARGO_MANIFEST_* … variables;
                // build scripts (ring's) rerun when those change, so the nested build would
                // redo everything from ring up, and again when run from a shell. Drop them.
                for (key, _) in std::env::vars_os() {
                    let key = key.to_string_lossy();
                    if ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_BIN_", "CARGO_CFG_"]
                        .iter()
                        .any(|p| key.starts_with(p))
                        || [
                            "CARGO_CRATE_NAME",
                            "CARGO_PRIMARY_PACKAGE",
                            "CARGO_TARGET_TMPDIR",
                            "OUT_DIR",
                        ]
                        .contains(&key.as_ref())
                    {
                        cmd.env_remove(key.as_ref());
                    }
                }
                // stderr is inherited: the build's progress belongs in the test output.
                let out = cmd
                    .arg("load-images")
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::inherit())
                    .status()
                    .map_err(|e| format!("running {} load-images: {e}", script.display()))?;
                if out.success() {
                    Ok(())
                } else {
                    Err(format!("exit status {out}"))
                }
            })
            .clone()
            .map_err(Error::LoadImages)
    }

    /// A command that runs inside the cluster's network namespace, for the caller to spawn
    /// (a long-running helper such as a forwarder); it is killed when its `Child` is dropped.
    pub fn netns_command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(script());
        cmd.arg("exec").arg("--").args(args).kill_on_drop(true);
        cmd
    }

    /// Runs a command inside the cluster's network namespace, where pod and node IPs are reachable.
    pub async fn netns(&self, args: &[&str]) -> Result<Output, Error> {
        let mut cmd = tokio::process::Command::new(script());
        cmd.arg("exec").arg("--").args(args);
        run(cmd, &format!("e2e/cluster exec -- {}", args.join(" "))).await
    }
}

async fn run(mut cmd: tokio::process::Command, what: &str) -> Result<Output, Error> {
    cmd.kill_on_drop(true)
        .output()
        .await
        .map_err(|source| Error::Spawn {
            command: what.to_string(),
            source,
        })
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster")
}

fn last_line(bytes: &[u8]) -> Option<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
}
