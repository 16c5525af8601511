//! Netlify's configuration formats: `netlify.toml` and the Frameworks API's
//! `.netlify/v1/config.json` ([`config`]), function discovery and in-source `config`
//! ([`functions`]), and the `_redirects` ([`redirects`]) and `_headers` ([`headers`]) files.

pub mod config;
pub mod functions;
pub mod headers;
pub mod redirects;
