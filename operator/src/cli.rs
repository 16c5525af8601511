//! Flags of `kpages-operator` (every one with an environment fallback) and what each subcommand
//! does: `run` the controllers, `fetch-bundles` (init containers) and `trigger-schedule`
//! (CronJobs).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use kpages_crds::Digest;
use kpages_store::{BlobStore, StoreError};
use kube::Client;
use kube::runtime::events::Reporter;

use crate::context::Context;
use crate::controllers::{deploy, route, site};
use crate::desired::Settings;
use crate::fetch::{FetchError, FetchOptions, fetch_bundles};
use crate::leader::{LeaderError, LeaseConfig, run_as_leader};
use crate::metrics::Metrics;

/// The kpages operator.
#[derive(Debug, Parser)]
#[command(name = "kpages-operator", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the Site, Deploy and FunctionRoute controllers (with leader election).
    Run(Box<RunArgs>),
    /// Fetch a deploy's function bundles into a directory for the Node host (init containers).
    FetchBundles(FetchArgs),
    /// Ask the router to run a scheduled function now (CronJobs).
    TriggerSchedule(TriggerArgs),
}

/// Flags of `run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Object store the operator reads manifests from (file:///dir, s3://bucket?endpoint=…).
    #[arg(long, env = "KPAGES_STORE_URL")]
    pub store_url: String,
    /// The same store as function pods reach it; defaults to --store-url.
    #[arg(long, env = "KPAGES_POD_STORE_URL")]
    pub pod_store_url: Option<String>,
    /// Secret (in each site's namespace) with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY for pods.
    #[arg(
        long,
        env = "KPAGES_STORE_CREDENTIALS_SECRET",
        default_value = "kpages-store"
    )]
    pub store_credentials_secret: String,
    /// Namespaces to serve (repeat, or comma-separated); none: all namespaces.
    #[arg(
        long = "namespace",
        env = "KPAGES_WATCH_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    /// Image with the kpages binaries and the function host (init containers, schedule jobs).
    #[arg(
        long,
        env = "KPAGES_IMAGE",
        default_value = "ghcr.io/kpages/kpages:latest"
    )]
    pub kpages_image: String,
    /// Where the function host lives inside --kpages-image.
    #[arg(
        long,
        env = "KPAGES_RUNTIME_DIR",
        default_value = "/opt/kpages/runtime"
    )]
    pub runtime_dir: String,
    /// Node image for Sites that keep the default `functions.image` (a registry mirror, or a
    /// locally built image); unset keeps the Site's.
    #[arg(long, env = "KPAGES_NODE_IMAGE")]
    pub node_image: Option<String>,
    /// Router admin base URL that schedule jobs POST to.
    #[arg(
        long,
        env = "KPAGES_ROUTER_ADMIN_URL",
        default_value = "http://kpages-router.kpages-system.svc:9090"
    )]
    pub router_admin_url: String,
    /// Namespace of the router (NetworkPolicy); unset admits router pods from any namespace.
    #[arg(long, env = "KPAGES_ROUTER_NAMESPACE")]
    pub router_namespace: Option<String>,
    /// Labels of router pods, `k=v,k2=v2`.
    #[arg(
        long,
        env = "KPAGES_ROUTER_POD_LABELS",
        default_value = "app.kubernetes.io/name=kpages-router"
    )]
    pub router_pod_labels: String,
    /// Domain of preview hosts (`<deploy>--<site>.<namespace>.<domain>`).
    #[arg(
        long,
        env = "KPAGES_PREVIEW_DOMAIN",
        default_value = "preview.kpages.localhost"
    )]
    pub preview_domain: String,
    /// Scheme of published URLs.
    #[arg(long, env = "KPAGES_URL_SCHEME", default_value = "https")]
    pub url_scheme: String,
    /// Address of /metrics and /healthz; empty disables.
    #[arg(long, env = "KPAGES_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: String,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "KPAGES_LEASE_NAMESPACE", default_value = "kpages-system")]
    pub lease_namespace: String,
    /// Name of the Lease.
    #[arg(long, env = "KPAGES_LEASE_NAME", default_value = "kpages-operator")]
    pub lease_name: String,
    /// This replica's identity (pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds a lease is valid without renewal.
    #[arg(long, env = "KPAGES_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,
}

