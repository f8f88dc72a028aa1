//! Write transactions, objects, their filters and ordering, and the change log.

use crate::*;

pub(crate) async fn write_transactions(store: &dyn Store) {
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
pub(crate) async fn object_primitives(store: &dyn Store) {
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

pub(crate) fn cond(col: Col, cmp: Cmp, values: Vec<Value>) -> Cond {
    Cond {
        col,
        cmp,
        negate: false,
        values,
    }
}

pub(crate) fn query(conds: Vec<Cond>) -> ObjectQuery {
    ObjectQuery {
        conds,
        search: None,
        order: vec![(Col::Id, false)],
    }
}

/// NetBox's filter meaning and ordering, the same on every backend.
pub(crate) async fn object_filters_and_ordering(store: &dyn Store) {
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
pub(crate) async fn change_log(store: &dyn Store) {
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

/// The network index: rows written with an object answer `Col::Net` conditions; saving the
/// object again replaces them, and removing it drops them.
pub(crate) async fn network_index(store: &dyn Store) {
    let net = |field: &str, value: &str| {
        let (lo, hi, len) = herald::objects::values::net_span(value, true).unwrap();
        herald::objects::Net {
            field: field.into(),
            lo,
            hi,
            len,
        }
    };
    let host = |a: &str| herald::objects::values::net_key(a.parse().unwrap());
    let found = |test: herald::objects::query::NetTest| async move {
        let q = ObjectQuery {
            conds: vec![Cond::net("address", test)],
            search: None,
            order: vec![(Col::Id, false)],
        };
        let page = store.list_objects("ipam.ipaddress", &q, 10, 0).await.unwrap();
        page.items.iter().map(|o| o.id).collect::<Vec<i64>>()
    };
    in_write_tx(store, move |tx| {
        Box::pin(async move {
            for (id, address) in [(1, "10.0.0.1/24"), (2, "10.0.1.1/16")] {
                tx.save("ipam.ipaddress", &obj(id, json!({"address": address})), &[], &[], true)
                    .await?;
                tx.set_nets("ipam.ipaddress", id, &[net("address", address)]).await?;
            }
            Ok(())
        })
    })
    .await
    .unwrap();
    use herald::objects::query::NetTest;
    assert_eq!(found(NetTest::Starts(vec![host("10.0.1.1")])).await, vec![2]);
    assert_eq!(found(NetTest::Len(Cmp::Gte, vec![20])).await, vec![1]);
    let (lo, hi) = (host("10.0.0.0"), host("10.0.255.255"));
    assert_eq!(
        found(NetTest::Inside(vec![(lo.clone(), hi.clone(), false)])).await,
        vec![1, 2]
    );

    in_write_tx(store, move |tx| {
        Box::pin(async move {
            let moved = obj(2, json!({"address": "192.0.2.1/24"}));
            tx.save("ipam.ipaddress", &moved, &[], &[], false).await?;
            tx.set_nets("ipam.ipaddress", 2, &[net("address", "192.0.2.1/24")])
                .await?;
            tx.remove("ipam.ipaddress", 1).await?;
            Ok(())
        })
    })
    .await
    .unwrap();
    assert_eq!(found(NetTest::Inside(vec![(lo, hi, false)])).await, Vec::<i64>::new());
    assert_eq!(found(NetTest::Starts(vec![host("192.0.2.1")])).await, vec![2]);
}
