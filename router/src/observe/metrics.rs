//! Prometheus metrics, served on the admin port: requests by site, route kind and status;
//! latency by route kind; static cache hits and misses; background queue depth, jobs running,
//! attempts, failures, dead letters and enqueue latency; requests and connections in flight.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// What kind of answer a request got.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum RouteKind {
    /// A static file (including the 404 page).
    Static,
    /// A synchronous function.
    Function,
    /// A background function (202 after enqueue).
    Background,
    /// A redirect rule.
    Redirect,
    /// A proxy rule to an absolute URL.
    Proxy,
    /// Nothing matched, or the request was refused before routing.
    Other,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    site: String,
    kind: RouteKind,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: RouteKind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// The router's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<KindLabels, Histogram>,
    cache: Family<OutcomeLabels, Counter>,
    jobs: Family<OutcomeLabels, Counter>,
    /// Background jobs waiting or running (JetStream: the jobs stream's size, sampled).
    pub queue_depth: Gauge,
    /// Background jobs this router is running now.
    pub jobs_in_flight: Gauge,
    /// Background attempts started by this router.
    pub job_attempts: Counter,
    /// Background attempts that failed (retried or not).
    pub job_failures: Counter,
    /// Jobs this router moved to the dead letters after their last attempt.
    pub job_dead_letters: Counter,
    /// Dead letters waiting for a redrive (JetStream: the dead-letter stream's size, sampled).
    pub dead_letters: Gauge,
    /// Time to durably queue a background job (the 202 waits for it).
    pub enqueue_latency: Histogram,
    /// Requests being handled.
    pub in_flight: Gauge,
    /// Open client connections.
    pub connections: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kpages_router");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "Requests answered", requests.clone());
        let latency = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.5, 14))
        });
        registry.register(
            "request_duration_seconds",
            "Time to response headers",
            latency.clone(),
        );
        let cache = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "static_cache_lookups",
            "Static file cache lookups by outcome (hit, miss)",
            cache.clone(),
        );
        let jobs = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "background_jobs",
            "Background and scheduled runs by outcome (ok, retry, failed)",
            jobs.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Background jobs queued or running",
            queue_depth.clone(),
        );
        let jobs_in_flight = Gauge::default();
        registry.register(
            "background_jobs_in_flight",
            "Background jobs this router is running",
            jobs_in_flight.clone(),
        );
        let job_attempts = Counter::default();
        registry.register(
            "background_attempts",
            "Background attempts started",
            job_attempts.clone(),
        );
        let job_failures = Counter::default();
        registry.register(
            "background_failures",
            "Background attempts that failed",
            job_failures.clone(),
        );
        let job_dead_letters = Counter::default();
        registry.register(
            "background_dead_lettered",
            "Background jobs moved to the dead letters after their last attempt",
            job_dead_letters.clone(),
        );
        let dead_letters = Gauge::default();
        registry.register(
            "background_dead_letters",
            "Dead-lettered background jobs waiting for a redrive",
            dead_letters.clone(),
        );
        let enqueue_latency = Histogram::new(exponential_buckets(0.0002, 2.5, 14));
        registry.register(
            "enqueue_duration_seconds",
            "Time to durably queue a background job",
            enqueue_latency.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests being handled",
            in_flight.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            cache,
            jobs,
            queue_depth,
            jobs_in_flight,
            job_attempts,
            job_failures,
            job_dead_letters,
            dead_letters,
            enqueue_latency,
            in_flight,
            connections,
        }
    }

    /// Counts an answered request.
    pub fn request(&self, site: &str, kind: RouteKind, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                site: site.to_string(),
                kind,
                status,
            })
            .inc();
        self.latency
            .get_or_create(&KindLabels { kind })
            .observe(seconds);
    }

    /// Counts a static cache lookup.
    pub fn cache_lookup(&self, hit: bool) {
        let outcome = if hit { "hit" } else { "miss" };
        self.cache.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Counts a background or scheduled run's outcome.
    pub fn job(&self, outcome: &'static str) {
        self.jobs.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_the_labels() {
        let m = Metrics::new();
        m.request("blog", RouteKind::Static, 200, 0.001);
        m.cache_lookup(true);
        m.queue_depth.set(3);
        let text = m.encode();
        assert!(
            text.contains(
                r#"kpages_router_requests_total{site="blog",kind="Static",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"kpages_router_static_cache_lookups_total{outcome="hit"} 1"#));
        assert!(text.contains("kpages_router_queue_depth 3"));
        assert!(text.contains("kpages_router_request_duration_seconds_bucket"));
        m.job_attempts.inc();
        m.enqueue_latency.observe(0.001);
        let text = m.encode();
        assert!(
            text.contains("kpages_router_background_attempts_total 1"),
            "{text}"
        );
        assert!(text.contains("kpages_router_enqueue_duration_seconds_count 1"));
        assert!(text.contains("kpages_router_background_dead_letters 0"));
    }
}
