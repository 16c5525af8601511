//! Leader election on a `coordination.k8s.io/v1` Lease, so two replicas can run and only one
//! reconciles. The lease is taken when absent, expired or already ours, with the Lease's
//! `resourceVersion` guarding every write (two candidates cannot both win); it is renewed
//! every `renew_every`, and a leader that cannot renew for a whole `lease_duration` stops
//! working before another replica may take over.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};

use crate::metrics::Metrics;

/// Where the lease lives and how it is timed.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub lease_duration: Duration,
    /// How often the leader renews.
    pub renew_every: Duration,
    /// How often a follower tries to take the lease.
    pub retry_every: Duration,
}

/// Why leading ended.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The lease could not be renewed in time: another replica may lead now.
    #[error("lost the lease {namespace}/{name}: not renewed within {seconds}s")]
    Lost {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// The lease duration.
        seconds: u64,
    },
}

/// Waits until this replica holds the lease, then runs `work` while renewing it. Returns when
/// `work` ends (the lease is then released so a peer takes over at once) or with
/// [`LeaderError::Lost`] when renewal fails (`work` is dropped first).
pub async fn run_as_leader<F>(
    client: Client,
    config: LeaseConfig,
    metrics: &Metrics,
    work: F,
) -> Result<(), LeaderError>
where
    F: Future<Output = ()>,
{
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    loop {
        match try_acquire(&api, &config).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "trying to take the lease"),
        }
        tokio::time::sleep(config.retry_every).await;
    }
    tracing::info!(lease = %config.name, identity = %config.identity, "leading");
    metrics.set_leader(true);
    let result = tokio::select! {
        () = work => {
            release(&api, &config).await;
            Ok(())
        }
        lost = keep_renewing(&api, &config) => Err(lost),
    };
    metrics.set_leader(false);
    result
}

async fn keep_renewing(api: &Api<Lease>, config: &LeaseConfig) -> LeaderError {
    let mut renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(config.renew_every).await;
        match try_acquire(api, config).await {
            Ok(true) => renewed = tokio::time::Instant::now(),
            Ok(false) => {
                tracing::error!(lease = %config.name, "another replica holds the lease");
                break;
            }
            Err(e) => tracing::warn!(error = %e, "renewing the lease"),
        }
        // Stop a margin before the lease runs out, so a peer never leads while we still work.
        if renewed.elapsed() + config.renew_every >= config.lease_duration {
            break;
        }
    }
    LeaderError::Lost {
        namespace: config.namespace.clone(),
        name: config.name.clone(),
        seconds: config.lease_duration.as_secs(),
    }
}

/// Takes or renews the lease; `Ok(false)` when a live peer holds it or won a race.
pub async fn try_acquire(api: &Api<Lease>, config: &LeaseConfig) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let seconds = i32::try_from(config.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let existing = api.get_opt(&config.name).await?;
    let Some(mut lease) = existing else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                namespace: Some(config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(seconds),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let ours = spec.holder_identity.as_deref() == Some(config.identity.as_str());
    let expired = match (&spec.holder_identity, &spec.renew_time) {
        (None, _) | (_, None) => true,
        (Some(_), Some(renewed)) => {
            let valid = SignedDuration::from_secs(i64::from(
                spec.lease_duration_seconds.unwrap_or(seconds),
            ));
            renewed
                .0
                .checked_add(valid)
                .map(|end| end < now)
                .unwrap_or(true)
        }
    };
    if !ours && !expired {
        return Ok(false);
    }
    lease.spec = Some(LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(seconds),
        acquire_time: if ours {
            spec.acquire_time
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(spec.lease_transitions.unwrap_or(0) + i32::from(!ours)),
        ..spec
    });
    // `replace` sends the resourceVersion we read: a concurrent writer makes this a 409.
    match api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

async fn release(api: &Api<Lease>, config: &LeaseConfig) {
    let Ok(Some(mut lease)) = api.get_opt(&config.name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    if let Err(e) = api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        tracing::warn!(error = %e, "releasing the lease");
    }
}
