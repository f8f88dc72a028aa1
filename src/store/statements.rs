//! Statements every backend runs as they are, built once in the backend's dialect: pages of
//! the logs and of objects (a count and the page), purges, requeues. What a backend writes
//! its own way (claims, outcomes, object writes) stays with it.

use super::rows::{CHANGE_SELECT, DELIVERY_SELECT, OBJECT_SELECT};
use super::sql::{change_where, delivery_where, object_order, object_where, Arg, Dialect, Sql};
use crate::changes::ChangeFilter;
use crate::objects::query::ObjectQuery;
use crate::queue::DeliveryFilter;
use chrono::{DateTime, Utc};

/// A page: the statement counting every match, and the one reading the page.
pub struct PageSql {
    pub count: Sql,
    pub items: Sql,
}

fn limit(q: &mut Sql, limit: i64, offset: i64) {
    q.push(" limit ").bind(limit).push(" offset ").bind(offset);
}

/// Objects of `ty` matching `query`, in its order.
pub fn objects_page(d: &'static dyn Dialect, ty: &str, query: &ObjectQuery, n: i64, offset: i64) -> PageSql {
    let mut count = Sql::new(d, "select count(*) from objects o");
    object_where(&mut count, ty, query);
    let mut items = Sql::new(d, OBJECT_SELECT);
    object_where(&mut items, ty, query);
    object_order(&mut items, query);
    limit(&mut items, n, offset);
    PageSql { count, items }
}

/// Changes matching `filter`, newest first.
pub fn changes_page(d: &'static dyn Dialect, filter: &ChangeFilter, n: i64, offset: i64) -> PageSql {
    let mut count = Sql::new(d, "select count(*) from object_changes c");
    change_where(&mut count, filter);
    let mut items = Sql::new(d, CHANGE_SELECT);
    change_where(&mut items, filter);
    items.push(" order by c.id desc");
    limit(&mut items, n, offset);
    PageSql { count, items }
}

/// Deliveries matching `filter`, newest first; the count stops at `count_at_most` when given
/// (a bounded count stays fast on a log of millions).
pub fn deliveries_page(
    d: &'static dyn Dialect,
    filter: &DeliveryFilter,
    n: i64,
    offset: i64,
    count_at_most: Option<i64>,
) -> PageSql {
    let mut count = match count_at_most {
        None => Sql::new(d, "select count(*) from deliveries d"),
        Some(_) => Sql::new(d, "select count(*) from (select 1 from deliveries d"),
    };
    delivery_where(&mut count, filter);
    if let Some(at_most) = count_at_most {
        count.push(" limit ").bind(at_most).push(") c");
    }
    let mut items = Sql::new(d, DELIVERY_SELECT);
    delivery_where(&mut items, filter);
    items.push(" order by d.id desc");
    limit(&mut items, n, offset);
    PageSql { count, items }
}

/// The newest delivery of each webhook of `ids` that has one: one index probe per webhook.
pub fn last_deliveries(d: &'static dyn Dialect, ids: &[i64]) -> Sql {
    let mut q = Sql::new(d, DELIVERY_SELECT);
    q.push(" where d.id in (select (select max(x.id) from deliveries x where x.webhook_id = v.id) from webhooks v where v.id in ")
        .ints(ids.iter().copied())
        .push(")");
    q
}

/// Up to `n` changes older than `before`, oldest first.
pub fn purge_changes(d: &'static dyn Dialect, before: DateTime<Utc>, n: i64) -> Sql {
    let mut q = Sql::new(
        d,
        "delete from object_changes where id in (select id from object_changes where time < ",
    );
    q.bind(before).push(" order by id limit ").bind(n).push(")");
    q
}

/// Every delivery matching `filter` queued again, due `now`.
pub fn requeue(d: &'static dyn Dialect, filter: &DeliveryFilter, now: DateTime<Utc>) -> Sql {
    let mut q = Sql::new(
        d,
        "update deliveries set status = 'queued', unrecorded_claims = 0, next_attempt_at = ",
    );
    q.bind(now).push(", updated_at = ").bind(now);
    q.push(" where id in (select d.id from deliveries d");
    delivery_where(&mut q, filter);
    q.push(")");
    q
}

