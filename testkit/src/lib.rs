//! What Herald's integration tests and its benchmark share, in one place: scratch PostgreSQL
//! databases (`postgres`), a fresh database of either kind (`database`), the real `herald`
//! binary as a child process (`process`), and real receivers on 127.0.0.1 (`receiver`).

pub mod database;
pub mod postgres;
pub mod process;
pub mod receiver;
