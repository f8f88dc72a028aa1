#[path = "../common/mod.rs"]
mod common;

mod crash;
mod guarantees;
mod relay;
mod reliability;
mod restart;
mod sending;