/// Flags of `fetch-bundles`.
#[derive(Debug, Clone, Args)]
pub struct FetchArgs {
    /// Object store URL.
    #[arg(long, env = "KPAGES_STORE_URL")]
    pub store: String,
    /// Manifest digest (sha256:…).
    #[arg(long)]
    pub manifest: Digest,
    /// Directory to fill.
    #[arg(long)]
    pub out: PathBuf,
    /// The function host directory to copy; `none` skips the copy.
    #[arg(long, default_value = "/opt/kpages/runtime")]
    pub runtime: String,
    /// Default sync timeout, seconds.
    #[arg(long, default_value_t = kpages_crds::limits::DEFAULT_SYNC_TIMEOUT_SECONDS)]
    pub timeout_seconds: u32,
    /// Default background timeout, seconds.
    #[arg(long, default_value_t = kpages_crds::limits::DEFAULT_BACKGROUND_TIMEOUT_SECONDS)]
    pub background_timeout_seconds: u32,
}

/// Flags of `trigger-schedule`.
#[derive(Debug, Clone, Args)]
pub struct TriggerArgs {
    /// Router admin base URL (http://host:port).
    #[arg(long, env = "KPAGES_ROUTER_ADMIN_URL")]
    pub router: String,
    /// Site namespace.
    #[arg(long)]
    pub namespace: String,
    /// Site name.
    #[arg(long)]
    pub site: String,
    /// Function name.
    #[arg(long)]
    pub function: String,
    /// The cron schedule (for logs; the router knows the next run).
    #[arg(long)]
    pub schedule: String,
    /// How long to wait for the router, seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout_seconds: u64,
}

/// Why a subcommand failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag is wrong.
    #[error("{0}")]
    Flag(String),
    /// Kubernetes client setup failed.
    #[error("connecting to Kubernetes: {0}")]
    Kube(#[from] kube::Error),
    /// The store URL is wrong.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Fetching bundles failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// Leadership was lost.
    #[error(transparent)]
    Leader(#[from] LeaderError),
    /// The router refused or could not be reached.
    #[error("triggering {url}: {message}")]
    Trigger {
        /// The URL.
        url: String,
        /// What happened.
        message: String,
    },
}

/// Everything `run` needs, already parsed.
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// Desired-object settings.
    pub settings: Settings,
    /// The operator's store URL.
    pub store_url: String,
    /// Namespace scope: these namespaces, or all when empty.
    pub namespaces: Vec<String>,
    /// Metrics address.
    pub metrics_addr: Option<SocketAddr>,
    /// Leader election.
    pub lease: LeaseConfig,
}

impl RunArgs {
    /// Parses the flags into a configuration.
    pub fn config(&self) -> Result<OperatorConfig, CliError> {
        let router_pod_labels = parse_labels(&self.router_pod_labels)?;
        let metrics_addr = if self.metrics_addr.is_empty() {
            None
        } else {
            Some(self.metrics_addr.parse().map_err(|e| {
                CliError::Flag(format!("--metrics-addr {:?}: {e}", self.metrics_addr))
            })?)
        };
        let identity = self
            .identity
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| format!("kpages-operator-{}", std::process::id()));
        let lease_duration = Duration::from_secs(self.lease_duration_seconds.max(3));
        Ok(OperatorConfig {
            settings: Settings {
                kpages_image: self.kpages_image.clone(),
                runtime_dir: self.runtime_dir.clone(),
                pod_store_url: self
                    .pod_store_url
                    .clone()
                    .unwrap_or_else(|| self.store_url.clone()),
                store_credentials_secret: Some(self.store_credentials_secret.clone())
                    .filter(|s| !s.is_empty()),
                router_admin_url: self.router_admin_url.clone(),
                router_pod_labels,
                router_namespace: self.router_namespace.clone(),
                preview_domain: self.preview_domain.clone(),
                url_scheme: self.url_scheme.clone(),
                run_as_user: 1000,
                node_image: self.node_image.clone().filter(|i| !i.is_empty()),
            },
            store_url: self.store_url.clone(),
            namespaces: self
                .namespaces
                .iter()
                .filter(|n| !n.is_empty())
                .cloned()
                .collect(),
            metrics_addr,
            lease: LeaseConfig {
                namespace: self.lease_namespace.clone(),
                name: self.lease_name.clone(),
                identity,
                lease_duration,
                renew_every: lease_duration / 3,
                retry_every: lease_duration / 5,
            },
        })
    }
}

