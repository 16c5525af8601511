//! The Service in front of a deploy's function pods, on the host port: for humans and tools
//! (the router dials pod IPs from the Service's EndpointSlices).

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Ctx;
use crate::names::{self, HOST_PORT, HOST_PORT_NAME};

impl Ctx<'_> {
    pub(super) fn service(&self) -> Service {
        Service {
            metadata: self.meta(names::workload_name(&self.deploy_name), self.labels()),
            spec: Some(ServiceSpec {
                selector: Some(self.pod_labels()),
                ports: Some(vec![ServicePort {
                    name: Some(HOST_PORT_NAME.into()),
                    port: HOST_PORT,
                    target_port: Some(IntOrString::String(HOST_PORT_NAME.into())),
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }
}
