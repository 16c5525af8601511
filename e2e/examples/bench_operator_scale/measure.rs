//! What a round measures besides the operator process itself: the testbed's control-plane CPU
//! (from `/proc`), the apiserver's request counts (its /metrics) and the objects a namespace holds.

use std::collections::BTreeMap;

use kpages_e2e::{Cluster, TestNamespace};
use kube::api::ListParams;
use kube::{Api, Resource};

/// User + system CPU clock ticks of `pid`, its reaped children and its live children (the
/// forwarders fork one socat per connection).
fn tree_ticks(pid: u32) -> u64 {
    let stat = |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    let fields = |stat: &str| -> Vec<u64> {
        let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or_default();
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect()
    };
    let Some(own) = stat(&pid.to_string()) else {
        return 0;
    };
    // utime, stime, cutime, cstime.
    let mut total: u64 = fields(&own).iter().skip(11).take(4).sum();
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for child in children.split_whitespace() {
        if let Some(st) = stat(child) {
            total += fields(&st).iter().skip(11).take(2).sum::<u64>();
        }
    }
    total
}

/// The testbed's control-plane processes whose CPU a round costs (besides the operator's).
const TESTBED: [&str; 5] = [
    "kube-apiserver",
    "etcd",
    "kube-controller-manager",
    "api-forward-host",
    "api-forward-netns",
];

/// CPU clock ticks so far of each testbed process of [`TESTBED`] that runs.
pub fn testbed_ticks() -> BTreeMap<&'static str, u64> {
    let run = std::env::var("KPAGES_E2E_RUN").unwrap_or_else(|_| "/run/kpages-e2e".into());
    TESTBED
        .iter()
        .filter_map(|name| {
            let pid = std::fs::read_to_string(format!("{run}/{name}.pid")).ok()?;
            Some((*name, tree_ticks(pid.trim().parse().ok()?)))
        })
        .collect()
}

/// Clock ticks per second (`getconf CLK_TCK`).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// How many objects of kind K the namespace holds.
pub async fn count<K>(ns: &TestNamespace) -> usize
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = ns.api();
    let mut n = 0;
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api
            .list_metadata(&params)
            .await
            .unwrap_or_else(|e| panic!("listing {}: {e}", K::kind(&())));
        n += page.items.len();
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => params = params.continue_token(&c),
            _ => return n,
        }
    }
}

/// The apiserver's request counts and response bytes, by resource and verb (its /metrics).
pub async fn apiserver_requests(cluster: &Cluster) -> BTreeMap<String, (f64, f64)> {
    let out = cluster
        .kubectl(&["get", "--raw", "/metrics"])
        .await
        .unwrap_or_else(|e| panic!("kubectl get --raw /metrics: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut by: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for line in text.lines() {
        let (metric, is_count) = if let Some(r) = line.strip_prefix("apiserver_request_total{") {
            (r, true)
        } else if let Some(r) = line.strip_prefix("apiserver_response_sizes_sum{") {
            (r, false)
        } else {
            continue;
        };
        let Some((labels, value)) = metric.rsplit_once("} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let label = |k: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let (resource, verb) = (label("resource"), label("verb"));
        if ![
            "sites",
            "deploys",
            "functionroutes",
            "deployments",
            "services",
            "networkpolicies",
            "cronjobs",
            "events",
            "pods",
            "leases",
        ]
        .contains(&resource.as_str())
        {
            continue;
        }
        let sub = label("subresource");
        let key = if sub.is_empty() {
            format!("{verb} {resource}")
        } else {
            format!("{verb} {resource}/{sub}")
        };
        let e = by.entry(key).or_default();
        if is_count {
            e.0 += value;
        } else {
            e.1 += value;
        }
    }
    by
}
