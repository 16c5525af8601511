//! The bundles `kpages build` writes load in the real function host (runtime/) and answer:
//! the banner's `require`/`__dirname`, the `@netlify/functions` shim and inlined CommonJS
//! dependencies (Express) all work under Node 20. Loopback only.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{build, example};
use kpages_crds::Manifest;

/// Kills the host when the test ends, however it ends.
struct Host(Child);

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lays the bundles out as the host expects and starts it; returns it, its port and the
/// load result of every function, read from its log lines.
fn start_host(manifest: &Manifest, out: &Path, dir: &Path) -> (Host, u16, Vec<(String, String)>) {
    let functions: Vec<serde_json::Value> = manifest
        .functions
        .iter()
        .map(|f| {
            let file = format!("{}.mjs", f.name);
            std::fs::copy(
                out.join("blobs/sha256").join(f.bundle.hex()),
                dir.join(&file),
            )
            .expect("copy bundle");
            serde_json::json!({
                "name": f.name,
                "file": file,
                "dialect": f.dialect,
                "catchAll": f.catch_all,
            })
        })
        .collect();
    let config = dir.join("functions.json");
    std::fs::write(
        &config,
        serde_json::json!({ "functions": functions }).to_string(),
    )
    .expect("write functions.json");
    let host = Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/src/host.mjs");
    let child = Command::new("node")
        .arg(host)
        .arg("--functions")
        .arg(&config)
        .args(["--port", "0", "--host", "127.0.0.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node runs");
    let mut host = Host(child);
    let stdout = host.0.stdout.take().expect("stdout");
    let mut port = 0;
    let mut loaded = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("host output");
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        match v["msg"].as_str() {
            Some("listening") => port = v["port"].as_u64().expect("port") as u16,
            Some("function loaded") => {
                loaded.push((v["function"].as_str().unwrap_or("").into(), "loaded".into()));
            }
            Some("function failed to load") => loaded.push((
                v["function"].as_str().unwrap_or("").into(),
                v["error"].to_string(),
            )),
            _ => {}
        }
        if loaded.len() == manifest.functions.len() {
            break;
        }
    }
    (host, port, loaded)
}

fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: example.test\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

#[test]
fn every_example_bundle_loads_in_the_function_host() {
    for name in ["netlify-site", "edgeone-site"] {
        let out = tempfile::tempdir().expect("tempdir");
        let report = build(&example(name), &out.path().join("out")).expect("builds");
        let dir = tempfile::tempdir().expect("tempdir");
        let (_host, port, loaded) = start_host(&report.manifest, &report.out_dir, dir.path());
        assert_ne!(port, 0, "{name}: the host never said it was listening");
        assert_eq!(
            loaded.len(),
            report.manifest.functions.len(),
            "{name}: {loaded:?}"
        );
        for (function, status) in &loaded {
            assert_eq!(status, "loaded", "{name}: {function}");
        }
        if name == "edgeone-site" {
            let r = get(
                port,
                "/express/users/7?x=1",
                &[
                    ("x-kpages-function", "express-__default"),
                    ("x-kpages-params", r#"{"default":"users/7"}"#),
                ],
            );
            assert!(r.starts_with("HTTP/1.1 200"), "{r}");
            assert!(
                r.contains(r#"{"app":"express","user":"7","query":{"x":"1"}}"#),
                "{r}"
            );
        } else {
            let r = get(
                port,
                "/api/hello?name=kpages",
                &[("x-kpages-function", "hello")],
            );
            assert!(r.starts_with("HTTP/1.1 200"), "{r}");
            assert!(r.contains("hello, kpages"), "{r}");
        }
    }
}
