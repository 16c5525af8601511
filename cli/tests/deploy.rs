//! `kpages deploy` against real object storage: a MinIO server on loopback (first deploy uploads
//! everything, the next only what changed, plus the manifest), a fake S3 server that refuses
//! every upload, and a stopped store. With `--emit` no cluster is needed; without it a bad
//! kubeconfig stops the deploy before anything is uploaded. The apiserver side (apply, wait,
//! rollback) is covered by unit tests against a mock API server in `src/`.

// Test support: a failed setup step should panic with its cause.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use kpages_crds::{Deploy, DeployContext, Digest, Manifest};
use kpages_store::{BlobStore, StoreConfig};
use kpages_testsupport::MinIo;
use kube::core::cel::Validator;

/// A small static site in a temporary directory.
fn site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<h1>home</h1>").unwrap();
    std::fs::write(dir.path().join("about.html"), "<h1>about</h1>").unwrap();
    std::fs::create_dir(dir.path().join("css")).unwrap();
    std::fs::write(dir.path().join("css/site.css"), "h1 { color: red }").unwrap();
    std::fs::write(dir.path().join("_redirects"), "/old /about 301\n").unwrap();
    dir
}

/// `s3://bucket/prefix?endpoint=…` and the credentials' environment for a MinIO config.
fn s3_url(config: &StoreConfig) -> (String, Vec<(&'static str, String)>) {
    let StoreConfig::S3(s3) = config else {
        panic!("not s3")
    };
    let url = format!(
        "s3://{}/{}?endpoint={}",
        s3.bucket,
        s3.prefix,
        s3.endpoint.clone().unwrap()
    );
    let creds = s3.credentials.clone().unwrap();
    (
        url,
        vec![
            ("AWS_ACCESS_KEY_ID", creds.access_key_id),
            ("AWS_SECRET_ACCESS_KEY", creds.secret_access_key),
        ],
    )
}

fn kpages(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kpages"));
    cmd.args(args)
        .env_remove("KPAGES_STORE_URL")
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn deploy_emit(dir: &Path, emit: &Path, url: &str, env: &[(&str, String)]) -> Output {
    kpages(
        &[
            "deploy",
            dir.to_str().unwrap(),
            "--site",
            "web",
            "--prod",
            "--store",
            url,
            "--emit",
            emit.to_str().unwrap(),
            "--message",
            "from the test",
        ],
        env,
    )
}

/// `(uploaded, total)` from the "uploaded N of M blobs" line.
fn uploaded(out: &Output) -> (usize, usize) {
    let text = stderr(out);
    let line = text
        .lines()
        .find(|l| l.starts_with("uploaded "))
        .unwrap_or_else(|| panic!("no upload line in:\n{text}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    (words[1].parse().unwrap(), words[3].parse().unwrap())
}

/// How many blobs the store was asked about (one HEAD each), from "(N checked, …)".
fn checked(out: &Output) -> usize {
    let text = stderr(out);
    let (_, rest) = text
        .split_once("already stored (")
        .unwrap_or_else(|| panic!("no check count in:\n{text}"));
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

/// The CRD's openAPIV3Schema for Deploy.
fn deploy_schema() -> serde_json::Value {
    let (_, crd) = kpages_crds::generate::crds()
        .into_iter()
        .find(|(_, crd)| crd.spec.names.kind == "Deploy")
        .unwrap();
    let schema = crd.spec.versions[0].schema.clone().unwrap();
    serde_json::to_value(schema.open_api_v3_schema.unwrap()).unwrap()
}

fn manifest_of(store: &BlobStore, digest: &Digest) -> Manifest {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(store.get_manifest(digest))
        .unwrap()
}

fn missing(store: &BlobStore, digests: &[Digest]) -> Vec<Digest> {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(store.missing(digests))
        .unwrap()
}

#[test]
fn emit_uploads_everything_then_only_what_changed() {
    let server = MinIo::start("sites");
    let config = server.config("kpages");
    let (url, env) = s3_url(&config);
    let store = config.open().unwrap();
    let site = site();
    let out = tempfile::tempdir().unwrap();
    let emit = out.path().join("deploy.yaml");

    let first = deploy_emit(site.path(), &emit, &url, &env);
    assert!(first.status.success(), "{}", stderr(&first));
    let (sent, total) = uploaded(&first);
    // Three files (`_redirects` becomes rules) and the manifest; nothing was stored before.
    assert_eq!((sent, total), (4, 4), "{}", stderr(&first));
    assert_eq!(
        checked(&first),
        4,
        "no earlier deploy: every blob is checked"
    );

    // The emitted file is a complete Deploy that the API server's rules accept.
    let yaml = std::fs::read_to_string(&emit).unwrap();
    let object: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    Validator::new()
        .validate(&deploy_schema(), &object, None)
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let deploy: Deploy = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(deploy.spec.site, "web");
    assert_eq!(deploy.spec.context, DeployContext::Production);
    assert_eq!(
        deploy.spec.source.as_ref().unwrap().message.as_deref(),
        Some("from the test")
    );
    let name = deploy.metadata.name.clone().unwrap();
    assert_eq!(
        name,
        format!("web-{}", &deploy.spec.manifest.hex()[..10]),
        "{yaml}"
    );
    // stdout is the Deploy's name alone.
    assert_eq!(String::from_utf8_lossy(&first.stdout).trim(), name);
    // Everything the manifest names is in the store, the manifest too.
    let manifest = manifest_of(&store, &deploy.spec.manifest);
    let blobs: Vec<Digest> = manifest.blobs().into_iter().collect();
    assert!(missing(&store, &blobs).is_empty());

    // Same content again: nothing to send, same Deploy.
    let again = deploy_emit(site.path(), &emit, &url, &env);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(uploaded(&again), (0, 4));
    // The Deploy already in the emitted file names this very manifest: nothing to ask.
    assert_eq!(checked(&again), 0, "{}", stderr(&again));
    assert_eq!(std::fs::read_to_string(&emit).unwrap(), yaml);

    // One file changed: that blob and the new manifest.
    std::fs::write(site.path().join("about.html"), "<h1>about us</h1>").unwrap();
    let changed = deploy_emit(site.path(), &emit, &url, &env);
    assert!(changed.status.success(), "{}", stderr(&changed));
    assert_eq!(uploaded(&changed), (2, 4));
    // Only the changed file and the new manifest are asked about: the earlier deploy's
    // manifest (from the emitted file) vouches for the other two blobs.
    assert_eq!(checked(&changed), 2, "{}", stderr(&changed));
    let next: Deploy = serde_yaml_ng::from_str(&std::fs::read_to_string(&emit).unwrap()).unwrap();
    assert_ne!(next.spec.manifest, deploy.spec.manifest);
    assert_ne!(next.metadata.name, deploy.metadata.name);
    let manifest = manifest_of(&store, &next.spec.manifest);
    let blobs: Vec<Digest> = manifest.blobs().into_iter().collect();
    assert!(missing(&store, &blobs).is_empty());

    // `--emit -` writes the YAML to stdout, and only that.
    let stdout = kpages(
        &[
            "deploy",
            site.path().to_str().unwrap(),
            "--site",
            "web",
            "--store",
            &url,
            "--emit",
            "-",
            "-n",
            "team",
        ],
        &env,
    );
    assert!(stdout.status.success(), "{}", stderr(&stdout));
    let preview: Deploy = serde_yaml_ng::from_slice(&stdout.stdout).unwrap();
    assert_eq!(preview.spec.context, DeployContext::Preview);
    assert_eq!(preview.metadata.namespace.as_deref(), Some("team"));
    assert!(preview.metadata.name.unwrap().ends_with("-preview"));

    // The store stops: the deploy fails, says so, and emits nothing.
    drop(server);
    std::fs::write(site.path().join("index.html"), "<h1>home 2</h1>").unwrap();
    let stopped_emit = out.path().join("stopped.yaml");
    let stopped = deploy_emit(site.path(), &stopped_emit, &url, &env);
    assert_eq!(stopped.status.code(), Some(1), "{}", stderr(&stopped));
    assert!(
        stderr(&stopped).contains("unreachable"),
        "{}",
        stderr(&stopped)
    );
    assert!(!stopped_emit.exists());
    assert!(stopped.stdout.is_empty());
}

/// An S3 endpoint that has nothing and refuses every upload; records what was tried.
fn refusing_s3() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
                if let Some((k, v)) = header.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            log.lock().unwrap().push(request_line.trim().to_string());
            let response = if request_line.starts_with("HEAD ") {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            } else {
                let xml = "<Error><Code>AccessDenied</Code><Message>uploads refused by the test</Message></Error>";
                format!(
                    "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                    xml.len()
                )
            };
            let _ = conn.write_all(response.as_bytes());
        }
    });
    (
        format!("s3://sites/kpages?endpoint=http://127.0.0.1:{port}"),
        seen,
    )
}

#[test]
fn a_refused_upload_exits_non_zero_and_never_sends_the_manifest() {
    let (url, seen) = refusing_s3();
    let env = vec![
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test-secret".to_string()),
    ];
    let site = site();
    let out = tempfile::tempdir().unwrap();
    let emit = out.path().join("deploy.yaml");
    let result = deploy_emit(site.path(), &emit, &url, &env);
    let text = stderr(&result);
    assert_eq!(result.status.code(), Some(1), "{text}");
    assert!(text.contains("failed after 4 tries"), "{text}");
    assert!(text.contains("nothing was deployed"), "{text}");
    assert!(!emit.exists());
    assert!(result.stdout.is_empty());

    // The manifest is the one blob never attempted.
    let build = Command::new(env!("CARGO_BIN_EXE_kpages"))
        .args(["build", site.path().to_str().unwrap()])
        .output()
        .unwrap();
    let digest = String::from_utf8(build.stdout).unwrap();
    let hex = digest
        .trim()
        .lines()
        .last()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap()
        .to_string();
    let seen = seen.lock().unwrap();
    assert!(seen.iter().any(|r| r.starts_with("PUT ")), "{seen:?}");
    assert!(
        !seen
            .iter()
            .any(|r| r.starts_with("PUT ") && r.contains(&hex)),
        "the manifest was sent: {seen:?}"
    );
}

#[test]
fn without_a_cluster_nothing_is_built_or_uploaded() {
    let site = site();
    let store = tempfile::tempdir().unwrap();
    let result = kpages(
        &[
            "deploy",
            site.path().to_str().unwrap(),
            "--site",
            "web",
            "--store",
            store.path().to_str().unwrap(),
        ],
        &[],
    );
    let text = stderr(&result);
    assert_eq!(result.status.code(), Some(1), "{text}");
    assert!(text.contains("cannot reach Kubernetes"), "{text}");
    assert!(text.contains("--kubeconfig"), "{text}");
    assert_eq!(std::fs::read_dir(store.path()).unwrap().count(), 0);
    assert!(!site.path().join(".kpages").exists());
}

#[test]
fn bad_flags_name_what_is_accepted() {
    let site = site();
    let store = tempfile::tempdir().unwrap();
    let dir = site.path().to_str().unwrap();
    let st = store.path().to_str().unwrap();
    for (args, expect) in [
        (
            vec!["deploy", dir, "--site", "Web", "--store", st],
            "lowercase DNS label",
        ),
        (
            vec!["deploy", dir, "--site", "web", "--store", "ftp://x/y"],
            "s3://bucket",
        ),
        (
            vec![
                "deploy", dir, "--site", "web", "--store", st, "--commit", "xyz",
            ],
            "7 to 64 lowercase hex digits",
        ),
        (
            vec![
                "deploy",
                dir,
                "--site",
                "web",
                "--store",
                st,
                "--timeout",
                "soon",
            ],
            "90s, 5m",
        ),
    ] {
        let result = kpages(&args, &[]);
        assert!(!result.status.success(), "{args:?}");
        let text = stderr(&result);
        assert!(text.contains(expect), "{args:?}: {text}");
    }
    // No store at all: the flag and its environment variable are named.
    let result = kpages(&["deploy", dir, "--site", "web"], &[]);
    assert_eq!(result.status.code(), Some(2));
    assert!(stderr(&result).contains("--store"), "{}", stderr(&result));
}

#[test]
fn source_defaults_to_the_git_commit_and_branch_of_the_site() {
    let site = site();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(site.path())
            .args([
                "-c",
                "user.name=kpages",
                "-c",
                "user.email=kpages@test.invalid",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    git(&["init", "-q", "-b", "release"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "first"]);
    let head = git(&["rev-parse", "HEAD"]);
    let store = tempfile::tempdir().unwrap();
    let result = kpages(
        &[
            "deploy",
            site.path().to_str().unwrap(),
            "--site",
            "web",
            "--store",
            store.path().to_str().unwrap(),
            "--emit",
            "-",
        ],
        &[],
    );
    assert!(result.status.success(), "{}", stderr(&result));
    let deploy: Deploy = serde_yaml_ng::from_slice(&result.stdout).unwrap();
    let source = deploy.spec.source.unwrap();
    assert_eq!(source.commit, Some(head));
    assert_eq!(source.branch.as_deref(), Some("release"));
    assert_eq!(source.message, None);
    // --commit and --branch win over git.
    let result = kpages(
        &[
            "deploy",
            site.path().to_str().unwrap(),
            "--site",
            "web",
            "--store",
            store.path().to_str().unwrap(),
            "--emit",
            "-",
            "--commit",
            "abcdef1",
            "--branch",
            "other",
        ],
        &[],
    );
    let deploy: Deploy = serde_yaml_ng::from_slice(&result.stdout).unwrap();
    let source = deploy.spec.source.unwrap();
    assert_eq!(
        (source.commit.as_deref(), source.branch.as_deref()),
        (Some("abcdef1"), Some("other"))
    );
}
