//! The kpages API: the `Site`, `Deploy` and `FunctionRoute` custom resources (group
//! `kpages.dev`, version `v1alpha1`) and the deploy manifest that connects `kpages build`, the
//! operator and the router. Types only: nothing here does I/O.
//!
//! ```text
//!   Site ◄── Deploy.spec.site ── Deploy ── spec.manifest (sha256:…) ──► Manifest (blob)
//!    ▲                                                                    ├─ files ──► blobs
//!    └── FunctionRoute.spec.site ── backend ──► Deploy function | Service └─ functions ─► bundles
//! ```

// kube's `printcolumn(...)` attributes repeat `type_ = "string"` by design; clippy reads
// that as a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

pub mod deploy;
pub mod digest;
pub mod function_route;
pub mod generate;
pub mod host;
pub mod limits;
pub mod manifest;
pub mod names;
pub mod schedule;
pub mod site;

pub use deploy::{Deploy, DeployContext, DeployPhase, DeploySpec, DeployStatus};
pub use digest::{Digest, DigestError, Hasher};
pub use function_route::{FunctionRoute, FunctionRouteSpec, FunctionRouteStatus};
pub use manifest::{Manifest, ManifestError};
pub use site::{Site, SiteSpec, SiteStatus};

/// API group of every kpages resource.
pub const GROUP: &str = "kpages.dev";
