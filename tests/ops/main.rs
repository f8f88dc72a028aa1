#[path = "../common/mod.rs"]
mod common;

mod cli;
mod fleet;
mod observe;
mod postgres_tls;
