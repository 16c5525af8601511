//! A local Node function host for `kpages dev`: the deploy's bundles written out of the
//! store, a `functions.json`, and one `node runtime/src/host.mjs` child on 127.0.0.1, ready
//! once its readiness endpoint says so. In clusters the operator runs hosts as pods instead.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kpages_crds::Manifest;
use kpages_crds::host::FunctionsFile;
use kpages_crds::limits::CallLimits;
use kpages_crds::manifest::Limits;
use kpages_store::BlobStore;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Oldest Node.js major version the host supports.
pub const MIN_NODE_MAJOR: u32 = 20;

/// Why the function host could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeHostError {
    /// `node` is not on PATH.
    #[error(
        "Node.js {MIN_NODE_MAJOR}+ is needed to run functions, but `{0}` was not found; install Node.js {MIN_NODE_MAJOR} or newer (https://nodejs.org) and make sure `node` is on PATH"
    )]
    NodeMissing(String),
    /// `node` is too old.
    #[error(
        "Node.js {MIN_NODE_MAJOR}+ is needed to run functions, but `node --version` says {0}; install Node.js {MIN_NODE_MAJOR} or newer"
    )]
    NodeTooOld(String),
    /// A bundle could not be written out.
    #[error("writing function bundles: {0}")]
    Store(#[from] kpages_store::StoreError),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A manifest names an included file outside its function's directory.
    #[error(
        "function {function:?} includes {path:?}, which is outside its directory; included files must be relative paths inside the site"
    )]
    UnsafeIncludedFile {
        /// The function.
        function: String,
        /// The included path.
        path: String,
    },
    /// The host exited or never said where it listens.
    #[error("the function host did not start: {0}")]
    DidNotStart(String),
    /// The host never became ready.
    #[error("the function host did not become ready within {0:?}")]
    NotReady(Duration),
}

/// Checks that `node` exists and is new enough; returns its version.
pub async fn check_node(node: &Path) -> Result<String, NodeHostError> {
    let out = Command::new(node)
        .arg("--version")
        .output()
        .await
        .map_err(|_| NodeHostError::NodeMissing(node.display().to_string()))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let major = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(m) if m >= MIN_NODE_MAJOR => Ok(version),
        _ => Err(NodeHostError::NodeTooOld(version)),
    }
}

/// Writes every function's bundle and included files under `dir` and the `functions.json`
/// that names them; returns the path of `functions.json`.
pub async fn materialise(
    store: &BlobStore,
    manifest: &Manifest,
    dir: &Path,
) -> Result<PathBuf, NodeHostError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| NodeHostError::Io { path, source }
    };
    tokio::fs::create_dir_all(dir).await.map_err(io(dir))?;
    for f in &manifest.functions {
        let fdir = dir.join(&f.name);
        let file = fdir.join(format!("{}.mjs", f.name));
        store.download_to(&f.bundle, &file).await?;
        for inc in &f.included_files {
            // The build only writes relative, normalised paths inside the site; a manifest
            // from elsewhere that names anything else is refused, as the operator refuses it.
            if inc.path.split(['/', '\\']).any(|s| s == "..") || Path::new(&inc.path).is_absolute()
            {
                return Err(NodeHostError::UnsafeIncludedFile {
                    function: f.name.clone(),
                    path: inc.path.clone(),
                });
            }
            store
                .download_to(&inc.digest, &fdir.join(&inc.path))
                .await?;
        }
    }
    let list = FunctionsFile::new(
        manifest,
        &Limits::default(),
        CallLimits::default(),
        |name| format!("{name}/{name}.mjs"),
    );
    let path = dir.join(FunctionsFile::NAME);
    tokio::fs::write(&path, list.to_json())
        .await
        .map_err(io(&path))?;
    Ok(path)
}

/// A running host.
pub struct NodeHost {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl NodeHost {
    /// Starts `node <script> --functions <file> --port 0 --host 127.0.0.1` and waits until it
    /// is ready. Host log lines go to `log`.
    pub async fn start(
        node: &Path,
        script: &Path,
        functions: &Path,
        env: &[(String, String)],
        log: fn(&str),
    ) -> Result<Self, NodeHostError> {
        let mut cmd = Command::new(node);
        cmd.arg(script)
            .arg("--functions")
            .arg(functions)
            .args(["--port", "0", "--host", "127.0.0.1"])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|_| NodeHostError::NodeMissing(node.display().to_string()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| NodeHostError::DidNotStart("no stdout".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let port = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                log(&line);
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["msg"] == "listening"
                    && let Some(p) = v["port"].as_u64()
                {
                    return u16::try_from(p).ok();
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .ok_or_else(|| {
            NodeHostError::DidNotStart("it exited or printed no \"listening\" line".into())
        })?;
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                log(&line);
            }
        });
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_ready(addr, Duration::from_secs(60)).await?;
        Ok(Self { child, addr })
    }

    /// Asks the host to stop (SIGTERM: it finishes in-flight requests), then waits, killing
    /// it if it takes longer than `grace`.
    pub async fn stop(mut self, grace: Duration) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Polls `GET /.kpages/ready` until it answers 200.
async fn wait_ready(addr: SocketAddr, limit: Duration) -> Result<(), NodeHostError> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = format!("http://{addr}/.kpages/ready")
        .parse()
        .map_err(|_| NodeHostError::DidNotStart(format!("bad address {addr}")))?;
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if let Ok(resp) = client.get(uri.clone()).await {
            let ok = resp.status() == http::StatusCode::OK;
            let _ = resp.into_body().collect().await;
            if ok {
                return Ok(());
            }
        }
        // The host reports readiness only when asked; a short pause between polls.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(NodeHostError::NotReady(limit))
}

/// Finds `runtime/src/host.mjs`: `$KPAGES_RUNTIME`, next to the running binary's source
/// tree (`target/*/kpages` → `runtime/`), or the source tree this crate was built from.
pub fn locate_host_script() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KPAGES_RUNTIME") {
        let p = PathBuf::from(p);
        let script = if p.is_dir() {
            p.join("src/host.mjs")
        } else {
            p
        };
        return script.is_file().then_some(script);
    }
    let from_exe = std::env::current_exe().ok().and_then(|exe| {
        exe.ancestors()
            .map(|a| a.join("runtime/src/host.mjs"))
            .find(|p| p.is_file())
    });
    from_exe.or_else(|| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/src/host.mjs");
        p.is_file().then_some(p)
    })
}
