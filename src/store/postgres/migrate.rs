//! PostgreSQL's migrations, each applied once and recorded in `herald_migrations`, all that
//! are pending in one transaction (a failed one leaves the schema as it was); an advisory lock
//! keeps processes starting together from applying one twice.

use super::map_err;
use crate::store::{Result, StoreError};
use chrono::Utc;

/// The migrations, in order. Never edit one that has shipped: add another.
/// The schema version this build makes and expects: its last migration's.
pub const LATEST: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

const MIGRATIONS: [(i64, &str, &str); 10] = [
    (1, "init", include_str!("../../../migrations/postgres/0001_init.sql")),
    (
        2,
        "sessions",
        include_str!("../../../migrations/postgres/0002_sessions.sql"),
    ),
    (
        3,
        "delivery_indexes",
        include_str!("../../../migrations/postgres/0003_delivery_indexes.sql"),
    ),
    (
        4,
        "relayed_bodies",
        include_str!("../../../migrations/postgres/0004_relayed_bodies.sql"),
    ),
    (
        5,
        "event_rules",
        include_str!("../../../migrations/postgres/0005_event_rules.sql"),
    ),
    (
        6,
        "event_requests",
        include_str!("../../../migrations/postgres/0006_event_requests.sql"),
    ),
    (
        7,
        "record_tags",
        include_str!("../../../migrations/postgres/0007_record_tags.sql"),
    ),
    (
        8,
        "api_nodes_and_guarantees",
        include_str!("../../../migrations/postgres/0008_api_nodes_and_guarantees.sql"),
    ),
    (
        9,
        "attempt_bodies",
        include_str!("../../../migrations/postgres/0009_attempt_bodies.sql"),
    ),
    (
        10,
        "object_nets",
        include_str!("../../../migrations/postgres/0010_object_nets.sql"),
    ),
];

/// Any number: the key of the advisory lock migrations take.
const LOCK_KEY: i64 = 0x6865_7261_6c64;

pub async fn migrate(client: &mut deadpool_postgres::Object) -> Result<()> {
    let tx = client.transaction().await.map_err(map_err)?;
    tx.execute("select pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(map_err)?;
    tx.batch_execute(
        "create table if not exists herald_migrations (version bigint primary key, name text not null, applied_at bigint not null)",
    )
    .await
    .map_err(map_err)?;
    let applied: Vec<i64> = tx
        .query("select version from herald_migrations", &[])
        .await
        .map_err(map_err)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (version, name, text) in MIGRATIONS {
        if applied.contains(&version) {
            continue;
        }
        tx.batch_execute(text).await.map_err(|e| {
            StoreError::Other(anyhow::Error::new(e).context(format!("migration {version} ({name}) failed")))
        })?;
        if name == "object_nets" {
            index_nets(&tx).await?;
        }
        tx.execute(
            "insert into herald_migrations (version, name, applied_at) values ($1, $2, $3)",
            &[&version, &name, &Utc::now().timestamp_micros()],
        )
        .await
        .map_err(map_err)?;
    }
    tx.commit().await.map_err(map_err)
}

/// The sequence that numbers objects of `ty`, as `regclass` text.
pub fn sequence_name(ty: &str) -> String {
    format!("\"herald_ids_{}\"", ty.replace('"', ""))
}

/// Makes the id sequence of each type if it is missing, and moves it past every id the type
/// has had (objects, or the counter used before sequences), so no id is given twice.
pub async fn sequences(client: &mut deadpool_postgres::Object, types: &[&str]) -> Result<()> {
    let tx = client.transaction().await.map_err(map_err)?;
    tx.execute("select pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(map_err)?;
    for ty in types {
        let seq = sequence_name(ty);
        tx.batch_execute(&format!("create sequence if not exists {seq}"))
            .await
            .map_err(map_err)?;
        let row = tx
            .query_one(
                &format!(
                    "select greatest(coalesce((select max(id) from objects where type = $1), 0), \
                     coalesce((select last_id from object_sequences where type = $1), 0)) as used, \
                     case when is_called then last_value else last_value - 1 end as given from {seq}"
                ),
                &[ty],
            )
            .await
            .map_err(map_err)?;
        let (used, given): (i64, i64) = (row.get("used"), row.get("given"));
        if used > given {
            tx.execute("select setval($1::text::regclass, $2::bigint)", &[&seq, &used])
                .await
                .map_err(map_err)?;
        }
    }
    tx.commit().await.map_err(map_err)
}

/// Indexes the networks of the objects stored before the network index existed.
async fn index_nets(tx: &deadpool_postgres::Transaction<'_>) -> Result<()> {
    for (ty, field, host_only) in crate::store::NET_FIELDS_OF_MIGRATION {
        let rows = tx
            .query(
                "select id, data->>$1::text from objects where type = $2",
                &[&field, &ty],
            )
            .await
            .map_err(map_err)?;
        for row in rows {
            let (id, value): (i64, Option<String>) = (row.get(0), row.get(1));
            if let Some((lo, hi, len)) = value.and_then(|v| crate::objects::values::net_span(&v, host_only)) {
                tx.execute(
                    "insert into object_nets (type, id, field, lo, hi, len) values ($1, $2, $3, $4, $5, $6)",
                    &[&ty, &id, &field, &lo, &hi, &i32::from(len)],
                )
                .await
                .map_err(map_err)?;
            }
        }
    }
    Ok(())
}
