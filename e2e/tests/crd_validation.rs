//! The real kube-apiserver rejects every bad Site, Deploy and FunctionRoute in
//! `crds/tests/fixtures/invalid/` with the message its `# expect:` line names (CEL rules and OpenAPI
//! schema alike), and accepts every object in `valid/`. The CRDs installed are the ones the
//! `kpages-crds` types generate, so this checks the types as they are now.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kpages_e2e::TestNamespace;
use kpages_testsupport::crd_fixtures as fixtures;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::conditions::is_crd_established;
use kube::runtime::wait::await_condition;
use kube::{Api, Client, ResourceExt};

/// Applies the CRDs the types generate and waits until each is Established.
async fn install_crds(client: &Client) -> Vec<CustomResourceDefinition> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut installed = Vec::new();
    for (_, crd) in kpages_crds::generate::crds() {
        let name = crd.name_any();
        let params = PatchParams::apply("kpages-e2e").force();
        crds.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
        tokio::time::timeout(
            Duration::from_secs(60),
            await_condition(crds.clone(), &name, is_crd_established()),
        )
        .await
        .unwrap_or_else(|_| panic!("CRD {name} not Established within 60s"))
        .unwrap_or_else(|e| panic!("watching CRD {name}: {e}"));
        installed.push(crd);
    }
    installed
}

fn resource_for(crds: &[CustomResourceDefinition], object: &serde_json::Value) -> ApiResource {
    let kind = object["kind"].as_str().expect("object has a kind");
    let crd = crds
        .iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for kind {kind}"));
    let version = &crd.spec.versions[0].name;
    ApiResource {
        group: crd.spec.group.clone(),
        version: version.clone(),
        api_version: format!("{}/{version}", crd.spec.group),
        kind: kind.to_string(),
        plural: crd.spec.names.plural.clone(),
    }
}

fn dynamic(object: &serde_json::Value) -> DynamicObject {
    serde_json::from_value(object.clone()).expect("fixture is a Kubernetes object")
}

#[tokio::test]
async fn the_api_server_rejects_bad_manifests_with_the_expected_message() {
    TestNamespace::run("crd-validation", |ns| async move {
        let client = ns.client.clone();
        let crds = install_crds(&client).await;
        let pp = PostParams::default();

        for (name, object) in fixtures::valid() {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), ns.name(), &resource_for(&crds, &object));
            api.create(&pp, &dynamic(&object))
                .await
                .unwrap_or_else(|e| panic!("valid/{name} was rejected: {e}"));
        }

        let invalid = fixtures::invalid();
        assert!(
            invalid.len() >= 10,
            "expected at least 10 invalid fixtures, found {}",
            invalid.len()
        );
        let mut failures = Vec::new();
        for fixture in &invalid {
            let api: Api<DynamicObject> = Api::namespaced_with(
                client.clone(),
                ns.name(),
                &resource_for(&crds, &fixture.object),
            );
            let mut object = dynamic(&fixture.object);
            let result = match &fixture.update_of {
                None => api.create(&pp, &object).await,
                Some(_original) => {
                    // The original is a valid fixture, created above under the same name.
                    let current = api.get(&object.name_any()).await.unwrap_or_else(|e| {
                        panic!("{}: the object it updates is missing: {e}", fixture.name)
                    });
                    object.metadata.resource_version = current.metadata.resource_version;
                    api.replace(&object.name_any(), &pp, &object).await
                }
            };
            match result {
                Ok(_) => failures.push(format!(
                    "{}: accepted; expected rejection with {:?}",
                    fixture.name, fixture.expect
                )),
                Err(kube::Error::Api(status)) if status.message.contains(&fixture.expect) => {
                    eprintln!(
                        "{}: rejected ({}): {}",
                        fixture.name, status.code, status.message
                    );
                }
                Err(e) => failures.push(format!(
                    "{}: rejected with {e}, expected {:?}",
                    fixture.name, fixture.expect
                )),
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} bad manifests misbehaved:\n{}",
            failures.len(),
            invalid.len(),
            failures.join("\n")
        );
    })
    .await;
}
