//! The queue: deliveries, claims, outcomes, statistics, guarantees and workers.

use crate::*;

/// Queues `n` events of `webhooks` each, one delivery per webhook, created at `at`.
pub(crate) async fn queue_events(store: &dyn Store, webhooks: Vec<i64>, n: i64, at: DateTime<Utc>) -> Vec<i64> {
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
pub(crate) async fn queue_statistics(store: &dyn Store) {
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
pub(crate) async fn queue(store: &dyn Store) {
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
        Outcome::failed(
            ids[2],
            Attempt {
                // Sent the event's own body: the attempt keeps none.
                request_body: None,
                ..attempt(ids[2], None, Some("connection refused"), at)
            },
            None,
            at,
        ),
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
    assert_eq!(attempts[0].request_body.as_deref(), Some("{\"a\": 1}"));
    assert_eq!(store.attempts(ids[2]).await.unwrap()[0].request_body, None);
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
pub(crate) async fn guarantees(store: &dyn Store) {
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
pub(crate) async fn workers(store: &dyn Store) {
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
