//! The storage contract: the same stories run against every backend, so a backend that passes
//! them can stand in for any other. Each backend only adds a constructor (see the bottom).
//! Every method of the contract is called by at least one story.

use chrono::{DateTime, Duration, TimeZone, Utc};
use herald::auth::{Action, Permission, Session};
use herald::changes::{Change, ChangeAction, ChangeFilter};
use herald::events::{Event, EventKind};
use herald::objects::query::{Cmp, Col, Cond, ObjectQuery};
use herald::objects::{unique_key, Lock, Obj, Ref};
use herald::queue::{Attempt, Batched, ClaimLimits, ClaimPlan, DeliveryFilter, Outcome, Status};
use herald::store::{in_write_tx, Store, StoreError, Unique, WriteError};
use herald::webhooks::{EventRule, Firing, Webhook};
use serde_json::{json, Map, Value};
use std::sync::Arc;

use herald_testkit::postgres as pg;

mod access;
mod objects;
mod queue;
mod rules;

use access::*;
use objects::*;
use queue::*;
use rules::*;

/// A fixed point in time, whole milliseconds, so stored times compare exactly.
pub(crate) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap()
}

pub(crate) fn secs(n: i64) -> Duration {
    Duration::seconds(n)
}

pub(crate) fn webhook(name: &str, types: &[&str]) -> Webhook {
    let mut w = Webhook::blank();
    w.name = name.into();
    w.content_types = types.iter().map(|t| t.to_string()).collect();
    w.type_create = true;
    w.payload_url = "http://127.0.0.1:9/hook".into();
    w.conditions = Some(json!({"attr": "status.value", "value": "active"}));
    w.retry_schedule = Some(vec![1.0, 2.5]);
    w.tags = vec![2, 5];
    w.description = format!("{name}, described");
    w
}

/// A delivery by the webhook's own triggers.
pub(crate) fn own(webhook_id: i64) -> Firing {
    Firing {
        webhook_id,
        event_rule_id: None,
        batch: false,
    }
}

pub(crate) fn event(kind: EventKind, object_type: &str, id: i64) -> Event {
    Event {
        id: 0,
        kind,
        timestamp: "2026-11-30T12:00:00.000000+00:00".into(),
        object_type: object_type.into(),
        username: "contract".into(),
        request_id: "fdbca812-3142-4783-b364-2e2bd5c16c6a".into(),
        data: json!({"id": id, "name": format!("obj {id}"), "nested": {"ü": [1, 2.5, null]}}),
        snapshots: json!({"prechange": null, "postchange": {"name": format!("obj {id}")}}),
        request: None,
        body: None,
        batch: None,
    }
}

pub(crate) fn obj(id: i64, data: Value) -> Obj {
    Obj {
        id,
        data: data.as_object().cloned().unwrap_or_else(Map::new),
        created: t0(),
        last_updated: t0() + secs(id),
    }
}

pub(crate) fn attempt(delivery_id: i64, status: Option<u16>, error: Option<&str>, started: DateTime<Utc>) -> Attempt {
    Attempt {
        delivery_id,
        started,
        duration_ms: 1.5,
        request_method: "POST".into(),
        request_url: "http://127.0.0.1:9/hook".into(),
        request_headers: vec![("Content-Type".into(), "application/json".into())],
        request_body: Some("{\"a\": 1}".into()),
        response_status: status,
        response_headers: vec![("Server".into(), "test".into())],
        response_body: status.map(|_| "ok".to_string()),
        error: error.map(String::from),
    }
}

pub(crate) fn change(n: i64, action: ChangeAction, object_id: i64, request: &str, time: DateTime<Utc>) -> Change {
    Change {
        id: 0,
        time,
        user_id: Some(n % 2),
        user_name: format!("user{}", n % 2),
        request_id: request.into(),
        action,
        object_type: "dcim.site".into(),
        object_id,
        object_repr: format!("Site {object_id}"),
        prechange_data: if action == ChangeAction::Create {
            Value::Null
        } else {
            json!({"name": "before"})
        },
        postchange_data: if action == ChangeAction::Delete {
            Value::Null
        } else {
            json!({"name": "after"})
        },
    }
}

