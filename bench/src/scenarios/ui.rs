//! The admin pages on a big delivery log: a database (SQLite or PostgreSQL) filled with deliveries spread over
//! a week (2% failed, a few hundred waiting, failed attempts in the last day), then every page
//! asked for again and again by a signed-in browser session. The figure is the time from
//! sending the request to having the whole page, on loopback: the server's time plus a little.

use super::Bench;
use crate::process::{event, Herald, PASSWORD};
use crate::report::Report;
use anyhow::{bail, Context};
use std::time::{Duration, Instant};

/// Webhooks the deliveries are spread over.
const WEBHOOKS: i64 = 4;
/// Requests per page measured (after a few to warm up).
const SAMPLES: usize = 30;

/// Fills the SQLite database at `path`: `n` events with a delivery each, cloned from event 1,
/// created over the last seven days up to `now_us`.
fn fill(path: &std::path::Path, n: i64, now_us: i64) -> anyhow::Result<()> {
    let mut c = rusqlite::Connection::open(path)?;
    c.pragma_update(None, "journal_mode", "wal")?;
    c.pragma_update(None, "synchronous", "normal")?;
    let step = 7 * 86_400_000_000 / n;
    let tx = c.transaction()?;
    let events: i64 = tx.query_row("select max(id) from events", [], |r| r.get(0))?;
    let deliveries: i64 = tx.query_row("select max(id) from deliveries", [], |r| r.get(0))?;
    tx.execute(
        "with recursive k(i) as (select 1 union all select i + 1 from k where i < ?1)
         insert into events (id, event, timestamp, object_type, username, request_id, data, snapshots, created_at)
         select ?4 + k.i, e.event, e.timestamp, e.object_type, e.username, printf('bench-%d', k.i), e.data,
                e.snapshots, ?2 - (?1 - k.i) * ?3
         from k, (select * from events where id = 1) e",
        rusqlite::params![n, now_us, step, events],
    )?;
    // 2% failed, the newest 300 waiting (queued, due in an hour), the rest succeeded.
    tx.execute(
        "insert into deliveries (id, event_id, webhook_id, event, object_type, status, attempts, next_attempt_at,
                                 created_at, updated_at, last_error, last_status_code)
         select id - ?4 + ?5, id, id % ?1 + 1, event, object_type,
                case when id > ?2 - 300 then 'queued' when id % 50 = 0 then 'failed' else 'succeeded' end,
                case when id > ?2 - 300 then 0 when id % 50 = 0 then 6 else 1 end,
                ?3 + 3600000000, created_at, created_at + 80000,
                case when id % 50 = 0 and id <= ?2 - 300 then 'status 503: maintenance' end,
                case when id > ?2 - 300 then null when id % 50 = 0 then 503 else 200 end
         from events where id > ?4",
        rusqlite::params![WEBHOOKS, events + n, now_us, events, deliveries],
    )?;
    // Each failed delivery of the last day with its failed attempt.
    tx.execute(
        "insert into attempts (delivery_id, started_at, duration_us, request_method, request_url, request_headers,
                               request_body, response_status, response_headers, response_body, error)
         select id, updated_at, 80000, 'POST', 'http://127.0.0.1:9/hook', '[]', '{}', 503, '[]', 'maintenance',
                'status 503: maintenance'
         from deliveries where status = 'failed' and created_at >= ?1",
        rusqlite::params![now_us - 86_400_000_000],
    )?;
    tx.commit()?;
    c.execute_batch("analyze")?;
    Ok(())
}

/// `fill` on PostgreSQL: the same rows, by `generate_series`.
async fn fill_postgres(url: &str, n: i64, now_us: i64) -> anyhow::Result<()> {
    let (mut client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let tx = client.transaction().await?;
    let events: i64 = tx.query_one("select max(id) from events", &[]).await?.get(0);
    let deliveries: i64 = tx.query_one("select max(id) from deliveries", &[]).await?.get(0);
    let step = 7 * 86_400_000_000 / n;
    tx.execute(
        "insert into events (id, event, timestamp, object_type, username, request_id, data, snapshots, created_at)
         select $4::bigint + k, e.event, e.timestamp, e.object_type, e.username, 'bench-' || k, e.data, e.snapshots,
                $2::bigint - ($1::bigint - k) * $3::bigint
         from generate_series(1::bigint, $1::bigint) k, (select * from events where id = 1) e",
        &[&n, &now_us, &step, &events],
    )
    .await
    .context("copying events")?;
    tx.execute(
        "insert into deliveries (id, event_id, webhook_id, event, object_type, status, attempts, next_attempt_at,
                                 created_at, updated_at, last_error, last_status_code)
         select id - $4::bigint + $5::bigint, id, id % $1::bigint + 1, event, object_type,
                case when id > $2::bigint - 300 then 'queued' when id % 50 = 0 then 'failed' else 'succeeded' end,
                case when id > $2::bigint - 300 then 0 when id % 50 = 0 then 6 else 1 end,
                $3::bigint + 3600000000, created_at, created_at + 80000,
                case when id % 50 = 0 and id <= $2::bigint - 300 then 'status 503: maintenance' end,
                case when id > $2::bigint - 300 then null when id % 50 = 0 then 503 else 200 end
         from events where id > $4::bigint",
        &[&WEBHOOKS, &(events + n), &now_us, &events, &deliveries],
    )
    .await
    .context("adding deliveries")?;
    tx.execute(
        "insert into attempts (delivery_id, started_at, duration_us, request_method, request_url, request_headers,
                               request_body, response_status, response_headers, response_body, error)
         select id, updated_at, 80000, 'POST', 'http://127.0.0.1:9/hook', '[]', '{}', 503, '[]', 'maintenance',
                'status 503: maintenance'
         from deliveries where status = 'failed' and created_at >= $1::bigint",
        &[&(now_us - 86_400_000_000)],
    )
    .await?;
    tx.commit().await?;
    // As autovacuum would soon after: statistics, and the visibility map index-only scans need.
    client.batch_execute("vacuum analyze").await?;
    Ok(())
}

