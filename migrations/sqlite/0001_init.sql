-- Herald's schema. Times are microseconds since the Unix epoch (UTC), except events.timestamp,
-- which keeps NetBox's ISO 8601 text as sent to receivers.

create table users (
    id integer primary key,
    username text not null unique,
    password_hash text not null,
    is_superuser integer not null default 0,
    created_at integer not null
);

create table tokens (
    id integer primary key,
    user_id integer not null references users(id) on delete cascade,
    key_hash text not null unique,
    write_enabled integer not null default 1,
    description text not null default '',
    created_at integer not null
);

create table webhooks (
    id integer primary key,
    name text not null unique,
    content_types text not null,
    type_create integer not null,
    type_update integer not null,
    type_delete integer not null,
    enabled integer not null,
    payload_url text not null,
    http_method text not null,
    http_content_type text not null,
    additional_headers text not null,
    body_template text not null,
    secret text not null,
    ssl_verification integer not null,
    ca_file_path text,
    timeout integer not null,
    created_at integer not null,
    updated_at integer not null
);

create table events (
    id integer primary key,
    event text not null,
    timestamp text not null,
    object_type text not null,
    username text not null,
    request_id text not null,
    data text not null,
    snapshots text not null,
    created_at integer not null
);
create index events_request_id on events(request_id);

-- The queue and the delivery log. A claimed delivery is 'in_flight' with next_attempt_at set
-- to its lease expiry, so one index finds everything due: waiting rows and expired leases.
create table deliveries (
    id integer primary key,
    event_id integer not null references events(id) on delete cascade,
    webhook_id integer not null references webhooks(id) on delete cascade,
    event text not null,
    object_type text not null,
    status text not null,
    attempts integer not null default 0,
    next_attempt_at integer not null,
    created_at integer not null,
    updated_at integer not null,
    last_error text,
    last_status_code integer
);
create index deliveries_due on deliveries(next_attempt_at)
    where status in ('queued', 'retrying', 'in_flight');
create index deliveries_status on deliveries(status, id);
create index deliveries_webhook on deliveries(webhook_id, id);
create index deliveries_event on deliveries(event_id);

create table attempts (
    id integer primary key,
    delivery_id integer not null references deliveries(id) on delete cascade,
    started_at integer not null,
    duration_us integer not null,
    request_method text not null,
    request_url text not null,
    request_headers text not null,
    request_body text not null,
    response_status integer,
    response_headers text not null,
    response_body text,
    error text
);
create index attempts_delivery on attempts(delivery_id, id);