/// Users and tokens: names and keys unique, tokens go with their user.
/// A session for `user_id` expiring at `expires`.
pub(crate) fn session(key: &str, user_id: i64, expires: DateTime<Utc>) -> Session {
    Session {
        key_hash: key.into(),
        user_id,
        csrf: format!("csrf-{key}"),
        created: t0(),
        expires,
    }
}

/// The schema is the one this build makes, after migrations ran (twice).
async fn schema(store: &dyn Store) {
    let (applied, expected) = store.schema_version().await.unwrap();
    assert!(expected >= 1);
    assert_eq!(applied, expected, "migrated to this build's last migration");
}

/// One test per story and backend, each on a fresh store: one list, so no story can skip a
/// backend.
macro_rules! contract {
    ($($story:ident),* $(,)?) => {
        contract!(@backend on_sqlite, sqlite(), [$($story),*]);
        contract!(@backend on_postgres, postgres(), [$($story),*]);
    };
    (@backend $backend:ident, $open:expr, [$($story:ident),*]) => {
        mod $backend {
            use super::*;

            $(
                #[tokio::test]
                async fn $story() {
                    let Some((_keep, store)) = $open.await else { return };
                    store.migrate().await.expect("migrations run twice without harm");
                    super::$story(store.as_ref()).await;
                }
            )*
        }
    };
}

/// A SQLite file in a temporary folder (removed with it).
async fn sqlite() -> Option<(Box<dyn std::any::Any>, Arc<dyn Store>)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("contract.db").display());
    let store = herald::store::open(&url, &herald::config::Config::defaults().postgres)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    Some((Box::new(dir), store))
}

/// A scratch database on the test PostgreSQL server (dropped with it); `None` when
/// `HERALD_TEST_POSTGRES_URL` is unset.
async fn postgres() -> Option<(Box<dyn std::any::Any>, Arc<dyn Store>)> {
    let server = pg::server_url("the storage contract is not run on PostgreSQL")?;
    let db = pg::scratch_db(&server).await;
    let mut config = herald::config::Config::defaults().postgres;
    config.pool_size = 4;
    config.identity_file = String::new();
    let store = herald::store::open(&db.url, &config).await.unwrap();
    store.migrate().await.unwrap();
    // The store goes first: its connections must close before the database is dropped.
    Some((Box::new(db), store))
}

contract!(
    users_and_tokens,
    sessions,
    ids_continue_when_types_are_readied,
    groups_and_permissions,
    webhooks,
    event_rules,
    write_transactions,
    object_primitives,
    object_filters_and_ordering,
    network_index,
    change_log,
    queue,
    queue_statistics,
    guarantees,
    workers,
    schema,
);

/// A pool is reported where there is one: PostgreSQL's, none for SQLite's single writer; the
/// writer's group commits where there are some: SQLite's.
#[tokio::test]
async fn pools_are_reported_where_there_are_pools() {
    let (_keep, store) = sqlite().await.unwrap();
    assert_eq!(store.pool_status(), None);
    let (commits, writes) = store.write_groups().expect("SQLite commits writes in groups");
    in_write_tx(store.as_ref(), |_tx| Box::pin(async { Ok(()) }))
        .await
        .unwrap();
    let (more_commits, more_writes) = store.write_groups().unwrap();
    assert!(
        more_commits > commits && more_writes > writes,
        "the write was not counted"
    );
    let Some((_keep, store)) = postgres().await else { return };
    store.schema_version().await.unwrap();
    assert_eq!(store.write_groups(), None);
    let (size, available, waiting) = store.pool_status().expect("a PostgreSQL store has a pool");
    assert!((1..=4).contains(&size), "at most the configured 4: {size}");
    assert!(available <= size);
    assert_eq!(waiting, 0);
}
