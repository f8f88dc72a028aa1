//! The queue: counts per state (refreshed while the page is open), the deliveries with filters
//! and pages, one delivery with every attempt, and the hand controls: retry one, retry or
//! delete all that match, each bulk action confirmed with its count first.

use super::query::path_id;
use super::query::{encode, Query};
use super::render::Failure;
use super::session::{redirect_with, CSRF_FIELD};
use super::viewer::{Posted, Viewer};
use super::views::attempt;
use crate::api::AppState;
use crate::error::Error;
use crate::queue::{DeliveryFilter, Status};
use crate::service::WebhookFilter;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/extras/deliveries/", get(list))
        .route("/extras/deliveries/counts/", get(counts))
        .route("/extras/deliveries/retry/", get(confirm_retry).post(retry_all))
        .route("/extras/deliveries/delete/", get(confirm_delete).post(delete_all))
        .route("/extras/deliveries/{id}/", get(detail))
        .route("/extras/deliveries/{id}/retry/", post(retry_one))
        .route(
            "/extras/deliveries/{id}/delete/",
            get(confirm_delete_one).post(delete_one),
        )
}

/// The list's filter from the query string; a value that cannot be read is an error naming it.
fn filter_of(q: &Query) -> Result<DeliveryFilter, Error> {
    crate::service::delivery_filter(&q.given(), &[])
}

/// Every state with its count, and links that keep the other filters.
async fn state_counts(st: &AppState, v: &Viewer, q: &Query) -> Result<Value, Failure> {
    let summary = st.svc.queue_counts(&v.actor, super::COUNT_AT_MOST).await?;
    let others: Vec<(String, String)> = q.filters().into_iter().filter(|(k, _)| k != "status").collect();
    let link = |status: Option<&str>| {
        let mut pairs = others.clone();
        pairs.extend(status.map(|s| ("status".to_string(), s.to_string())));
        format!("/extras/deliveries/?{}", encode(&pairs))
    };
    let chosen = q.all("status");
    let cap = super::COUNT_AT_MOST;
    let total: i64 = summary.counts.iter().map(|(_, n)| n).sum();
    let total = if summary.counts.iter().any(|(_, n)| *n >= cap) {
        format!("{}+", super::query::thousands(total))
    } else {
        super::query::thousands(total)
    };
    let mut tabs =
        vec![json!({"label": "All", "count": total, "url": link(None), "current": chosen.is_empty(), "status": "all"})];
    for (s, n) in &summary.counts {
        tabs.push(json!({
            "label": s.label(),
            "status": s.as_str(),
            "count": super::render::count_text(*n, cap),
            "url": link(Some(s.as_str())),
            "current": chosen.len() == 1 && chosen[0] == s.as_str(),
        }));
    }
    Ok(json!({"tabs": tabs, "workers": summary.workers}))
}

async fn list(State(st): State<AppState>, v: Viewer, q: Query) -> Result<Response, Failure> {
    let filter = filter_of(&q)?;
    let (limit, offset) = q.page()?;
    let page = st
        .svc
        .deliveries(&v.actor, &filter, limit, offset, Some(super::COUNT_AT_MOST))
        .await?;
    let webhooks = st.svc.webhooks(&v.actor, &WebhookFilter::default(), 1000, 0).await?;
    let ctx = json!({
        "section": "deliveries",
        "deliveries": page.items.iter().map(|d| super::views::delivery_row(&st.svc.catalog, d)).collect::<Vec<_>>(),
        "pages": q.paginator(page.count, limit, offset, Some(super::COUNT_AT_MOST)),
        "counts": state_counts(&st, &v, &q).await?,
        "filters": {
            "webhook_id": q.get("webhook_id"),
            "object_type": q.get("object_type"),
            "event": q.get("event"),
            "since": q.get("since"),
            "until": q.get("until"),
            "request_id": q.get("request_id"),
        },
        "chosen_status": q.all("status"),
        "filtered": !q.filters().is_empty(),
        "query": q.encoded(),
        "webhooks": webhooks.items.iter().map(|w| json!({"id": w.id, "name": w.name})).collect::<Vec<_>>(),
        "types": st.svc.catalog.types().iter().map(|t| t.name().to_string()).collect::<Vec<_>>(),
        "states": Status::ALL.iter().map(|s| json!({"value": s.as_str(), "label": s.label()})).collect::<Vec<_>>(),
    });
    Ok(v.page(&st, "deliveries.html", "Deliveries", ctx))
}

/// Just the counts, for the list to refresh them in place.
async fn counts(State(st): State<AppState>, v: Viewer, q: Query) -> Result<Response, Failure> {
    let ctx = json!({"counts": state_counts(&st, &v, &q).await?});
    Ok(v.page(&st, "queue_counts.html", "Queue", ctx))
}

async fn detail(State(st): State<AppState>, v: Viewer, Path(id): Path<String>) -> Result<Response, Failure> {
    let d = st.svc.delivery(&v.actor, path_id(&id)?).await?;
    let attempts: Vec<Value> = d
        .attempts
        .iter()
        .enumerate()
        .map(|(i, a)| attempt(i + 1, a))
        .rev()
        .collect();
    let context = if d.event.data.is_null() {
        Value::Null
    } else {
        json!(serde_json::to_string_pretty(&d.event.context()).unwrap_or_default())
    };
    let ctx = json!({
        "section": "deliveries",
        "delivery": super::views::delivery_row(&st.svc.catalog, &d.delivery),
        "retryable": Status::RETRYABLE.contains(&d.delivery.status),
        "deletable": Status::DELETABLE.contains(&d.delivery.status),
        "attempts": attempts,
        "event": {
            "id": d.event.id,
            "kind": d.event.kind.as_str(),
            "object_type": d.event.object_type,
            "request_id": d.event.request_id,
            "username": d.event.username,
            "timestamp": d.event.timestamp,
            "context": context,
        },
    });
    Ok(v.page(&st, "delivery.html", &format!("Delivery {}", d.delivery.id), ctx))
}

