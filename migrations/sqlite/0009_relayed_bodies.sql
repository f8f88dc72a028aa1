-- An event posted to the relay keeps its body exactly as received: webhooks without a body
-- template re-send it byte for byte, and templates see its own keys. NULL for Herald's own.
alter table events add column body text;
