//! `/api/`, each app's root (`/api/dcim/`: its endpoints, as NetBox lists them) and
//! `/api/status/`.

use super::{ApiError, AppState, Auth, Base};
use crate::catalog::Catalog;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

/// Endpoints that are not object types, by app (those a GET lists).
const FIXED: [(&str, &str); 10] = [
    ("core", "object-changes"),
    ("extras", "deliveries"),
    ("extras", "event-rules"),
    ("extras", "object-changes"),
    ("extras", "queue"),
    ("extras", "webhooks"),
    ("users", "groups"),
    ("users", "permissions"),
    ("users", "tokens"),
    ("users", "users"),
];

/// Every app and its endpoints' paths.
fn apps(catalog: &Catalog) -> BTreeMap<String, Vec<String>> {
    let mut apps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (app, endpoint) in FIXED {
        apps.entry(app.into()).or_default().push(endpoint.into());
    }
    for t in catalog.types() {
        if let Some((app, endpoint)) = t.api_path.split_once('/') {
            apps.entry(app.into()).or_default().push(endpoint.into());
        }
    }
    for endpoints in apps.values_mut() {
        endpoints.sort();
        endpoints.dedup();
    }
    apps
}

pub fn router(catalog: &Catalog) -> Router<AppState> {
    let mut router = Router::new()
        .route("/api/", get(root))
        .route("/api/status/", get(status));
    for (app, endpoints) in apps(catalog) {
        let path = format!("/api/{app}/");
        router = router.route(
            &path,
            get(move |Base(base): Base| async move {
                let listed: Map<String, Value> = endpoints
                    .iter()
                    .map(|e| (e.clone(), Value::String(format!("{base}/api/{app}/{e}/"))))
                    .collect();
                Json(Value::Object(listed))
            }),
        );
    }
    router
}

async fn root(State(st): State<AppState>, Base(base): Base) -> Json<Value> {
    let mut listed: Map<String, Value> = apps(&st.svc.catalog)
        .into_keys()
        .map(|app| {
            let url = format!("{base}/api/{app}/");
            (app, Value::String(url))
        })
        .collect();
    listed.insert("status".into(), Value::String(format!("{base}/api/status/")));
    Json(Value::Object(listed))
}

async fn status(State(st): State<AppState>, _auth: Auth) -> Result<Json<Value>, ApiError> {
    let summary = st.svc.queue_summary().await?;
    let queue: Map<String, Value> = summary
        .counts
        .iter()
        .map(|(s, n)| (s.as_str().to_string(), json!(n)))
        .collect();
    let running = st.worker_running.load(Ordering::SeqCst);
    let workers = summary.workers;
    let database = match st.svc.database_problem() {
        None => json!({"ok": true}),
        Some(problem) => json!({"ok": false, "problem": problem}),
    };
    Ok(Json(json!({
        "herald-version": env!("CARGO_PKG_VERSION"),
        // The NetBox release whose API Herald speaks (its webhooks are NetBox 3.7's), as a
        // version scripts can compare; the local part says it is Herald.
        "netbox-version": format!("{}.0+herald.{}", super::API_VERSION, env!("CARGO_PKG_VERSION")),
        "api-version": super::API_VERSION,
        "worker-running": running,
        "rq-workers-running": workers,
        "queue": queue,
        "database": database,
    })))
}
