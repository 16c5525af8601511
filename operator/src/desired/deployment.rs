//! The function pods: a Deployment whose init container fetches the deploy's bundles (kpages
//! image) and whose main container runs the function host from them (the Site's Node image).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, Lifecycle,
    LifecycleHandler, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SecretEnvSource, SleepAction,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kpages_crds::DeployContext;
use kube::ResourceExt;

use super::pod::{empty_dir, mount, pod_security, resources, restricted};
use super::{Ctx, Settings};
use crate::names::{self, BUNDLE_DIR, HOST_PORT, HOST_PORT_NAME, READY_PATH};

/// Seconds a function pod keeps serving after it is told to stop, before its host drains.
const PRE_STOP_SECONDS: i64 = 5;

impl Ctx<'_> {
    /// The Site's Node image, or the operator's replacement when the Site keeps the default.
    fn node_image(&self, settings: &Settings) -> String {
        let image = &self.defaults().image;
        match &settings.node_image {
            Some(replacement) if image == kpages_crds::limits::DEFAULT_NODE_IMAGE => {
                replacement.clone()
            }
            _ => image.clone(),
        }
    }

    fn context_name(&self) -> &'static str {
        match self.inputs.deploy.spec.context {
            DeployContext::Production => "production",
            DeployContext::Preview => "preview",
        }
    }

    /// `URL`: the site's main address, for every deploy (Netlify's meaning), so a deploy's
    /// pods do not change (and roll) when it goes live.
    fn url(&self) -> String {
        self.settings
            .site_urls(self.inputs.site)
            .into_iter()
            .next()
            .unwrap_or_default()
    }

    /// `DEPLOY_URL`: this deploy's own preview address.
    fn deploy_url(&self) -> String {
        self.settings
            .preview_url(&self.namespace, self.site_name(), &self.deploy_name)
    }

    pub(super) fn deployment(&self) -> Deployment {
        let labels = self.pod_labels();
        let mut meta = self.meta(names::workload_name(&self.deploy_name), labels.clone());
        meta.annotations = Some(BTreeMap::from([(
            "kpages.dev/manifest".to_string(),
            self.inputs.deploy.spec.manifest.to_string(),
        )]));
        let pod = PodSpec {
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(PodSecurityContext {
                fs_group: Some(self.settings.run_as_user),
                ..pod_security(self.settings.run_as_user)
            }),
            // The host's own grace (KPAGES_SHUTDOWN_GRACE_MS) is shorter, so it exits first.
            // The pre-stop pause, then the host's drain (KPAGES_SHUTDOWN_GRACE_MS), then SIGKILL.
            termination_grace_period_seconds: Some(PRE_STOP_SECONDS + 30),
            init_containers: Some(vec![self.fetch_container()]),
            containers: vec![self.host_container()],
            volumes: Some(vec![
                empty_dir("bundles", Some("1Gi")),
                empty_dir("tmp", Some("256Mi")),
            ]),
            ..PodSpec::default()
        };
        Deployment {
            metadata: meta,
            spec: Some(DeploymentSpec {
                replicas: Some(self.inputs.replicas),
                revision_history_limit: Some(2),
                selector: LabelSelector {
                    match_labels: Some(labels.clone()),
                    ..LabelSelector::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(pod),
                },
                ..DeploymentSpec::default()
            }),
            status: None,
        }
    }

    fn fetch_container(&self) -> Container {
        let d = self.defaults();
        Container {
            name: "fetch-bundles".into(),
            image: Some(self.settings.kpages_image.clone()),
            image_pull_policy: Some("IfNotPresent".into()),
            command: Some(vec!["kpages-operator".into(), "fetch-bundles".into()]),
            args: Some(vec![
                "--store".into(),
                self.settings.pod_store_url.clone(),
                "--manifest".into(),
                self.inputs.deploy.spec.manifest.to_string(),
                "--out".into(),
                BUNDLE_DIR.into(),
                "--runtime".into(),
                self.settings.runtime_dir.clone(),
                "--timeout-seconds".into(),
                d.timeout_seconds.to_string(),
                "--background-timeout-seconds".into(),
                d.background_timeout_seconds.to_string(),
            ]),
            env_from: self.settings.store_credentials_secret.as_ref().map(|name| {
                vec![EnvFromSource {
                    secret_ref: Some(SecretEnvSource {
                        name: name.clone(),
                        optional: Some(true),
                    }),
                    ..EnvFromSource::default()
                }]
            }),
            resources: Some(resources(
                &[("cpu", "50m"), ("memory", "64Mi")],
                &[("memory", "256Mi")],
            )),
            security_context: Some(restricted()),
            // A failed fetch's last log line becomes the pod's message, which the Deploy's
            // status quotes (BundleFetchFailed).
            termination_message_policy: Some("FallbackToLogsOnError".into()),
            volume_mounts: Some(vec![
                mount("bundles", BUNDLE_DIR, false),
                mount("tmp", "/tmp", false),
            ]),
            ..Container::default()
        }
    }

    fn host_container(&self) -> Container {
        let site = self.inputs.site;
        let mut env: Vec<EnvVar> = site
            .spec
            .env
            .iter()
            .map(|v| EnvVar {
                name: v.name.clone(),
                value: v.value.clone(),
                value_from: v.value_from.as_ref().map(|from| EnvVarSource {
                    secret_key_ref: Some(from.secret_key_ref.clone()),
                    ..EnvVarSource::default()
                }),
            })
            .collect();
        // Set after the user's so that ours win should the API's CEL rule ever be bypassed.
        let fixed = [
            ("SITE_ID", site.uid().unwrap_or_else(|| site.name_any())),
            ("SITE_NAME", site.name_any()),
            ("URL", self.url()),
            ("DEPLOY_URL", self.deploy_url()),
            ("DEPLOY_ID", self.deploy_name.clone()),
            ("CONTEXT", self.context_name().to_string()),
            ("KPAGES_SHUTDOWN_GRACE_MS", "25000".to_string()),
            ("HOME", "/tmp".to_string()),
        ];
        env.retain(|v| !fixed.iter().any(|(n, _)| *n == v.name));
        env.extend(fixed.into_iter().map(|(name, value)| EnvVar {
            name: name.into(),
            value: Some(value),
            value_from: None,
        }));
        let host = format!("{BUNDLE_DIR}/runtime/src/host.mjs");
        Container {
            name: "host".into(),
            image: Some(self.node_image(self.settings)),
            image_pull_policy: Some("IfNotPresent".into()),
            command: Some(vec!["node".into()]),
            args: Some(vec![
                host,
                "--functions".into(),
                format!("{BUNDLE_DIR}/functions.json"),
                "--port".into(),
                HOST_PORT.to_string(),
                "--host".into(),
                "0.0.0.0".into(),
            ]),
            env: Some(env),
            ports: Some(vec![ContainerPort {
                name: Some(HOST_PORT_NAME.into()),
                container_port: HOST_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            }]),
            readiness_probe: Some(Probe {
                http_get: Some(HTTPGetAction {
                    path: Some(READY_PATH.into()),
                    port: IntOrString::String(HOST_PORT_NAME.into()),
                    ..HTTPGetAction::default()
                }),
                period_seconds: Some(2),
                failure_threshold: Some(3),
                timeout_seconds: Some(2),
                ..Probe::default()
            }),
            resources: Some(self.host_resources()),
            // Keep accepting while the pod's endpoint leaves the EndpointSlices and routers'
            // tables (they lag the deletion by a moment); then the host drains on SIGTERM.
            lifecycle: Some(Lifecycle {
                pre_stop: Some(LifecycleHandler {
                    sleep: Some(SleepAction {
                        seconds: PRE_STOP_SECONDS,
                    }),
                    ..LifecycleHandler::default()
                }),
                ..Lifecycle::default()
            }),
            security_context: Some(restricted()),
            volume_mounts: Some(vec![
                mount("bundles", BUNDLE_DIR, true),
                mount("tmp", "/tmp", false),
            ]),
            ..Container::default()
        }
    }

    /// The Site's resources, else modest requests and a memory limit large enough for the
    /// largest `memoryMib` any function asks for.
    fn host_resources(&self) -> ResourceRequirements {
        if let Some(r) = &self.defaults().resources {
            return r.clone();
        }
        let memory_mib = self
            .inputs
            .manifest
            .functions
            .iter()
            .filter_map(|f| f.limits.memory_mib)
            .chain(self.inputs.manifest.site.limits.memory_mib)
            .max()
            .unwrap_or(0)
            .max(256);
        resources(
            &[("cpu", "100m"), ("memory", "128Mi")],
            &[("memory", &format!("{memory_mib}Mi"))],
        )
    }
}
