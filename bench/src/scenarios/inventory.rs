//! Inventory lookups on a big type: IP addresses (1,000,000, or 20,000 in a quick run), each
//! filter against the lookup by id, median of repeated requests.

use super::Bench;
use crate::report::Report;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Addresses per bulk create.
const BULK: u64 = 1_000;

/// The `i`th address: 10.a.b.c, c from 1 to 250; every 1,000th has a /16 mask, the rest /24.
fn address(i: u64) -> String {
    let (a, rest) = (i / 62_500, i % 62_500);
    let (b, c) = (rest / 250, rest % 250 + 1);
    let mask = if i.is_multiple_of(1_000) { 16 } else { 24 };
    format!("10.{a}.{b}.{c}/{mask}")
}

impl Bench {
    pub async fn inventory(&self, r: &mut Report) -> anyhow::Result<()> {
        let db = self.database().await?;
        let h = self.herald(&db, false).await?;
        let n = self.objects;
        let t0 = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for lane in 0..2u64 {
            let (client, base) = (h.client.clone(), h.base.clone());
            tasks.spawn(async move {
                let mut from = lane * BULK;
                while from < n {
                    let body: Vec<Value> = (from..(from + BULK).min(n))
                        .map(|i| json!({"address": address(i), "dns_name": format!("host-{i}.example.net")}))
                        .collect();
                    let resp = client
                        .post(format!("{base}/api/ipam/ip-addresses/"))
                        .header("Authorization", format!("Token {}", crate::process::TOKEN))
                        .query(&[("brief", "1")])
                        .json(&body)
                        .send()
                        .await?;
                    anyhow::ensure!(resp.status().as_u16() == 201, "bulk create: {}", resp.status());
                    from += 2 * BULK;
                    anyhow::ensure!(t0.elapsed() < Duration::from_secs(1_800), "seeding took over 30 min");
                }
                Ok(())
            });
        }
        while let Some(t) = tasks.join_next().await {
            t??;
        }
        r.add(
            "inventory",
            "addresses created in bulk",
            n as f64 / t0.elapsed().as_secs_f64(),
            "/s",
        );
        let mid = n / 2 + 7;
        let host = address(mid);
        let host = host.split('/').next().unwrap_or_default().to_string();
        let parent = format!("{}.0/24", host.rsplit_once('.').map_or("", |(net, _)| net));
        let by_id = {
            let page = h.get(&format!("/api/ipam/ip-addresses/?address={host}")).await?;
            page["results"][0]["id"].as_i64().unwrap_or(0)
        };
        let lookups = [
            ("?id=", format!("?id={by_id}"), 1),
            ("?address=", format!("?address={host}"), 1),
            (
                "?parent= (a /24, first page of 1)",
                format!("?parent={parent}&limit=1"),
                1,
            ),
            ("?mask_length=16&limit=1", "?mask_length=16&limit=1".to_string(), 1),
            ("?q= (a host name)", format!("?q=host-{mid}.example"), 1),
        ];
        let mut id_ms = f64::NAN;
        for (name, query, want) in lookups {
            let mut times = Vec::new();
            for _ in 0..if self.quick { 5 } else { 21 } {
                let t = Instant::now();
                let page = h.get(&format!("/api/ipam/ip-addresses/{query}")).await?;
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                let got = page["results"].as_array().map_or(0, Vec::len);
                anyhow::ensure!(got == want, "{query}: {got} results, expected {want}");
            }
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            if name == "?id=" {
                id_ms = median;
                r.add("inventory", &format!("{name} median"), median, "ms");
            } else {
                r.add("inventory", &format!("{name} median"), median, "ms");
                r.target("inventory", &format!("{name} ÷ ?id="), median / id_ms, "×", 3.0, false);
            }
        }
        // The whole /24: its 250 addresses are read and written out as JSON.
        let t = Instant::now();
        let page = h
            .get(&format!("/api/ipam/ip-addresses/?parent={parent}&limit=1000"))
            .await?;
        let whole = t.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(
            page["count"].as_u64() == Some(250),
            "?parent={parent}: {}",
            page["count"]
        );
        r.add("inventory", "?parent= (a /24, all 250 listed)", whole, "ms");
        r.add(
            "inventory",
            "database size",
            db.bytes().await? as f64 / 1_048_576.0,
            "MiB",
        );
        h.stop().await;
        Ok(())
    }
}
