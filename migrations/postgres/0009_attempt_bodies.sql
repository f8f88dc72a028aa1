-- An attempt stores its request body only when it is not its event's own body (a webhook
-- with a body template, a batch): NULL means the event's body, which the event keeps.
alter table attempts alter column request_body drop not null;
