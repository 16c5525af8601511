//! HTTP in and out of the router: the listeners ([`server`]), the admin API ([`admin`]), the
//! request pipeline ([`pipeline`]), how handler errors become statuses ([`error`]), and what the router learns about the client ([`client`]).

pub mod admin;
pub mod client;
pub mod error;
pub mod pipeline;
pub mod server;
