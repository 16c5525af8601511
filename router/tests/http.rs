//! The router over real HTTP: static files, rules, function proxy with real Node hosts,
//! background jobs, manual scheduled runs, metrics and robustness limits.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns fail the test on error too

mod common;

use std::io::Read as _;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use kpages_crds::manifest::{HeaderRule, HeaderValue, InvocationKind, RedirectRule};
use kpages_router::observe::geo::GeoLookup;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PAGE: &str = "<!doctype html><title>home</title><p>hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello</p>";

async fn static_site() -> SiteBuilder {
    let mut site = SiteBuilder::new()
        .file("/index.html", "text/html; charset=utf-8", PAGE)
        .await
        .file("/about.html", "text/html; charset=utf-8", "about")
        .await
        .file("/404.html", "text/html; charset=utf-8", "custom not found")
        .await
        .file(
            "/data.bin",
            "application/octet-stream",
            (0u8..=255).collect::<Vec<u8>>(),
        )
        .await
        .file("/admin/index.html", "text/html", "secret admin")
        .await;
    let mut forced = RedirectRule::new("/forced", "/about.html", 200);
    forced.force = true;
    let mut de = RedirectRule::new("/where", "/about.html", 302);
    de.conditions.country = vec!["DE".into()];
    site.manifest.rules.redirects = vec![
        RedirectRule::new("/old", "/about", 301),
        RedirectRule::new("/where", "/index.html", 302),
        RedirectRule::new("/spa/*", "/index.html", 200),
        RedirectRule::new("/gone", "/404.html", 410),
        forced,
    ];
    site.manifest.rules.redirects.insert(1, de);
    site.manifest.rules.headers = vec![
        HeaderRule {
            for_path: "/*".into(),
            values: vec![HeaderValue {
                name: "X-Frame-Options".into(),
                value: "DENY".into(),
            }],
            origin: None,
        },
        HeaderRule {
            for_path: "/admin/*".into(),
            values: vec![HeaderValue {
                name: "Basic-Auth".into(),
                value: "ann:pw".into(),
            }],
            origin: None,
        },
    ];
    site.manifest.rules.cache = vec![kpages_crds::manifest::CacheRule {
        source: "/data.bin".into(),
        ttl_seconds: 600,
    }];
    site
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_conditional_range_head_and_compression() {
    let site = static_site().await;
    let router = Router::start(&site, vec![], test_config(), GeoLookup::Off).await;
    let c = client();

    let home = get(&c, &router.url("/"), &[]).await;
    assert_eq!(home.status, 200);
    assert_eq!(home.text(), PAGE);
    let etag = home.header("etag").unwrap().to_string();
    assert_eq!(
        etag,
        format!("\"{}\"", site.manifest.files["/index.html"].digest.hex())
    );
    assert_eq!(
        home.header("cache-control"),
        Some("public, max-age=0, must-revalidate")
    );
    assert_eq!(home.header("x-frame-options"), Some("DENY"));
    assert_eq!(home.header("x-kpages-request-id").map(str::len), Some(32));

    let not_modified = get(&c, &router.url("/"), &[("if-none-match", &etag)]).await;
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.body.is_empty());

    let range = get(&c, &router.url("/data.bin"), &[("range", "bytes=10-19")]).await;
    assert_eq!(range.status, 206);
    assert_eq!(range.header("content-range"), Some("bytes 10-19/256"));
    assert_eq!(&range.body[..], &(10u8..20).collect::<Vec<u8>>()[..]);
    assert_eq!(range.header("cache-control"), Some("public, max-age=600"));
    let bad_range = get(&c, &router.url("/data.bin"), &[("range", "bytes=300-")]).await;
    assert_eq!(bad_range.status, 416);

    let head = send(&c, "HEAD", &router.url("/about"), &[], Bytes::new()).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("5"));
    assert!(head.body.is_empty());

    let gz = get(&c, &router.url("/"), &[("accept-encoding", "gzip")]).await;
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.header("vary"), Some("Accept-Encoding"));
    let mut out = String::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out, PAGE);
    for _ in 0..2 {
        // The second request is served from the cached variant.
        let br = get(&c, &router.url("/"), &[("accept-encoding", "gzip, br")]).await;
        assert_eq!(br.header("content-encoding"), Some("br"));
        let mut out = String::new();
        brotli::Decompressor::new(&br.body[..], 4096)
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, PAGE);
        let inm = br.header("etag").unwrap().to_string();
        let again = get(
            &c,
            &router.url("/"),
            &[("accept-encoding", "br"), ("if-none-match", &inm)],
        )
        .await;
        assert_eq!(again.status, 304);
    }
    let binary = get(
        &c,
        &router.url("/data.bin"),
        &[("accept-encoding", "gzip, br")],
    )
    .await;
    assert_eq!(binary.header("content-encoding"), None);

    let missing = get(&c, &router.url("/nope"), &[]).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.text(), "custom not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_is_impossible() {
    let site = static_site().await;
    let router = Router::start(&site, vec![], test_config(), GeoLookup::Off).await;
    let c = client();
    for path in [
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "/..%5c..%5cetc%5cpasswd",
    ] {
        let a = get(&c, &router.url(path), &[]).await;
        assert_eq!(a.status, 404, "{path}");
        assert_eq!(a.text(), "custom not found", "{path}");
    }
    let about = get(&c, &router.url("/x/../about"), &[]).await;
    assert_eq!(about.text(), "about");
    let nul = get(&c, &router.url("/index.html%00.png"), &[]).await;
    assert_eq!(nul.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_redirect_rewrite_status_conditions_and_basic_auth() {
    let site = static_site().await;
    let router = Router::start(&site, vec![], test_config(), GeoLookup::mock_country("DE")).await;
    let c = client();
    let old = get(&c, &router.url("/old?x=1"), &[]).await;
    assert_eq!(old.status, 301);
    assert_eq!(old.header("location"), Some("/about?x=1"));
    let spa = get(&c, &router.url("/spa/deep/link"), &[]).await;
    assert_eq!((spa.status.as_u16(), spa.text().as_str()), (200, PAGE));
    let gone = get(&c, &router.url("/gone"), &[]).await;
    assert_eq!(
        (gone.status.as_u16(), gone.text().as_str()),
        (410, "custom not found")
    );
    let forced = get(&c, &router.url("/forced"), &[]).await;
    assert_eq!(forced.text(), "about");
    // The mock geo puts the client in DE, so the Country=DE rule wins over the next one.
    let geo = get(&c, &router.url("/where"), &[]).await;
    assert_eq!(geo.header("location"), Some("/about.html"));

    let locked = get(&c, &router.url("/admin/"), &[]).await;
    assert_eq!(locked.status, 401);
    assert!(
        locked
            .header("www-authenticate")
            .unwrap()
            .starts_with("Basic")
    );
    use base64::Engine as _;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ann:pw")
    );
    let open = get(&c, &router.url("/admin/"), &[("authorization", &auth)]).await;
    assert_eq!(
        (open.status.as_u16(), open.text().as_str()),
        (200, "secret admin")
    );
}

