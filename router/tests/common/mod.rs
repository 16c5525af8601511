//! Test harness: real Node function hosts, a router on 127.0.0.1:0, an HTTP client, and a
//! callback server functions report to. Everything waits on conditions (a log line, the
//! readiness endpoint, a channel), never on a fixed sleep.
// Test support code: a failed unwrap is a failed test, as in #[test] bodies.
#![allow(dead_code, clippy::unwrap_used)]

pub mod fake_host;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kpages_crds::Manifest;
use kpages_crds::manifest::{Function, InvocationKind, StaticFile};
use kpages_router::http::pipeline::{App, Config};
use kpages_router::observe::geo::GeoLookup;
use kpages_router::table::{Deploy, RouteTable, Routes, Site};
use kpages_routing::resolve::CompiledDeploy;
use kpages_store::BlobStore;
use kpages_testsupport::eventually_async;
use kpages_testsupport::fixtures::{function, route};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A running Node function host.
pub struct NodeHost {
    _child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl NodeHost {
    /// Starts `runtime/src/host.mjs` serving fixtures `router/tests/fixtures/<name>.mjs`.
    pub async fn start(functions: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let list: Vec<_> = functions
            .iter()
            .map(|n| {
                serde_json::json!({
                    "name": n,
                    "file": fixtures.join(format!("{n}.mjs")),
                    "dialect": "netlify",
                    "catchAll": null,
                })
            })
            .collect();
        let file = dir.path().join("functions.json");
        std::fs::write(&file, serde_json::json!({ "functions": list }).to_string()).unwrap();
        let mut cmd = Command::new("node");
        cmd.arg(repo_root().join("runtime/src/host.mjs"))
            .arg("--functions")
            .arg(&file)
            .args(["--port", "0", "--host", "127.0.0.1"])
            .env("CONTEXT", "dev")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("node must be installed (Node.js 20+)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["msg"] == "listening"
                {
                    return v["port"].as_u64().unwrap() as u16;
                }
            }
            panic!("host exited before listening");
        })
        .await
        .expect("host did not start listening");
        // Keep draining the host's logs so its stdout never blocks.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if std::env::var_os("KPAGES_TEST_LOGS").is_some() {
                    eprintln!("host: {line}");
                }
            }
        });
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_ready(addr).await;
        Self {
            _child: child,
            addr,
            _dir: dir,
        }
    }
}

/// Polls the host's readiness endpoint until it reports ready.
async fn wait_ready(addr: SocketAddr) {
    let c = &client();
    eventually_async(
        Duration::from_secs(10),
        "the host to become ready",
        || async move {
            let req = Request::get(format!("http://{addr}/.kpages/ready"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            c.request(req)
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK)
        },
    )
    .await;
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub fn h2c_client() -> TestClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new())
}

/// A deploy under construction: files go to an in-memory store.
pub struct SiteBuilder {
    pub manifest: Manifest,
    pub store: BlobStore,
}

impl SiteBuilder {
    pub fn new() -> Self {
        Self {
            manifest: Manifest::new(),
            store: BlobStore::memory(),
        }
    }

    pub async fn file(mut self, path: &str, content_type: &str, bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        let size = bytes.len() as u64;
        let digest = self.store.put_bytes(bytes).await.unwrap();
        self.manifest.files.insert(
            path.into(),
            StaticFile {
                digest,
                size,
                content_type: content_type.into(),
            },
        );
        self
    }

    pub fn function(mut self, name: &str, routes: &[&str], invocation: InvocationKind) -> Self {
        self.manifest.functions.push(Function {
            invocation,
            schedule: (invocation == InvocationKind::Scheduled).then(|| "@daily".to_string()),
            routes: routes.iter().map(|p| route(p)).collect(),
            ..function(name)
        });
        self.manifest.functions.sort_by(|a, b| a.name.cmp(&b.name));
        self
    }
}

