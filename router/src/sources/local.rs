//! One deploy served for every host: `kpages-router --manifest` and `kpages dev`. The table
//! never changes by itself; `kpages dev` swaps in a new one when the site is rebuilt.

use std::net::SocketAddr;
use std::sync::Arc;

use kpages_crds::Manifest;
use kpages_routing::pattern::Unusable;
use kpages_routing::resolve::CompiledDeploy;

use crate::table::{Deploy, RouteTable, Site};

/// A table that serves `manifest` as deploy `deploy_id` of site `site` on every host, with
/// its functions on `hosts`; also the patterns the router had to skip, for the caller to
/// report (`kpages build` refuses them, so only a manifest made elsewhere has any).
pub fn single_deploy(
    site: &str,
    deploy_id: String,
    manifest: Arc<Manifest>,
    hosts: Vec<SocketAddr>,
) -> (RouteTable, Vec<Unusable>) {
    let mut routes = CompiledDeploy::compile(manifest);
    let unusable = std::mem::take(&mut routes.unusable);
    let table = RouteTable::single(Site {
        routes: Default::default(),
        name: site.to_string(),
        deploy: Arc::new(Deploy::new(deploy_id, Arc::new(routes), hosts, true)),
    });
    (table, unusable)
}
