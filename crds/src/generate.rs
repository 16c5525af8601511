//! Generated artifacts: the CRD YAML users install and the manifest JSON Schema. Both are
//! committed; tests fail when the committed copies drift from the types.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::{Deploy, FunctionRoute, Manifest, Site};

/// Every kpages CRD with the file name it is committed under (`crds/generated/`).
pub fn crds() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("sites.kpages.dev.yaml", Site::crd()),
        ("deploys.kpages.dev.yaml", Deploy::crd()),
        ("functionroutes.kpages.dev.yaml", FunctionRoute::crd()),
    ]
}

/// One CRD as YAML.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> String {
    // A CRD is plain data; serialising it to YAML cannot fail.
    serde_yaml_ng::to_string(crd).unwrap_or_default()
}

/// All CRDs as one multi-document YAML stream, as printed by `kpages crd`.
pub fn all_crds_yaml() -> String {
    crds()
        .iter()
        .map(|(_, crd)| format!("---\n{}", crd_yaml(crd)))
        .collect()
}

/// The JSON Schema of the deploy manifest, pretty-printed with a trailing newline.
pub fn manifest_schema_json() -> String {
    let schema = schemars::schema_for!(Manifest);
    let mut out = serde_json::to_string_pretty(&schema).unwrap_or_default();
    out.push('\n');
    out
}
