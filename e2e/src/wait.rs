//! Waits on conditions through watches, never by sleeping; every wait has a deadline and says
//! what it waited for when it runs out.

use std::fmt::Debug;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::wait::{Condition, await_condition};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use crate::Error;

/// Waits until `cond` holds for the object `name`, for at most `timeout`; returns the object.
pub async fn until<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    cond: impl Condition<K>,
) -> Result<K, Error>
where
    K: Clone + Debug + Send + Sync + DeserializeOwned + Resource + 'static,
    <K as Resource>::DynamicType: Default,
{
    let what = format!("{} {name}", K::kind(&Default::default()));
    match tokio::time::timeout(timeout, await_condition(api.clone(), name, cond)).await {
        Err(_) => Err(Error::Timeout {
            what,
            seconds: timeout.as_secs(),
        }),
        Ok(Err(e)) => Err(Error::Wait {
            what,
            message: e.to_string(),
        }),
        Ok(Ok(None)) => Err(Error::Wait {
            what,
            message: "the object does not exist".into(),
        }),
        Ok(Ok(Some(obj))) => Ok(obj),
    }
}

/// The node's `Ready` condition is `True`.
pub fn node_ready() -> impl Condition<Node> {
    |node: Option<&Node>| {
        node.and_then(|n| n.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    }
}

/// The pod's `Ready` condition is `True` (its readiness probe, if any, passes).
pub fn pod_ready() -> impl Condition<Pod> {
    |pod: Option<&Pod>| {
        pod.and_then(|p| p.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    }
}

/// The deployment's controller has seen its latest spec and every replica is updated and available.
pub fn deployment_rolled_out() -> impl Condition<Deployment> {
    |d: Option<&Deployment>| {
        let Some(d) = d else { return false };
        let (Some(spec), Some(status)) = (d.spec.as_ref(), d.status.as_ref()) else {
            return false;
        };
        let want = spec.replicas.unwrap_or(1);
        status.observed_generation >= d.metadata.generation
            && status.updated_replicas == Some(want)
            && status.available_replicas == Some(want)
            && status.replicas == Some(want)
    }
}
