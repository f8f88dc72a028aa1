//! The contract's methods that only run statements, written once over `exec::Exec` for every
//! backend: users, tokens and sessions, groups and permissions, webhooks and event rules,
//! objects' reads and the change log, the queue's reads, requeues and purges, heartbeats.

mod access;
mod objects;
mod queue;
mod records;
mod users;
