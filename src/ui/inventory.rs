//! The inventory's pages: each catalog type's list (with NetBox's filters and search) and
//! detail (with its change log), and the global change log with each change's difference and
//! the deliveries its request produced.

use super::query::path_id;
use super::query::Query;
use super::render::Failure;
use super::viewer::Viewer;
use crate::api::AppState;
use crate::catalog::{label, Catalog, FieldKind, ObjectType};
use crate::changes::ChangeFilter;
use crate::error::Error;
use crate::queue::DeliveryFilter;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

pub fn router(catalog: &Catalog) -> Router<AppState> {
    let mut router = Router::new()
        .route("/extras/changelog/", get(changelog))
        .route("/extras/changelog/{id}/", get(change));
    for t in catalog.types() {
        let (list_of, one_of) = (t.name().to_string(), t.name().to_string());
        router = router
            .route(
                &format!("/{}/", t.api_path),
                get(move |st: State<AppState>, v: Viewer, q: Query| objects(st, v, q, list_of.clone())),
            )
            .route(
                &format!("/{}/{{id}}/", t.api_path),
                get(move |st: State<AppState>, v: Viewer, id: Path<String>| object(st, v, id, one_of.clone())),
            );
    }
    router
}

/// The page of an API url (`/api/dcim/sites/3/` → `/dcim/sites/3/`).
fn page_url(api_url: &str) -> Option<String> {
    api_url
        .find("/api/")
        .map(|at| api_url[at + 4..].to_string())
        .filter(|u| !u.starts_with("/extras/webhooks/"))
}

/// A value of a REST view as a table cell: text, a link, a badge, a tick or an empty mark.
fn cell(v: &Value) -> Value {
    match v {
        Value::Null => json!({"empty": true}),
        Value::Bool(b) => json!({"bool": b}),
        Value::String(s) if s.is_empty() => json!({"empty": true}),
        Value::String(s) => json!({"text": s}),
        Value::Object(o) if o.contains_key("label") && o.contains_key("value") => {
            json!({"text": o["label"], "badge": o["value"]})
        }
        Value::Object(o) if o.contains_key("display") => json!({
            "text": o["display"],
            "url": o.get("url").and_then(Value::as_str).and_then(page_url),
        }),
        Value::Array(items) if items.is_empty() => json!({"empty": true}),
        Value::Array(items) => {
            let names: Vec<String> = items
                .iter()
                .map(|i| match i.get("display").or_else(|| i.get("name")) {
                    Some(Value::String(s)) => s.clone(),
                    _ => i.to_string(),
                })
                .collect();
            json!({"text": names.join(", ")})
        }
        other => json!({"text": other.to_string()}),
    }
}

/// The fields a list shows: the first six besides long text.
fn columns(t: &ObjectType) -> Vec<&str> {
    t.fields
        .iter()
        .filter(|f| !matches!(f.name.as_str(), "comments" | "description") && f.kind != FieldKind::Family)
        .map(|f| f.name.as_str())
        .take(6)
        .collect()
}

/// The type's choice fields with their choices, for the list's filters.
fn choice_filters(st: &AppState, t: &ObjectType, q: &Query) -> Vec<Value> {
    t.fields
        .iter()
        .filter(|f| f.kind == FieldKind::Choice)
        .map(|f| {
            let set = f.choices.as_deref().unwrap_or("");
            let chosen = q.get(&f.name).unwrap_or("");
            json!({
                "name": f.name,
                "label": label(&f.name),
                "choices": st.svc.catalog.choices(set).iter().map(|(v, l)| json!({"value": v, "label": l, "selected": v == chosen})).collect::<Vec<_>>(),
            })
        })
        .collect()
}

async fn objects(State(st): State<AppState>, v: Viewer, q: Query, type_name: String) -> Result<Response, Failure> {
    let t = st.svc.object_type(&type_name)?;
    let (limit, offset) = q.page()?;
    let page = st
        .svc
        .list_objects(&v.actor, t, &q.filters(), limit, offset, false)
        .await?;
    let cols = columns(t);
    let rows: Vec<Value> = page
        .items
        .iter()
        .map(|o| {
            json!({
                "id": o["id"],
                "display": o["display"],
                "cells": cols.iter().map(|c| cell(&o[*c])).collect::<Vec<_>>(),
            })
        })
        .collect();
    let title = label(&t.plural());
    let ctx = json!({
        "section": t.api_path,
        "type": {"name": t.name(), "verbose": t.verbose_name, "path": format!("/{}/", t.api_path), "api": format!("/api/{}/", t.api_path)},
        "columns": cols.iter().map(|c| label(c)).collect::<Vec<_>>(),
        "rows": rows,
        "pages": q.paginator(page.count, limit, offset, None),
        "q": q.get("q"),
        "choices": choice_filters(&st, t, &q),
        "filtered": !q.filters().is_empty(),
    });
    Ok(v.page(&st, "objects.html", &title, ctx))
}