/// A router serving a static site whose rule proxies `/backend/*` to `cb`.
async fn router_proxying_backend_to(cb: &Callback) -> Router {
    let mut site = static_site().await;
    site.manifest.rules.redirects.push(RedirectRule::new(
        "/backend/*",
        format!("{}:splat", cb.url),
        200,
    ));
    Router::start(&site, vec![], test_config(), GeoLookup::Off).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_rules_reach_absolute_urls() {
    let mut cb = Callback::start().await;
    let router = router_proxying_backend_to(&cb).await;
    let c = client();
    let a = send(&c, "POST", &router.url("/backend/a/b?q=1"), &[], "payload").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), "called back\n");
    let (path, body) = cb.next().await;
    assert_eq!(path, "/a/b?q=1");
    assert_eq!(body, "payload");
}

/// A rule that leads back to a kpages router ends with 508 after a few hops: every rule proxy
/// adds `Via: 1.1 kpages`, and a request that already carries the limit is refused without
/// reaching the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_rule_loops_end_with_508() {
    let mut cb = Callback::start().await;
    let router = router_proxying_backend_to(&cb).await;
    let c = client();
    let looped = ["1.1 kpages"; kpages_router::serve::proxy::MAX_PROXY_HOPS].join(", ");
    let refused = send(
        &c,
        "GET",
        &router.url("/backend/x"),
        &[("via", &looped)],
        "",
    )
    .await;
    assert_eq!(refused.status, 508);
    assert!(
        refused.text().contains("kpages proxies"),
        "{}",
        refused.text()
    );
    let other_proxies = "1.1 squid, 1.0 kpages-lookalike";
    let passed = send(
        &c,
        "GET",
        &router.url("/backend/y"),
        &[("via", other_proxies)],
        "",
    )
    .await;
    assert_eq!(passed.status, 200);
    let (path, _) = cb.next().await;
    assert_eq!(
        path, "/y",
        "only the request under the limit reached the target"
    );
}

