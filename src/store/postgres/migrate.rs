//! PostgreSQL's migrations, each applied once and recorded in `herald_migrations`, all that
//! are pending in one transaction (a failed one leaves the schema as it was); an advisory lock
//! keeps processes starting together from applying one twice.

use super::map_err;
use crate::store::{Result, StoreError};
use chrono::Utc;

/// The migrations, in order. Never edit one that has shipped: add another.
const MIGRATIONS: [(i64, &str, &str); 2] = [
    (1, "init", include_str!("../../../migrations/postgres/0001_init.sql")),
    (
        2,
        "sessions",
        include_str!("../../../migrations/postgres/0002_sessions.sql"),
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
        tx.execute(
            "insert into herald_migrations (version, name, applied_at) values ($1, $2, $3)",
            &[&version, &name, &Utc::now().timestamp_micros()],
        )
        .await
        .map_err(map_err)?;
    }
    tx.commit().await.map_err(map_err)
}
