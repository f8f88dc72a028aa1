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
        let (attempts, deliveries) = delivery_bytes(&db).await?;
        r.target(
            "storage",
            "bytes per delivery beyond its event",
            (attempts + deliveries) as f64 / n as f64,
            "B",
            250.0,
            false,
        );
        r.add("storage", "of which its attempt", attempts as f64 / n as f64, "B");
        r.check_arrivals(
            "storage",
            &format!("{} of {n} events arrived", rx.unique()),
            complete,
            &rx,
        );
        Ok(())
    }
}

/// Bytes the attempts and the deliveries take with their indexes. SQLite: a compacted copy of
/// the file less the same copy without them; PostgreSQL: their relations after `vacuum full`.
async fn delivery_bytes(db: &Database) -> anyhow::Result<(u64, u64)> {
    match db {
        Database::Sqlite(dir) => {
            let dir = dir.path().to_path_buf();
            tokio::task::spawn_blocking(move || {
                let file = dir.join(herald_testkit::database::SQLITE_FILE);
                let names = ["full.db", "no-attempts.db", "bare.db"].map(|n| dir.join(n));
                let into = |conn: &rusqlite::Connection, to: &std::path::Path| {
                    conn.execute("vacuum into ?", [to.display().to_string()])
                };
                into(&rusqlite::Connection::open(&file)?, &names[0])?;
                let copy = rusqlite::Connection::open(&names[0])?;
                copy.execute_batch("delete from attempts")?;
                into(&copy, &names[1])?;
                copy.execute_batch("delete from deliveries")?;
                into(&copy, &names[2])?;
                let [full, no_attempts, bare] = names.map(|p| std::fs::metadata(p).map_or(0, |m| m.len()));
                Ok::<_, anyhow::Error>((full.saturating_sub(no_attempts), no_attempts.saturating_sub(bare)))
            })
            .await?
        }
        Database::Postgres(scratch) => {
            let (client, connection) = tokio_postgres::connect(&scratch.url, tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            client.batch_execute("vacuum full deliveries, attempts").await?;
            let row = client
                .query_one(
                    "select pg_total_relation_size('attempts'), pg_total_relation_size('deliveries')",
                    &[],
                )
                .await?;
            let size = |i: usize| u64::try_from(row.get::<_, i64>(i)).unwrap_or(0);
            Ok((size(0), size(1)))
        }
    }
}
