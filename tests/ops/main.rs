#[path = "../common/mod.rs"]
mod common;

mod cli;
mod fleet;
mod metrics;
mod postgres_tls;
mod readiness;
mod tools;