/// Test defaults: short limits so failure paths take milliseconds.
pub fn test_config() -> Config {
    Config {
        sync_timeout: Duration::from_millis(1500),
        header_read_timeout: Duration::from_millis(300),
        shutdown_grace: Duration::from_secs(5),
        queue: kpages_router::jobs::queue::QueueConfig {
            capacity: 16,
            workers: 2,
            backoff: vec![Duration::from_millis(10), Duration::from_millis(20)],
        },
        ..Config::default()
    }
}

/// A running router.
pub struct Router {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub app: Arc<App>,
    pub routes: Arc<Routes>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub fn table(site: &SiteBuilder, upstream: Vec<SocketAddr>, id: &str) -> RouteTable {
    RouteTable::single(Site {
        routes: Default::default(),
        name: "test-site".into(),
        deploy: Arc::new(Deploy::new(
            id,
            Arc::new(CompiledDeploy::compile(Arc::new(site.manifest.clone()))),
            upstream,
            true,
        )),
    })
}

impl Router {
    pub async fn start(
        site: &SiteBuilder,
        upstream: Vec<SocketAddr>,
        config: Config,
        geo: GeoLookup,
    ) -> Self {
        let routes = Arc::new(Routes::new(table(site, upstream, "deploy-1")));
        let app = App::new(config, routes.clone(), site.store.clone(), geo);
        Self::serve(app, routes).await
    }

    /// A router whose background queue is NATS JetStream.
    pub async fn start_jetstream(
        site: &SiteBuilder,
        upstream: Vec<SocketAddr>,
        config: Config,
        js: kpages_router::jobs::jetstream::JetStreamConfig,
    ) -> Self {
        let routes = Arc::new(Routes::new(table(site, upstream, "deploy-1")));
        let connected = kpages_router::jobs::jetstream::connect(js).await.unwrap();
        let store = site.store.clone();
        let app = App::with_queue(
            config,
            routes.clone(),
            site.store.clone(),
            GeoLookup::Off,
            |runner, metrics| connected.start(runner, metrics, store),
        );
        Self::serve(app, routes).await
    }

    /// Serves `app` on loopback (public and admin listeners).
    pub async fn serve(app: Arc<App>, routes: Arc<Routes>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let admin = admin_listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let (admin_stop_tx, admin_stop_rx) = oneshot::channel::<()>();
        let app2 = app.clone();
        tokio::spawn(kpages_router::http::admin::serve_admin(
            admin_listener,
            app.clone(),
            async {
                let _ = admin_stop_rx.await;
            },
        ));
        let task = tokio::spawn(async move {
            kpages_router::http::server::serve(listener, app2, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
            let _ = admin_stop_tx.send(());
        });
        Self {
            addr,
            admin,
            app,
            routes,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// Starts graceful shutdown; the returned handle finishes when the server has stopped.
    pub fn shutdown(&mut self) -> tokio::task::JoinHandle<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.take().unwrap()
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub async fn send(
    c: &TestClient,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Answer {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = c
        .request(b.body(Full::new(body.into())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

pub async fn get(c: &TestClient, url: &str, headers: &[(&str, &str)]) -> Answer {
    send(c, "GET", url, headers, Bytes::new()).await
}

/// A server that forwards every request body it receives to a channel.
pub struct Callback {
    pub url: String,
    pub rx: mpsc::UnboundedReceiver<(String, Bytes, HeaderMap)>,
}

impl Callback {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let tx = tx.clone();
                            async move {
                                let path = req.uri().to_string();
                                let headers = req.headers().clone();
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                let _ = tx.send((path, body, headers));
                                Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(
                                    "called back\n",
                                ))))
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { url, rx }
    }

    pub async fn next(&mut self) -> (String, Bytes) {
        let (path, body, _) = self.next_with_headers().await;
        (path, body)
    }

    /// The next request's target, body and headers.
    pub async fn next_with_headers(&mut self) -> (String, Bytes, HeaderMap) {
        tokio::time::timeout(Duration::from_secs(20), self.rx.recv())
            .await
            .expect("no callback arrived")
            .unwrap()
    }
}
