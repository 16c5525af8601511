//! `Deploy`: one immutable version of a site, named by its manifest digest.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::manifest::InvocationKind;

/// One immutable version of a site: a manifest (files, functions, rules) stored by digest.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kpages.dev",
    version = "v1alpha1",
    kind = "Deploy",
    namespaced,
    status = "DeployStatus",
    shortname = "kd",
    category = "kpages",
    doc = "One immutable version of a site, named by the digest of its deploy manifest.",
    printcolumn(name = "Site", type_ = "string", json_path = ".spec.site"),
    printcolumn(name = "Context", type_ = "string", json_path = ".spec.context"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.previewUrl"),
    printcolumn(
        name = "Manifest",
        type_ = "string",
        json_path = ".spec.manifest",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self == oldSelf")
    .message("Deploy spec is immutable: create a new Deploy instead"))]
pub struct DeploySpec {
    /// Name of the Site (in the same namespace) this deploy belongs to.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
        .message("site must be the name of a Site: a lowercase DNS label (a-z, 0-9, '-')"))]
    pub site: String,

    /// Digest of the deploy manifest in object storage, as printed by `kpages build`.
    #[x_kube(validation = kube::core::Rule::new("self.matches('^sha256:[0-9a-f]{64}$')")
        .message("manifest must be a digest of the form sha256:<64 lowercase hex digits>"))]
    pub manifest: Digest,

    /// `production` deploys can become the site's active deploy; `preview` deploys are only
    /// reached through their preview host.
    #[serde(default)]
    pub context: DeployContext,

    /// Where the deploy came from, for people reading `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<DeploySource>,
}

/// Which traffic a deploy may serve.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeployContext {
    /// May become the site's active deploy.
    Production,
    /// Served only on its own preview host.
    #[default]
    Preview,
}

/// Source-control metadata of a deploy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DeploySource {
    /// Commit the deploy was built from (7 to 64 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 7, max = 64))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[0-9a-f]{7,64}$')")
        .message("commit must be 7 to 64 lowercase hex digits"))]
    pub commit: Option<String>,
    /// Branch the deploy was built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub branch: Option<String>,
    /// Commit or deploy message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub message: Option<String>,
}

/// Lifecycle of a deploy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeployPhase {
    /// Accepted, not yet looked at.
    #[default]
    Pending,
    /// Manifest read; pods are being created or are starting.
    Provisioning,
    /// Every function pod is ready (or the deploy has no functions).
    Ready,
    /// Cannot become ready without a change: see the conditions.
    Failed,
    /// Neither active nor recent: scaled to zero, kept for rollback.
    Superseded,
}

/// Observed state of a Deploy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DeployStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where the deploy is in its lifecycle.
    #[serde(default)]
    pub phase: DeployPhase,
    /// URL of this deploy's own preview host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_url: Option<String>,
    /// The functions this deploy serves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<DeployedFunction>,
    /// Ready function pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Standard conditions; `Ready` summarises them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// A function of a deploy, as reported in its status.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeployedFunction {
    /// Function name.
    pub name: String,
    /// How it is invoked.
    pub invocation: InvocationKind,
    /// The paths it serves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
    /// Cron schedule, for scheduled functions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}