async fn retry_one(State(st): State<AppState>, Path(id): Path<String>, p: Posted) -> Result<Response, Failure> {
    let id = path_id(&id)?;
    st.svc.retry_delivery(&p.viewer.actor, id).await?;
    Ok(redirect_with(
        &format!("/extras/deliveries/{id}/"),
        &format!("Delivery {id} queued again: it is sent as soon as a worker is free."),
        p.viewer.secure,
    ))
}

/// A confirmation page for a bulk action over the deliveries `q` selects.
async fn confirm_bulk(st: &AppState, v: &Viewer, q: &Query, retry: bool) -> Result<Response, Failure> {
    let filter = filter_of(q)?;
    let n = st
        .svc
        .bulk_count(&v.actor, &filter, retry, super::COUNT_AT_MOST)
        .await?;
    let shown = super::render::count_text(n, super::COUNT_AT_MOST);
    let (question, detail, verb) = if retry {
        (
            format!("Retry {shown} deliveries?"),
            "Each matching delivery that is not being sent right now is queued again and sent once more \
             (with no state chosen, the failed ones)."
                .to_string(),
            format!("Retry {shown} deliveries"),
        )
    } else {
        (
            format!("Delete {shown} deliveries?"),
            "The matching queued, retrying and failed deliveries go, with their attempts. Succeeded ones stay \
             until retention purges them. This cannot be undone."
                .to_string(),
            format!("Delete {shown} deliveries"),
        )
    };
    let hidden: Vec<Value> = q
        .filters()
        .into_iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    let ctx = json!({
        "section": "deliveries",
        "question": question,
        "detail": detail,
        "verb": verb,
        "danger": !retry,
        "cancel": format!("/extras/deliveries/?{}", q.encoded()),
        "hidden": hidden,
        "nothing": n == 0,
    });
    Ok(v.page(
        st,
        "confirm.html",
        if retry { "Retry deliveries" } else { "Delete deliveries" },
        ctx,
    ))
}

async fn confirm_retry(State(st): State<AppState>, v: Viewer, q: Query) -> Result<Response, Failure> {
    confirm_bulk(&st, &v, &q, true).await
}

async fn confirm_delete(State(st): State<AppState>, v: Viewer, q: Query) -> Result<Response, Failure> {
    confirm_bulk(&st, &v, &q, false).await
}

/// The filter a confirmation form carried, as a query.
fn posted_query(p: &Posted) -> Query {
    Query(p.fields.0.iter().filter(|(k, _)| k != CSRF_FIELD).cloned().collect())
}

/// Retries (`retry`) or deletes what the confirmed filter matches, and goes back to the list
/// with how many.
async fn bulk(st: &AppState, p: Posted, retry: bool) -> Result<Response, Failure> {
    let q = posted_query(&p);
    let filter = filter_of(&q)?;
    let (n, done) = if retry {
        (st.svc.retry_deliveries(&p.viewer.actor, &filter).await?, "queued again")
    } else {
        (st.svc.delete_deliveries(&p.viewer.actor, &filter).await?, "deleted")
    };
    let back = format!("/extras/deliveries/?{}", q.encoded());
    Ok(redirect_with(
        &back,
        &format!("{n} deliveries {done}."),
        p.viewer.secure,
    ))
}

async fn retry_all(State(st): State<AppState>, p: Posted) -> Result<Response, Failure> {
    bulk(&st, p, true).await
}

async fn delete_all(State(st): State<AppState>, p: Posted) -> Result<Response, Failure> {
    bulk(&st, p, false).await
}

async fn confirm_delete_one(
    State(st): State<AppState>,
    v: Viewer,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let d = st.svc.delivery(&v.actor, path_id(&id)?).await?.delivery;
    Ok(v.confirm_delete(
        &st,
        "deliveries",
        format!("Delete delivery {} of webhook {}?", d.id, d.webhook_name),
        "The delivery and its attempts go. This cannot be undone.",
        format!("/extras/deliveries/{}/", d.id),
    ))
}

async fn delete_one(State(st): State<AppState>, Path(id): Path<String>, p: Posted) -> Result<Response, Failure> {
    let id = path_id(&id)?;
    st.svc.delete_delivery(&p.viewer.actor, id).await?;
    Ok(redirect_with(
        "/extras/deliveries/",
        &format!("Delivery {id} deleted."),
        p.viewer.secure,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::render::iso;

    #[test]
    fn filters_read_from_the_query() {
        let q = Query(
            form_urlencoded::parse(
                b"status=failed&webhook_id=3&since=2026-11-30T10:00&until=2026-11-30T11:00:00Z&request_id=r1",
            )
            .into_owned()
            .collect(),
        );
        let f = filter_of(&q).unwrap();
        assert_eq!(f.status, [Status::Failed]);
        assert_eq!(f.webhook_id, [3]);
        assert_eq!(f.request_id, ["r1"]);
        assert_eq!(f.since.map(iso).as_deref(), Some("2026-11-30T10:00:00Z"));
        assert_eq!(f.until.map(iso).as_deref(), Some("2026-11-30T11:00:00Z"));
        let bad = Query(vec![("status".into(), "lost".into())]);
        assert!(matches!(filter_of(&bad), Err(Error::Validation(v)) if v.get("status").is_some()));
    }
}
