//! `FunctionRoute`: sends matching requests of a site to a deploy's function or to any Service.
//! Shaped after Gateway API's HTTPRoute (hostnames, path matches with a type, a backend), with
//! one backend per route because a function route has exactly one target.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Sends requests of a site that match a host and path to a function or a Service.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kpages.dev",
    version = "v1alpha1",
    kind = "FunctionRoute",
    namespaced,
    status = "FunctionRouteStatus",
    shortname = "kfr",
    category = "kpages",
    doc = "Routes a site's requests that match a host and path to a deploy's function or to a Service.",
    printcolumn(name = "Site", type_ = "string", json_path = ".spec.site"),
    printcolumn(
        name = "Path",
        type_ = "string",
        json_path = ".spec.matches[0].path.value"
    ),
    printcolumn(name = "Invocation", type_ = "string", json_path = ".spec.invocation"),
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.invocation != 'Background' || has(self.backend.__function__)")
    .message("Background invocation needs a function backend: a Service cannot be queued"))]
pub struct FunctionRouteSpec {
    /// Name of the Site (same namespace) whose traffic this route applies to.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
        .message("site must be the name of a Site: a lowercase DNS label (a-z, 0-9, '-')"))]
    pub site: String,

    /// Hosts this route applies to; empty means every host of the site.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 253)), extend("x-kubernetes-list-type" = "set"))]
    #[x_kube(validation = kube::core::Rule::new(
        "self.all(h, h.matches('^(\\\\*\\\\.)?([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\\\\.)*[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'))"
    ).message("each hostname must be a lowercase DNS name such as api.example.com or *.example.com"))]
    pub hostnames: Vec<String>,

    /// Request matches; a request matching any of them is routed.
    #[schemars(length(min = 1, max = 16))]
    pub matches: Vec<RouteMatch>,

    /// Where matching requests go: exactly one of `function` or `service`.
    pub backend: RouteBackend,

    /// `Sync` answers with the backend's response; `Background` answers 202 at once and runs
    /// the function from a durable queue.
    #[serde(default)]
    pub invocation: RouteInvocation,

    /// When true, a static file at the request path is served instead of the function.
    #[serde(default)]
    pub prefer_static: bool,

    /// Lower orders are tried first; ties are broken by the most specific path, then by name.
    #[serde(default = "default_order")]
    #[schemars(range(min = 0, max = 10000))]
    pub order: i32,
}

fn default_order() -> i32 {
    100
}

/// One way a request can match.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouteMatch {
    /// Path match.
    pub path: PathMatch,
    /// Only this HTTP method; any method when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<HttpMethod>,
}

/// How the request path is compared.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PathMatch {
    /// `Exact`, `PathPrefix` (segment-wise, as in Gateway API) or `Pattern` (URLPattern
    /// syntax as in Netlify's `config.path`: `/api/:id`, `/blog/*`).
    #[serde(default, rename = "type")]
    pub kind: PathMatchType,
    /// The path or pattern; starts with `/`.
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = kube::core::Rule::new("self.startsWith('/')")
        .message("path value must start with '/'"))]
    pub value: String,
}

/// Path comparison kinds.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PathMatchType {
    /// The whole path equals the value.
    Exact,
    /// The path starts with the value, on a segment boundary.
    #[default]
    PathPrefix,
    /// URLPattern pathname syntax: `:name` is one segment, `*` the rest.
    Pattern,
}

/// HTTP methods a route can be limited to.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::upper_case_acronyms)]
pub enum HttpMethod {
    /// GET
    GET,
    /// HEAD
    HEAD,
    /// POST
    POST,
    /// PUT
    PUT,
    /// PATCH
    PATCH,
    /// DELETE
    DELETE,
    /// OPTIONS
    OPTIONS,
}

/// The target of a route. (`function` is a CEL keyword, so rules spell it `__function__`.)
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.__function__) != has(self.service)")
    .message("backend needs exactly one of function or service"))]
pub struct RouteBackend {
    /// A function of a deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionBackend>,
    /// Any Service in the route's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceBackend>,
}

/// A deploy's function.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FunctionBackend {
    /// Deploy name. When unset, the site's active deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub deploy: Option<String>,
    /// Function name as in the deploy manifest.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A Service and port.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceBackend {
    /// Service name.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Service port number.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

/// How a route's backend is invoked.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RouteInvocation {
    /// The client waits for the response.
    #[default]
    Sync,
    /// The client gets 202 and a call id; the function runs from the queue.
    Background,
}

/// Observed state of a FunctionRoute.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FunctionRouteStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Other routes of the same site that match the same requests at the same order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts_with: Vec<String>,
    /// `Accepted`, `ResolvedRefs` and an overall `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