async fn object(
    State(st): State<AppState>,
    v: Viewer,
    Path(id): Path<String>,
    type_name: String,
) -> Result<Response, Failure> {
    let t = st.svc.object_type(&type_name)?;
    let id = path_id(&id)?;
    let o = st.svc.object(&v.actor, t, id, false).await?;
    let mut attrs: Vec<Value> = t
        .fields
        .iter()
        .map(|f| json!({"label": label(&f.name), "cell": cell(&o[&f.name])}))
        .collect();
    if t.tags {
        attrs.push(json!({"label": "Tags", "cell": cell(&o["tags"])}));
    }
    let filter = ChangeFilter {
        object_type: vec![t.name().to_string()],
        object_id: vec![id],
        ..ChangeFilter::default()
    };
    let changes = match st.svc.changes(&v.actor, &filter, 50, 0).await {
        Ok(page) => Some(page.items),
        Err(Error::Forbidden) => None,
        Err(e) => return Err(e.into()),
    };
    let about = DeliveryFilter {
        object_type: vec![t.name().to_string()],
        object_id: vec![id],
        ..DeliveryFilter::default()
    };
    let deliveries = match st
        .svc
        .deliveries(&v.actor, &about, 10, 0, Some(super::COUNT_AT_MOST))
        .await
    {
        Ok(page) => Some(
            page.items
                .iter()
                .map(|d| super::views::delivery_row(&st.svc.catalog, d))
                .collect::<Vec<_>>(),
        ),
        Err(Error::Forbidden) => None,
        Err(e) => return Err(e.into()),
    };
    let display = o["display"].as_str().unwrap_or_default().to_string();
    let ctx = json!({
        "section": t.api_path,
        "type": {"name": t.name(), "verbose": t.verbose_name, "plural": label(&t.plural()), "path": format!("/{}/", t.api_path)},
        "object": {"id": id, "display": display, "created": o["created"], "last_updated": o["last_updated"]},
        "attrs": attrs,
        "changes": changes,
        "deliveries": deliveries,
    });
    Ok(v.page(&st, "object.html", &display, ctx))
}

/// A change row's link to its object, while the object exists.
fn with_links(mut change: Value) -> Value {
    let url = change["changed_object"]["url"].as_str().and_then(page_url);
    change["object_url"] = json!(url);
    change
}

async fn changelog(State(st): State<AppState>, v: Viewer, q: Query) -> Result<Response, Failure> {
    let (limit, offset) = q.page()?;
    let filter = crate::service::change_filter(&q.given(), &[])?;
    let page = st.svc.changes(&v.actor, &filter, limit, offset).await?;
    let ctx = json!({
        "section": "changelog",
        "changes": page.items.into_iter().map(with_links).collect::<Vec<_>>(),
        "pages": q.paginator(page.count, limit, offset, None),
        "filters": q.filter_values(),
        "filtered": !q.filters().is_empty(),
        "types": st.svc.catalog.types().iter().map(|t| t.name().to_string()).collect::<Vec<_>>(),
        "retention_days": st.svc.config.retention.changelog_days,
    });
    Ok(v.page(&st, "changelog.html", "Change log", ctx))
}

/// Each key of the pre- and post-change data, marked where they differ.
fn difference(pre: &Value, post: &Value) -> Vec<Value> {
    let mut keys: Vec<&String> = Vec::new();
    for side in [pre, post] {
        if let Value::Object(m) = side {
            for k in m.keys() {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
    }
    keys.into_iter()
        .map(|k| {
            let (a, b) = (pre.get(k), post.get(k));
            let show = |v: Option<&Value>| v.map(|v| serde_json::to_string(v).unwrap_or_default());
            json!({"key": k, "pre": show(a), "post": show(b), "changed": a != b})
        })
        .collect()
}

async fn change(State(st): State<AppState>, v: Viewer, Path(id): Path<String>) -> Result<Response, Failure> {
    let id = path_id(&id)?;
    let one = ChangeFilter {
        id: vec![id],
        ..ChangeFilter::default()
    };
    let c = st
        .svc
        .changes(&v.actor, &one, 1, 0)
        .await?
        .items
        .pop()
        .ok_or(Error::NotFound)?;
    let request_id = c["request_id"].as_str().unwrap_or_default().to_string();
    let related = ChangeFilter {
        request_id: vec![request_id.clone()],
        ..ChangeFilter::default()
    };
    let related = st.svc.changes(&v.actor, &related, 50, 0).await?;
    let produced = DeliveryFilter {
        request_id: vec![request_id.clone()],
        object_type: vec![c["changed_object_type"].as_str().unwrap_or_default().to_string()],
        ..DeliveryFilter::default()
    };
    let deliveries = match st
        .svc
        .deliveries(&v.actor, &produced, 50, 0, Some(super::COUNT_AT_MOST))
        .await
    {
        Ok(page) => Some(
            page.items
                .iter()
                .map(|d| super::views::delivery_row(&st.svc.catalog, d))
                .collect::<Vec<_>>(),
        ),
        Err(Error::Forbidden) => None,
        Err(e) => return Err(e.into()),
    };
    let ctx = json!({
        "section": "changelog",
        "difference": difference(&c["prechange_data"], &c["postchange_data"]),
        "related": related.items.into_iter().filter(|r| r["id"] != c["id"]).map(with_links).collect::<Vec<_>>(),
        "related_count": related.count,
        "deliveries": deliveries,
        "change": with_links(c),
    });
    Ok(v.page(&st, "change.html", &format!("Change {id}"), ctx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_and_differences() {
        assert_eq!(cell(&json!(null)), json!({"empty": true}));
        assert_eq!(cell(&json!({"value": "active", "label": "Active"}))["badge"], "active");
        let fk = cell(&json!({"id": 3, "url": "http://h/api/dcim/sites/3/", "display": "DC1"}));
        assert_eq!(
            (fk["text"].clone(), fk["url"].clone()),
            (json!("DC1"), json!("/dcim/sites/3/"))
        );
        assert_eq!(cell(&json!([{"name": "a"}, {"name": "b"}]))["text"], "a, b");
        let d = difference(&json!({"name": "a", "x": 1}), &json!({"name": "b", "x": 1, "y": null}));
        let changed: Vec<&str> = d
            .iter()
            .filter(|r| r["changed"] == true)
            .map(|r| r["key"].as_str().unwrap())
            .collect();
        assert_eq!(changed, ["name", "y"]);
    }
}
