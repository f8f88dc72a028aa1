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

/// A fixed point in time, whole milliseconds, so stored times compare exactly.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap()
}

fn secs(n: i64) -> Duration {
    Duration::seconds(n)
}

fn webhook(name: &str, types: &[&str]) -> Webhook {
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
fn own(webhook_id: i64) -> Firing {
    Firing {
        webhook_id,
        event_rule_id: None,
        batch: false,
    }
}

fn event(kind: EventKind, object_type: &str, id: i64) -> Event {
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

fn obj(id: i64, data: Value) -> Obj {
    Obj {
        id,
        data: data.as_object().cloned().unwrap_or_else(Map::new),
        created: t0(),
        last_updated: t0() + secs(id),
    }
}

fn attempt(delivery_id: i64, status: Option<u16>, error: Option<&str>, started: DateTime<Utc>) -> Attempt {
    Attempt {
        delivery_id,
        started,
        duration_ms: 1.5,
        request_method: "POST".into(),
        request_url: "http://127.0.0.1:9/hook".into(),
        request_headers: vec![("Content-Type".into(), "application/json".into())],
        request_body: "{\"a\": 1}".into(),
        response_status: status,
        response_headers: vec![("Server".into(), "test".into())],
        response_body: status.map(|_| "ok".to_string()),
        error: error.map(String::from),
    }
}

fn change(n: i64, action: ChangeAction, object_id: i64, request: &str, time: DateTime<Utc>) -> Change {
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
fn session(key: &str, user_id: i64, expires: DateTime<Utc>) -> Session {
    Session {
        key_hash: key.into(),
        user_id,
        csrf: format!("csrf-{key}"),
        created: t0(),
        expires,
    }
}

async fn sessions(store: &dyn Store) {
    let bob = store.create_user("bob", "hash-b", false, t0()).await.unwrap();
    let alice = store.create_user("alice", "hash-a", false, t0()).await.unwrap();
    for s in [
        session("b1", bob.id, t0() + secs(60)),
        session("b2", bob.id, t0() + secs(10)),
        session("a1", alice.id, t0() + secs(60)),
    ] {
        store.create_session(&s).await.unwrap();
    }
    assert!(matches!(
        store.create_session(&session("b1", bob.id, t0())).await,
        Err(StoreError::Unique(_))
    ));
    let (found, user) = store.session("b1").await.unwrap();
    assert_eq!((found, user), (session("b1", bob.id, t0() + secs(60)), bob.clone()));
    assert!(matches!(store.session("nope").await, Err(StoreError::NotFound)));

    store.touch_session("b1", t0() + secs(120)).await.unwrap();
    assert_eq!(store.session("b1").await.unwrap().0.expires, t0() + secs(120));
    assert!(matches!(
        store.touch_session("nope", t0()).await,
        Err(StoreError::NotFound)
    ));

    // Expired before t0 + 30 s: b2 only.
    assert_eq!(store.purge_sessions(t0() + secs(30), 100).await.unwrap(), 1);
    assert!(matches!(store.session("b2").await, Err(StoreError::NotFound)));

    // Every session of a user but one; then a user's deletion ends theirs.
    store
        .create_session(&session("b3", bob.id, t0() + secs(60)))
        .await
        .unwrap();
    assert_eq!(store.delete_user_sessions(bob.id, Some("b1")).await.unwrap(), 1);
    assert!(store.session("b1").await.is_ok());
    store.delete_session("b1").await.unwrap();
    store.delete_session("b1").await.unwrap();
    assert!(matches!(store.session("b1").await, Err(StoreError::NotFound)));
    store.delete_user(alice.id).await.unwrap();
    assert!(matches!(store.session("a1").await, Err(StoreError::NotFound)));
}

/// Ids given before a type is readied are never given again after, and readying twice changes
/// nothing.
async fn ids_continue_when_types_are_readied(store: &dyn Store) {
    let next = |ty: &'static str| in_write_tx(store, move |tx| Box::pin(async move { Ok(tx.next_id(ty).await?) }));
    assert_eq!(next("dcim.site").await.unwrap(), 1);
    assert_eq!(next("dcim.site").await.unwrap(), 2);
    store.prepare_object_types(&["dcim.site", "dcim.region"]).await.unwrap();
    store.prepare_object_types(&["dcim.site", "dcim.region"]).await.unwrap();
    assert_eq!(next("dcim.site").await.unwrap(), 3);
    assert_eq!(next("dcim.region").await.unwrap(), 1);
    // A rollback may leave a gap, never a repeat.
    let _: Result<(), WriteError> = in_write_tx(store, |tx| {
        Box::pin(async move {
            tx.next_id("dcim.site").await?;
            Err(WriteError::Conflict("rolled back".into()))
        })
    })
    .await;
    assert!(next("dcim.site").await.unwrap() >= 4);
}

async fn users_and_tokens(store: &dyn Store) {
    assert_eq!(store.user_count().await.unwrap(), 0);
    let bob = store.create_user("bob", "hash-b", false, t0()).await.unwrap();
    let alice = store.create_user("alice", "hash-a", true, t0()).await.unwrap();
    assert_eq!(
        (bob.username.as_str(), bob.is_superuser, bob.created),
        ("bob", false, t0())
    );
    assert!(matches!(
        store.create_user("bob", "x", false, t0()).await,
        Err(StoreError::Unique(u)) if u == Unique::USERNAME
    ));
    assert_eq!(store.user_count().await.unwrap(), 2);
    assert_eq!(store.user(alice.id).await.unwrap(), alice);
    assert_eq!(store.user_by_name("bob").await.unwrap().id, bob.id);
    assert!(matches!(store.user_by_name("carol").await, Err(StoreError::NotFound)));
    let names: Vec<String> = store.users().await.unwrap().into_iter().map(|u| u.username).collect();
    assert_eq!(names, ["alice", "bob"]);

    let mut renamed = bob.clone();
    renamed.username = "robert".into();
    renamed.is_superuser = true;
    store.update_user(&renamed).await.unwrap();
    assert_eq!(store.user(bob.id).await.unwrap(), renamed);
    renamed.username = "alice".into();
    assert!(matches!(store.update_user(&renamed).await, Err(StoreError::Unique(u)) if u == Unique::USERNAME));
    let mut ghost = alice.clone();
    ghost.id = 999;
    assert!(matches!(store.update_user(&ghost).await, Err(StoreError::NotFound)));

    let t1 = store.create_token(bob.id, "key-1", true, "first", t0()).await.unwrap();
    let t2 = store.create_token(bob.id, "key-2", false, "", t0()).await.unwrap();
    let t3 = store.create_token(alice.id, "key-3", true, "", t0()).await.unwrap();
    assert!(matches!(
        store.create_token(alice.id, "key-1", true, "", t0()).await,
        Err(StoreError::Unique(u)) if u == Unique::TOKEN_KEY
    ));
    assert_eq!((t1.write_enabled, t1.description.as_str()), (true, "first"));
    let (found, owner) = store.token_by_hash("key-2").await.unwrap();
    assert_eq!((found.id, found.write_enabled, owner.id), (t2.id, false, bob.id));
    assert!(matches!(store.token_by_hash("nope").await, Err(StoreError::NotFound)));
    assert_eq!(store.token(t3.id).await.unwrap().1.username, "alice");
    let all: Vec<i64> = store.tokens(None).await.unwrap().iter().map(|(t, _)| t.id).collect();
    assert_eq!(all, [t1.id, t2.id, t3.id]);
    let bobs: Vec<i64> = store
        .tokens(Some(bob.id))
        .await
        .unwrap()
        .iter()
        .map(|(t, _)| t.id)
        .collect();
    assert_eq!(bobs, [t1.id, t2.id]);
    store.delete_token(t1.id).await.unwrap();
    assert!(matches!(store.delete_token(t1.id).await, Err(StoreError::NotFound)));
    store.delete_user(bob.id).await.unwrap();
    assert!(matches!(store.token(t2.id).await, Err(StoreError::NotFound)));
    assert!(matches!(store.delete_user(bob.id).await, Err(StoreError::NotFound)));
    assert_eq!(store.user_count().await.unwrap(), 1);
}

fn permission(name: &str, types: &[&str], actions: &[Action], users: Vec<i64>, groups: Vec<i64>) -> Permission {
    Permission {
        id: 0,
        name: name.into(),
        description: format!("{name} for the contract"),
        enabled: true,
        object_types: types.iter().map(|t| t.to_string()).collect(),
        actions: actions.to_vec(),
        users,
        groups,
        created: t0(),
        last_updated: t0(),
    }
}

/// Groups and permissions: names unique, members kept with them, a user's permissions found
/// directly and through groups.
async fn groups_and_permissions(store: &dyn Store) {
    let alice = store.create_user("alice", "h", false, t0()).await.unwrap();
    let bob = store.create_user("bob", "h", false, t0()).await.unwrap();
    let ops = store.create_group("ops", "Operators").await.unwrap();
    let dev = store.create_group("dev", "").await.unwrap();
    assert!(matches!(store.create_group("ops", "").await, Err(StoreError::Unique(u)) if u == Unique::GROUP_NAME));
    assert_eq!(
        store
            .groups()
            .await
            .unwrap()
            .iter()
            .map(|g| g.name.as_str())
            .collect::<Vec<_>>(),
        ["dev", "ops"]
    );
    assert_eq!(store.group(ops.id).await.unwrap(), ops);
    let mut renamed = dev.clone();
    renamed.name = "developers".into();
    store.update_group(&renamed).await.unwrap();
    assert_eq!(store.group(dev.id).await.unwrap().name, "developers");
    renamed.name = "ops".into();
    assert!(matches!(store.update_group(&renamed).await, Err(StoreError::Unique(_))));
    assert!(matches!(store.group(999).await, Err(StoreError::NotFound)));

    store.set_user_groups(bob.id, &[ops.id, dev.id]).await.unwrap();
    store.set_user_groups(bob.id, &[ops.id]).await.unwrap();
    assert!(matches!(
        store.set_user_groups(alice.id, &[999]).await,
        Err(StoreError::ForeignKey)
    ));
    assert_eq!(
        store.user_groups(&[alice.id, bob.id]).await.unwrap(),
        vec![(bob.id, ops.id)]
    );

    let sites = permission(
        "sites",
        &["dcim.site"],
        &[Action::View, Action::Add],
        vec![alice.id],
        vec![],
    );
    let hooks = permission("hooks", &["extras.webhook"], &[Action::Change], vec![], vec![ops.id]);
    let sites = store.create_permission(&sites, t0()).await.unwrap();
    let hooks = store.create_permission(&hooks, t0()).await.unwrap();
    assert!(sites.id > 0 && hooks.id > sites.id);
    assert!(
        matches!(store.create_permission(&hooks, t0()).await, Err(StoreError::Unique(u)) if u == Unique::PERMISSION_NAME)
    );
    let ghost = permission("ghost", &["dcim.site"], &[Action::View], vec![999], vec![]);
    assert!(matches!(
        store.create_permission(&ghost, t0()).await,
        Err(StoreError::ForeignKey)
    ));
    assert_eq!(
        store.permissions().await.unwrap(),
        vec![hooks.clone(), sites.clone()],
        "by name, every field"
    );
    assert_eq!(store.permission(sites.id).await.unwrap(), sites);
    assert_eq!(store.permissions_of_user(alice.id).await.unwrap(), vec![sites.clone()]);
    assert_eq!(
        store.permissions_of_user(bob.id).await.unwrap(),
        vec![hooks.clone()],
        "through the group"
    );

    let mut shared = sites.clone();
    shared.groups = vec![ops.id];
    shared.enabled = false;
    let later = t0() + secs(3);
    let saved = store.update_permission(&shared, later).await.unwrap();
    assert_eq!(saved.last_updated, later);
    assert_eq!(store.permissions_of_user(bob.id).await.unwrap().len(), 2);
    store.delete_group(ops.id).await.unwrap();
    assert!(store.permissions_of_user(bob.id).await.unwrap().is_empty());
    assert!(store.permission(sites.id).await.unwrap().groups.is_empty());
    store.delete_user(alice.id).await.unwrap();
    assert!(store.permission(sites.id).await.unwrap().users.is_empty());
    store.delete_permission(sites.id).await.unwrap();
    assert!(matches!(
        store.delete_permission(sites.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.permissions().await.unwrap().len(), 1);
}

/// Webhooks: all or none, names unique, versions follow changes.
async fn webhooks(store: &dyn Store) {
    let made = store
        .create_webhooks(
            vec![webhook("zulu", &["dcim.site"]), webhook("alpha", &["dcim.device"])],
            t0(),
        )
        .await
        .unwrap();
    assert!(made[0].id > 0 && made[1].id > made[0].id);
    assert_eq!((made[0].created, made[0].last_updated), (t0(), t0()));
    let dup = store
        .create_webhooks(
            vec![webhook("new", &["dcim.site"]), webhook("zulu", &["dcim.site"])],
            t0(),
        )
        .await;
    assert!(matches!(dup, Err(StoreError::Unique(u)) if u == Unique::WEBHOOK_NAME));
    let all = store.webhooks().await.unwrap();
    assert_eq!(
        all.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
        ["alpha", "zulu"],
        "none of a failed create stays"
    );
    assert_eq!(all[1], made[0], "every field comes back as written");
    let by_id = store.webhooks_by_id(&[made[1].id, 999]).await.unwrap();
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id[0].content_types, ["dcim.device"]);

    let mut changed = made[0].clone();
    changed.enabled = false;
    changed.conditions = None;
    changed.retry_schedule = None;
    let later = t0() + secs(5);
    let saved = store.update_webhooks(vec![changed.clone()], later).await.unwrap();
    assert_eq!(saved[0].last_updated, later);
    let back = store.webhooks_by_id(&[changed.id]).await.unwrap().remove(0);
    assert_eq!(
        (back.enabled, back.conditions, back.retry_schedule),
        (false, None, None)
    );
    assert_eq!(
        store.webhook_versions().await.unwrap(),
        vec![(made[0].id, later), (made[1].id, t0())]
    );
    let mut gone = changed.clone();
    gone.id = 999;
    let mut renamed = made[1].clone();
    renamed.name = "renamed".into();
    assert!(matches!(
        store.update_webhooks(vec![renamed, gone], later).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store.webhooks_by_id(&[made[1].id]).await.unwrap()[0].name,
        "alpha",
        "all or none"
    );
    assert!(matches!(
        store.delete_webhooks(&[made[1].id, 999], t0()).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.webhooks().await.unwrap().len(), 2, "all or none");
    store.delete_webhooks(&[made[1].id], t0()).await.unwrap();
    assert_eq!(store.webhooks().await.unwrap().len(), 1);
}

/// The write transaction: everything or nothing, the outbox's primitives, workers woken.
/// Event rules: kept whole, names unique, their webhook must exist and takes them along when
/// deleted; the deliveries a rule queues name it, and stay when it goes.
async fn event_rules(store: &dyn Store) {
    let hooks = store.create_webhooks(vec![webhook("target", &[])], t0()).await.unwrap();
    let target = hooks[0].id;
    let rule = |name: &str, webhook_id: i64| {
        let mut r = EventRule::blank();
        r.name = name.into();
        r.description = "sites".into();
        r.object_types = vec!["dcim.site".into(), "dcim.rack".into()];
        r.event_types = vec![EventKind::Created, EventKind::Deleted];
        r.conditions = Some(json!({"attr": "status.value", "value": "active"}));
        r.webhook_id = webhook_id;
        r.tags = vec![1, 3];
        r
    };
    let created = store
        .create_event_rules(vec![rule("b", target), rule("a", target)], t0())
        .await
        .unwrap();
    assert!(created.iter().all(|r| r.id > 0 && r.created == t0()));
    let all = store.event_rules().await.unwrap();
    assert_eq!(all.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(all[1], created[0], "stored whole");
    let taken = store.create_event_rules(vec![rule("a", target)], t0()).await;
    assert!(matches!(taken, Err(StoreError::Unique(u)) if u == Unique::EVENT_RULE_NAME));
    let gone = store.create_event_rules(vec![rule("c", target + 99)], t0()).await;
    assert!(matches!(gone, Err(StoreError::ForeignKey)), "{gone:?}");
    let mut off = created[0].clone();
    off.enabled = false;
    off.event_types = vec![EventKind::Updated];
    let saved = store
        .update_event_rules(vec![off.clone()], t0() + secs(5))
        .await
        .unwrap();
    assert_eq!(saved[0].last_updated, t0() + secs(5));
    assert_eq!(store.event_rules_by_id(&[off.id]).await.unwrap()[0], saved[0]);

    // A relayed event keeps its body as posted, its object once; read back, it is whole.
    let mut relayed = event(EventKind::Updated, "dcim.rack", 4);
    relayed.body = Some(format!(
        r#"{{"event": "updated", "data": {}, "snapshots": {}, "request": {{"method": "PATCH"}}}}"#,
        relayed.data, relayed.snapshots
    ));
    relayed.request = Some(json!({"id": "r1", "method": "PATCH", "path": "/api/dcim/racks/4/", "user": "u"}));
    let kept = relayed.clone();
    let ids = in_write_tx(store, move |tx| {
        let relayed = relayed.clone();
        Box::pin(async move { Ok(tx.insert_events(&[(&relayed, &[])], t0()).await?) })
    })
    .await
    .unwrap();
    let back = store.event(ids[0]).await.unwrap();
    assert_eq!(
        (&back.data, &back.snapshots, &back.body, &back.request),
        (&kept.data, &kept.snapshots, &kept.body, &kept.request)
    );

    let (a, b) = (created[1].id, created[0].id);
    let (versions, enabled) = in_write_tx(store, move |tx| {
        Box::pin(async move {
            let versions = tx.trigger_versions().await?.1;
            let enabled = tx.enabled_event_rules().await?;
            let e = event(EventKind::Created, "dcim.site", 1);
            let by_rule = Firing {
                webhook_id: target,
                event_rule_id: Some(a),
                batch: false,
            };
            tx.insert_events(&[(&e, &[own(target), by_rule])], t0()).await?;
            Ok((versions, enabled))
        })
    })
    .await
    .unwrap();
    assert_eq!(versions.len(), 2, "disabled rules count for versions");
    assert_eq!(enabled.iter().map(|r| r.id).collect::<Vec<_>>(), [a]);
    let filter = DeliveryFilter {
        event_rule_id: vec![a],
        ..DeliveryFilter::default()
    };
    let page = store.deliveries(&filter, 10, 0, None).await.unwrap();
    assert_eq!(page.count, 1);
    assert_eq!(page.items[0].event_rule, Some((a, Some("a".to_string()))));
    store.delete_event_rules(&[a]).await.unwrap();
    let page = store.deliveries(&filter, 10, 0, None).await.unwrap();
    assert_eq!(
        page.items[0].event_rule,
        Some((a, None)),
        "the delivery stays, naming a rule gone"
    );
    let gone_rule = store.update_event_rules(vec![created[1].clone()], t0()).await;
    assert!(matches!(gone_rule, Err(StoreError::NotFound)), "{gone_rule:?}");
    // A new rule never takes a deleted one's id: deliveries still name the old one by it.
    let newer = store.create_event_rules(vec![rule("a2", target)], t0()).await.unwrap();
    assert!(newer[0].id > a, "id {} reused after {a}", newer[0].id);
    let mut clash = saved[0].clone();
    clash.name = "a2".into();
    let taken = store.update_event_rules(vec![clash], t0()).await;
    assert!(matches!(taken, Err(StoreError::Unique(u)) if u == Unique::EVENT_RULE_NAME));
    assert!(matches!(
        store.delete_event_rules(&[a]).await,
        Err(StoreError::NotFound)
    ));
    store.delete_webhooks(&[target], t0()).await.unwrap();
    assert!(
        store.event_rules_by_id(&[b]).await.unwrap().is_empty(),
        "a webhook takes its rules"
    );
}

async fn write_transactions(store: &dyn Store) {
    let hooks = store
        .create_webhooks(
            vec![webhook("on", &["dcim.site"]), webhook("off", &["dcim.site"])],
            t0(),
        )
        .await
        .unwrap();
    let mut off = hooks[1].clone();
    off.enabled = false;
    store.update_webhooks(vec![off], t0() + secs(1)).await.unwrap();
    let on = hooks[0].id;

    let signal = store.queue_signal();
    let woken = signal.notified();
    let (event_id, enabled) = in_write_tx(store, move |tx| {
        let e = event(EventKind::Created, "dcim.site", 1);
        Box::pin(async move {
            let versions = tx.trigger_versions().await?.0;
            let enabled = tx.enabled_webhooks().await?;
            assert_eq!(versions, vec![(enabled[0].id, enabled[0].last_updated)]);
            // One event without deliveries, one with: ids in order.
            let quiet = event(EventKind::Updated, "dcim.site", 9);
            let ids = tx.insert_events(&[(&quiet, &[]), (&e, &[own(on)])], t0()).await?;
            assert!(ids[0] < ids[1], "{ids:?}");
            Ok((ids[1], enabled))
        })
    })
    .await
    .unwrap();
    assert_eq!(enabled.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(), ["on"]);
    tokio::time::timeout(std::time::Duration::from_secs(5), woken)
        .await
        .expect("a write that queued deliveries wakes workers");
    let stored = store.event(event_id).await.unwrap();
    assert_eq!(stored.data, event(EventKind::Created, "dcim.site", 1).data);
    assert_eq!(stored.snapshots["postchange"]["name"], "obj 1");
    let page = store.deliveries(&DeliveryFilter::default(), 10, 0, None).await.unwrap();
    assert_eq!(page.count, 1);
    assert_eq!(
        (page.items[0].status, page.items[0].webhook_name.as_str()),
        (Status::Queued, "on")
    );

    // `write` itself: a job that does nothing commits nothing, and wakes nobody needlessly.
    store.write(Box::new(|_tx| Box::pin(async { Ok(()) }))).await.unwrap();

    // A job that fails leaves nothing behind: not its event, not its objects.
    let failed: Result<(), WriteError> = in_write_tx(store, move |tx| {
        Box::pin(async move {
            let e = event(EventKind::Updated, "dcim.site", 2);
            tx.insert_events(&[(&e, &[own(on)])], t0()).await?;
            tx.save("dcim.site", &obj(50, json!({"name": "x"})), &[], &[], true)
                .await?;
            Err(WriteError::Conflict("changed my mind".into()))
        })
    })
    .await;
    assert!(matches!(failed, Err(WriteError::Conflict(_))));
    assert_eq!(
        store
            .deliveries(&DeliveryFilter::default(), 10, 0, None)
            .await
            .unwrap()
            .count,
        1
    );
    assert!(store.get_objects("dcim.site", &[50]).await.unwrap().is_empty());
}

/// Object primitives inside a write transaction: ids, keys, references, changes.
async fn object_primitives(store: &dyn Store) {
    in_write_tx(store, |tx| {
        Box::pin(async move {
            assert_eq!(tx.next_id("dcim.region").await?, 1);
            assert_eq!(tx.next_id("dcim.region").await?, 2);
            assert_eq!(tx.next_id("dcim.site").await?, 1);
            let region = obj(1, json!({"name": "EU", "slug": "eu", "parent": null}));
            tx.save(
                "dcim.region",
                &region,
                &[("slug".into(), unique_key(&[&json!("eu")]))],
                &[],
                true,
            )
            .await?;
            let site = obj(1, json!({"name": "AMS1", "region": 1, "status": "active", "tags": [7]}));
            let refs = [
                Ref {
                    field: "region".into(),
                    target_type: "dcim.region".into(),
                    target_id: 1,
                },
                Ref {
                    field: "tags".into(),
                    target_type: "extras.tag".into(),
                    target_id: 7,
                },
            ];
            let keys = [("name".to_string(), unique_key(&[&json!("AMS1")]))];
            tx.save("dcim.site", &site, &keys, &refs, true).await?;
            assert_eq!(tx.get("dcim.site", &[1, 2]).await?, vec![site.clone()]);
            assert_eq!(tx.scan("dcim.region").await?, vec![region.clone()]);
            assert_eq!(
                tx.find("dcim.site", &[("name".into(), json!("AMS1"))], 5).await?,
                vec![1]
            );
            assert_eq!(
                tx.find("dcim.region", &[("parent".into(), Value::Null)], 5).await?,
                vec![1]
            );
            assert!(tx
                .find("dcim.site", &[("name".into(), json!("AMS2"))], 5)
                .await?
                .is_empty());
            assert_eq!(
                tx.key_owner("dcim.site", "name", &unique_key(&[&json!("AMS1")]))
                    .await?,
                Some(1)
            );
            assert_eq!(
                tx.key_owner("dcim.site", "name", &unique_key(&[&json!("x")])).await?,
                None
            );
            let referrers = tx.referrers("dcim.region", 1).await?;
            assert_eq!(
                referrers
                    .iter()
                    .map(|r| (r.object_type.as_str(), r.id, r.field.as_str()))
                    .collect::<Vec<_>>(),
                [("dcim.site", 1, "region")]
            );
            // Saving again replaces keys and references.
            let renamed = obj(
                1,
                json!({"name": "AMS-1", "region": null, "status": "active", "tags": []}),
            );
            let keys = [("name".to_string(), unique_key(&[&json!("AMS-1")]))];
            tx.save("dcim.site", &renamed, &keys, &[], false).await?;
            assert_eq!(
                tx.key_owner("dcim.site", "name", &unique_key(&[&json!("AMS1")]))
                    .await?,
                None
            );
            assert!(tx.referrers("dcim.region", 1).await?.is_empty());
            assert!(tx.referrers("extras.tag", 7).await?.is_empty());
            // A key another object holds: the save says which rule, and the caller fails.
            let twin = obj(2, json!({"name": "AMS-1"}));
            let taken = tx
                .save(
                    "dcim.site",
                    &twin,
                    &[("name".to_string(), unique_key(&[&json!("AMS-1")]))],
                    &[],
                    true,
                )
                .await?;
            assert_eq!(taken, Some("name".to_string()));
            tx.lock("dcim.site", &[1], Lock::Share).await?;
            tx.lock("dcim.region", &[1], Lock::Update).await?;
            tx.remove("dcim.region", 1).await?;
            assert!(tx.get("dcim.region", &[1]).await?.is_empty());
            assert_eq!(tx.next_id("dcim.region").await?, 3, "ids are never reused");
            tx.add_changes(&[change(1, ChangeAction::Create, 1, "r1", t0())])
                .await?;
            Ok(())
        })
    })
    .await
    .unwrap();
    assert_eq!(
        store.get_objects("dcim.site", &[1]).await.unwrap()[0].data["name"],
        "AMS-1"
    );
    assert_eq!(
        store
            .object_changes(&ChangeFilter::default(), 10, 0)
            .await
            .unwrap()
            .count,
        1
    );
}

fn cond(col: Col, cmp: Cmp, values: Vec<Value>) -> Cond {
    Cond {
        col,
        cmp,
        negate: false,
        values,
    }
}

fn query(conds: Vec<Cond>) -> ObjectQuery {
    ObjectQuery {
        conds,
        search: None,
        order: vec![(Col::Id, false)],
    }
}

/// NetBox's filter meaning and ordering, the same on every backend.
async fn object_filters_and_ordering(store: &dyn Store) {
    let rows = [
        (
            1,
            json!({"name": "alpha", "status": "active", "vid": 10, "description": "Core", "enabled": true, "address": "10.0.0.10/24", "site": 1, "tags": [1]}),
        ),
        (
            2,
            json!({"name": "Beta", "status": "planned", "vid": 20, "description": "", "enabled": false, "address": "10.0.0.2/24", "site": 2, "tags": [1, 2]}),
        ),
        (
            3,
            json!({"name": "gamma_1", "status": null, "vid": 30, "description": null, "enabled": true, "address": "2001:db8::1/64", "site": null, "tags": []}),
        ),
        (
            4,
            json!({"name": "delta%", "status": "active", "vid": 40, "description": "edge core", "enabled": true, "address": "9.255.0.1/8", "site": 1, "tags": [2]}),
        ),
    ];
    in_write_tx(store, move |tx| {
        let rows = rows.clone();
        Box::pin(async move {
            for (id, data) in rows {
                let o = obj(id, data);
                let mut refs = Vec::new();
                if let Some(site) = o.data["site"].as_i64() {
                    refs.push(Ref {
                        field: "site".into(),
                        target_type: "dcim.site".into(),
                        target_id: site,
                    });
                }
                for t in o.tag_ids() {
                    refs.push(Ref {
                        field: "tags".into(),
                        target_type: "extras.tag".into(),
                        target_id: t,
                    });
                }
                let keys = [("name".to_string(), unique_key(&[&o.data["name"]]))];
                tx.save("ipam.vlan", &o, &keys, &refs, true).await?;
            }
            Ok(())
        })
    })
    .await
    .unwrap();
    let ids = |q: ObjectQuery| async move {
        let page = store.list_objects("ipam.vlan", &q, 100, 0).await.unwrap();
        let ids: Vec<i64> = page.items.iter().map(|o| o.id).collect();
        assert_eq!(page.count as usize, ids.len());
        ids
    };
    let f = |name: &str| Col::Field(name.into());
    assert_eq!(
        ids(query(vec![cond(f("status"), Cmp::In, vec![json!("active")])])).await,
        [1, 4]
    );
    assert_eq!(
        ids(query(vec![cond(f("status"), Cmp::In, vec![])])).await,
        Vec::<i64>::new()
    );
    assert_eq!(
        ids(query(vec![cond(f("status"), Cmp::NotIn, vec![json!("active")])])).await,
        [2, 3],
        "__n matches null"
    );
    assert_eq!(
        ids(query(vec![cond(f("enabled"), Cmp::In, vec![json!(false)])])).await,
        [2]
    );
    assert_eq!(
        ids(query(vec![cond(f("name"), Cmp::IContains, vec![json!("A")])])).await,
        [1, 2, 3, 4]
    );
    assert_eq!(
        ids(query(vec![cond(f("name"), Cmp::IContains, vec![json!("%")])])).await,
        [4],
        "wildcards are literal"
    );
    assert_eq!(
        ids(query(vec![cond(f("name"), Cmp::IContains, vec![json!("_")])])).await,
        [3]
    );
    assert_eq!(
        ids(query(vec![cond(f("name"), Cmp::IExact, vec![json!("beta")])])).await,
        [2]
    );
    assert_eq!(
        ids(query(vec![cond(f("name"), Cmp::IStartsWith, vec![json!("GAM")])])).await,
        [3]
    );
    assert_eq!(
        ids(query(vec![cond(f("description"), Cmp::IEndsWith, vec![json!("core")])])).await,
        [1, 4]
    );
    let mut not_core = cond(f("description"), Cmp::IContains, vec![json!("core")]);
    not_core.negate = true;
    assert_eq!(
        ids(query(vec![not_core])).await,
        [2, 3],
        "negated text lookups see null as ''"
    );
    assert_eq!(
        ids(query(vec![cond(f("vid"), Cmp::Gte, vec![json!(20), json!(25)])])).await,
        [3, 4],
        "bounds all hold"
    );
    assert_eq!(ids(query(vec![cond(f("vid"), Cmp::Lt, vec![json!(20)])])).await, [1]);
    assert_eq!(
        ids(query(vec![cond(f("description"), Cmp::IsNull, vec![])])).await,
        [2, 3],
        "'' counts as empty"
    );
    assert_eq!(
        ids(query(vec![cond(f("description"), Cmp::NotNull, vec![])])).await,
        [1, 4]
    );
    assert_eq!(
        ids(query(vec![cond(Col::Id, Cmp::In, vec![json!(2), json!(4)])])).await,
        [2, 4]
    );
    assert_eq!(
        ids(query(vec![
            cond(Col::Tag, Cmp::In, vec![json!(1)]),
            cond(Col::Tag, Cmp::In, vec![json!(2)])
        ]))
        .await,
        [2],
        "tag= means all of them"
    );
    assert_eq!(
        ids(query(vec![cond(
            Col::Ref("site".into(), "dcim.site".into()),
            Cmp::In,
            vec![json!(1)]
        )]))
        .await,
        [1, 4]
    );
    assert_eq!(
        ids(query(vec![cond(
            Col::Key("name".into()),
            Cmp::In,
            vec![json!("Beta"), json!("alpha")]
        )]))
        .await,
        [1, 2]
    );
    let t = (t0() + secs(2)).timestamp_micros();
    assert_eq!(
        ids(query(vec![cond(Col::LastUpdated, Cmp::Gte, vec![json!(t)])])).await,
        [2, 3, 4]
    );
    let mut search = query(vec![]);
    search.search = Some(("CORE".into(), vec!["id".into(), "name".into(), "description".into()]));
    assert_eq!(ids(search.clone()).await, [1, 4]);
    search.search = Some(("3".into(), vec!["id".into(), "description".into()]));
    assert_eq!(ids(search).await, [3]);

    let ordered = |order: Vec<(Col, bool)>| async move {
        let q = ObjectQuery {
            conds: vec![],
            search: None,
            order,
        };
        store
            .list_objects("ipam.vlan", &q, 100, 0)
            .await
            .unwrap()
            .items
            .iter()
            .map(|o| o.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ordered(vec![(f("vid"), true), (Col::Id, false)]).await, [4, 3, 2, 1]);
    assert_eq!(
        ordered(vec![(Col::IpKey("address".into()), false), (Col::Id, false)]).await,
        [4, 2, 1, 3],
        "IPv4 by address, then IPv6"
    );
    let page = store.list_objects("ipam.vlan", &query(vec![]), 2, 1).await.unwrap();
    assert_eq!(
        (page.count, page.items.iter().map(|o| o.id).collect::<Vec<_>>()),
        (4, vec![2, 3])
    );
    assert_eq!(
        store
            .list_objects("ipam.prefix", &query(vec![]), 10, 0)
            .await
            .unwrap()
            .count,
        0
    );
}

/// The change log: filters, newest first, pages, retention.
async fn change_log(store: &dyn Store) {
    let changes = vec![
        change(1, ChangeAction::Create, 1, "r1", t0()),
        change(2, ChangeAction::Update, 1, "r2", t0() + secs(10)),
        change(3, ChangeAction::Create, 2, "r2", t0() + secs(20)),
        change(4, ChangeAction::Delete, 1, "r3", t0() + secs(30)),
    ];
    in_write_tx(store, move |tx| {
        let changes = changes.clone();
        Box::pin(async move { Ok(tx.add_changes(&changes).await?) })
    })
    .await
    .unwrap();
    let list = |f: ChangeFilter| async move {
        let page = store.object_changes(&f, 10, 0).await.unwrap();
        (
            page.count,
            page.items
                .iter()
                .map(|c| c.object_id * 10 + c.id % 10)
                .collect::<Vec<_>>(),
            page.items,
        )
    };
    let (count, _, all) = list(ChangeFilter::default()).await;
    assert_eq!(count, 4);
    assert_eq!(
        all.iter().map(|c| c.action).collect::<Vec<_>>(),
        [
            ChangeAction::Delete,
            ChangeAction::Create,
            ChangeAction::Update,
            ChangeAction::Create
        ],
        "newest first"
    );
    assert_eq!(all[3].prechange_data, Value::Null);
    assert_eq!(all[2].prechange_data, json!({"name": "before"}));
    assert_eq!(all[0].time, t0() + secs(30));
    let d = ChangeFilter::default;
    let counts = [
        (
            ChangeFilter {
                request_id: vec!["r2".into()],
                ..d()
            },
            2,
        ),
        (
            ChangeFilter {
                action: vec![ChangeAction::Create],
                ..d()
            },
            2,
        ),
        (
            ChangeFilter {
                object_id: vec![2],
                ..d()
            },
            1,
        ),
        (
            ChangeFilter {
                user_id: vec![1],
                ..d()
            },
            2,
        ),
        (
            ChangeFilter {
                user_name: vec!["user0".into()],
                ..d()
            },
            2,
        ),
        (
            ChangeFilter {
                object_type: vec!["dcim.device".into()],
                ..d()
            },
            0,
        ),
    ];
    for (filter, want) in counts {
        let what = format!("{filter:?}");
        assert_eq!(list(filter).await.0, want, "{what}");
    }
    assert_eq!(
        list(ChangeFilter {
            id: vec![all[1].id],
            ..Default::default()
        })
        .await
        .2[0]
            .object_id,
        2
    );
    let second = store.object_changes(&ChangeFilter::default(), 1, 1).await.unwrap();
    assert_eq!((second.count, second.items[0].id), (4, all[1].id));
    assert_eq!(
        store.purge_changes(t0() + secs(15), 1).await.unwrap(),
        1,
        "oldest first, up to the limit"
    );
    assert_eq!(store.purge_changes(t0() + secs(15), 10).await.unwrap(), 1);
    assert_eq!(
        store
            .object_changes(&ChangeFilter::default(), 10, 0)
            .await
            .unwrap()
            .count,
        2
    );
}

/// Queues `n` events of `webhooks` each, one delivery per webhook, created at `at`.
async fn queue_events(store: &dyn Store, webhooks: Vec<i64>, n: i64, at: DateTime<Utc>) -> Vec<i64> {
    let webhooks: Vec<Firing> = webhooks.into_iter().map(own).collect();
    in_write_tx(store, move |tx| {
        let webhooks = webhooks.clone();
        Box::pin(async move {
            let events: Vec<Event> = (0..n).map(|i| event(EventKind::Created, "dcim.site", i)).collect();
            let batch: Vec<(&Event, &[Firing])> = events.iter().map(|e| (e, webhooks.as_slice())).collect();
            Ok(tx.insert_events(&batch, at).await?)
        })
    })
    .await
    .unwrap()
}

/// What the dashboard counts: deliveries finished per minute, webhooks failing most.
async fn queue_statistics(store: &dyn Store) {
    let hooks = store
        .create_webhooks(
            vec![webhook("ok", &["dcim.site"]), webhook("bad", &["dcim.site"])],
            t0(),
        )
        .await
        .unwrap();
    let (ok, bad) = (hooks[0].id, hooks[1].id);
    queue_events(store, vec![ok, bad], 3, t0()).await;
    let plan = ClaimPlan::new(
        &ClaimLimits::total(10, vec![ok, bad]),
        t0(),
        std::time::Duration::from_secs(10),
        |_| Some(std::time::Duration::from_secs(5)),
    );
    let claimed = store.claim(&plan).await.unwrap().rows;
    assert_eq!(claimed.len(), 6);
    // The good webhook's succeed in minute 0 and minute 1; the bad one's fail in minute 1.
    let outcome = |r: &herald::queue::ClaimedRow, at: DateTime<Utc>| {
        if r.webhook_id == ok {
            Outcome::succeeded(r.delivery_id, attempt(r.delivery_id, Some(200), None, at), at)
        } else {
            Outcome::failed(
                r.delivery_id,
                attempt(r.delivery_id, Some(500), Some("status 500"), at),
                None,
                at,
            )
        }
    };
    let (early, late) = (t0() + secs(10), t0() + secs(70));
    let first_ok = claimed.iter().find(|r| r.webhook_id == ok).unwrap().delivery_id;
    let (first, rest): (Vec<_>, Vec<_>) = claimed.iter().partition(|r| r.delivery_id == first_ok);
    let first: Vec<Outcome> = first.into_iter().map(|r| outcome(r, early)).collect();
    store.complete(first.into(), early).await.unwrap();
    let rest: Vec<Outcome> = rest.into_iter().map(|r| outcome(r, late)).collect();
    store.complete(rest.into(), late).await.unwrap();

    let minute0 = t0().timestamp() / 60;
    let mut found = store.finished_per_minute(t0()).await.unwrap();
    found.sort_by_key(|(m, s, _)| (*m, s.as_str()));
    assert_eq!(
        found,
        vec![
            (minute0, Status::Succeeded, 1),
            (minute0 + 1, Status::Failed, 3),
            (minute0 + 1, Status::Succeeded, 2),
        ]
    );
    assert!(store.finished_per_minute(late + secs(60)).await.unwrap().is_empty());
    let failing = store.failing_webhooks(t0(), 5).await.unwrap();
    assert_eq!(failing, vec![(bad, "bad".to_string(), 3)]);
    assert!(store.failing_webhooks(late + secs(1), 5).await.unwrap().is_empty());
    let per = herald::queue::per_minute(&found, t0(), late);
    assert_eq!(per.len(), 2);
    assert_eq!(
        (per[0].succeeded, per[0].failed, per[1].succeeded, per[1].failed),
        (1, 0, 2, 3)
    );
}

/// The queue: claims and leases, outcomes, release, hand controls, retention.
async fn queue(store: &dyn Store) {
    let hooks = store
        .create_webhooks(vec![webhook("a", &["dcim.site"]), webhook("b", &["dcim.site"])], t0())
        .await
        .unwrap();
    let (a, b) = (hooks[0].id, hooks[1].id);
    queue_events(store, vec![a, b], 3, t0()).await;
    assert_eq!(store.next_due().await.unwrap(), Some(t0()));
    let lease = std::time::Duration::from_secs(10);
    let plan =
        |limits: &ClaimLimits, now| ClaimPlan::new(limits, now, lease, |_| Some(std::time::Duration::from_secs(5)));

    // Per-webhook limits and the total, oldest first, each with its event once.
    let mut limits = ClaimLimits::total(3, vec![a, b]);
    limits.per_webhook.insert(a, 2);
    limits.per_webhook.insert(b, 1);
    let first = store.claim(&plan(&limits, t0() + secs(1))).await.unwrap();
    assert_eq!(first.rows.len(), 3);
    assert_eq!(first.rows.iter().filter(|r| r.webhook_id == a).count(), 2);
    assert!(first.rows.iter().all(|r| r.attempts == 1 && r.unrecorded == 1));
    let mut event_ids: Vec<i64> = first.events.iter().map(|e| e.id).collect();
    event_ids.sort_unstable();
    assert_eq!(event_ids, [1, 2], "each event once");
    let d = store.delivery(first.rows[0].delivery_id).await.unwrap();
    assert_eq!(
        (d.status, d.next_attempt_at),
        (Status::InFlight, t0() + secs(16)),
        "lease: timeout + margin"
    );
    // Leased deliveries are not claimed again until the lease runs out.
    let rest = store
        .claim(&plan(&ClaimLimits::total(10, vec![a, b]), t0() + secs(2)))
        .await
        .unwrap();
    assert_eq!(rest.rows.len(), 3);
    assert!(store
        .claim(&plan(&ClaimLimits::total(10, vec![a, b]), t0() + secs(3)))
        .await
        .unwrap()
        .rows
        .is_empty());
    let expired = store
        .claim(&plan(&ClaimLimits::total(1, vec![a]), t0() + secs(17)))
        .await
        .unwrap();
    assert_eq!(expired.rows.len(), 1);
    assert_eq!(
        expired.rows[0].attempts, 2,
        "an expired lease is claimed again, one attempt more"
    );
    assert!(store
        .claim(&plan(&ClaimLimits::total(0, vec![a]), t0() + secs(99)))
        .await
        .unwrap()
        .rows
        .is_empty());

    // Outcomes are written as given, to deliveries in flight only.
    let ids: Vec<i64> = first.rows.iter().chain(&rest.rows).map(|r| r.delivery_id).collect();
    let at = t0() + secs(20);
    let outcomes: Vec<Outcome> = vec![
        Outcome::succeeded(ids[0], attempt(ids[0], Some(204), None, at), at),
        Outcome::failed(
            ids[1],
            attempt(ids[1], Some(500), Some("status 500"), at),
            Some(at + secs(60)),
            at,
        ),
        Outcome::failed(ids[2], attempt(ids[2], None, Some("connection refused"), at), None, at),
        Outcome::unsendable(ids[3], "template error".into(), at),
    ];
    store.complete(outcomes.into(), at).await.unwrap();
    let status = |id| async move { store.delivery(id).await.unwrap() };
    let ok = status(ids[0]).await;
    assert_eq!(
        (ok.status, ok.last_status_code, ok.last_error.clone(), ok.last_updated),
        (Status::Succeeded, Some(204), None, at)
    );
    let retrying = status(ids[1]).await;
    assert_eq!(
        (
            retrying.status,
            retrying.next_attempt_at,
            retrying.last_error.as_deref()
        ),
        (Status::Retrying, at + secs(60), Some("status 500"))
    );
    assert_eq!(status(ids[2]).await.status, Status::Failed);
    assert_eq!(status(ids[3]).await.last_error.as_deref(), Some("template error"));
    let attempts = store.attempts(ids[1]).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (
            attempts[0].response_status,
            attempts[0].request_headers.clone(),
            attempts[0].duration_ms
        ),
        (
            Some(500),
            vec![("Content-Type".to_string(), "application/json".to_string())],
            1.5
        )
    );
    assert!(store.attempts(ids[3]).await.unwrap().is_empty());
    // A second outcome for a finished delivery changes nothing.
    let late = vec![Outcome::unsendable(ids[0], "late".into(), at)];
    store.complete(late.into(), at).await.unwrap();
    assert_eq!(status(ids[0]).await.status, Status::Succeeded);

    // Release: queued again, due now, the claim's attempt not counted.
    let released = ids[4];
    let before = status(released).await.attempts;
    let woken = store.queue_signal();
    let notified = woken.notified();
    store.release(&[released, ids[0]], at).await.unwrap();
    let r = status(released).await;
    assert_eq!(
        (r.status, r.attempts, r.next_attempt_at),
        (Status::Queued, before - 1, at)
    );
    assert_eq!(
        status(ids[0]).await.status,
        Status::Succeeded,
        "only in-flight ones are released"
    );
    tokio::time::timeout(std::time::Duration::from_secs(5), notified)
        .await
        .expect("release wakes workers");

    // A delivery deleted in flight: its outcome is refused as a whole, typed.
    let in_flight = ids[5];
    let in_flight_webhook = rest
        .rows
        .iter()
        .find(|r| r.delivery_id == in_flight)
        .unwrap()
        .webhook_id;
    store
        .delete_deliveries(&DeliveryFilter::ids(vec![in_flight]))
        .await
        .unwrap();
    let orphan = vec![Outcome::succeeded(
        in_flight,
        attempt(in_flight, Some(200), None, at),
        at,
    )];
    assert!(matches!(
        store.complete(orphan.into(), at).await,
        Err(StoreError::ForeignKey)
    ));
    assert_eq!(
        store.existing_deliveries(&[ids[0], in_flight]).await.unwrap(),
        vec![ids[0]]
    );

    // The log and its figures.
    let counts = store.status_counts().await.unwrap();
    // Counts that stop: at most this many per status, the rest exact.
    let mut capped = store.status_counts_at_most(1).await.unwrap();
    capped.sort_by_key(|(s, _)| s.as_str());
    let mut expected: Vec<(Status, i64)> = Status::ALL
        .iter()
        .map(|s| (*s, i64::from(counts.iter().any(|(c, n)| c == s && *n > 0))))
        .collect();
    expected.sort_by_key(|(s, _)| s.as_str());
    assert_eq!(capped, expected);
    let count = |s| counts.iter().find(|(c, _)| *c == s).map_or(0, |(_, n)| *n);
    assert_eq!(
        (
            count(Status::Succeeded),
            count(Status::Retrying),
            count(Status::Failed),
            count(Status::Queued)
        ),
        (1, 1, 2, 1)
    );
    assert_eq!(
        store.oldest_created(&[Status::Queued, Status::Retrying]).await.unwrap(),
        Some(t0())
    );
    assert_eq!(store.oldest_created(&[Status::InFlight]).await.unwrap(), None);
    assert_eq!(store.failed_attempts_since(at).await.unwrap(), 2);
    assert_eq!(store.failed_attempts_since(at + secs(1)).await.unwrap(), 0);
    let filtered = |f: DeliveryFilter| async move { store.deliveries(&f, 100, 0, None).await.unwrap() };
    assert_eq!(
        filtered(DeliveryFilter {
            status: vec![Status::Failed],
            ..Default::default()
        })
        .await
        .count,
        2
    );
    let of_b = filtered(DeliveryFilter {
        webhook_id: vec![b],
        ..Default::default()
    })
    .await;
    assert_eq!(of_b.count, 3 - i64::from(in_flight_webhook == b));
    assert!(of_b.items.iter().all(|d| d.webhook_id == b && d.webhook_name == "b"));
    assert_eq!(
        filtered(DeliveryFilter {
            event: vec!["created".into()],
            object_type: vec!["dcim.site".into()],
            ..Default::default()
        })
        .await
        .count,
        5
    );
    assert_eq!(
        filtered(DeliveryFilter {
            event: vec!["deleted".into()],
            ..Default::default()
        })
        .await
        .count,
        0
    );
    assert_eq!(
        filtered(DeliveryFilter {
            since: Some(t0() + secs(1)),
            ..Default::default()
        })
        .await
        .count,
        0
    );
    for (until, expected) in [(t0(), 0), (t0() + secs(1), 5)] {
        let f = DeliveryFilter {
            until: Some(until),
            ..Default::default()
        };
        assert_eq!(filtered(f).await.count, expected, "created before {until}");
    }
    // By the request that recorded the events.
    for (request, expected) in [("fdbca812-3142-4783-b364-2e2bd5c16c6a", 5), ("another-request", 0)] {
        let f = DeliveryFilter {
            request_id: vec![request.into()],
            ..Default::default()
        };
        assert_eq!(filtered(f).await.count, expected, "request {request}");
    }
    // The newest delivery of each webhook; an unknown one has none.
    let mut last = store.last_deliveries(&[a, b, 999_999]).await.unwrap();
    last.sort_by_key(|d| d.webhook_id);
    let newest_of = |w: i64| async move {
        let f = DeliveryFilter {
            webhook_id: vec![w],
            ..Default::default()
        };
        store.deliveries(&f, 1, 0, None).await.unwrap().items[0].id
    };
    assert_eq!(
        last.iter().map(|d| (d.webhook_id, d.id)).collect::<Vec<_>>(),
        vec![(a, newest_of(a).await), (b, newest_of(b).await)]
    );
    assert!(store.last_deliveries(&[]).await.unwrap().is_empty());
    // Id lists of any length stay within the database's bound on arguments.
    let many = DeliveryFilter::ids((1..=40_000).collect());
    assert_eq!(filtered(many.clone()).await.count, 5);
    let newest = store.deliveries(&DeliveryFilter::default(), 2, 0, None).await.unwrap();
    let stopped = store
        .deliveries(&DeliveryFilter::default(), 2, 0, Some(3))
        .await
        .unwrap();
    assert_eq!((stopped.count, stopped.items.len()), (3, 2), "the count stops at 3");
    assert_eq!(
        (newest.count, newest.items[0].id > newest.items[1].id),
        (5, true),
        "newest first"
    );
    assert!(matches!(store.delivery(in_flight).await, Err(StoreError::NotFound)));

    // Requeue: matching ones, due now; workers woken.
    let notified = woken.notified();
    let failed = DeliveryFilter {
        status: vec![Status::Failed],
        ..Default::default()
    };
    assert_eq!(store.requeue(&failed, at + secs(1)).await.unwrap(), 2);
    tokio::time::timeout(std::time::Duration::from_secs(5), notified)
        .await
        .expect("requeue wakes workers");
    assert_eq!(status(ids[2]).await.status, Status::Queued);
    assert_eq!(
        store.next_due().await.unwrap(),
        Some(at),
        "the released one is due first"
    );
    // Claims without an outcome count up; a release gives its claim back.
    let again = store
        .claim(&plan(&ClaimLimits::total(10, vec![a, b]), at + secs(500)))
        .await
        .unwrap();
    let released_row = again.rows.iter().find(|r| r.delivery_id == released).unwrap();
    assert_eq!(released_row.unrecorded, 1, "a release gives its claim back");
    let ids_again: Vec<i64> = again.rows.iter().map(|r| r.delivery_id).collect();
    store.release(&ids_again, at).await.unwrap();

    // Retention: finished deliveries by age, then events left without any.
    queue_events(store, vec![a], 1, t0() + secs(100)).await;
    store
        .complete(vec![Outcome::unsendable(ids[0], "x".into(), at)].into(), at)
        .await
        .unwrap();
    assert_eq!(
        store.purge_deliveries(at + secs(1), t0(), 10).await.unwrap(),
        1,
        "the succeeded one"
    );
    assert_eq!(
        store.purge_events(t0() + secs(50), 10).await.unwrap(),
        0,
        "every old event still has a delivery"
    );
    let all = DeliveryFilter::default();
    assert_eq!(store.delete_deliveries(&all).await.unwrap(), 5);
    assert_eq!(
        store.purge_events(t0() + secs(50), 2).await.unwrap(),
        2,
        "up to the limit"
    );
    assert_eq!(store.purge_events(t0() + secs(50), 10).await.unwrap(), 1);
    assert_eq!(
        store.purge_events(t0() + secs(200), 10).await.unwrap(),
        1,
        "the newer event, now unused"
    );
    assert!(matches!(store.event(1).await, Err(StoreError::NotFound)));
    assert_eq!(store.next_due().await.unwrap(), None);
}

/// Batches, per-object order and rate permits, as the queue keeps them.
async fn guarantees(store: &dyn Store) {
    let mut ordered = webhook("ordered", &["dcim.site"]);
    ordered.ordered = true;
    let hooks = store
        .create_webhooks(vec![webhook("batched", &["dcim.site"]), ordered], t0())
        .await
        .unwrap();
    let (batched, ordered) = (hooks[0].id, hooks[1].id);
    let lease = std::time::Duration::from_secs(10);
    let plan =
        |limits: &ClaimLimits, now| ClaimPlan::new(limits, now, lease, |_| Some(std::time::Duration::from_secs(5)));
    // Three events of one write: one batched delivery of all; for the ordered webhook, two
    // changes of site 7 and one of site 8.
    let ids = in_write_tx(store, move |tx| {
        Box::pin(async move {
            let a = event(EventKind::Created, "dcim.site", 7);
            let b = event(EventKind::Updated, "dcim.site", 7);
            let c = event(EventKind::Created, "dcim.site", 8);
            let fire = [own(ordered)];
            let batch = Batched {
                firing: Firing {
                    batch: true,
                    ..own(batched)
                },
                head: 0,
                rest: vec![1, 2],
            };
            Ok(tx
                .queue_events(&[(&a, &fire), (&b, &fire), (&c, &fire)], &[batch], t0())
                .await?)
        })
    })
    .await
    .unwrap();
    let mut limits = ClaimLimits::total(10, vec![batched, ordered]);
    limits.ordered.insert(ordered);
    let claimed = store.claim(&plan(&limits, t0() + secs(1))).await.unwrap();
    let mut taken: Vec<(i64, i64, Option<Vec<i64>>)> = claimed
        .rows
        .iter()
        .map(|r| (r.webhook_id, r.event_id, r.batch.clone()))
        .collect();
    taken.sort();
    assert_eq!(
        taken,
        [
            (batched, ids[0], Some(vec![ids[1], ids[2]])),
            (ordered, ids[0], None),
            (ordered, ids[2], None)
        ],
        "one batch; site 7's update waits for its create, site 8's create does not"
    );
    let sent = herald::queue::attach_events(claimed.rows.clone(), claimed.events);
    let batch = sent.iter().find(|c| c.webhook_id == batched).unwrap();
    assert_eq!(batch.event.count(), 3);
    assert_eq!(batch.event.context()["events"][2]["data"]["id"], 8);
    let d = store.delivery(batch.delivery_id).await.unwrap();
    assert_eq!((d.batch, d.object_id), (Some(vec![ids[1], ids[2]]), Some(7)));

    // Retrying, site 7's create still holds its update back; failed for good, it lets it go.
    let first = claimed
        .rows
        .iter()
        .find(|r| r.webhook_id == ordered && r.event_id == ids[0])
        .unwrap()
        .delivery_id;
    let at = t0() + secs(2);
    let retry = Outcome::failed(first, attempt(first, Some(500), Some("status 500"), at), Some(at), at);
    store.complete(vec![retry].into(), at).await.unwrap();
    let again = store.claim(&plan(&limits, at + secs(1))).await.unwrap();
    let again: Vec<i64> = again.rows.iter().map(|r| r.delivery_id).collect();
    assert_eq!(again, [first], "the create goes again, alone");
    let gone = Outcome::failed(
        first,
        attempt(first, Some(500), Some("status 500"), at),
        None,
        at + secs(1),
    );
    store.complete(vec![gone].into(), at + secs(1)).await.unwrap();
    let next = store.claim(&plan(&limits, at + secs(2))).await.unwrap();
    let next: Vec<i64> = next.rows.iter().map(|r| r.event_id).collect();
    assert_eq!(next, [ids[1]], "then the update");

    // Rate permits: a second's burst, then the rate; what is given back is taken again.
    let now = t0() + secs(100);
    assert_eq!(store.take_permits(batched, 5.0, 20, now).await.unwrap().0, 5);
    let (none, next_at) = store.take_permits(batched, 5.0, 20, now).await.unwrap();
    assert_eq!((none, next_at), (0, now + Duration::milliseconds(200)));
    store.return_permits(batched, 5.0, 2).await.unwrap();
    assert_eq!(store.take_permits(batched, 5.0, 20, now).await.unwrap().0, 2);
}

/// Worker heartbeats.
async fn workers(store: &dyn Store) {
    store.worker_heartbeat("w1", "host-a", 10, t0()).await.unwrap();
    store
        .worker_heartbeat("w2", "host-b", 11, t0() + secs(10))
        .await
        .unwrap();
    store
        .worker_heartbeat("w1", "host-a", 10, t0() + secs(20))
        .await
        .unwrap();
    assert_eq!(store.workers_seen_since(t0() + secs(15)).await.unwrap(), 1);
    assert_eq!(store.workers_seen_since(t0()).await.unwrap(), 2);
    store.worker_gone("w1").await.unwrap();
    assert_eq!(store.workers_seen_since(t0()).await.unwrap(), 1);
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
    change_log,
    queue,
    queue_statistics,
    guarantees,
    workers,
);
