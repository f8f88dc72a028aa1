#[path = "../common/mod.rs"]
mod common;

mod crash;
mod relay;
mod reliability;
mod restart;
mod sending;
