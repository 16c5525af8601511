//! The kpages operator: reconciles `Site`, `Deploy` and `FunctionRoute` objects into Node.js
//! function pods, Services, routes and schedule jobs.
//!
//! ```text
//!  cli ── flags, leader election (leader), /metrics (metrics) ──► one set of controllers per
//!         namespace scope, each run by controllers::run_controller
//!  controllers
//!   ├─ deploy   Deploy ─► dereference Site, manifest ─► validate blobs ─► build (pure: plan,
//!   │           desired) ─► apply ─► status (deploy/status.rs)
//!   ├─ site     Site ─► its Deploys ─► plan (pure): active deploy, warm set, retention
//!   │           ─► delete Deploys beyond retention ─► status
//!   ├─ route    FunctionRoute ─► resolve the backend, find conflicts (pure) ─► status
//!   └─ apply    server-side apply of owned objects and of statuses, field manager
//!               "kpages-operator"
//!  context      what the controllers share (client, store, manifest cache, backoff, events)
//!               and their Error, one variant per stage
//!  desired/     Site + Deploy + manifest ─► Deployment, Service, NetworkPolicy,
//!               FunctionRoutes, CronJobs (pure, one module per object)
//!  plan         a site's active deploy, warm set, retention and pod counts (pure)
//!  fetch        `fetch-bundles`, the init container that lays out a deploy's bundles
//! ```
//!
//! Every controller follows the same pipeline and keeps its decisions in pure functions
//! ([`desired`], [`plan`], the controllers' `status_for`s), so the interesting logic is
//! unit-tested without a cluster.

pub mod cli;
pub mod context;
pub mod controllers;
pub mod desired;
pub mod fetch;
pub mod leader;
pub mod metrics;
pub use kpages_crds::names;
pub mod plan;

#[cfg(test)]
mod fixtures;
