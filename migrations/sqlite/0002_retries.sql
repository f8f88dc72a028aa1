-- Per-webhook retry schedules (JSON list of seconds; null: the configured default) and an
-- index for "failures in the last hour".
alter table webhooks add column retry_schedule text;
create index attempts_started on attempts(started_at);

-- Claims take due deliveries webhook by webhook, so one webhook's backlog (or a destination
-- at its concurrency cap) never makes a claim scan past it.
create index deliveries_due_webhook on deliveries(webhook_id, next_attempt_at)
    where status in ('queued', 'retrying', 'in_flight');

-- Webhook conditions (NetBox's condition sets, JSON; null: always).
alter table webhooks add column conditions text;

-- Delivery workers, by heartbeat: what /api/status/ counts as running.
create table workers (
    id text primary key,
    host text not null,
    pid integer not null,
    started_at integer not null,
    seen_at integer not null
);
