//! The integration tests again, on PostgreSQL: every test below starts Herald on a scratch
//! database of the server named by `HERALD_TEST_POSTGRES_URL` (see `common::DataDir`). When
//! the variable is unset they run on SQLite once more, and say so.
//!
//! Each file brings its own `mod common`, as it does in its own test program.
#![allow(clippy::duplicate_mod)]

#[path = "api.rs"]
mod api;
#[path = "delivery.rs"]
mod delivery;
#[path = "event_rules.rs"]
mod event_rules;
#[path = "objects.rs"]
mod objects;
#[path = "pynetbox_filters.rs"]
mod pynetbox_filters;
#[path = "pynetbox_inventory.rs"]
mod pynetbox_inventory;
#[path = "relay.rs"]
mod relay;
#[path = "reliability.rs"]
mod reliability;
#[path = "schema.rs"]
mod schema;
#[path = "ui.rs"]
mod ui;
#[path = "users.rs"]
mod users;
