//! The kpages routing core: what a request is for, decided from a deploy manifest and a site's
//! routes alone. No I/O, no async runtime: the router, `kpages build` (which refuses what this
//! crate cannot compile), the operator and the fuzz targets all call the same code.
//!
//! ```text
//!  raw path ─► path::normalize ─┐
//!  Host ─────► host::normalize ─┼─► RequestFacts ─► resolve::CompiledDeploy::resolve ─► Decision
//!  headers ─► rules::{cookies, languages}     ▲            │
//!                                             │            ├─ rules::Redirect (pattern::Pattern)
//!  Manifest ─► CompiledDeploy::compile ───────┘            ├─ site_routes::SiteRoutes<T>
//!                                                          └─ function routes, static files
//! ```

pub mod host;
pub mod path;
pub mod pattern;
#[cfg(feature = "manifest")]
pub mod resolve;
#[cfg(feature = "manifest")]
pub mod rules;
pub mod shape;
#[cfg(feature = "manifest")]
pub mod site_routes;
