//! The kpages data plane.
pub mod cron;
pub mod path;
pub mod pattern;
pub mod resolve;
pub mod rules;
