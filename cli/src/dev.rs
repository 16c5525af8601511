//! `kpages dev [DIR] [--port 8788]`: build the site, serve it with the router on a local
//! filesystem store and one Node function host, rebuild and swap in the new deploy when
//! files change, stop cleanly on Ctrl-C.
//!
//! ```text
//!  build (kpages-sitebuild) ─► DIR/.kpages/out (blobs) ─► BlobStore::local
//!        │                                              │
//!        └─► manifest ─► bundles + functions.json ─► node host.mjs (127.0.0.1:random)
//!                    └─► RouteTable::single ─► Routes.swap ─► router on 127.0.0.1:PORT
//!  file change ─► rebuild ─► new host ready ─► swap ─► old host drains and exits
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kpages_crds::Manifest;
use kpages_router::http::admin;
use kpages_router::http::pipeline::{App, Config};
use kpages_router::http::server;
use kpages_router::jobs::scheduler;
use kpages_router::observe::geo::GeoLookup;
use kpages_router::sources::local;
use kpages_router::table::{RouteTable, Routes};

use crate::node_host::{self, NodeHost};
use crate::watch::SiteWatcher;
use kpages_store::BlobStore;

/// Arguments of `kpages dev`.
#[derive(clap::Args)]
pub struct Args {
    /// The site directory.
    #[arg(value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// Port to serve on.
    #[arg(long, default_value_t = 8788)]
    port: u16,
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Admin port (/metrics, POST /functions/<name>/run); 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    admin_port: u16,
    /// Geo lookup: `off`, `mock` (with --country) or the path of a MaxMind .mmdb file.
    #[arg(long, default_value = "off")]
    geo: String,
    /// Country every client appears to be in with --geo=mock.
    #[arg(long, default_value = "US")]
    country: String,
    /// The esbuild binary (as in `kpages build`).
    #[arg(long, value_name = "FILE")]
    esbuild: Option<PathBuf>,
    /// The Node.js binary.
    #[arg(long, default_value = "node")]
    node: PathBuf,
    /// Do not rebuild when files change.
    #[arg(long)]
    no_watch: bool,
}

/// Why `kpages dev` stopped.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// The build failed.
    #[error("{0}")]
    Build(#[from] kpages_sitebuild::BuildError),
    /// The store could not be opened.
    #[error("{0}")]
    Store(#[from] kpages_store::StoreError),
    /// The function host could not start.
    #[error("{0}")]
    Host(#[from] node_host::NodeHostError),
    /// A port could not be bound.
    #[error("{0}")]
    Bind(#[from] server::BindError),
    /// The geo database could not be opened.
    #[error("{0}")]
    Geo(#[from] kpages_router::observe::geo::GeoError),
    /// The site directory cannot be watched for changes.
    #[error(
        "cannot watch the site for changes ({0}); run with --no-watch to serve without rebuilding"
    )]
    Watch(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// Runs `kpages dev` until Ctrl-C.
pub fn run(args: &Args) -> Result<(), DevError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| DevError::Other(format!("starting the async runtime: {e}")))?;
    runtime.block_on(dev(args))
}

/// One built deploy and the host running its functions.
struct Running {
    manifest: Manifest,
    host: Option<NodeHost>,
}

async fn dev(args: &Args) -> Result<(), DevError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,kpages_router=info".into()),
        )
        .with_target(false)
        .compact()
        .init();
    // Fail fast and clearly on the two things a new user most often hits.
    let listener = server::bind(SocketAddr::new(args.host, args.port)).await?;
    let admin = server::bind(SocketAddr::new(args.host, args.admin_port)).await?;
    let node_version = node_host::check_node(&args.node).await?;
    let script = node_host::locate_host_script().ok_or_else(|| {
        DevError::Other(
            "cannot find the function host runtime/src/host.mjs; set KPAGES_RUNTIME to the runtime/ directory of the kpages source".into(),
        )
    })?;
    let site_dir = args
        .dir
        .canonicalize()
        .map_err(|e| DevError::Other(format!("{}: {e}", args.dir.display())))?;
    let site_name = site_dir
        .file_name()
        .map_or_else(|| "site".into(), |n| n.to_string_lossy().into_owned());
    let work = site_dir.join(".kpages/dev");
    let out = site_dir.join(".kpages/out");
    let public = listener
        .local_addr()
        .map_err(|e| DevError::Other(e.to_string()))?;
    let url = format!("http://{public}");

    let manifest = build(&site_dir, &out, args.esbuild.clone()).await?;
    let store = BlobStore::local(&out)?;
    let ctx = HostContext {
        node: args.node.clone(),
        script,
        work,
        site_name: site_name.clone(),
        url: url.clone(),
    };
    let mut generation = 1u64;
    let running = ctx.start(&store, manifest, generation).await?;
    let routes = Arc::new(Routes::new(table(&site_name, &running, generation)));
    let geo = match args.geo.as_str() {
        "off" => GeoLookup::Off,
        "mock" => GeoLookup::mock_country(&args.country),
        path => GeoLookup::maxmind(Path::new(path))?,
    };
    // Rules may proxy to the developer's own loopback servers, never to these two.
    let own_listeners = [&listener, &admin]
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    let config = Config {
        max_connections: 1024,
        shutdown_grace: Duration::from_secs(5),
        own_listeners,
        ..Config::default()
    };
    let app = App::new(config, routes.clone(), store.clone(), geo);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let admin_addr = admin
        .local_addr()
        .map_err(|e| DevError::Other(e.to_string()))?;
    let serving = tokio::spawn(server::serve(
        listener,
        app.clone(),
        stopped(stop_rx.clone()),
    ));
    let admin_task = tokio::spawn(admin::serve_admin(
        admin,
        app.clone(),
        stopped(stop_rx.clone()),
    ));
    let sched = tokio::spawn(scheduler::run(
        routes.clone(),
        app.runner(),
        scheduler::system_clock(),
        stopped(stop_rx.clone()),
    ));
    println!(
        "kpages dev: {} ({} files, {} functions; Node.js {node_version})",
        site_dir.display(),
        running.manifest.files.len(),
        running.manifest.functions.len()
    );
    println!("  ready on {url}");
    println!("  admin    http://{admin_addr}  (metrics, POST /functions/<name>/run)");

    let mut current = running;
    let mut watcher = if args.no_watch {
        None
    } else {
        Some(SiteWatcher::start(&site_dir).map_err(|e| DevError::Watch(e.to_string()))?)
    };
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let change = async {
            match watcher.as_mut() {
                Some(w) => w.changed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut ctrl_c => break,
            () = change => {}
        }
        println!("kpages dev: change detected, rebuilding…");
        let manifest = match build(&site_dir, &out, args.esbuild.clone()).await {
            Ok(m) => m,
            Err(e) => {
                eprintln!("kpages dev: build failed, still serving the previous build:\n  {e}");
                continue;
            }
        };
        generation += 1;
        let next = match ctx.start(&store, manifest, generation).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("kpages dev: {e}; still serving the previous build");
                continue;
            }
        };
        routes.swap(table(&site_name, &next, generation));
        let old = std::mem::replace(&mut current, next);
        // In-flight calls to the old host finish: it drains on SIGTERM.
        if let Some(host) = old.host {
            tokio::spawn(host.stop(Duration::from_secs(10)));
        }
        println!("kpages dev: rebuilt; serving the new deploy on {url}");
    }
    println!("\nkpages dev: stopping");
    let _ = stop_tx.send(true);
    let _ = serving.await;
    let _ = admin_task.await;
    let _ = sched.await;
    if let Some(host) = current.host {
        host.stop(Duration::from_secs(5)).await;
    }
    Ok(())
}

