//! `kpages dev` as a user runs it: a real process on 127.0.0.1, real HTTP, a real Node host.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns fail the test on error too

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kpages_testsupport::eventually;

const KPAGES: &str = env!("CARGO_BIN_EXE_kpages");

/// A `kpages dev` process; killed if a test fails half-way.
struct Dev {
    child: Child,
    url: String,
    lines: mpsc::Receiver<String>,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, extra: &[&str]) -> Dev {
    let mut child = Command::new(KPAGES)
        .arg("dev")
        .arg(dir)
        .args(["--port", "0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take();
    // From here on the guard kills and reaps the process whatever happens.
    let mut dev = Dev {
        child,
        url: String::new(),
        lines: rx,
    };
    let stdout = stdout.unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = dev
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("kpages dev never printed its URL");
        if let Some(url) = line.trim().strip_prefix("ready on ") {
            dev.url = url.to_string();
            return dev;
        }
    }
}

/// A minimal HTTP/1.1 GET: status line and body.
fn get(url: &str, path: &str) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let name = e.file_name();
        if name == ".kpages" || name == "node_modules" {
            continue;
        }
        let dest = to.join(&name);
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

#[test]
fn serves_a_static_site_rebuilds_on_change_and_stops_on_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("static-site");
    copy_dir(&examples().join("static-site"), &site);
    let mut dev = start(&site, &[]);
    let (status, home) = get(&dev.url, "/");
    assert_eq!(status, 200);
    assert!(!home.is_empty());
    assert_eq!(get(&dev.url, "/definitely-missing").0, 404);

    // Keep a connection open across the rebuild: it must not be dropped.
    let addr = dev.url.trim_start_matches("http://").to_string();
    let mut kept = TcpStream::connect(&addr).unwrap();
    std::fs::write(site.join("fresh.html"), "fresh content").unwrap();
    eventually(
        Duration::from_secs(30),
        "the rebuilt deploy to be served",
        || get(&dev.url, "/fresh.html") == (200, "fresh content".to_string()),
    );
    write!(
        kept,
        "GET /fresh HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    kept.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("fresh content"), "{out}");

    // Ctrl-C: a clean exit.
    interrupt(&dev.child);
    let status = dev.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = Command::new(KPAGES)
        .arg("dev")
        .arg(examples().join("static-site"))
        .args(["--port", &port])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.contains("pick another with --port"), "{err}");
}

#[test]
fn missing_node_is_a_clear_error() {
    let out = Command::new(KPAGES)
        .arg("dev")
        .arg(examples().join("static-site"))
        .args(["--port", "0", "--node", "/nonexistent/node"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Node.js 20+ is needed"), "{err}");
}

#[test]
fn serves_the_netlify_example_with_functions() {
    let mut dev = start(&examples().join("netlify-site"), &["--no-watch"]);
    let (status, body) = get(&dev.url, "/api/hello");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("hello"), "{body}");
    let (status, _) = get(&dev.url, "/");
    assert_eq!(status, 200);
    interrupt(&dev.child);
    assert!(dev.child.wait().unwrap().success());
}

#[test]
fn serves_the_edgeone_example_with_file_routes_and_a_framework_app() {
    let mut dev = start(&examples().join("edgeone-site"), &["--no-watch"]);
    let (status, body) = get(&dev.url, "/api/users/42");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"id\":\"42\""), "{body}");
    // A literal file route beats the [id] route next to it.
    let (_, me) = get(&dev.url, "/api/users/me");
    assert!(me.contains("\"id\":\"me\""), "{me}");
    let (status, files) = get(&dev.url, "/api/files/a/b.txt");
    assert_eq!(status, 200);
    assert!(files.contains("a/b.txt"), "{files}");
    let (status, app) = get(&dev.url, "/express");
    assert_eq!(status, 200);
    assert!(app.contains("express"), "{app}");
    assert_eq!(get(&dev.url, "/docs").0, 301);
    interrupt(&dev.child);
    assert!(dev.child.wait().unwrap().success());
}

/// A site's proxy rules reach the developer's loopback servers but never `kpages dev`'s own
/// listeners: a rule to the admin port (metrics, running any function) is refused with 403,
/// and so is a rule back to the dev server itself.
#[test]
fn proxy_rules_cannot_reach_the_dev_servers_own_listeners() {
    let (port, admin) = (
        kpages_testsupport::free_port(),
        kpages_testsupport::free_port(),
    );
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "hi").unwrap();
    std::fs::write(
        site.path().join("_redirects"),
        format!(
            "/admin/* http://127.0.0.1:{admin}/:splat 200\n/self/* http://localhost:{port}/:splat 200\n"
        ),
    )
    .unwrap();
    let (port_arg, admin_arg) = (port.to_string(), admin.to_string());
    let child = Command::new(KPAGES)
        .arg("dev")
        .arg(site.path())
        .args([
            "--no-watch",
            "--port",
            &port_arg,
            "--admin-port",
            &admin_arg,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Killed and reaped whatever happens below.
    let (tx, lines) = mpsc::channel();
    drop(tx);
    let mut dev = Dev {
        child,
        url: format!("http://127.0.0.1:{port}"),
        lines,
    };
    let url = dev.url.clone();
    eventually(Duration::from_secs(60), "kpages dev serving", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let (status, body) = get(&url, "/admin/metrics");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("own listeners"), "{body}");
    let (status, body) = get(&url, "/self/index.html");
    assert_eq!(status, 403, "{body}");
    // The admin listener itself is up: the refusal is the rule's, not a dead port.
    assert_eq!(get(&format!("http://127.0.0.1:{admin}"), "/healthz").0, 200);
    interrupt(&dev.child);
    assert!(dev.child.wait().unwrap().success());
}

/// Ctrl-C for a child process: SIGINT.
fn interrupt(child: &std::process::Child) {
    let pid = i32::try_from(child.id()).expect("a pid fits in i32");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT delivered");
}