/// FunctionRoutes of the site (cluster mode) come before the deploy's own function routes:
/// one sends a path to a Service (here a loopback server) keeping the Host, one sends a
/// prefix to a function of the deploy, one prefers static files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_routes_reach_services_and_functions_before_the_deploys_own_routes() {
    use kpages_crds::FunctionRouteSpec;
    use kpages_router::table::{RouteTable, Site};
    use kpages_router::table::{RouteTarget, SiteRoute, SiteRoutes};
    let host = NodeHost::start(&["echo"], &[]).await;
    let site = function_site().await;
    let router = Router::start(&site, vec![host.addr], test_config(), GeoLookup::Off).await;
    let mut svc = Callback::start().await;
    let authority = svc
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let spec =
        |json: serde_json::Value| -> FunctionRouteSpec { serde_json::from_value(json).unwrap() };
    let backend = serde_json::json!({"function": {"name": "echo"}});
    let deploy = router.routes.load().deploy("deploy-1").unwrap().clone();
    let routes = SiteRoutes::new(vec![
        SiteRoute::compile(
            "ns/to-service".into(),
            &spec(serde_json::json!({"site": "s", "matches": [{"path": {"type": "PathPrefix", "value": "/api/7"}}], "backend": {"service": {"name": "svc", "port": 80}}})),
            RouteTarget::Service { authority, name: "ns/svc:80".into() },
        )
        .unwrap(),
        SiteRoute::compile(
            "ns/alias".into(),
            &spec(serde_json::json!({"site": "s", "matches": [{"path": {"type": "Pattern", "value": "/alias/:id"}, "method": "GET"}], "backend": backend})),
            RouteTarget::Function { deploy: deploy.clone(), function: "echo".into(), invocation: InvocationKind::Sync },
        )
        .unwrap(),
        SiteRoute::compile(
            "ns/everything".into(),
            &spec(serde_json::json!({"site": "s", "matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backend": backend, "preferStatic": true, "order": 200})),
            RouteTarget::Function { deploy, function: "missing".into(), invocation: InvocationKind::Sync },
        )
        .unwrap(),
    ]);
    router.routes.swap(RouteTable::single(Site {
        routes: std::sync::Arc::new(routes),
        name: "test-site".into(),
        deploy: router.routes.load().deploy("deploy-1").unwrap().clone(),
    }));
    let c = client();

    // /api/7 is the deploy's echo route, but the site's route to the Service comes first.
    let a = get(&c, &router.url("/api/7/x?q=1"), &[("host", "shop.test")]).await;
    assert_eq!(
        (a.status.as_u16(), a.text().as_str()),
        (200, "called back\n")
    );
    let (path, _, headers) = svc.next_with_headers().await;
    assert_eq!(path, "/api/7/x?q=1");
    assert_eq!(headers.get("host").unwrap(), "shop.test");
    assert_eq!(headers.get("x-forwarded-host").unwrap(), "shop.test");
    assert!(headers.get("x-forwarded-for").is_some());

    // A pattern route to a function of the deploy, with its params; only for GET.
    let b = get(&c, &router.url("/alias/42"), &[]).await;
    assert_eq!(b.status, 200);
    assert_eq!(b.json()["params"]["id"], "42", "{}", b.text());
    let post = send(&c, "POST", &router.url("/alias/42"), &[], "x").await;
    assert_eq!(
        post.status,
        404,
        "the catch-all route names a missing function: {}",
        post.text()
    );
    assert!(post.text().contains("ns/everything"), "{}", post.text());

    // A static file wins over the preferStatic catch-all; other paths reach it.
    let page = get(&c, &router.url("/"), &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<title>home</title>"));
}

