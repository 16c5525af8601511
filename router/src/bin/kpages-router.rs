//! `kpages-router`: in a cluster (the default), serves every Site from Site/Deploy/EndpointSlice
//! watches; with `--manifest`, serves that one deploy with the given function hosts. Flags in,
//! tasks out.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

/// mimalloc instead of glibc malloc: the request path allocates small, short-lived buffers
/// from every worker thread, where glibc's arenas cost ~15 % of the router's CPU (perf).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use kpages_router::http::admin;
use kpages_router::http::pipeline::{App, Config};
use kpages_router::http::server;
use kpages_router::jobs::queue::NoQueue;
use kpages_router::jobs::scheduler;
use kpages_router::observe::geo::GeoLookup;
use kpages_router::sources::cluster::{self, ClusterConfig};
use kpages_router::sources::local;
use kpages_router::table::{RouteTable, Routes};
use std::time::Duration;

/// The kpages router: static files, rules and functions of a deploy.
#[derive(Parser)]
#[command(name = "kpages-router", version, about)]
struct Args {
    /// Public listener (HTTP/1.1 and h2c).
    #[arg(long, env = "KPAGES_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Admin listener: /metrics, /healthz, /readyz, POST /functions/<name>/run,
    /// POST /.kpages/schedule/<namespace>/<site>/<function>, GET /calls/<id>,
    /// POST /queue/dead-letters/redrive.
    #[arg(long, env = "KPAGES_ADMIN_ADDR", default_value = "127.0.0.1:9090")]
    admin_listen: SocketAddr,
    /// Object store URL: file:///dir, s3://bucket/prefix?endpoint=…, memory://.
    #[arg(long, env = "KPAGES_STORE_URL")]
    store: String,
    /// Serve this one deploy (its manifest digest) instead of watching the cluster.
    #[arg(long, env = "KPAGES_MANIFEST")]
    manifest: Option<kpages_crds::Digest>,
    /// Site name (metrics and logs) with --manifest.
    #[arg(long, env = "KPAGES_SITE", default_value = "default")]
    site: String,
    /// Function host endpoints with --manifest (repeat for several).
    #[arg(
        long = "function-host",
        env = "KPAGES_FUNCTION_HOSTS",
        value_delimiter = ','
    )]
    function_hosts: Vec<SocketAddr>,
    /// Cluster mode: the namespaces to watch (comma-separated); empty watches every namespace.
    #[arg(
        long = "namespace",
        env = "KPAGES_WATCH_NAMESPACES",
        value_delimiter = ','
    )]
    namespaces: Vec<String>,
    /// Cluster mode: domain of preview hosts (`<deploy>--<site>.<namespace>.<domain>`), as the
    /// operator's.
    #[arg(
        long,
        env = "KPAGES_PREVIEW_DOMAIN",
        default_value = "preview.kpages.localhost"
    )]
    preview_domain: String,
    /// Cluster mode: seconds a call waits for a deploy scaled to zero to get a ready pod
    /// before the answer is 503 with Retry-After.
    #[arg(long, env = "KPAGES_COLD_START_TIMEOUT_SECONDS", default_value_t = 60)]
    cold_start_timeout_seconds: u64,
    /// Cluster mode: seconds between notes of recent calls on Deploys (keeps them warm).
    #[arg(long, env = "KPAGES_ACTIVITY_INTERVAL_SECONDS", default_value_t = 30)]
    activity_interval_seconds: u64,
    /// Peers whose X-Forwarded-* headers are believed (CIDRs, repeatable).
    #[arg(long = "trusted-proxy", value_delimiter = ',')]
    trusted_proxies: Vec<ipnet::IpNet>,
    /// Secret that signs Netlify Identity `nf_jwt` tokens, for `Role` rule conditions.
    #[arg(long, env = "KPAGES_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// OTLP/HTTP endpoint for trace export (`http://collector:4318/v1/traces`); off when unset.
    /// Needs a build with `--features otlp`.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// MaxMind GeoIP2/GeoLite2 City database.
    #[arg(long, env = "KPAGES_GEO_DB")]
    geo_db: Option<PathBuf>,
    #[command(flatten)]
    queue: kpages_router::jobs::jetstream::QueueArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    // Several rustls crypto providers are compiled in (kube: ring; object_store, async-nats:
    // aws-lc-rs), so rustls cannot pick one itself: use ring everywhere.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let traces = match init_logs(args.otlp_endpoint.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("kpages-router: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "kpages-router stopped");
            eprintln!("kpages-router: {e}");
            ExitCode::FAILURE
        }
    };
    traces.flush();
    code
}

/// JSON logs (with the request span's fields, among them the request id) to stdout, and
/// spans to OTLP when an endpoint is configured.
fn init_logs(otlp_endpoint: Option<&str>) -> Result<Traces, Box<dyn std::error::Error>> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true);
    let (otel, traces) = otel_layer(otlp_endpoint)?;
    tracing_subscriber::registry()
        .with(otel)
        .with(filter)
        .with(logs)
        .try_init()?;
    Ok(traces)
}

