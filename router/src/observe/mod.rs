//! What the router tells operators and functions about requests: Prometheus metrics
//! ([`metrics`]), trace context and OTLP export ([`trace`]), client geolocation ([`geo`]).

pub mod geo;
pub mod metrics;
pub mod trace;
