//! The NetworkPolicy of a deploy's function pods: only router pods (by label, in the router's
//! namespace when it is known) may reach them, and only on the host port.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Ctx;
use crate::names::{self, HOST_PORT};

impl Ctx<'_> {
    pub(super) fn network_policy(&self) -> NetworkPolicy {
        let namespace_selector = LabelSelector {
            match_labels: self.settings.router_namespace.as_ref().map(|ns| {
                BTreeMap::from([("kubernetes.io/metadata.name".to_string(), ns.clone())])
            }),
            ..LabelSelector::default()
        };
        NetworkPolicy {
            metadata: self.meta(names::workload_name(&self.deploy_name), self.labels()),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(self.pod_labels()),
                    ..LabelSelector::default()
                }),
                policy_types: Some(vec!["Ingress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        // Both selectors in one peer: router pods, in the router's namespace.
                        namespace_selector: Some(namespace_selector),
                        pod_selector: Some(LabelSelector {
                            match_labels: Some(self.settings.router_pod_labels.clone()),
                            ..LabelSelector::default()
                        }),
                        ..NetworkPolicyPeer::default()
                    }]),
                    ports: Some(vec![NetworkPolicyPort {
                        port: Some(IntOrString::Int(HOST_PORT)),
                        protocol: Some("TCP".into()),
                        ..NetworkPolicyPort::default()
                    }]),
                }]),
                ..NetworkPolicySpec::default()
            }),
        }
    }
}
