-- A webhook's deliveries by status: what "retry the failed ones of this webhook" and the
-- queue filtered by webhook and status read, without walking every delivery of the webhook.
create index deliveries_webhook_status on deliveries(webhook_id, status, id);
