//! Where routing tables come from: one local deploy ([`local`], for `kpages-router
//! --manifest` and `kpages dev`), or the cluster's Site, Deploy, EndpointSlice, FunctionRoute
//! and Service objects ([`cluster`]).

pub mod cluster;
pub mod local;
