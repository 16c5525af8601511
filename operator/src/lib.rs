//! The kpages operator: reconciles `Site`, `Deploy` and `FunctionRoute` objects into Node.js
//! function pods, Services, routes and schedule jobs.
//!
//! ```text
//!  Deploy ─► controllers::deploy ─ dereference Site, read manifest (verified) ─► desired (pure)
//!                                  ─► server-side apply ─► status (phase, conditions, functions)
//!  Site   ─► controllers::site   ─ plan (pure): active deploy, warm set, retention ─► status, deletes
//!  FunctionRoute ─► controllers::route ─ resolve refs, detect conflicts ─► status
//! ```
//!
//! Every controller follows the same pipeline and keeps its decisions in pure functions
//! ([`desired`], [`plan`]), so the interesting logic is unit-tested without a cluster.

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
