//! The CEL rules in the generated CRDs, evaluated client-side (kube-cel) against the shared
//! fixtures: every valid object passes, every CEL-rejected object fails with its message.
//! The same fixtures go to a real kube-apiserver in the e2e tier.

use kpages_testsupport::crd_fixtures::{self as fixtures, Layer};
use kube::core::cel::Validator;

/// The openAPIV3Schema of the CRD whose kind the object names.
fn schema_for(object: &serde_json::Value) -> serde_json::Value {
    let kind = object["kind"].as_str().expect("fixture has a kind");
    let (_, crd) = kpages_crds::generate::crds()
        .into_iter()
        .find(|(_, crd)| crd.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for kind {kind}"));
    let schema = crd.spec.versions[0]
        .schema
        .clone()
        .and_then(|s| s.open_api_v3_schema);
    serde_json::to_value(schema.expect("CRD has a schema")).expect("schema is JSON")
}

#[test]
fn valid_fixtures_pass_every_rule() {
    let valid = fixtures::valid();
    assert_eq!(valid.len(), 3, "one valid fixture per kind");
    for (name, object) in valid {
        let result = Validator::new().validate(&schema_for(&object), &object, None);
        assert!(
            result.is_ok(),
            "{name} should be valid: {}",
            result.unwrap_err()
        );
    }
}

#[test]
fn a_valid_update_that_changes_only_metadata_passes_the_immutability_rule() {
    let (_, deploy) = fixtures::valid()
        .into_iter()
        .find(|(n, _)| n == "deploy.yaml")
        .expect("deploy fixture");
    let mut relabelled = deploy.clone();
    relabelled["metadata"]["labels"] = serde_json::json!({"team": "web"});
    let result = Validator::new().validate(&schema_for(&deploy), &relabelled, Some(&deploy));
    assert!(result.is_ok(), "{}", result.unwrap_err());
}

#[test]
fn invalid_fixtures_are_rejected_by_the_expected_cel_rule() {
    let invalid: Vec<_> = fixtures::invalid()
        .into_iter()
        .filter(|f| f.layer == Layer::Cel)
        .collect();
    assert!(
        invalid.len() >= 12,
        "expected at least 12 CEL fixtures, found {}",
        invalid.len()
    );
    for fixture in invalid {
        let schema = schema_for(&fixture.object);
        let result =
            Validator::new().validate(&schema, &fixture.object, fixture.update_of.as_ref());
        let err = match result {
            Ok(()) => panic!(
                "{} was accepted; expected: {}",
                fixture.name, fixture.expect
            ),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(&fixture.expect),
            "{}: rejected, but with {err:?} instead of {:?}",
            fixture.name,
            fixture.expect
        );
    }
}
