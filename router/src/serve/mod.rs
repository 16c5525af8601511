//! What a routing decision is served with: static files from object storage
//! ([`static_files`]), calls to a deploy's function host ([`functions`]), and proxies to rule
//! targets and Services ([`proxy`]). [`Backends`] holds what they share; the pipeline owns one.

use std::sync::Arc;

use crate::config::Config;
use crate::jobs::queue::Queue;
use crate::table::Routes;

pub mod functions;
pub mod proxy;
pub mod static_files;

/// Everything behind the pipeline that answers a request: the function hosts and proxy targets
/// (through one HTTP client), the background queue and the static file cache.
pub struct Backends {
    pub(crate) config: Config,
    pub(crate) routes: Arc<Routes>,
    pub(crate) upstreams: proxy::Upstreams,
    pub(crate) queue: Arc<dyn Queue>,
    pub(crate) statics: static_files::StaticFiles,
}
