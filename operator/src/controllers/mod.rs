//! The three controllers, one module each: [`deploy`] turns a Deploy into function pods and
//! routes, [`site`] picks a site's active deploy and enforces retention, [`route`] checks
//! FunctionRoutes. Each module says which kind it reconciles and what else triggers it;
//! [`run_controller`] is the watch loop they share.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::context::{Context, Error, error_policy};

pub mod apply;
pub mod deploy;
pub mod route;
pub mod site;

/// Where one set of controllers looks: one namespace, or every namespace.
#[derive(Clone)]
pub struct Scope {
    client: Client,
    namespace: Option<String>,
}

impl Scope {
    /// The scope of `namespace`, or of all namespaces.
    pub fn new(client: Client, namespace: Option<&str>) -> Self {
        Self {
            client,
            namespace: namespace.map(str::to_string),
        }
    }

    /// An API for objects of kind `K` in this scope.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        match &self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }
}

/// The watch loop every controller shares, run until shutdown (a signal, or the caller dropping
/// it when leadership ends): watches `K` in `namespace` (or all) through [`DeserializeGuard`],
/// so one malformed object fails its own reconcile instead of the watch; adds what else
/// triggers a reconcile with `related` (owned objects, mapped watches); counts and times every
/// reconcile under `name`; forgets an object's failures once it reconciles; and hands errors to
/// the shared [`error_policy`] (wait for a change on invalid input, back off on the rest).
pub async fn run_controller<K, Fut>(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    name: &'static str,
    reconcile: impl Fn(Arc<DeserializeGuard<K>>, Arc<Context>) -> Fut,
    related: impl FnOnce(Controller<DeserializeGuard<K>>, &Scope) -> Controller<DeserializeGuard<K>>,
) where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    let scope = Scope::new(ctx.client.clone(), namespace);
    let controller = Controller::new(
        scope.api::<DeserializeGuard<K>>(),
        watcher::Config::default().any_semantic(),
    );
    related(controller, &scope)
        .shutdown_on_signal()
        .run(
            move |obj: Arc<DeserializeGuard<K>>, ctx: Arc<Context>| {
                let key = ObjectRef::from_obj(obj.as_ref()).to_string();
                measured(name, key, ctx.clone(), reconcile(obj, ctx))
            },
            move |obj, err, ctx| error_policy(name, &ObjectRef::from_obj(obj.as_ref()), err, &ctx),
            ctx,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, controller = name, "controller event");
            }
        })
        .await;
}

/// One reconcile, counted and timed under `controller`; the failures of the object (`key`, as
/// the error policy names it) are forgotten when it succeeds, so its next failure backs off
/// from the start again.
async fn measured(
    controller: &'static str,
    key: String,
    ctx: Arc<Context>,
    reconcile: impl Future<Output = Result<Action, Error>>,
) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile(controller);
    let result = reconcile.await;
    if result.is_ok() {
        ctx.succeeded(&key);
    }
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use http::{Request, Response};
    use kube::client::Body;
    use kube::runtime::events::Reporter;

    use super::*;
    use crate::desired::Settings;
    use crate::metrics::Metrics;

    fn context() -> Arc<Context> {
        let (service, _) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        Arc::new(Context::new(
            Client::new(service, "team"),
            Settings::default(),
            kpages_store::BlobStore::memory(),
            Arc::new(Metrics::default()),
            Reporter {
                controller: "kpages-operator".into(),
                instance: None,
            },
        ))
    }

    #[tokio::test]
    async fn every_reconcile_is_counted_and_a_success_resets_the_backoff() {
        let ctx = context();
        let key = "Deploy.v1alpha1.kpages.dev/v1.team";
        assert_eq!(ctx.backoff(key), Duration::from_secs(5));
        assert_eq!(ctx.backoff(key), Duration::from_secs(10));

        let failed = measured("deploy", key.into(), ctx.clone(), async {
            Err(Error::Store {
                what: "manifest".into(),
                source: kpages_store::StoreError::Config("down".into()),
            })
        });
        assert!(failed.await.is_err());
        assert_eq!(
            ctx.backoff(key),
            Duration::from_secs(20),
            "a failure keeps the count"
        );

        let ok = measured("deploy", key.into(), ctx.clone(), async {
            Ok(Action::await_change())
        });
        assert_eq!(ok.await.unwrap(), Action::await_change());
        assert_eq!(
            ctx.backoff(key),
            Duration::from_secs(5),
            "a success starts over"
        );
        let text = ctx.metrics.encode();
        assert!(
            text.contains("kpages_operator_reconciles_total{controller=\"deploy\"} 2"),
            "{text}"
        );
    }
}
