//! `kpages-router`: serves one deploy from object storage with its function host, until the
//! cluster source (Site/Deploy/EndpointSlice watches) lands. Flags in, tasks out.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use kpages_router::app::Config;
use kpages_router::geo::GeoLookup;
use kpages_router::resolve::CompiledDeploy;
use kpages_router::table::{Deploy, FunctionUpstream, RouteTable, Routes, Site};
use kpages_router::{scheduler, server};

/// The kpages router: static files, rules and functions of a deploy.
#[derive(Parser)]
#[command(name = "kpages-router", version, about)]
struct Args {
    /// Public listener (HTTP/1.1 and h2c).
    #[arg(long, env = "KPAGES_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Admin listener: /metrics, /healthz, POST /functions/<name>/run, GET /calls/<id>,
    /// POST /queue/dead-letters/redrive.
    #[arg(long, env = "KPAGES_ADMIN_LISTEN", default_value = "127.0.0.1:9090")]
    admin_listen: SocketAddr,
    /// Object store URL: file:///dir, s3://bucket/prefix?endpoint=…, memory://.
    #[arg(long, env = "KPAGES_STORE")]
    store: String,
    /// The deploy to serve: its manifest digest.
    #[arg(long, env = "KPAGES_MANIFEST")]
    manifest: kpages_crds::Digest,
    /// Site name (metrics and logs).
    #[arg(long, env = "KPAGES_SITE", default_value = "default")]
    site: String,
    /// Function host endpoints (repeat for several).
    #[arg(
        long = "function-host",
        env = "KPAGES_FUNCTION_HOSTS",
        value_delimiter = ','
    )]
    function_hosts: Vec<SocketAddr>,
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
    queue: kpages_router::jetstream::QueueArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
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
    let manifest = store.get_manifest(&args.manifest).await?;
    let routes = CompiledDeploy::compile(Arc::new(manifest));
    for w in &routes.warnings {
        tracing::warn!(warning = %w, "manifest");
    }
    let table = RouteTable::single(Site {
        name: args.site,
        deploy: Arc::new(Deploy {
            id: args.manifest.to_string(),
            routes,
            functions: FunctionUpstream::new(args.function_hosts),
            production: true,
        }),
    });
    let geo = match &args.geo_db {
        Some(p) => GeoLookup::maxmind(p)?,
        None => GeoLookup::Off,
    };
    let config = Config {
        trusted_proxies: args.trusted_proxies,
        jwt_secret: args.jwt_secret.map(String::into_bytes),
        ..Config::default()
    };
    let routes = Arc::new(Routes::new(table));
    let app = kpages_router::jetstream::build_app(&args.queue, config, routes.clone(), store, geo)
        .await?;
    let listener = server::bind(args.listen).await?;
    let admin = server::bind(args.admin_listen).await?;
    tracing::info!(listen = %args.listen, admin = %args.admin_listen, "serving");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let sched = tokio::spawn(scheduler::run(
        routes,
        app.runner(),
        scheduler::system_clock(),
        stopped(stop_rx.clone()),
    ));
    let admin_task = tokio::spawn(server::serve_admin(
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
    let _ = sched.await;
    Ok(())
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