fn parse_labels(raw: &str) -> Result<BTreeMap<String, String>, CliError> {
    raw.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| {
                    CliError::Flag(format!("--router-pod-labels: {pair:?} is not key=value"))
                })
        })
        .collect()
}

/// Runs the controllers with leader election until `shutdown` completes or leadership is lost.
pub async fn run(
    client: Client,
    config: OperatorConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CliError> {
    let store = BlobStore::from_url(&config.store_url)?;
    run_with_store(client, config, store, shutdown).await
}

/// [`run`] with a store opened by the caller (credentials from somewhere other than the
/// process environment, an in-memory store…); `config.store_url` is not used.
pub async fn run_with_store(
    client: Client,
    config: OperatorConfig,
    store: BlobStore,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CliError> {
    let metrics = Arc::new(Metrics::default());
    let metrics_task = config
        .metrics_addr
        .map(|addr| tokio::spawn(crate::metrics::serve(addr, metrics.clone())));
    let reporter = Reporter {
        controller: "kpages-operator".into(),
        instance: Some(config.lease.identity.clone()),
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        config.settings.clone(),
        store,
        metrics.clone(),
        reporter,
    ));
    // One set of controllers per namespace (every object they touch is namespaced, so the sets
    // are independent and each needs only that namespace's RBAC), or one for all namespaces.
    let scopes: Vec<Option<&str>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().map(|n| Some(n.as_str())).collect()
    };
    let controllers = async {
        let all = futures::future::join_all(scopes.into_iter().map(|ns| {
            futures::future::join3(
                deploy::run(ctx.clone(), ns),
                site::run(ctx.clone(), ns),
                route::run(ctx.clone(), ns),
            )
        }));
        tokio::select! {
            _ = all => {}
            () = shutdown => {}
        }
    };
    let result = run_as_leader(client, config.lease.clone(), &metrics, controllers).await;
    if let Some(task) = metrics_task {
        task.abort();
    }
    Ok(result?)
}

/// `fetch-bundles`.
pub async fn fetch(args: &FetchArgs) -> Result<(), CliError> {
    let store = BlobStore::from_url(&args.store)?;
    let opts = FetchOptions {
        manifest: args.manifest,
        out: args.out.clone(),
        runtime: (args.runtime != "none").then(|| PathBuf::from(&args.runtime)),
        timeout_seconds: args.timeout_seconds,
        background_timeout_seconds: args.background_timeout_seconds,
    };
    let report = fetch_bundles(&store, &opts).await?;
    tracing::info!(functions = report.functions, blobs = report.blobs, out = %args.out.display(), "bundles fetched and verified");
    Ok(())
}

/// `trigger-schedule`: `POST <router>/.kpages/schedule/<ns>/<site>/<function>` with
/// `{"next_run": null}` — the router owns the cron schedule and fills in the next run.
pub async fn trigger(args: &TriggerArgs) -> Result<(), CliError> {
    let url = format!(
        "{}/.kpages/schedule/{}/{}/{}",
        args.router.trim_end_matches('/'),
        args.namespace,
        args.site,
        args.function
    );
    let fail = |message: String| CliError::Trigger {
        url: url.clone(),
        message,
    };
    let request = http::Request::post(&url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{\"next_run\":null}")))
        .map_err(|e| fail(e.to_string()))?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let response = tokio::time::timeout(
        Duration::from_secs(args.timeout_seconds),
        client.request(request),
    )
    .await
    .map_err(|_| fail(format!("no answer within {}s", args.timeout_seconds)))?
    .map_err(|e| fail(e.to_string()))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if !status.is_success() {
        return Err(fail(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body)
        )));
    }
    tracing::info!(%url, schedule = %args.schedule, "scheduled run triggered");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// Embedders (the e2e tests) spawn the operator on a multi-threaded runtime, so `run` and
    /// `run_with_store` must stay `Send` through the generic controller runner.
    #[test]
    fn the_operator_future_is_send() {
        let _ = |client: Client, config: OperatorConfig, store: BlobStore| {
            assert_send(&run(client.clone(), config.clone(), std::future::pending()));
            assert_send(&run_with_store(
                client,
                config,
                store,
                std::future::pending(),
            ));
        };
    }
}
