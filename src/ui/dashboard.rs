//! `/`: the last hour at a glance: deliveries per minute as a chart drawn on the server, the
//! success rate, the queue's depth and its oldest waiting delivery, the webhooks failing most,
//! the latest changes.

use super::render::{iso, Failure};
use super::viewer::Viewer;
use crate::api::AppState;
use crate::changes::ChangeFilter;
use crate::error::Error;
use crate::queue::{MinuteCount, Status};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::{Duration, Utc};
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(dashboard))
}

/// The chart's plot area, in SVG units.
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 180.0;

/// A round number at least `n`, for the chart's top.
fn nice_ceiling(n: i64) -> i64 {
    let n = n.max(1);
    let mut step = 1;
    while step * 10 < n {
        step *= 10;
    }
    [1, 2, 5, 10]
        .iter()
        .map(|m| m * step)
        .find(|c| *c >= n)
        .unwrap_or(10 * step)
}

/// Bars (succeeded below, failed on top), the scale and the time labels of the chart.
fn chart(minutes: &[MinuteCount]) -> Value {
    let top = nice_ceiling(minutes.iter().map(|m| m.succeeded + m.failed).max().unwrap_or(0));
    let slot = WIDTH / minutes.len().max(1) as f64;
    let scale = |n: i64| n as f64 / top as f64 * HEIGHT;
    let bars: Vec<Value> = minutes
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let (ok, failed) = (scale(m.succeeded), scale(m.failed));
            json!({
                "x": format!("{:.1}", i as f64 * slot + 1.0),
                "width": format!("{:.1}", (slot - 2.0).max(1.0)),
                "ok_y": format!("{:.1}", HEIGHT - ok),
                "ok_height": format!("{:.1}", ok),
                "failed_y": format!("{:.1}", HEIGHT - ok - failed),
                "failed_height": format!("{:.1}", failed),
                "label": format!("{}: {} succeeded, {} failed", m.minute.format("%H:%M"), m.succeeded, m.failed),
                "time": m.minute.format("%H:%M").to_string(),
                "succeeded": m.succeeded,
                "failed": m.failed,
            })
        })
        .collect();
    // The scale's middle is half the top: 0.5 and 2.5 where the top is odd, not rounded down.
    let ticks: Vec<Value> = (0..=2)
        .map(|i| {
            let twice = top * i64::from(i);
            let label = if twice % 2 == 0 {
                json!(twice / 2)
            } else {
                json!(twice as f64 / 2.0)
            };
            json!({"y": format!("{:.1}", HEIGHT - HEIGHT * f64::from(i) / 2.0), "label": label})
        })
        .collect();
    let labels: Vec<Value> = minutes
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 15 == 0)
        .map(|(i, m)| json!({"x": format!("{:.1}", i as f64 * slot), "label": m.minute.format("%H:%M").to_string()}))
        .collect();
    json!({"bars": bars, "ticks": ticks, "labels": labels, "width": WIDTH, "height": HEIGHT})
}

async fn dashboard(State(st): State<AppState>, v: Viewer) -> Result<Response, Failure> {
    let now = Utc::now();
    let stats = st
        .svc
        .queue_stats(&v.actor, now - Duration::hours(1), Some(super::COUNT_AT_MOST))
        .await?;
    let count = |s: Status| stats.counts.iter().find(|(c, _)| *c == s).map_or(0, |(_, n)| *n);
    let shown = |n: i64| super::render::count_text(n, super::COUNT_AT_MOST);
    let (succeeded, failed) = stats
        .per_minute
        .iter()
        .fold((0, 0), |(s, f), m| (s + m.succeeded, f + m.failed));
    let rate =
        (succeeded + failed > 0).then(|| format!("{:.1}", succeeded as f64 * 100.0 / (succeeded + failed) as f64));
    let failing: Vec<Value> = stats
        .failing
        .iter()
        .map(|(id, name, n)| json!({"id": id, "name": name, "failed_attempts": n}))
        .collect();
    let changes = match st.svc.changes(&v.actor, &ChangeFilter::default(), 8, 0).await {
        Ok(page) => page.items,
        Err(Error::Forbidden) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let ctx = json!({
        "section": "dashboard",
        "finished": succeeded + failed,
        "succeeded": succeeded,
        "failed_last_hour": failed,
        "rate": rate,
        "queued": shown(count(Status::Queued)),
        "in_flight": shown(count(Status::InFlight)),
        "retrying": shown(count(Status::Retrying)),
        "depth": shown(count(Status::Queued) + count(Status::InFlight) + count(Status::Retrying)),
        "failed": shown(count(Status::Failed)),
        "any_failed": count(Status::Failed) > 0,
        "oldest_waiting": stats.oldest_waiting.map(iso),
        "failed_attempts": stats.failed_attempts,
        "chart": chart(&stats.per_minute),
        "failing": failing,
        "changes": changes,
    });
    Ok(v.page(&st, "dashboard.html", "Dashboard", ctx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_scales_to_a_round_top() {
        assert_eq!(nice_ceiling(0), 1);
        assert_eq!(nice_ceiling(7), 10);
        assert_eq!(nice_ceiling(11), 20);
        assert_eq!(nice_ceiling(480), 500);
        let t = Utc::now();
        let minutes = [
            MinuteCount {
                minute: t,
                succeeded: 30,
                failed: 10,
            },
            MinuteCount {
                minute: t,
                succeeded: 0,
                failed: 0,
            },
        ];
        let c = chart(&minutes);
        assert_eq!(c["ticks"][0]["label"], 0);
        assert_eq!(c["ticks"][2]["label"], 50);
        // 30 of 50 is 60% of the height; the failed part stands on it.
        assert_eq!(c["bars"][0]["ok_height"], "108.0");
        assert_eq!(c["bars"][0]["failed_y"], "36.0");
        assert_eq!(c["bars"][1]["ok_height"], "0.0");
        // An empty hour: a scale of 0, 0.5 and 1, not 0, 0 and 1.
        let empty = chart(&minutes[1..]);
        assert_eq!(empty["ticks"][1]["label"], 0.5);
    }
}
