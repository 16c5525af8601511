//! Names and labels of the objects the operator creates, shared here so that the operator, the router and
//! `kubectl` users agree on how to find a deploy's pods, routes and jobs.

use std::collections::BTreeMap;

use crate::Digest;

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "kpages-operator";

/// `app.kubernetes.io/managed-by` value on every object the operator creates.
pub const MANAGED_BY: &str = "kpages";
/// Label naming the Site an object belongs to.
pub const SITE_LABEL: &str = "kpages.dev/site";
/// Label naming the Deploy an object belongs to.
pub const DEPLOY_LABEL: &str = "kpages.dev/deploy";
/// Label marking function pods (the router's EndpointSlice watch selects on it).
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// `app.kubernetes.io/component` of function pods.
pub const FUNCTION_COMPONENT: &str = "functions";
/// Label naming the function a CronJob or FunctionRoute is for.
pub const FUNCTION_LABEL: &str = "kpages.dev/function";

/// Annotation routers write on a Deploy: unix seconds of the last function call they saw (or
/// wanted to make) for it. The operator keeps a deploy's pods while it is recent and scales the
/// deploy up from zero when it changes.
pub const LAST_CALL_ANNOTATION: &str = "kpages.dev/last-call";
/// Port the function host listens on inside function pods.
pub const HOST_PORT: i32 = 9000;
/// Name of that port, on the container and the Service.
pub const HOST_PORT_NAME: &str = "http";
/// The host's readiness endpoint.
pub const READY_PATH: &str = "/.kpages/ready";
/// Where the init container writes bundles and the host reads them.
pub const BUNDLE_DIR: &str = "/kpages";

/// Labels every object of a deploy carries; also the Deployment's pod selector.
pub fn deploy_labels(site: &str, deploy: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_string(),
            MANAGED_BY.to_string(),
        ),
        (SITE_LABEL.to_string(), label_value(site)),
        (DEPLOY_LABEL.to_string(), label_value(deploy)),
    ])
}

/// A label value for `name`: the name itself when it fits (63 characters), else a prefix plus a
/// digest of the whole, so two long names never share a label value.
pub fn label_value(name: &str) -> String {
    shorten(name, 63)
}

/// Name of a deploy's Deployment, Service and NetworkPolicy: `<deploy>-fn`, shortened to a
/// DNS label because Service names must be labels.
pub fn workload_name(deploy: &str) -> String {
    shorten(&format!("{deploy}-fn"), 63)
}

/// Name of the FunctionRoute for route `index` of function `function` of a deploy.
pub fn route_name(deploy: &str, function: &str, index: usize) -> String {
    dns_name(&format!("{deploy}-{function}-{index}"), 253)
}

/// Name of the CronJob of a scheduled function (52 characters at most: CronJob names leave room
/// for the Job suffix the controller adds).
pub fn cron_job_name(deploy: &str, function: &str) -> String {
    dns_name(&format!("{deploy}-{function}"), 52)
}

/// Lowercases and replaces characters a DNS name cannot hold, then shortens.
fn dns_name(raw: &str, max: usize) -> String {
    let cleaned: String = raw
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '.' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    // Names differing only in case or `_` must not collide after cleaning.
    if cleaned == raw {
        shorten(&cleaned, max)
    } else {
        with_hash(&cleaned, raw, max)
    }
}

fn shorten(name: &str, max: usize) -> String {
    if name.len() <= max {
        name.to_string()
    } else {
        with_hash(name, name, max)
    }
}

/// `prefix-<10 hex of sha256(whole)>`, at most `max` long, never ending in `-` or `.`.
fn with_hash(name: &str, whole: &str, max: usize) -> String {
    let hash = &Digest::of(whole.as_bytes()).hex()[..10];
    let keep = max.saturating_sub(hash.len() + 1);
    let prefix: String = name.chars().take(keep).collect();
    let prefix = prefix.trim_end_matches(['-', '.']);
    if prefix.is_empty() {
        hash.to_string()
    } else {
        format!("{prefix}-{hash}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_kept_and_long_ones_hashed_to_fit() {
        assert_eq!(workload_name("v1"), "v1-fn");
        let long = "d".repeat(200);
        let name = workload_name(&long);
        assert_eq!(name.len(), 63);
        assert_ne!(name, workload_name(&"d".repeat(201)));
        assert_eq!(label_value(&long).len(), 63);
    }

    #[test]
    fn function_names_with_underscores_become_distinct_dns_names() {
        let a = cron_job_name("v1", "daily_report");
        let b = cron_job_name("v1", "daily-report");
        assert_eq!(b, "v1-daily-report");
        assert_ne!(a, b);
        assert!(a.len() <= 52 && a.starts_with("v1-daily-report-"));
        assert!(route_name("v1", "Hello", 0).starts_with("v1-hello-0-"));
    }
}
