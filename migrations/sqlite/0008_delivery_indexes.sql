-- Deliveries that finished, by when: the dashboard's deliveries per minute reads only the
-- last hour of them (PostgreSQL has had this index from the start).
create index deliveries_finished on deliveries(updated_at) where status in ('succeeded', 'failed');

-- A webhook's deliveries by status: what "retry the failed ones of this webhook" and the
-- queue filtered by webhook and status read, without walking every delivery of the webhook.
create index deliveries_webhook_status on deliveries(webhook_id, status, id);