/// The tracer provider, shut down at exit so the last spans are exported.
struct Traces(#[cfg(feature = "otlp")] Option<opentelemetry_sdk::trace::SdkTracerProvider>);

impl Traces {
    fn flush(self) {
        #[cfg(feature = "otlp")]
        if let Some(p) = self.0 {
            let _ = p.shutdown();
        }
    }
}

#[cfg(feature = "otlp")]
type OtelLayer = Option<
    tracing_opentelemetry::OpenTelemetryLayer<
        tracing_subscriber::Registry,
        opentelemetry_sdk::trace::Tracer,
    >,
>;

#[cfg(feature = "otlp")]
fn otel_layer(endpoint: Option<&str>) -> Result<(OtelLayer, Traces), Box<dyn std::error::Error>> {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    let Some(endpoint) = endpoint else {
        return Ok((None, Traces(None)));
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .build()?;
    // The batch processor runs on Tokio: the exporter's hyper client needs its reactor.
    let batch =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(batch)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("kpages-router")
                .build(),
        )
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("kpages-router"));
    Ok((Some(layer), Traces(Some(provider))))
}

#[cfg(not(feature = "otlp"))]
fn otel_layer(
    endpoint: Option<&str>,
) -> Result<(Option<tracing_subscriber::layer::Identity>, Traces), Box<dyn std::error::Error>> {
    if endpoint.is_some() {
        return Err("--otlp-endpoint needs a kpages-router built with `--features otlp`".into());
    }
    Ok((None, Traces()))
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let store = kpages_store::BlobStore::from_url(&args.store)?;
    let cluster = match args.manifest {
        Some(digest) => {
            let manifest = store.get_manifest(&digest).await?;
            let (table, unusable) = local::single_deploy(
                &args.site,
                digest.to_string(),
                Arc::new(manifest),
                args.function_hosts.clone(),
            );
            for w in &unusable {
                tracing::warn!(unusable = %w, "manifest pattern skipped");
            }
            Source::Single(table)
        }
        None => Source::Cluster(ClusterConfig {
            namespaces: args
                .namespaces
                .iter()
                .filter(|n| !n.is_empty())
                .cloned()
                .collect(),
            preview_domain: args.preview_domain.clone(),
            activity_interval: Duration::from_secs(args.activity_interval_seconds.max(1)),
            ..ClusterConfig::default()
        }),
    };
    let geo = match &args.geo_db {
        Some(p) => GeoLookup::maxmind(p)?,
        None => GeoLookup::Off,
    };
    let config = Config {
        trusted_proxies: args.trusted_proxies,
        jwt_secret: args.jwt_secret.map(String::into_bytes),
        cold_start_timeout: Duration::from_secs(args.cold_start_timeout_seconds),
        own_listeners: vec![args.listen, args.admin_listen],
        ..Config::default()
    };
    let (routes, cluster) = match cluster {
        Source::Single(table) => (Arc::new(Routes::new(table)), None),
        Source::Cluster(c) => (Arc::new(Routes::pending()), Some(c)),
    };
    let app = if cluster.is_some() && args.queue.config().is_none() {
        // Several routers, each restartable: an in-process queue would lose accepted jobs.
        tracing::warn!(
            "no NATS URL: background functions answer 503 (set --nats-url / the chart's nats.url)"
        );
        App::with_queue(config, routes.clone(), store.clone(), geo, |_, _| {
            Arc::new(NoQueue(
                "background functions need NATS JetStream in a cluster; the router has no --nats-url (chart: nats.url or natsServer.enabled)",
            ))
        })
    } else {
        kpages_router::http::pipeline::build_app(
            &args.queue,
            config,
            routes.clone(),
            store.clone(),
            geo,
        )
        .await?
    };
    let listener = server::bind(args.listen).await?;
    let admin = server::bind(args.admin_listen).await?;
    tracing::info!(listen = %args.listen, admin = %args.admin_listen, "serving");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let watching = cluster.is_some();
    let sched = match cluster {
        // One deploy: the in-process scheduler runs its scheduled functions.
        None => tokio::spawn(scheduler::run(
            routes,
            app.runner(),
            scheduler::system_clock(),
            stopped(stop_rx.clone()),
        )),
        // Cluster: the operator's CronJobs trigger scheduled runs (once per schedule, however
        // many routers run); the watches feed the table.
        Some(config) => {
            let client = kube::Client::try_default().await?;
            tracing::info!(
                namespaces = ?config.namespaces,
                "cluster mode: watching Sites, Deploys and EndpointSlices (no namespaces: all)"
            );
            tokio::spawn(async move {
                if let Err(e) = cluster::run(client, store, routes, config).await {
                    tracing::error!(error = %e, "cluster source stopped");
                }
            })
        }
    };
    let admin_task = tokio::spawn(admin::serve_admin(
        admin,
        app.clone(),
        stopped(stop_rx.clone()),
    ));
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stop_tx.send(true);
    });
    server::serve(listener, app, stopped(stop_rx)).await?;
    let _ = admin_task.await;
    if watching {
        sched.abort();
    } else {
        let _ = sched.await;
    }
    Ok(())
}

/// Where the routing table comes from.
enum Source {
    /// One deploy, given by flags.
    Single(RouteTable),
    /// Site/Deploy/EndpointSlice watches.
    Cluster(ClusterConfig),
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
