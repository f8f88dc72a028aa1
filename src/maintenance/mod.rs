//! Keeping the database in shape while Herald runs: retention purges, and the heartbeats by
//! which `/api/status/` counts the delivery workers running anywhere on the database.

pub mod health;
pub mod heartbeat;
pub mod notices;
pub mod retention;