/// Logs in through the login form; returns the session cookie.
async fn log_in(h: &Herald) -> anyhow::Result<String> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let page = client.get(format!("{}/login/", h.base)).send().await?;
    let cookie = |resp: &reqwest::Response, name: &str| {
        resp.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| {
                v.strip_prefix(&format!("{name}="))
                    .map(|rest| rest.split(';').next().unwrap_or("").to_string())
            })
    };
    let token = cookie(&page, "herald_login_csrf").context("no login token cookie")?;
    let form = format!("csrf_token={token}&next=%2F&username=admin&password={PASSWORD}");
    let resp = client
        .post(format!("{}/login/", h.base))
        .header("Cookie", format!("herald_login_csrf={token}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await?;
    match cookie(&resp, "herald_session") {
        Some(key) => Ok(format!("herald_session={key}")),
        None => bail!("login refused: {}", resp.status()),
    }
}

impl Bench {
    /// Every page of the admin UI over a delivery log of `self.ui_deliveries` (1,000,000 by
    /// default): the slowest request and the 95th percentile per page; target ≤ 50 ms.
    pub async fn ui(&self, r: &mut Report) -> anyhow::Result<()> {
        let n: i64 = if self.quick { 20_000 } else { 1_000_000 };
        let db = self.database().await?;
        let h = self.herald(&db, false).await?;
        for w in 1..=WEBHOOKS {
            h.create_webhook(&format!("hook {w}"), "http://127.0.0.1:9/hook", 15)
                .await?;
        }
        h.post("/api/extras/events/", &event(1)).await?;
        let site = h
            .post(
                "/api/dcim/sites/",
                &serde_json::json!({"name": "Site 1", "slug": "site-1"}),
            )
            .await?;
        h.stop().await;

        let t0 = Instant::now();
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_micros() as i64;
        match &db {
            crate::process::Database::Sqlite(dir) => {
                let path = dir.path().join(herald_testkit::database::SQLITE_FILE);
                tokio::task::spawn_blocking(move || fill(&path, n, now_us)).await??;
            }
            crate::process::Database::Postgres(scratch) => fill_postgres(&scratch.url, n, now_us).await?,
        }
        r.add("ui", "deliveries in the database", n as f64, "");
        eprintln!(
            "herald-bench: ui filled {n} deliveries in {:.0} s",
            t0.elapsed().as_secs_f64()
        );

        let h = self.herald(&db, false).await?;
        let session = log_in(&h).await?;
        let middle = n / 2;
        let pages = [
            ("dashboard", "/".to_string()),
            ("webhooks", "/extras/webhooks/".to_string()),
            ("webhook", "/extras/webhooks/1/".to_string()),
            ("webhook form", "/extras/webhooks/1/edit/".to_string()),
            ("deliveries", "/extras/deliveries/".to_string()),
            ("deliveries failed", "/extras/deliveries/?status=failed".to_string()),
            (
                "deliveries of a webhook, page 100",
                "/extras/deliveries/?webhook_id=2&page=100".to_string(),
            ),
            ("delivery", format!("/extras/deliveries/{middle}/")),
            (
                "retry confirmation",
                "/extras/deliveries/retry/?webhook_id=3".to_string(),
            ),
            ("change log", "/extras/changelog/".to_string()),
            ("sites", "/dcim/sites/".to_string()),
            ("site", format!("/dcim/sites/{}/", site["id"])),
        ];
        let deadline = Instant::now() + Duration::from_secs(300);
        for (name, page) in pages {
            let mut times = Vec::with_capacity(SAMPLES);
            for i in 0..SAMPLES + 3 {
                anyhow::ensure!(Instant::now() < deadline, "the ui pages took over 300 s");
                let t = Instant::now();
                let resp = h
                    .client
                    .get(format!("{}{page}", h.base))
                    .header("Cookie", &session)
                    .send()
                    .await?;
                let status = resp.status();
                let body = resp.text().await?;
                anyhow::ensure!(status.is_success(), "{page}: {status}");
                anyhow::ensure!(body.contains("| Herald</title>"), "{page}: not a page");
                if i >= 3 {
                    times.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            }
            times.sort_by(f64::total_cmp);
            let p95 = times[(times.len() * 95 / 100).min(times.len() - 1)];
            r.target("ui", &format!("{name}, p95"), p95, "ms", 50.0, false);
            r.add("ui", &format!("{name}, slowest"), times[times.len() - 1], "ms");
        }
        h.stop().await;
        Ok(())
    }
}
