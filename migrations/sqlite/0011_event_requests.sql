-- The API request that made a change, as NetBox 4.6's webhook bodies show it
-- ({"id", "method", "path", "user"}); NULL for events from elsewhere.
alter table events add column request text;
