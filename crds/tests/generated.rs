//! Golden tests: the committed CRD YAML (`crds/generated/`) and manifest JSON Schema
//! (`crds/manifest.schema.json`) must equal what the types generate. After changing the
//! types, regenerate with `KPAGES_BLESS=1 cargo test -p kpages-crds --test generated` and
//! review the diff.

use std::path::{Path, PathBuf};

use kpages_crds::generate;
use pretty_assertions::assert_eq;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Compares `generated` with the committed file, or rewrites it when blessing.
fn check_golden(path: &Path, generated: &str) {
    if std::env::var_os("KPAGES_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(path, generated).expect("write golden file");
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{} is missing ({e}); run KPAGES_BLESS=1 cargo test -p kpages-crds",
            path.display()
        )
    });
    assert_eq!(
        committed,
        generated,
        "{} drifted from the types; run KPAGES_BLESS=1 cargo test -p kpages-crds --test generated",
        path.display()
    );
}

#[test]
fn committed_crd_yaml_matches_the_types() {
    for (file, crd) in generate::crds() {
        check_golden(
            &root().join("generated").join(file),
            &generate::crd_yaml(&crd),
        );
    }
}

#[test]
fn committed_manifest_schema_matches_the_types() {
    check_golden(
        &root().join("manifest.schema.json"),
        &generate::manifest_schema_json(),
    );
}

#[test]
fn every_crd_is_namespaced_with_status_subresource_short_name_and_columns() {
    for (file, crd) in generate::crds() {
        assert_eq!(crd.spec.group, "kpages.dev", "{file}");
        assert_eq!(crd.spec.scope, "Namespaced", "{file}");
        let names = &crd.spec.names;
        assert!(
            names.short_names.as_ref().is_some_and(|s| !s.is_empty()),
            "{file}: short name"
        );
        assert_eq!(
            names.categories.as_deref(),
            Some(&["kpages".to_string()][..]),
            "{file}"
        );
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{file}"
        );
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert!(columns.contains(&"Age"), "{file}: {columns:?}");
        let yaml = generate::crd_yaml(&crd);
        assert!(
            yaml.contains("x-kubernetes-validations"),
            "{file} has no CEL rules"
        );
        assert!(yaml.contains("observedGeneration"), "{file}");
        assert!(
            yaml.contains("x-kubernetes-list-map-keys"),
            "{file}: conditions map list"
        );
    }
}

#[test]
fn site_columns_show_url_active_deploy_and_readiness() {
    let (_, site) = &generate::crds()[0];
    let paths: Vec<_> = site.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.as_str(), c.json_path.as_str()))
        .collect();
    assert_eq!(
        paths,
        [
            ("Domain", ".spec.domains[0]"),
            ("Active", ".status.activeDeploy"),
            ("URL", ".status.url"),
            ("Ready", ".status.conditions[?(@.type==\"Ready\")].status"),
            ("Age", ".metadata.creationTimestamp"),
        ]
    );
}

#[test]
fn every_schema_property_has_a_description_for_kubectl_explain() {
    fn walk(path: &str, v: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
            for (name, prop) in props {
                let here = format!("{path}.{name}");
                // metadata and apiVersion/kind are described by Kubernetes itself.
                let builtin =
                    path.is_empty() && ["metadata", "apiVersion", "kind"].contains(&name.as_str());
                if prop.get("description").is_none() && !builtin {
                    missing.push(here.clone());
                }
                walk(&here, prop, missing);
            }
        }
        if let Some(items) = v.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    for (file, crd) in generate::crds() {
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).expect("json");
        let mut missing = vec![];
        walk("", &schema["openAPIV3Schema"], &mut missing);
        assert!(
            missing.is_empty(),
            "{file}: fields without a description: {missing:?}"
        );
    }
}
