//! `Site`: one website — its domains, the defaults its function pods run with, its environment,
//! which deploy is live and how many old deploys are kept.

use k8s_openapi::api::core::v1::{ResourceRequirements, SecretKeySelector};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::limits;

/// A website served by kpages: static files plus Node.js functions, on one or more domains.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "kpages.dev",
    version = "v1alpha1",
    kind = "Site",
    namespaced,
    status = "SiteStatus",
    shortname = "ks",
    category = "kpages",
    doc = "A website served by kpages: static files and Node.js functions on one or more domains.",
    printcolumn(
        name = "Domain",
        type_ = "string",
        json_path = ".spec.domains[0]",
        description = "The site's first domain"
    ),
    printcolumn(
        name = "Active",
        type_ = "string",
        json_path = ".status.activeDeploy",
        description = "The deploy serving production traffic"
    ),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SiteSpec {
    /// Domains the site answers on, e.g. `www.example.com` or `*.example.com`. Lowercase DNS
    /// names; each domain may belong to one site only. May be empty: the site is then reached
    /// through its preview hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 253)), extend("x-kubernetes-list-type" = "set"))]
    #[x_kube(validation = kube::core::Rule::new(
        "self.all(d, d.matches('^(\\\\*\\\\.)?([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\\\\.)*[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'))"
    ).message("each domain must be a lowercase DNS name such as www.example.com or *.example.com"))]
    pub domains: Vec<Domain>,

    /// Defaults for the pods that run this site's functions.
    #[serde(default)]
    pub functions: FunctionDefaults,

    /// Environment variables for the site's functions, as literal values or references to keys
    /// of Secrets in the site's namespace (the same shape as a container's `env`).
    /// `SITE_ID`, `SITE_NAME`, `URL`, `DEPLOY_ID` and `CONTEXT` are set by kpages and cannot be
    /// overridden here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub env: Vec<SiteEnvVar>,

    /// Serve this Deploy (by name) instead of the newest ready production deploy. Setting it
    /// is a rollback; removing it returns to the newest deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub pinned_deploy: Option<String>,

    /// How many old deploys are kept, and when idle ones stop running pods.
    #[serde(default)]
    pub retention: Retention,
}

/// A domain name (kept as a string so users see their own spelling in errors).
pub type Domain = String;

/// Defaults for a site's function pods. Every field has a default, so an empty object is valid.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.minReplicas <= self.maxReplicas")
    .message("functions.minReplicas must be less than or equal to functions.maxReplicas"))]
pub struct FunctionDefaults {
    /// Container image with Node.js 20 or newer that runs the function host.
    #[serde(default = "default_image")]
    #[schemars(length(min = 1, max = 512))]
    pub image: String,

    /// CPU and memory requests and limits of each function pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Fewest pods per deploy. 0 lets an idle deploy scale to zero.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 0, max = limits::MAX_REPLICAS))]
    pub min_replicas: i32,

    /// Most pods per deploy.
    #[serde(default = "default_max_replicas")]
    #[schemars(range(min = 1, max = limits::MAX_REPLICAS))]
    pub max_replicas: i32,

    /// Wall-time limit of a synchronous function call, in seconds; the router answers 504 past it.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = limits::MAX_SYNC_TIMEOUT_SECONDS))]
    pub timeout_seconds: u32,

    /// Wall-time limit of a background or scheduled function run, in seconds.
    #[serde(default = "default_background_timeout")]
    #[schemars(range(min = 1, max = limits::MAX_BACKGROUND_TIMEOUT_SECONDS))]
    pub background_timeout_seconds: u32,

    /// Largest request body a function accepts, in bytes; the router answers 413 past it.
    #[serde(default = "default_body_limit")]
    #[schemars(range(min = limits::MIN_BODY_LIMIT_BYTES, max = limits::MAX_BODY_LIMIT_BYTES))]
    pub max_body_bytes: u64,
}

impl Default for FunctionDefaults {
    fn default() -> Self {
        Self {
            image: default_image(),
            resources: None,
            min_replicas: default_min_replicas(),
            max_replicas: default_max_replicas(),
            timeout_seconds: default_timeout(),
            background_timeout_seconds: default_background_timeout(),
            max_body_bytes: default_body_limit(),
        }
    }
}

fn default_image() -> String {
    limits::DEFAULT_NODE_IMAGE.to_string()
}
fn default_min_replicas() -> i32 {
    0
}
fn default_max_replicas() -> i32 {
    3
}
fn default_timeout() -> u32 {
    limits::DEFAULT_SYNC_TIMEOUT_SECONDS
}
fn default_background_timeout() -> u32 {
    limits::DEFAULT_BACKGROUND_TIMEOUT_SECONDS
}
fn default_body_limit() -> u64 {
    limits::DEFAULT_BODY_LIMIT_BYTES
}

/// One environment variable of the site's functions.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = kube::core::Rule::new("!(has(self.value) && has(self.valueFrom))")
        .message("set either value or valueFrom, not both"),
    validation = kube::core::Rule::new("!(self.name in ['SITE_ID', 'SITE_NAME', 'URL', 'DEPLOY_ID', 'CONTEXT'])")
        .message("SITE_ID, SITE_NAME, URL, DEPLOY_ID and CONTEXT are set by kpages and cannot be overridden")
)]
pub struct SiteEnvVar {
    /// Variable name: letters, digits and `_`, not starting with a digit.
    #[schemars(
        length(min = 1, max = 256),
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$")
    )]
    pub name: String,
    /// Literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32768))]
    pub value: Option<String>,
    /// Where to read the value from instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

/// A source for an environment variable's value.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSource {
    /// A key of a Secret in the site's namespace.
    pub secret_key_ref: SecretKeySelector,
}

/// Deploy retention and idling.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// How many deploys of this site are kept (newest first, plus the active and pinned ones).
    /// Older Deploy objects are deleted; their blobs stay in object storage for rollback.
    #[serde(default = "default_keep")]
    #[schemars(range(min = 1, max = 1000))]
    pub keep_deploys: u32,

    /// Deploys that are neither active nor among this many newest keep running pods; the rest
    /// are scaled to zero.
    #[serde(default = "default_keep_warm")]
    #[schemars(range(min = 0, max = 100))]
    pub keep_warm: u32,

    /// Seconds without requests after which a deploy's pods scale to zero (when its
    /// minReplicas is 0).
    #[serde(default = "default_idle")]
    #[schemars(range(min = 30, max = 604800))]
    pub scale_to_zero_after_seconds: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            keep_deploys: default_keep(),
            keep_warm: default_keep_warm(),
            scale_to_zero_after_seconds: default_idle(),
        }
    }
}

fn default_keep() -> u32 {
    10
}
fn default_keep_warm() -> u32 {
    2
}
fn default_idle() -> u32 {
    900
}

/// Observed state of a Site.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SiteStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Name of the Deploy that serves production traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deploy: Option<String>,
    /// Manifest digest of the active deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_manifest: Option<String>,
    /// The site's primary URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Every URL the site answers on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Standard conditions; `Ready` is true when the active deploy is serving.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
