//! The three controllers, one module each: [`deploy`] turns a Deploy into function pods and
//! routes, [`site`] picks a site's active deploy and enforces retention, [`route`] checks
//! FunctionRoutes.

pub mod deploy;
pub mod route;
pub mod site;
