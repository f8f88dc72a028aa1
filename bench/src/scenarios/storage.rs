//! What each retained delivery costs on disk beyond its event: the delivery row, its attempt
//! and their indexes, after every delivery succeeded.

use super::Bench;
use crate::process::{post_events, Database};
use crate::report::Report;
use std::time::Duration;

impl Bench {
    /// Events posted to one webhook, all delivered; then the bytes the deliveries and their
    /// attempts take, per delivery.
    pub async fn storage(&self, r: &mut Report) -> anyhow::Result<()> {
        let (db, h, rx) = self.with_webhook("storage").await?;
        let n: u64 = if self.quick { 2_000 } else { 20_000 };
        post_events(&h, 1, n + 1, 500, 4).await?;
        let complete = rx.wait_unique(n as usize, Duration::from_secs(300)).await;
        // The outcomes are recorded after the arrivals: wait until every delivery says so.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let page = h.get("/api/extras/deliveries/?status=succeeded&limit=1").await?;
            if page["count"].as_u64() == Some(n) || std::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        h.stop().await;
        let bytes = delivery_bytes(&db).await?;
        r.target(
            "storage",
            "bytes per delivery beyond its event",
            bytes as f64 / n as f64,
            "B",
            250.0,
            false,
        );
        r.check_arrivals(
            "storage",
            &format!("{} of {n} events arrived", rx.unique()),
            complete,
            &rx,
        );
        Ok(())
    }
}

/// Bytes the deliveries and attempts take with their indexes. SQLite: a compacted copy of the
/// file less the same copy without them; PostgreSQL: their relations after `vacuum full`.
async fn delivery_bytes(db: &Database) -> anyhow::Result<u64> {
    match db {
        Database::Sqlite(dir) => {
            let dir = dir.path().to_path_buf();
            tokio::task::spawn_blocking(move || {
                let file = dir.join(herald_testkit::database::SQLITE_FILE);
                let (full, bare) = (dir.join("full.db"), dir.join("bare.db"));
                let conn = rusqlite::Connection::open(&file)?;
                conn.execute("vacuum into ?", [full.display().to_string()])?;
                let copy = rusqlite::Connection::open(&full)?;
                copy.execute_batch("delete from attempts; delete from deliveries;")?;
                copy.execute("vacuum into ?", [bare.display().to_string()])?;
                let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len());
                Ok::<_, anyhow::Error>(size(&full)?.saturating_sub(size(&bare)?))
            })
            .await?
        }
        Database::Postgres(scratch) => {
            let (client, connection) = tokio_postgres::connect(&scratch.url, tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            client.batch_execute("vacuum full deliveries, attempts").await?;
            let row = client
                .query_one(
                    "select pg_total_relation_size('deliveries') + pg_total_relation_size('attempts')",
                    &[],
                )
                .await?;
            Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
        }
    }
}
