//! A namespace per test: created with a unique name, deleted afterwards (unless `KPAGES_E2E_KEEP=1`),
//! and, when the test fails, its pods' state, events and container logs are printed first.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use kube::{Api, Client, Resource};
use serde_json::json;

use crate::{Cluster, Error};

/// A namespace owned by one test.
#[derive(Clone)]
pub struct TestNamespace {
    /// The cluster it lives in.
    pub cluster: Cluster,
    /// A client for the test's runtime.
    pub client: Client,
    name: String,
}

impl TestNamespace {
    /// Starts (or reuses) the cluster, creates a namespace named after `prefix`, runs `body` in it,
    /// dumps the namespace's pods if `body` panics, then deletes it and re-raises the panic.
    pub async fn run<F, Fut>(prefix: &str, body: F)
    where
        F: FnOnce(TestNamespace) -> Fut,
        Fut: Future<Output = ()>,
    {
        let ns = Self::create(prefix)
            .await
            .unwrap_or_else(|e| panic!("creating a test namespace: {e}"));
        let outcome = AssertUnwindSafe(body(ns.clone())).catch_unwind().await;
        if outcome.is_err() {
            ns.dump().await;
        }
        ns.cleanup().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    /// Creates a uniquely named namespace `e2e-<prefix>-<suffix>`.
    pub async fn create(prefix: &str) -> Result<TestNamespace, Error> {
        let cluster = Cluster::get()?;
        let client = cluster.client().await?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let suffix = format!("{:x}{:05x}", std::process::id() % 0xfff, nanos % 0xfffff);
        let mut name = format!("e2e-{prefix}");
        name.truncate(63 - suffix.len() - 1);
        let name = format!("{}-{suffix}", name.trim_end_matches('-'));
        let namespace: Namespace = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"kpages.dev/e2e": "true"}}
        }))
        .map_err(|e| Error::Wait {
            what: "namespace".into(),
            message: e.to_string(),
        })?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await?;
        Ok(TestNamespace {
            cluster,
            client,
            name,
        })
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An Api for namespaced objects of kind K in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Prints every pod's phase and conditions, the namespace's events and every container's log.
    pub async fn dump(&self) {
        eprintln!("===== namespace {} after a failure =====", self.name);
        let pods: Api<Pod> = self.api();
        match pods.list(&ListParams::default()).await {
            Err(e) => eprintln!("listing pods: {e}"),
            Ok(list) => {
                for pod in list {
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    let status = serde_json::to_string_pretty(&pod.status).unwrap_or_default();
                    eprintln!("--- pod {name} status:\n{status}");
                    let containers = pod.spec.map(|s| s.containers).unwrap_or_default();
                    for c in containers {
                        let params = LogParams {
                            container: Some(c.name.clone()),
                            ..LogParams::default()
                        };
                        match pods.logs(&name, &params).await {
                            Ok(log) => eprintln!("--- pod {name} container {} log:\n{log}", c.name),
                            Err(e) => eprintln!(
                                "--- pod {name} container {} log unavailable: {e}",
                                c.name
                            ),
                        }
                    }
                }
            }
        }
        let events: Api<Event> = self.api();
        if let Ok(list) = events.list(&ListParams::default()).await {
            for e in list {
                let obj = e.involved_object.name.unwrap_or_default();
                eprintln!(
                    "event {} {}: {} {}",
                    e.involved_object.kind.unwrap_or_default(),
                    obj,
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default()
                );
            }
        }
        eprintln!("===== end of namespace {} =====", self.name);
    }

    /// Deletes the namespace (without waiting for it to be finalized), unless KPAGES_E2E_KEEP=1.
    pub async fn cleanup(&self) {
        if std::env::var("KPAGES_E2E_KEEP").is_ok_and(|v| v == "1") {
            eprintln!("KPAGES_E2E_KEEP=1: keeping namespace {}", self.name);
            return;
        }
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        if let Err(e) = namespaces
            .delete(&self.name, &DeleteParams::background())
            .await
        {
            eprintln!("deleting namespace {}: {e}", self.name);
        }
    }
}
