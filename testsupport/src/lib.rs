//! What kpages' test suites share, so each lives in one place instead of a copy per crate:
//!
//! ```text
//!  eventually / eventually_async ── poll a condition until a deadline, then fail saying what
//!  free_port                      ── a free TCP port on 127.0.0.1
//!  MinIo                          ── a real MinIO (S3) server on loopback, one bucket
//!  Nats                           ── a real nats-server with JetStream on loopback
//!  fixtures                       ── deploy-manifest objects as tests build them
//!  crd_fixtures                   ── the YAML objects in crds/tests/fixtures/ (valid, invalid)
//! ```
//!
//! Servers are real processes, each with its own ports and temporary directory, killed when
//! dropped. Their binaries come from `scripts/install-deps`; a missing one fails the test with
//! how to install it, never skips it. Every wait has a deadline and names what it waited for.
//!
//! This crate is a dev-dependency only (the e2e crate, itself a test crate, depends on it
//! normally); it panics on failure, the way a test does.

// Test support: a failed setup step is a failed test, and panics with its cause.
#![allow(clippy::unwrap_used)]

pub mod crd_fixtures;
mod eventually;
pub mod fixtures;
pub mod minio;
pub mod nats;
mod process;

pub use eventually::{Condition, eventually, eventually_async};
pub use minio::MinIo;
pub use nats::Nats;

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it; nothing holds it now).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
}
