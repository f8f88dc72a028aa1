#[path = "../common/mod.rs"]
mod common;

mod cli;
mod fleet;
mod postgres_tls;
