//! SQLite's migrations, each applied once in its own transaction and recorded in
//! `herald_migrations`.

use super::{col, in_write_tx, map_err, micros, sql, Run};
use crate::store::{Result, StoreError};
use chrono::Utc;
use rusqlite::{params, Connection};

/// The migrations, in order. Never edit one that has shipped: add another.
/// The schema version this build makes and expects: its last migration's.
pub const LATEST: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

const MIGRATIONS: [(i64, &str, &str); 15] = [
    (1, "init", include_str!("../../../migrations/sqlite/0001_init.sql")),
    (
        2,
        "retries",
        include_str!("../../../migrations/sqlite/0002_retries.sql"),
    ),
    (
        3,
        "objects",
        include_str!("../../../migrations/sqlite/0003_objects.sql"),
    ),
    (
        4,
        "unrecorded_claims",
        include_str!("../../../migrations/sqlite/0004_unrecorded_claims.sql"),
    ),
    (
        5,
        "permissions",
        include_str!("../../../migrations/sqlite/0005_permissions.sql"),
    ),
    (
        6,
        "database_id",
        include_str!("../../../migrations/sqlite/0006_database_id.sql"),
    ),
    (
        7,
        "sessions",
        include_str!("../../../migrations/sqlite/0007_sessions.sql"),
    ),
    (
        8,
        "delivery_indexes",
        include_str!("../../../migrations/sqlite/0008_delivery_indexes.sql"),
    ),
    (
        9,
        "relayed_bodies",
        include_str!("../../../migrations/sqlite/0009_relayed_bodies.sql"),
    ),
    (
        10,
        "event_rules",
        include_str!("../../../migrations/sqlite/0010_event_rules.sql"),
    ),
    (
        11,
        "event_requests",
        include_str!("../../../migrations/sqlite/0011_event_requests.sql"),
    ),
    (
        12,
        "record_tags",
        include_str!("../../../migrations/sqlite/0012_record_tags.sql"),
    ),
    (
        13,
        "api_nodes_and_guarantees",
        include_str!("../../../migrations/sqlite/0013_api_nodes_and_guarantees.sql"),
    ),
    (
        14,
        "attempt_bodies",
        include_str!("../../../migrations/sqlite/0014_attempt_bodies.sql"),
    ),
    (
        15,
        "object_nets",
        include_str!("../../../migrations/sqlite/0015_object_nets.sql"),
    ),
];

/// Applies the migrations `conn`'s database has not had yet.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    conn.execute_batch(
        "create table if not exists herald_migrations (version integer primary key, name text not null, applied_at integer not null)",
    )
    .map_err(map_err)?;
    let mut applied: Vec<i64> = sql("select version from herald_migrations").rows(conn, |r| col(r, "version"))?;
    // Databases made by earlier builds recorded their migrations in `_sqlx_migrations`.
    let legacy: i64 = sql("select count(*) from sqlite_master where name = '_sqlx_migrations'").scalar(conn)?;
    if legacy > 0 {
        applied.extend(
            sql("select version from _sqlx_migrations where success = 1").rows(conn, |r| col::<i64>(r, "version"))?,
        );
    }
    for (version, name, text) in MIGRATIONS {
        if applied.contains(&version) {
            continue;
        }
        in_write_tx::<_, StoreError>(conn, |c| {
            c.execute_batch(text).map_err(map_err)?;
            if name == "object_nets" {
                index_nets(c)?;
            }
            c.execute(
                "insert or replace into herald_migrations (version, name, applied_at) values (?, ?, ?)",
                params![version, name, micros(Utc::now())],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .map_err(|e| match e {
            StoreError::Other(e) => StoreError::Other(e.context(format!("migration {version} ({name}) failed"))),
            e => StoreError::Other(anyhow::Error::new(e).context(format!("migration {version} ({name}) failed"))),
        })?;
    }
    Ok(())
}

/// Indexes the networks of the objects stored before the network index existed.
fn index_nets(c: &Connection) -> Result<()> {
    let mut insert = c
        .prepare("insert into object_nets (type, id, field, lo, hi, len) values (?, ?, ?, ?, ?, ?)")
        .map_err(map_err)?;
    for (ty, field, host_only) in crate::store::NET_FIELDS_OF_MIGRATION {
        let mut read = c
            .prepare("select id, json_extract(data, '$.' || ?) from objects where type = ?")
            .map_err(map_err)?;
        let rows = read
            .query_map(params![field, ty], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?))
            })
            .map_err(map_err)?;
        for row in rows {
            let (id, value) = row.map_err(map_err)?;
            if let Some((lo, hi, len)) = value.and_then(|v| crate::objects::values::net_span(&v, host_only)) {
                insert.execute(params![ty, id, field, lo, hi, len]).map_err(map_err)?;
            }
        }
    }
    Ok(())
}
