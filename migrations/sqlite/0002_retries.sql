-- Per-webhook retry schedules (JSON list of seconds; null: the configured default) and an
-- index for "failures in the last hour".
alter table webhooks add column retry_schedule text;
create index attempts_started on attempts(started_at);
