//! What a routing decision is served with: static files from object storage
//! ([`static_files`]), calls to a deploy's function host ([`functions`]), and proxies to rule
//! targets and Services ([`proxy`]).

pub mod functions;
pub mod proxy;
pub mod static_files;