/// Every delivery matching `filter`, deleted (its attempts go with it).
pub fn delete_deliveries(d: &'static dyn Dialect, filter: &DeliveryFilter) -> Sql {
    let mut q = Sql::new(d, "delete from deliveries where id in (select d.id from deliveries d");
    delivery_where(&mut q, filter);
    q.push(")");
    q
}

/// Up to `n` finished deliveries: succeeded ones last changed before `succeeded_before`,
/// failed ones before `failed_before`.
pub fn purge_deliveries(
    d: &'static dyn Dialect,
    succeeded_before: DateTime<Utc>,
    failed_before: DateTime<Utc>,
    n: i64,
) -> Sql {
    let mut q = Sql::new(
        d,
        "delete from deliveries where id in (select id from deliveries where (status = 'succeeded' and updated_at < ",
    );
    q.bind(succeeded_before)
        .push(") or (status = 'failed' and updated_at < ")
        .bind(failed_before)
        .push(") limit ")
        .bind(n)
        .push(")");
    q
}

/// Up to `n` events created before `before` that no delivery needs any more.
pub fn purge_events(d: &'static dyn Dialect, before: DateTime<Utc>, n: i64) -> Sql {
    let mut q = Sql::new(
        d,
        "delete from events where id in (select e.id from events e where e.created_at < ",
    );
    q.bind(before)
        .push(" and not exists (select 1 from deliveries d where d.event_id = e.id) limit ")
        .bind(n)
        .push(")");
    q
}

/// Attempts that failed at or after `since`.
pub fn failed_attempts_since(d: &'static dyn Dialect, since: DateTime<Utc>) -> Sql {
    let mut q = Sql::new(
        d,
        "select count(*) as n from attempts where error is not null and started_at >= ",
    );
    q.bind(since);
    q
}

/// A delivery's attempts, oldest first.
pub fn attempts(d: &'static dyn Dialect, delivery_id: i64) -> Sql {
    let mut q = Sql::new(d, "select * from attempts where delivery_id = ");
    q.bind(delivery_id).push(" order by id");
    q
}

/// One delivery.
pub fn delivery(d: &'static dyn Dialect, id: i64) -> Sql {
    let mut q = Sql::new(d, DELIVERY_SELECT);
    q.push(" where d.id = ").bind(id);
    q
}

/// Deliveries per status: `status`, `n`.
pub const STATUS_COUNTS: &str = "select status, count(*) as n from deliveries group by status";

/// Deliveries per status (`status`, `n`), each count stopping at `at_most`: one bounded index
/// range per status.
pub fn status_counts_at_most(d: &'static dyn Dialect, at_most: i64) -> Sql {
    let mut q = Sql::new(d, "");
    for (i, s) in crate::queue::Status::ALL.iter().enumerate() {
        if i > 0 {
            q.push(" union all ");
        }
        // The statuses are fixed words: written as literals, so each arm uses the index.
        let status = s.as_str();
        q.push(&format!(
            "select '{status}' as status, (select count(*) from (select 1 from deliveries where status = '{status}'"
        ))
        .push(" limit ")
        .bind(at_most)
        .push(") c) as n");
    }
    q
}

/// A new session.
pub fn session_insert(d: &'static dyn Dialect, s: &crate::auth::Session) -> Sql {
    let mut q = Sql::new(
        d,
        &format!("insert into sessions ({}) values ", super::rows::SESSION_COLUMNS),
    );
    q.list(super::rows::session_args(s));
    q
}

/// The session with this key hash, and its user (`rows::SESSION_SELECT`).
pub fn session(d: &'static dyn Dialect, key_hash: &str) -> Sql {
    let mut q = Sql::new(d, super::rows::SESSION_SELECT);
    q.push(" where s.key_hash = ").bind(key_hash);
    q
}

/// A session's expiry moved to `expires`.
pub fn session_touch(d: &'static dyn Dialect, key_hash: &str, expires: DateTime<Utc>) -> Sql {
    let mut q = Sql::new(d, "update sessions set expires_at = ");
    q.bind(expires).push(" where key_hash = ").bind(key_hash);
    q
}

