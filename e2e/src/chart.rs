//! The Helm chart (`charts/kpages/`) as the chart tests see it: rendered by the testbed's own
//! helm and parsed into YAML values, with accessors for what the tests assert on.
//!
//! ```text
//!  render(&["key=value", …]) ── helm template kpages charts/kpages --set … ──► Rendered
//!     Rendered::get(kind, name) ──► one object ── container(..) ──► env(..) / env_value(..)
//!     rules(role)               ──► RBAC flattened to `group/resource:verb[@name]`
//! ```
//!
//! Rendering needs only the helm binary (`e2e/cluster bin-dir` builds it), not a running
//! cluster; like the rest of the harness, these helpers panic with helm's output on failure.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::platform::repo;

/// The Kubernetes version charts are rendered for.
pub const KUBE_VERSION: &str = "1.35.0";
/// The namespace the chart is rendered into.
pub const NAMESPACE: &str = "kpages-system";
/// A store URL for renders that do not enable the built-in S3 server (the chart requires one).
pub const STORE: &str = "store.url=s3://sites/prod?endpoint=http://s3.storage:9000";

/// The chart's directory.
pub fn chart() -> PathBuf {
    repo().join("charts/kpages")
}

/// The testbed's helm binary (`e2e/cluster bin-dir` builds it when it is missing).
pub fn helm_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new(repo().join("e2e/cluster"))
            .arg("bin-dir")
            .stderr(Stdio::inherit())
            .output()
            .expect("running e2e/cluster bin-dir");
        assert!(out.status.success(), "e2e/cluster bin-dir: {}", out.status);
        let dir = String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .expect("e2e/cluster bin-dir printed a directory")
            .trim()
            .to_string();
        let helm = PathBuf::from(dir).join("helm");
        assert!(helm.is_file(), "no helm at {}", helm.display());
        helm
    })
}

/// Runs helm with `args`, never against a cluster.
pub fn helm(args: &[&str]) -> Output {
    Command::new(helm_bin())
        .args(args)
        // Never a kubeconfig by accident: these renders must not depend on a cluster.
        .env("KUBECONFIG", "/nonexistent")
        .output()
        .expect("running helm")
}

/// `helm template` into `namespace` with `--set` pairs: the YAML, or helm's stderr.
fn template(sets: &[&str], namespace: &str) -> Result<String, String> {
    let chart = chart();
    let mut args = vec![
        "template",
        "kpages",
        chart.to_str().expect("utf-8 path"),
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    let out = helm(&args);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8(out.stdout).expect("helm prints UTF-8"))
}

/// `helm template` into [`NAMESPACE`] with `--set` pairs; Err carries helm's stderr.
pub fn try_render(sets: &[&str]) -> Result<Vec<Value>, String> {
    template(sets, NAMESPACE).map(|yaml| parse_docs(&yaml))
}

/// [`try_render`] that must succeed.
pub fn render(sets: &[&str]) -> Rendered {
    Rendered(try_render(sets).unwrap_or_else(|e| panic!("helm template {sets:?} failed:\n{e}")))
}

/// The YAML `helm template` prints for `sets` in `namespace`.
pub fn rendered_yaml(sets: &[&str], namespace: &str) -> String {
    template(sets, namespace).unwrap_or_else(|e| panic!("{e}"))
}

/// Every non-empty document of a YAML stream.
pub fn parse_docs(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("helm printed valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// The objects of one render.
pub struct Rendered(Vec<Value>);

impl Rendered {
    /// Every rendered object.
    pub fn objects(&self) -> &[Value] {
        &self.0
    }

    /// The objects of `kind`.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.0.iter().filter(move |o| o["kind"] == *kind)
    }

    /// The object `kind`/`name`, if rendered.
    pub fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|o| o["kind"] == *kind && o["metadata"]["name"] == *name)
    }

    /// The object `kind`/`name`; panics listing what was rendered when it is not.
    pub fn get(&self, kind: &str, name: &str) -> &Value {
        self.find(kind, name).unwrap_or_else(|| {
            panic!(
                "no {kind} {name}; rendered: {:?}",
                self.0
                    .iter()
                    .map(|o| format!("{} {}", str(&o["kind"]), str(&o["metadata"]["name"])))
                    .collect::<Vec<_>>()
            )
        })
    }

    /// Every object as `Kind/name`.
    pub fn kinds_and_names(&self) -> BTreeSet<String> {
        self.0
            .iter()
            .map(|o| format!("{}/{}", str(&o["kind"]), str(&o["metadata"]["name"])))
            .collect()
    }
}

/// A string value, or "" for anything else.
pub fn str(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// A sequence's items, or none for anything else.
pub fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map(Vec::as_slice).unwrap_or(&[])
}

/// The container `name` of a Deployment's pod template.
pub fn container<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    seq(&deployment["spec"]["template"]["spec"]["containers"])
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// A container's env as name → the EnvVar object.
pub fn env(container: &Value) -> BTreeMap<String, Value> {
    seq(&container["env"])
        .iter()
        .map(|e| (str(&e["name"]).to_string(), e.clone()))
        .collect()
}

/// The literal value of a container's env variable `name`; panics when it has none.
pub fn env_value(container: &Value, name: &str) -> String {
    let env = env(container);
    let var = env
        .get(name)
        .unwrap_or_else(|| panic!("{} has no env {name}", str(&container["name"])));
    str(&var["value"]).to_string()
}

/// RBAC rules flattened to `group/resource:verb` (plus `@name` when limited to names).
pub fn rules(role: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for rule in seq(&role["rules"]) {
        let names: Vec<&str> = seq(&rule["resourceNames"]).iter().map(str).collect();
        for group in seq(&rule["apiGroups"]) {
            for resource in seq(&rule["resources"]) {
                for verb in seq(&rule["verbs"]) {
                    let base = format!("{}/{}:{}", str(group), str(resource), str(verb));
                    if names.is_empty() {
                        out.insert(base);
                    } else {
                        out.extend(names.iter().map(|n| format!("{base}@{n}")));
                    }
                }
            }
        }
    }
    out
}

/// Fails with what is granted beyond `want` and what is missing, not two long sets.
pub fn assert_rules(role: &Value, want: &BTreeSet<String>, what: &str) {
    let got = rules(role);
    let extra: Vec<&String> = got.difference(want).collect();
    let missing: Vec<&String> = want.difference(&got).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "{what}: grants more than it needs {extra:?}; lacks {missing:?}"
    );
}

/// `(group, resources, verbs)` triples as the flattened rules [`rules`] returns.
pub fn expand(spec: &[(&str, &[&str], &[&str])]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (group, resources, verbs) in spec {
        for r in *resources {
            for v in *verbs {
                out.insert(format!("{group}/{r}:{v}"));
            }
        }
    }
    out
}
