//! Every write of the controllers to objects they own, and to the status of the objects they
//! reconcile, is a server-side apply with one field manager ([`FIELD_MANAGER`]), forced: the
//! operator is the only writer of these fields, so it wins over hand edits instead of failing
//! on a conflict, and `kubectl get -o yaml --show-managed-fields` says who wrote what.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::context::Error;
use crate::names::FIELD_MANAGER;

/// Applies `obj` in namespace `ns`; returns the object as the API server stored it.
pub async fn apply<K>(client: &Client, ns: &str, obj: &K) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let name = obj.name_any();
    let mut value = serde_json::to_value(obj).map_err(|e| Error::Apply {
        what: format!("{} {name}", K::kind(&())),
        source: kube::Error::SerdeError(e),
    })?;
    // Server-side apply needs apiVersion and kind, which k8s-openapi types leave to the client.
    value["apiVersion"] = json!(K::api_version(&()));
    value["kind"] = json!(K::kind(&()));
    api.patch(&name, &params(), &Patch::Apply(value))
        .await
        .map_err(|source| Error::Apply {
            what: format!("{} {ns}/{name}", K::kind(&())),
            source,
        })
}

/// Applies `status` as the whole status of the `K` named `name` in `ns` (its status
/// subresource).
///
/// Unlike a merge patch, which left a field the new status omits as it was (a stale
/// `readyReplicas`, `activeDeploy` or `conflictsWith`), an apply removes the fields this manager
/// wrote before and no longer sets. A field another manager co-owns stays: on a status written
/// by merge patch (before the operator applied statuses), a field the operator then applied with
/// the same value is shared with that older writer, and goes once the operator has applied a
/// different value for it.
pub async fn apply_status<K>(
    client: &Client,
    ns: &str,
    name: &str,
    status: &impl Serialize,
) -> Result<(), Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(name, &params(), &Patch::Apply(patch))
        .await
        .map_err(|source| Error::Status {
            what: format!("{} {ns}/{name}", K::kind(&())),
            source,
        })?;
    Ok(())
}

fn params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use http::{Request, Response};
    use kpages_crds::{FunctionRoute, FunctionRouteStatus};
    use kube::client::Body;
    use serde_json::Value;

    use super::*;

    #[tokio::test]
    async fn a_status_is_applied_to_the_status_subresource_with_the_field_manager() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let server = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.unwrap();
            let method = request.method().to_string();
            let uri = request.uri().to_string();
            let content_type = request.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_string();
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            let mut stored = FunctionRoute::new(
                "r",
                serde_json::from_value(json!({
                    "site": "web",
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backend": {"function": {"name": "hello"}},
                }))
                .unwrap(),
            );
            stored.status = serde_json::from_value(body["status"].clone()).unwrap();
            send.send_response(
                Response::builder()
                    .body(Body::from(serde_json::to_vec(&stored).unwrap()))
                    .unwrap(),
            );
            (method, uri, content_type, body)
        });
        let status = FunctionRouteStatus {
            observed_generation: Some(3),
            ..FunctionRouteStatus::default()
        };
        apply_status::<FunctionRoute>(&Client::new(service, "team"), "team", "r", &status)
            .await
            .unwrap();

        let (method, uri, content_type, body) = server.await.unwrap();
        assert_eq!(method, "PATCH");
        let (path, query) = uri.split_once('?').unwrap();
        assert_eq!(
            path,
            "/apis/kpages.dev/v1alpha1/namespaces/team/functionroutes/r/status"
        );
        let mut query: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
        query.sort_unstable();
        assert_eq!(query, ["fieldManager=kpages-operator", "force=true"]);
        assert_eq!(content_type, "application/apply-patch+yaml");
        assert_eq!(
            body,
            json!({
                "apiVersion": "kpages.dev/v1alpha1",
                "kind": "FunctionRoute",
                "status": {"observedGeneration": 3},
            })
        );
    }
}