pub fn session_delete(d: &'static dyn Dialect, key_hash: &str) -> Sql {
    let mut q = Sql::new(d, "delete from sessions where key_hash = ");
    q.bind(key_hash);
    q
}

/// Every session of `user_id` but `keep`.
pub fn user_sessions_delete(d: &'static dyn Dialect, user_id: i64, keep: Option<&str>) -> Sql {
    let mut q = Sql::new(d, "delete from sessions where user_id = ");
    q.bind(user_id);
    if let Some(k) = keep {
        q.push(" and key_hash <> ").bind(k);
    }
    q
}

/// Up to `n` sessions expired before `now`.
pub fn sessions_purge(d: &'static dyn Dialect, now: DateTime<Utc>, n: i64) -> Sql {
    let mut q = Sql::new(
        d,
        "delete from sessions where key_hash in (select key_hash from sessions where expires_at < ",
    );
    q.bind(now).push(" limit ").bind(n).push(")");
    q
}

/// Deliveries that finished (succeeded or failed) at or after `since`, per minute since the
/// epoch and status: `minute`, `status`, `n`.
pub fn finished_per_minute(d: &'static dyn Dialect, since: DateTime<Utc>) -> Sql {
    let mut q = Sql::new(
        d,
        "select updated_at / 60000000 as minute, status, count(*) as n from deliveries \
         where status in ('succeeded', 'failed') and updated_at >= ",
    );
    q.bind(since)
        .push(" group by updated_at / 60000000, status order by minute, status");
    q
}

/// The `n` webhooks with the most failed attempts at or after `since`: `id`, `name`, `n`.
pub fn failing_webhooks(d: &'static dyn Dialect, since: DateTime<Utc>, n: i64) -> Sql {
    let mut q = Sql::new(
        d,
        "select w.id, w.name, count(*) as n from attempts a join deliveries d on d.id = a.delivery_id \
         join webhooks w on w.id = d.webhook_id where a.error is not null and a.started_at >= ",
    );
    q.bind(since)
        .push(" group by w.id, w.name order by n desc, w.id limit ")
        .bind(n);
    q
}

/// Notes API node `id` (on `host`, process `pid`) alive at `now`, listening on `addresses`
/// (a JSON list).
pub fn api_node_seen(
    d: &'static dyn Dialect,
    id: &str,
    host: &str,
    pid: u32,
    addresses: &str,
    now: DateTime<Utc>,
) -> Sql {
    let mut q = Sql::new(d, "insert into api_nodes (id, host, pid, addresses, seen_at) values ");
    q.list([
        Arg::from(id),
        Arg::from(host),
        Arg::Int(i64::from(pid)),
        Arg::from(addresses),
        Arg::from(now),
    ])
    .push(" on conflict (id) do update set addresses = excluded.addresses, seen_at = excluded.seen_at");
    q
}

/// Forgets an API node that stopped.
pub fn api_node_gone(d: &'static dyn Dialect, id: &str) -> Sql {
    let mut q = Sql::new(d, "delete from api_nodes where id = ");
    q.bind(id);
    q
}

/// The address lists of the API nodes seen at or after `since`.
pub fn api_addresses_since(d: &'static dyn Dialect, since: DateTime<Utc>) -> Sql {
    let mut q = Sql::new(d, "select addresses from api_nodes where seen_at >= ");
    q.bind(since);
    q
}

/// `status in (...)` of the statuses a claim takes once due (`Status::CLAIMABLE`).
pub fn claimable() -> String {
    let listed: Vec<String> = crate::queue::Status::CLAIMABLE
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    format!("status in ({})", listed.join(", "))
}

/// When the next claimable delivery falls due (`next`, null when none).
pub fn next_due(d: &'static dyn Dialect) -> Sql {
    let mut q = Sql::new(d, "select min(next_attempt_at) as next from deliveries");
    d.index_hint(&mut q.text, "deliveries_due");
    q.push(" where ").push(&claimable());
    q
}

