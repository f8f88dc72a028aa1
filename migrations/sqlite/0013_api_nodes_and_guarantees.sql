-- The API nodes of the fleet, by heartbeat, with the addresses they listen on: every worker
-- refuses to deliver to them (a webhook must not call Herald's own API), wherever it runs.
create table api_nodes (
    id text primary key,
    host text not null,
    pid integer not null,
    -- A JSON list of "address:port".
    addresses text not null,
    seen_at integer not null
);

-- Delivery guarantees. A webhook may be rate limited (requests per second), ordered (one
-- delivery at a time per object, in commit order), batched (one delivery per request), and
-- signed by NetBox's scheme, Standard Webhooks' or both; during a secret's rotation the
-- previous secret signs too, until its end.
alter table webhooks add column rate_limit real;
alter table webhooks add column ordered integer not null default 0;
alter table webhooks add column batch integer not null default 0;
alter table webhooks add column signature_scheme text not null default 'netbox';
alter table webhooks add column previous_secret text not null default '';
alter table webhooks add column previous_secret_until integer;
-- Why and when Herald disabled it (deliveries all failing for too long); cleared when enabled.
alter table webhooks add column disabled_reason text not null default '';
alter table webhooks add column disabled_at integer;
-- Its health: since when its attempts have all failed, how many in a row, and whether the
-- operator was told it is failing.
alter table webhooks add column failing_since integer;
alter table webhooks add column consecutive_failures integer not null default 0;
alter table webhooks add column failing_noticed integer not null default 0;
-- A deleted webhook stays, out of sight, while deliveries name it (its name freed, kept here):
-- the log keeps its history until retention purges it.
alter table webhooks add column deleted_at integer;
alter table webhooks add column deleted_name text not null default '';

-- What a delivery is about (the object's id, beside its type), and the further events of a
-- batch (a JSON list of ids, in change order, after event_id).
alter table deliveries add column object_id integer;
alter table deliveries add column batch text;
create index deliveries_object on deliveries(object_type, object_id, id);
-- An ordered webhook's deliveries of one object, those still to go.
create index deliveries_ordered on deliveries(webhook_id, object_type, object_id, id)
    where status in ('queued', 'retrying', 'in_flight');

-- Events posted before (by their key: type, object, event and request, or the body, or an
-- Idempotency-Key), and the events they became, for as long as duplicates are caught.
create table intake_keys (
    key text primary key,
    event_ids text not null,
    created_at integer not null
);
create index intake_keys_created on intake_keys(created_at);

-- Each rate-limited webhook's theoretical arrival time (microseconds): when its next request
-- may go if it goes at its rate, shared by every worker of a fleet.
create table webhook_rates (
    webhook_id integer primary key,
    tat integer not null
);
