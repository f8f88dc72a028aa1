#[path = "../common/mod.rs"]
mod common;

mod jinja;
mod parsers;
