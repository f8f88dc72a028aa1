//! Herald: NetBox's webhooks as one Rust service. Changes come in through the REST API; each
//! is written with its deliveries in one transaction; workers render, sign and send them, and
//! record every attempt.
//!
//! The modules follow the flow: `catalog` (object types) → `objects` (writes and views) and
//! `changes` (the change log) → `events` → `webhooks` (matching, templates, requests) →
//! `outbox` (a change and its deliveries in one transaction) → `queue` (deliveries and their
//! rules) → `delivery` (the worker and sending). `store` persists all of it; `service` holds
//! the rules the `api`, the `cli` and the pages (`ui`) call. `python` writes values as Python does;
//! `maintenance` purges and heartbeats.

pub mod api;
pub mod auth;
pub mod catalog;
pub mod changes;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod error;
pub mod events;
pub mod maintenance;
pub mod metrics;
pub mod objects;
pub mod outbox;
pub mod page;
pub mod python;
pub mod queue;
pub mod receiver;
pub mod server;
pub mod service;
pub mod store;
pub mod sync;
pub mod ui;
pub mod validate;
pub mod webhooks;