/// Puts in-flight deliveries back in the queue, due `now`: the claim that took them does not
/// count as an attempt (nor as a claim without an outcome).
pub fn release(d: &'static dyn Dialect, ids: &[i64], now: DateTime<Utc>) -> Sql {
    let mut q = Sql::new(
        d,
        "update deliveries set status = 'queued', \
         attempts = case when attempts > 0 then attempts - 1 else 0 end, \
         unrecorded_claims = case when unrecorded_claims > 0 then unrecorded_claims - 1 else 0 end, \
         next_attempt_at = ",
    );
    q.bind(now)
        .push(" where status = 'in_flight' and id in ")
        .ints(ids.iter().copied());
    q
}

/// The condition an ordered webhook's delivery `alias` meets to be claimed: no earlier delivery
/// of the same webhook and object is still to go (queued, retrying or in flight).
pub fn first_of_its_object(alias: &str) -> String {
    format!(
        "not exists (select 1 from deliveries e where e.webhook_id = {alias}.webhook_id and e.object_type = {alias}.object_type \
         and e.object_id = {alias}.object_id and e.id < {alias}.id and e.{})",
        claimable()
    )
}

/// What a batch of outcomes says of a webhook's health. Never touches `updated_at` (its
/// version): health is no change of its settings.
pub fn note_health(d: &'static dyn Dialect, n: &crate::webhooks::health::HealthNote) -> Sql {
    let first = n.first_failure.map_or(Arg::Null, Arg::from);
    let mut q = Sql::new(d, "update webhooks set consecutive_failures = ");
    if n.succeeded {
        q.bind(n.failures).push(", failing_since = ").bind(first);
    } else {
        q.push("consecutive_failures + ")
            .bind(n.failures)
            .push(", failing_since = coalesce(failing_since, ")
            .bind(first)
            .push(")");
    }
    q.push(" where id = ").bind(n.webhook_id);
    q
}

/// Disables webhook `id` for `reason` at `now`, if it is enabled, failing since before `before`
/// and unchanged since then (one worker of a fleet does it; the others find it done).
pub fn disable_failing(
    d: &'static dyn Dialect,
    id: i64,
    before: DateTime<Utc>,
    reason: &str,
    now: DateTime<Utc>,
) -> Sql {
    let mut q = Sql::new(d, "update webhooks set enabled = ");
    q.bind(false)
        .push(", disabled_reason = ")
        .bind(reason)
        .push(", disabled_at = ")
        .bind(now)
        .push(", updated_at = ")
        .bind(now)
        .push(" where id = ")
        .bind(id)
        .push(" and enabled = ")
        .bind(true)
        .push(" and failing_since < ")
        .bind(before)
        .push(" and updated_at < ")
        .bind(before);
    q
}

/// Notes that the operator was told webhook `id` is failing (`to` true, if it still is and was
/// not told yet) or that it recovered (`to` false, if it was told and no longer fails).
pub fn failing_noticed(d: &'static dyn Dialect, id: i64, to: bool) -> Sql {
    let mut q = Sql::new(d, "update webhooks set failing_noticed = ");
    q.bind(to)
        .push(" where id = ")
        .bind(id)
        .push(" and failing_noticed = ")
        .bind(!to);
    q.push(if to {
        " and failing_since is not null"
    } else {
        " and failing_since is null"
    });
    q
}

/// The event ids remembered for posted events' `keys` since `since`.
pub fn intake_remembered(d: &'static dyn Dialect, keys: &[&str], since: DateTime<Utc>) -> Sql {
    let mut q = Sql::new(d, "select key, event_ids from intake_keys where created_at >= ");
    q.bind(since).push(" and key in ").list(keys.iter().copied());
    q
}

/// Remembers `key` for `event_ids` (a JSON list) at `now`, over a key older than `since`; it
/// touches no row when a fresher one holds the key.
pub fn intake_remember(
    d: &'static dyn Dialect,
    key: &str,
    event_ids: Arg,
    now: DateTime<Utc>,
    since: DateTime<Utc>,
) -> Sql {
    let mut q = Sql::new(d, "insert into intake_keys (key, event_ids, created_at) values ");
    q.list([Arg::from(key), event_ids, Arg::from(now)])
        .push(" on conflict (key) do update set event_ids = excluded.event_ids, created_at = excluded.created_at where intake_keys.created_at < ")
        .bind(since);
    q
}