async fn function_site() -> SiteBuilder {
    static_site()
        .await
        .function("echo", &["/api/:id"], InvocationKind::Sync)
        .function("slow", &["/slow"], InvocationKind::Sync)
        .function("stream", &["/stream"], InvocationKind::Sync)
        .function("release", &["/release"], InvocationKind::Sync)
        .function("notify", &[], InvocationKind::Background)
        .function("tick", &[], InvocationKind::Scheduled)
        .function("legacy", &[], InvocationKind::Sync)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_get_control_headers_and_limits_hold() {
    let host = NodeHost::start(&["echo", "slow", "stream", "release"], &[]).await;
    let site = function_site().await;
    let mut config = test_config();
    config.body_limit = 64 * 1024;
    // Generous here so a loaded machine never turns a normal call into a 504; the wall-time
    // check below uses its own router with a short limit.
    config.sync_timeout = Duration::from_secs(20);
    let router = Router::start(
        &site,
        vec![host.addr],
        config.clone(),
        GeoLookup::mock_country("DE"),
    )
    .await;
    let c = client();

    let incoming_trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let a = send(
        &c,
        "POST",
        &router.url("/api/42?x=1"),
        &[
            ("x-kpages-function", "slow"),
            ("x-kpages-invocation", "background"),
            ("traceparent", incoming_trace),
        ],
        "hello",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let seen = a.json();
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["params"], serde_json::json!({"id": "42"}));
    assert_eq!(seen["ip"], "127.0.0.1");
    assert_eq!(seen["geo"]["country"]["code"], "DE");
    assert_eq!(seen["bodyLength"], 5);
    assert!(
        seen["url"].as_str().unwrap().ends_with("/api/42?x=1"),
        "{seen}"
    );
    assert_eq!(seen["requestId"].as_str(), a.header("x-kpages-request-id"));
    let trace = seen["headers"]["traceparent"].as_str().unwrap();
    assert!(
        trace.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{trace}"
    );
    assert_ne!(trace, incoming_trace);
    assert!(
        seen["headers"]
            .as_object()
            .unwrap()
            .keys()
            .all(|k| !k.starts_with("x-kpages-"))
    );

    // A function without a path answers at /.netlify/functions/<name> only.
    let by_name = get(&c, &router.url("/.netlify/functions/echo"), &[]).await;
    assert_eq!(by_name.status, 404);
    let invalid = get(&c, &router.url("/.netlify/functions/no.pe"), &[]).await;
    assert_eq!(invalid.status, 400);

    // 413: by Content-Length, and for a streamed body with none.
    let big = vec![b'x'; 100 * 1024];
    let too_big = send(&c, "POST", &router.url("/api/1"), &[], big.clone()).await;
    assert_eq!(too_big.status, 413);
    let (tx, rx) =
        tokio::sync::mpsc::channel::<Result<hyper::body::Frame<Bytes>, std::io::Error>>(4);
    tokio::spawn(async move {
        for _ in 0..10 {
            if tx
                .send(Ok(hyper::body::Frame::data(Bytes::from(vec![
                    b'y';
                    16 * 1024
                ]))))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut rx = rx;
    let stream_body =
        http_body_util::StreamBody::new(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let chunked_client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let resp = chunked_client
        .request(
            http::Request::post(router.url("/api/1"))
                .body(stream_body)
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);

    // 504: the function outlives the wall time.
    config.sync_timeout = Duration::from_millis(300);
    let hasty = Router::start(&site, vec![host.addr], config, GeoLookup::Off).await;
    let slow = get(&c, &hasty.url("/slow"), &[]).await;
    assert_eq!(slow.status, 504);
    assert!(
        slow.json()["error"]
            .as_str()
            .unwrap()
            .contains("did not answer within")
    );

    // Streaming: the first chunk arrives while the function is still running.
    let mut config = test_config();
    config.sync_timeout = Duration::from_secs(20);
    let router2 = Router::start(&site, vec![host.addr], config, GeoLookup::Off).await;
    let resp = c
        .request(
            http::Request::get(router2.url("/stream"))
                .body(http_body_util::Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    use http_body_util::BodyExt;
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "first\n");
    let released = get(&c, &router2.url("/release"), &[]).await;
    assert_eq!(released.text(), "released\n");
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, "second\n");

    // h2c: HTTP/2 without TLS on the same listener, for files and functions.
    let h2 = h2c_client();
    let file = get(&h2, &router2.url("/about"), &[]).await;
    assert_eq!(file.text(), "about");
    let f = get(&h2, &router2.url("/api/h2"), &[]).await;
    assert_eq!(f.json()["params"]["id"], "h2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_host_is_502_and_no_host_is_503() {
    let site = function_site().await;
    // A port nothing listens on: bind, note the port, close.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let router = Router::start(&site, vec![dead], test_config(), GeoLookup::Off).await;
    let c = client();
    let a = get(&c, &router.url("/api/1"), &[]).await;
    assert_eq!(a.status, 502);
    assert!(
        a.json()["error"].as_str().unwrap().contains("unreachable"),
        "{}",
        a.text()
    );
    assert!(a.header("x-kpages-request-id").is_some());
    let none = Router::start(&site, vec![], test_config(), GeoLookup::Off).await;
    assert_eq!(get(&c, &none.url("/api/1"), &[]).await.status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_functions_answer_202_then_run_with_retries() {
    let mut cb = Callback::start().await;
    let host = NodeHost::start(&["notify", "tick"], &[("CALLBACK_URL", &cb.url)]).await;
    let site = function_site().await;
    let router = Router::start(&site, vec![host.addr], test_config(), GeoLookup::Off).await;
    let c = client();
    let a = send(
        &c,
        "POST",
        &router.url("/.netlify/functions/notify"),
        &[],
        "job-1",
    )
    .await;
    assert_eq!(a.status, 202);
    let call_id = a.header("x-kpages-call-id").unwrap().to_string();
    assert_eq!(call_id.len(), 32);
    let (_, body) = cb.next().await;
    let report: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(report["body"], "job-1");

    // Fails twice (module-level counter starts at 1 now, so fail=3 fails runs 2 and 3),
    // then succeeds on the second retry.
    let b = send(
        &c,
        "POST",
        &router.url("/.netlify/functions/notify?fail=3"),
        &[],
        "job-2",
    )
    .await;
    assert_eq!(b.status, 202);
    let (_, body) = cb.next().await;
    let report: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(report["body"], "job-2");
    assert_eq!(report["runs"], 4);

    // Scheduled functions are not reachable over HTTP, but run on demand from the admin port.
    let hidden = send(&c, "POST", &router.url("/.netlify/functions/tick"), &[], "").await;
    assert_eq!(hidden.status, 404);
    let run = send(
        &c,
        "POST",
        &format!("http://{}/functions/notify/run", router.admin),
        &[],
        "",
    )
    .await;
    assert_eq!(run.status, 200, "{}", run.text());
    let (_, body) = cb.next().await;
    let report: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let sent: serde_json::Value = serde_json::from_str(report["body"].as_str().unwrap()).unwrap();
    assert!(sent.as_object().unwrap().contains_key("next_run"), "{sent}");

    let metrics = get(&c, &format!("http://{}/metrics", router.admin), &[]).await;
    let text = metrics.text();
    assert!(
        text.contains(
            r#"kpages_router_requests_total{site="test-site",kind="Background",status="202"} 2"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"kpages_router_background_jobs_total{outcome="retry"} 2"#),
        "{text}"
    );
    assert!(text.contains("kpages_router_request_duration_seconds_bucket"));
    assert!(text.contains("kpages_router_queue_depth"));
    assert!(text.contains("kpages_router_requests_in_flight"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_and_huge_headers_refused() {
    let site = static_site().await;
    let router = Router::start(&site, vec![], test_config(), GeoLookup::Off).await;
    let mut s = tokio::net::TcpStream::connect(router.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // Never finish the headers: the router must close the connection by itself.
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "slowloris connection was never closed");

    let c = client();
    let huge = "a".repeat(100 * 1024);
    let req = http::Request::get(router.url("/"))
        .header("x-big", &huge)
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    // Closing the connection (Err) is also a refusal.
    if let Ok(r) = c.request(req).await {
        assert_eq!(r.status(), 431);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let host = NodeHost::start(&["stream", "release"], &[]).await;
    let site = function_site().await;
    let mut config = test_config();
    config.sync_timeout = Duration::from_secs(20);
    let mut router = Router::start(&site, vec![host.addr], config, GeoLookup::Off).await;
    let c = client();
    let resp = c
        .request(
            http::Request::get(router.url("/stream"))
                .body(http_body_util::Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = resp.into_body();
    use http_body_util::BodyExt;
    assert_eq!(
        body.frame().await.unwrap().unwrap().into_data().unwrap(),
        "first\n"
    );
    let stopped = router.shutdown();
    // New connections are refused once the listener is closed…
    let addr = router.addr;
    let refused = async {
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), refused)
        .await
        .unwrap();
    assert!(!stopped.is_finished());
    // …while the in-flight response completes.
    let other = get(
        &c,
        &format!("http://{}/release", host.addr),
        &[("x-kpages-function", "release")],
    )
    .await;
    assert_eq!(other.status, 200);
    assert_eq!(body.collect().await.unwrap().to_bytes(), "second\n");
    tokio::time::timeout(Duration::from_secs(5), stopped)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_the_table_switches_deploys_without_dropping_connections() {
    let site = static_site().await;
    let router = Router::start(&site, vec![], test_config(), GeoLookup::Off).await;
    let c = client();
    assert_eq!(get(&c, &router.url("/about"), &[]).await.text(), "about");
    let next = SiteBuilder {
        manifest: site.manifest.clone(),
        store: site.store.clone(),
    };
    let next = next.file("/about.html", "text/html", "about v2").await;
    router.routes.swap(table(&next, vec![], "deploy-2"));
    // Same pooled keep-alive connection, new deploy.
    assert_eq!(get(&c, &router.url("/about"), &[]).await.text(), "about v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_larger_than_the_cache_limit_stream_from_storage() {
    let site = static_site().await;
    let mut config = test_config();
    config.max_cached_file = 100;
    let router = Router::start(&site, vec![], config, GeoLookup::Off).await;
    let c = client();
    let a = get(&c, &router.url("/data.bin"), &[("accept-encoding", "br")]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-length"), Some("256"));
    assert_eq!(&a.body[..], &(0u8..=255).collect::<Vec<u8>>()[..]);
    let head = send(&c, "HEAD", &router.url("/data.bin"), &[], Bytes::new()).await;
    assert_eq!(head.header("content-length"), Some("256"));
    assert!(head.body.is_empty());
    let metrics = router.app.metrics.encode();
    assert!(
        !metrics.contains(r#"static_cache_lookups_total{outcome="miss"}"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let site = static_site().await;
    let mut config = test_config();
    config.max_connections = 1;
    config.header_read_timeout = Duration::from_secs(10);
    let router = Router::start(&site, vec![], config, GeoLookup::Off).await;
    let request = b"GET /about HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut first = tokio::net::TcpStream::connect(router.addr).await.unwrap();
    first.write_all(request).await.unwrap();
    let mut buf = [0u8; 512];
    let n = first.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // The first connection stays open (keep-alive), holding the only slot.
    let mut second = tokio::net::TcpStream::connect(router.addr).await.unwrap();
    second.write_all(request).await.unwrap();
    let waiting = tokio::time::timeout(Duration::from_millis(300), second.read(&mut buf)).await;
    assert!(
        waiting.is_err(),
        "the second connection was served beyond the limit"
    );
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf))
        .await
        .expect("the second connection was never served")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
}
