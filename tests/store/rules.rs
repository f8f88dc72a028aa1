//! Webhooks and event rules.

use crate::*;

/// Webhooks: all or none, names unique, versions follow changes.
pub(crate) async fn webhooks(store: &dyn Store) {
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
pub(crate) async fn event_rules(store: &dyn Store) {
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
