//! The CRD fixtures in `crds/tests/fixtures/` (see its README): objects the API server must
//! accept and objects it must reject, with the message and the layer that rejects them. Read by
//! the CEL tests in `crds/` and by the cluster tests in `e2e/`, so both check the same objects.

use std::path::{Path, PathBuf};

/// Which layer of the API server is expected to reject a fixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// A CEL rule (`x-kubernetes-validations`).
    Cel,
    /// The OpenAPI schema itself (types, enums, bounds).
    OpenApi,
}

/// An object the API server must reject.
#[derive(Debug, Clone)]
pub struct Invalid {
    /// File name, for messages.
    pub name: String,
    /// The object.
    pub object: serde_json::Value,
    /// Text the rejection must contain.
    pub expect: String,
    /// Which layer rejects it.
    pub layer: Layer,
    /// For transition rules: the object this one updates.
    pub update_of: Option<serde_json::Value>,
}

/// The fixtures directory, `crds/tests/fixtures/`.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/tests/fixtures")
}

/// Reads one YAML object.
pub fn read(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading fixture {}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// Every valid fixture, by file name.
pub fn valid() -> Vec<(String, serde_json::Value)> {
    list(&dir().join("valid"))
        .into_iter()
        .map(|p| (file_name(&p), read(&p)))
        .collect()
}

/// Every invalid fixture.
pub fn invalid() -> Vec<Invalid> {
    list(&dir().join("invalid"))
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("fixture is readable");
            let header = |key: &str| {
                text.lines()
                    .filter_map(|l| l.strip_prefix("# "))
                    .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
            };
            let name = file_name(&path);
            let expect = header("expect:")
                .unwrap_or_else(|| panic!("fixture {name} has no '# expect:' line"));
            let layer = match header("layer:").as_deref() {
                None | Some("cel") => Layer::Cel,
                Some("openapi") => Layer::OpenApi,
                Some(other) => panic!("fixture {name}: unknown layer {other:?}"),
            };
            let update_of = header("update-of:").map(|rel| read(&dir().join(rel)));
            Invalid {
                name,
                object: read(&path),
                expect,
                layer,
                update_of,
            }
        })
        .collect()
}

fn list(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    paths.sort();
    paths
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
