//! Herald: NetBox's webhooks as one Rust service. Changes come in through the REST API; each
//! is written with its deliveries in one transaction; workers render, sign and send them, and
//! record every attempt.

pub mod api;
pub mod auth;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod events;
pub mod objects;
pub mod queue;
pub mod server;
pub mod store;
pub mod validate;
pub mod webhooks;
