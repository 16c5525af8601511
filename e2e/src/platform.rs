//! The platform as a user installs and drives it, shared by the platform test and the cluster
//! benchmarks (`e2e/examples/bench_*.rs`): the chart from this source tree installed with the
//! testbed's helm (operator and router from `localhost/kpages/kpages:dev`), and the `kpages`
//! CLI that `e2e/cluster load-images` built, run on the host.
//!
//! Like the rest of the harness these helpers panic, with what went wrong, instead of
//! returning errors: a failed install or deploy ends the test or benchmark that asked for it.

use std::path::{Path, PathBuf};

use kpages_crds::Site;
use kpages_testsupport::MinIo;
use kube::Api;

use crate::Cluster;

/// The repository's root (the parent of `e2e/`).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or_else(|| Path::new("/"))
        .to_path_buf()
}

/// A release binary `e2e/cluster load-images` built (statically linked, as in the image): the
/// same bytes the cluster's pods run, so the host runs what users download.
pub fn release_binary(name: &str) -> PathBuf {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("cargo metadata: {e}"));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("cargo metadata printed no JSON: {e}"));
    let target = meta["target_directory"]
        .as_str()
        .unwrap_or_else(|| panic!("cargo metadata names no target directory"));
    let bin = PathBuf::from(target)
        .join("x86_64-unknown-linux-gnu/release")
        .join(name);
    assert!(
        bin.is_file(),
        "{} was not built: run e2e/cluster load-images (or cargo build --release --target \
         x86_64-unknown-linux-gnu --bin {name} with RUSTFLAGS='-C target-feature=+crt-static')",
        bin.display()
    );
    bin
}

/// `helm install RELEASE charts/kpages --namespace NAMESPACE --wait` with `values`: each one a
/// `--set key=value`, or a `--set-string` when written `string:key=value`. Returns helm's
/// stdout (the chart's NOTES); panics with helm's output when the install fails.
pub async fn helm_install(
    cluster: &Cluster,
    release: &str,
    namespace: &str,
    values: &[String],
) -> String {
    let mut args = vec![
        "install".to_string(),
        release.to_string(),
        repo().join("charts/kpages").display().to_string(),
        "--namespace".into(),
        namespace.into(),
        "--wait".into(),
        "--timeout".into(),
        "5m".into(),
    ];
    for v in values {
        match v.strip_prefix("string:") {
            Some(v) => args.extend(["--set-string".to_string(), v.to_string()]),
            None => args.extend(["--set".to_string(), v.clone()]),
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cluster
        .helm(&args)
        .await
        .unwrap_or_else(|e| panic!("helm install: {e}"));
    assert!(
        out.status.success(),
        "helm install: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `kpages` CLI built for the image (the same binary users download), run on the host
/// against the testbed's apiserver and a host-side MinIO.
pub struct Cli {
    /// The binary.
    pub bin: PathBuf,
    /// The testbed's kubeconfig.
    pub kubeconfig: PathBuf,
    /// `KPAGES_STORE_URL` (the store as the host reaches it).
    pub store: String,
    /// The namespace of the Sites.
    pub namespace: String,
}

impl Cli {
    /// The release `kpages` binary against `cluster`, deploying to `store` in `namespace`.
    pub fn new(cluster: &Cluster, store: &str, namespace: &str) -> Self {
        Self {
            bin: release_binary("kpages"),
            kubeconfig: cluster.kubeconfig().to_path_buf(),
            store: store.into(),
            namespace: namespace.into(),
        }
    }

    /// Runs `kpages ARGS --namespace NS`; its output goes to stderr as well.
    pub async fn run(&self, args: &[&str]) -> std::process::Output {
        let out = tokio::process::Command::new(&self.bin)
            .args(args)
            .args(["--namespace", &self.namespace])
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KPAGES_STORE_URL", &self.store)
            .env("AWS_ACCESS_KEY_ID", MinIo::USER)
            .env("AWS_SECRET_ACCESS_KEY", MinIo::PASSWORD)
            .env("NO_COLOR", "1")
            .kill_on_drop(true)
            .output()
            .await
            .unwrap_or_else(|e| panic!("running {}: {e}", self.bin.display()));
        eprintln!(
            "$ kpages {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `kpages deploy DIR --site SITE --prod`: waits until the deploy is the Site's active one
    /// and prints the site's URL; returns the Deploy's name (the Site's active deploy then).
    pub async fn deploy_prod(&self, dir: &Path, site: &str, sites: &Api<Site>) -> String {
        let dir = dir.display().to_string();
        let out = self
            .run(&["deploy", &dir, "--site", site, "--prod", "--timeout", "4m"])
            .await;
        assert!(out.status.success(), "kpages deploy {dir} failed");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let url = stdout.lines().last().unwrap_or_default();
        assert!(
            url.starts_with("http://"),
            "the last line is the site's URL: {stdout}"
        );
        sites
            .get(site)
            .await
            .unwrap_or_else(|e| panic!("reading Site {site}: {e}"))
            .status
            .and_then(|s| s.active_deploy)
            .unwrap_or_else(|| {
                panic!("kpages deploy --prod returned before {site} had an active deploy")
            })
    }
}
