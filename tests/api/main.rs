#[path = "../common/mod.rs"]
mod common;

mod event_rules;
mod network_index;
mod object_catalog;
mod object_events;
mod objects;
mod pynetbox_filters;
mod pynetbox_inventory;
mod rest;
mod schema;
mod users;
