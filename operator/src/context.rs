//! What every reconciler shares: the client, settings, the object store, a cache of manifests
//! (immutable, so cached by digest forever), metrics, the event reporter and per-object backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kpages_crds::{Deploy, Digest, Manifest, Site};
use kpages_store::{BlobStore, StoreError};
use kube::api::ListParams;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};

use crate::desired::{DesiredError, Settings};
use crate::metrics::Metrics;
use crate::names;

/// How many manifests are cached before the cache is emptied (deploys are few; this only bounds
/// memory if someone creates thousands).
const MANIFEST_CACHE_LIMIT: usize = 512;

/// Shared state of the controllers.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Settings the desired objects depend on.
    pub settings: Settings,
    /// Object storage, as the operator reaches it.
    pub store: BlobStore,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Who publishes events.
    pub reporter: Reporter,
    manifests: Mutex<HashMap<Digest, Arc<Manifest>>>,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context for the controllers.
    pub fn new(
        client: Client,
        settings: Settings,
        store: BlobStore,
        metrics: Arc<Metrics>,
        reporter: Reporter,
    ) -> Self {
        Self {
            client,
            settings,
            store,
            metrics,
            reporter,
            manifests: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    /// Reads a manifest, verified, from the cache or the store.
    pub async fn manifest(&self, digest: &Digest) -> Result<Arc<Manifest>, StoreError> {
        if let Some(m) = self.lock_manifests().get(digest) {
            return Ok(m.clone());
        }
        let manifest = Arc::new(self.store.get_manifest(digest).await?);
        let mut cache = self.lock_manifests();
        if cache.len() >= MANIFEST_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(*digest, manifest.clone());
        Ok(manifest)
    }

    /// The Deploys whose `spec.site` names `site` (malformed ones left out).
    ///
    /// Listed by the `kpages.dev/site` label, which the Deploy controller puts on every Deploy it
    /// adopts, so a reconcile costs the API server this site's Deploys, not every Deploy of the
    /// namespace: listing them all in every Site and Deploy reconcile made 1,000 Sites in one
    /// namespace quadratic, and the API server, saturated, failed the lists (bench/run row 7).
    /// A Deploy not labelled yet counts once its own reconcile has labelled it, which triggers
    /// the Site's. Should the site's active or pinned deploy be missing from the labelled ones
    /// (Deploys adopted before the operator labelled them), the whole namespace is listed, so
    /// an upgraded operator never moves a site's traffic.
    ///
    /// Read from the API server's watch cache (`resourceVersion=0`), like the watches that
    /// trigger reconciles, so a reconcile never sees older Deploys than the event it acts on
    /// (one API server; with several, a cache may lag by a moment, and the Site controller looks
    /// again soon while a deploy is on its way). A consistent list instead waits for that cache
    /// to catch up with etcd and, when it does not within 3 s (the cache lags under a burst of
    /// writes), reads every Deploy of the namespace from etcd: at 1,000 Sites those reads timed
    /// out by the thousand and kept the cache behind.
    pub async fn site_deploys(&self, site: &Site) -> Result<Vec<Deploy>, Error> {
        let ns = site.namespace().unwrap_or_default();
        let name = site.name_any();
        let api: Api<DeserializeGuard<Deploy>> = Api::namespaced(self.client.clone(), &ns);
        let list = |params: ListParams| {
            let api = api.clone();
            let (ns, name) = (ns.clone(), name.clone());
            async move {
                let items = api
                    .list(&params)
                    .await
                    .map_err(|source| Error::Dereference {
                        what: format!("Deploys in {ns}"),
                        source,
                    })?
                    .items;
                Ok::<Vec<Deploy>, Error>(
                    items
                        .into_iter()
                        .filter_map(|g| g.0.ok())
                        .filter(|d| d.spec.site == name)
                        .collect(),
                )
            }
        };
        let selector = format!("{}={}", names::SITE_LABEL, names::label_value(&name));
        let labelled = list(ListParams::default().match_any().labels(&selector)).await?;
        if names_its_deploys(site, &labelled) {
            Ok(labelled)
        } else {
            list(ListParams::default().match_any()).await
        }
    }

    fn lock_manifests(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Arc<Manifest>>> {
        // A poisoned cache only means a reconcile panicked mid-insert; the map is still valid.
        self.manifests.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes an event about `object`; failures are logged, never fatal.
    pub async fn publish<K>(&self, object: &K, type_: EventType, reason: &str, note: String)
    where
        K: kube::Resource<DynamicType = ()>,
    {
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "publishing an event failed");
        }
    }

    /// Forgets the failures of an object after a successful reconcile.
    pub fn succeeded(&self, key: &str) {
        self.lock_failures().remove(key);
    }

    /// The retry delay after another failure of an object: 5 s doubling to 5 min.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut failures = self.lock_failures();
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        let secs = 5u64.saturating_mul(1 << (*n - 1).min(6));
        Duration::from_secs(secs.min(300))
    }

    fn lock_failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether `deploys` hold the Deploys the site's status and pin name (when they name any).
pub fn names_its_deploys(site: &Site, deploys: &[Deploy]) -> bool {
    let active = site
        .status
        .as_ref()
        .and_then(|s| s.active_deploy.as_deref());
    [active, site.spec.pinned_deploy.as_deref()]
        .into_iter()
        .flatten()
        .all(|want| deploys.iter().any(|d| d.name_any() == want))
}

/// Why a reconcile failed: one variant per stage of the controllers' pipeline (dereference →
/// validate → build → apply → status), each naming what it was working on. Input only a change
/// can fix is [`Error::is_invalid_input`]; everything else may pass on a retry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Before the pipeline: the object does not deserialize (its schema was bypassed); fixed
    /// only by editing it.
    #[error("malformed object {name}: {message}")]
    InvalidObject {
        /// namespace/name.
        name: String,
        /// The deserialization error.
        message: String,
    },
    /// Dereference: reading a referenced object (Site, Deploys, Pods, a Service) from the API
    /// server failed.
    #[error("reading {what}: {source}")]
    Dereference {
        /// What was being read.
        what: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// Dereference and validate: object storage (reading the manifest, looking for the blobs it
    /// names) failed in a way a retry may fix. A blob that is missing or corrupt is not an
    /// error but the Deploy's status.
    #[error("reading {what} from object storage: {source}")]
    Store {
        /// What was being read.
        what: String,
        /// The cause.
        #[source]
        source: StoreError,
    },
    /// Build: the desired objects could not be built from the input.
    #[error(transparent)]
    Desired(#[from] DesiredError),
    /// Apply: server-side apply, a prune or a delete failed.
    #[error("applying {what}: {source}")]
    Apply {
        /// Kind and name.
        what: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// Status: applying the status failed.
    #[error("updating the status of {what}: {source}")]
    Status {
        /// Kind and name.
        what: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
}

/// The object a watch delivered, or [`Error::InvalidObject`] when it did not deserialize: a
/// malformed object fails its own reconcile (and waits for an edit) instead of stopping the watch.
pub fn unguard<K>(guard: &kube::core::DeserializeGuard<K>) -> Result<&K, Error>
where
    K: kube::Resource,
{
    use kube::ResourceExt;
    guard.0.as_ref().map_err(|invalid| Error::InvalidObject {
        name: format!(
            "{}/{}",
            guard.namespace().unwrap_or_default(),
            guard.name_any()
        ),
        message: invalid.error.clone(),
    })
}

impl Error {
    /// Whether only a change to the object can fix it (so retrying is pointless).
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Error::InvalidObject { .. } | Error::Desired(_))
    }

    /// A short, fixed name of the failing stage, for metric labels.
    pub fn stage(&self) -> &'static str {
        match self {
            Error::InvalidObject { .. } => "invalid_object",
            Error::Dereference { .. } => "dereference",
            Error::Store { .. } => "store",
            Error::Desired(_) => "desired",
            Error::Apply { .. } => "apply",
            Error::Status { .. } => "status",
        }
    }
}

/// The shared error policy: wait for a change on invalid input, back off on the rest.
pub fn error_policy<K>(
    controller: &'static str,
    object: &ObjectRef<K>,
    error: &Error,
    ctx: &Context,
) -> Action
where
    K: kube::Resource,
{
    ctx.metrics.error(controller, error.stage());
    if error.is_invalid_input() {
        tracing::warn!(%error, object = %object, controller, "invalid input: waiting for a change");
        Action::await_change()
    } else {
        let delay = ctx.backoff(&object.to_string());
        tracing::warn!(%error, object = %object, controller, retry_in = ?delay, "reconcile failed");
        Action::requeue(delay)
    }
}

/// A condition, keeping the previous transition time when the status did not change.
pub fn condition(
    previous: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(Timestamp::now()));
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time,
    }
}