async fn build(site: &Path, out: &Path, esbuild: Option<PathBuf>) -> Result<Manifest, DevError> {
    let opts = kpages_sitebuild::BuildOptions {
        site_dir: site.to_path_buf(),
        out_dir: Some(out.to_path_buf()),
        esbuild,
    };
    let report = tokio::task::spawn_blocking(move || kpages_sitebuild::build(&opts))
        .await
        .map_err(|e| DevError::Other(format!("build task: {e}")))??;
    Ok(report.manifest)
}

struct HostContext {
    node: PathBuf,
    script: PathBuf,
    work: PathBuf,
    site_name: String,
    url: String,
}

impl HostContext {
    /// Writes the deploy's bundles and starts a host for them (none without functions).
    async fn start(
        &self,
        store: &BlobStore,
        manifest: Manifest,
        generation: u64,
    ) -> Result<Running, DevError> {
        if manifest.functions.is_empty() {
            return Ok(Running {
                manifest,
                host: None,
            });
        }
        let dir = self.work.join(format!("deploy-{generation}"));
        let functions = node_host::materialise(store, &manifest, &dir).await?;
        let env = vec![
            ("CONTEXT".to_string(), "dev".to_string()),
            ("SITE_NAME".to_string(), self.site_name.clone()),
            ("SITE_ID".to_string(), self.site_name.clone()),
            ("URL".to_string(), self.url.clone()),
            ("DEPLOY_ID".to_string(), format!("dev-{generation}")),
        ];
        let host =
            NodeHost::start(&self.node, &self.script, &functions, &env, print_host_line).await?;
        Ok(Running {
            manifest,
            host: Some(host),
        })
    }
}

/// Host log lines: the user's own output and errors, as the host wrote them.
fn print_host_line(line: &str) {
    println!("  {line}");
}

fn table(site: &str, running: &Running, generation: u64) -> RouteTable {
    let (table, unusable) = local::single_deploy(
        site,
        format!("dev-{generation}"),
        Arc::new(running.manifest.clone()),
        running.host.iter().map(|h| h.addr).collect(),
    );
    for w in &unusable {
        eprintln!("kpages dev: warning: {w}");
    }
    table
}
