-- Herald's schema on PostgreSQL: the same tables as on SQLite. Times are microseconds since the
-- Unix epoch (UTC), except events.timestamp, which keeps NetBox's ISO 8601 text as sent to
-- receivers. JSON kept as text keeps its keys' order (webhook bodies depend on it); objects'
-- data is jsonb, so filters read fields by index-friendly operators.

create table users (
    id bigserial primary key,
    username text not null unique,
    password_hash text not null,
    is_superuser boolean not null default false,
    created_at bigint not null
);

create table tokens (
    id bigserial primary key,
    user_id bigint not null references users(id) on delete cascade,
    key_hash text not null unique,
    write_enabled boolean not null default true,
    description text not null default '',
    created_at bigint not null
);
create index tokens_user on tokens(user_id);

create table groups (
    id bigserial primary key,
    name text not null unique,
    description text not null default ''
);

create table user_groups (
    user_id bigint not null references users(id) on delete cascade,
    group_id bigint not null references groups(id) on delete cascade,
    primary key (user_id, group_id)
);
create index user_groups_group on user_groups(group_id);

create table permissions (
    id bigserial primary key,
    name text not null unique,
    description text not null default '',
    enabled boolean not null,
    object_types text not null,
    actions text not null,
    created_at bigint not null,
    updated_at bigint not null
);

create table permission_users (
    permission_id bigint not null references permissions(id) on delete cascade,
    user_id bigint not null references users(id) on delete cascade,
    primary key (permission_id, user_id)
);
create index permission_users_user on permission_users(user_id);

create table permission_groups (
    permission_id bigint not null references permissions(id) on delete cascade,
    group_id bigint not null references groups(id) on delete cascade,
    primary key (permission_id, group_id)
);
create index permission_groups_group on permission_groups(group_id);

create table webhooks (
    id bigserial primary key,
    name text not null unique,
    content_types text not null,
    type_create boolean not null,
    type_update boolean not null,
    type_delete boolean not null,
    enabled boolean not null,
    payload_url text not null,
    http_method text not null,
    http_content_type text not null,
    additional_headers text not null,
    body_template text not null,
    secret text not null,
    ssl_verification boolean not null,
    ca_file_path text,
    timeout integer not null,
    retry_schedule text,
    conditions text,
    created_at bigint not null,
    updated_at bigint not null
);

create table events (
    id bigserial primary key,
    event text not null,
    timestamp text not null,
    object_type text not null,
    username text not null,
    request_id text not null,
    data text not null,
    snapshots text not null,
    created_at bigint not null
);
create index events_request_id on events(request_id);
create index events_created on events(created_at);

-- The queue and the delivery log. A claimed delivery is 'in_flight' with next_attempt_at set
-- to its lease expiry, so one index finds everything due: waiting rows and expired leases.
create table deliveries (
    id bigserial primary key,
    event_id bigint not null references events(id) on delete cascade,
    webhook_id bigint not null references webhooks(id) on delete cascade,
    event text not null,
    object_type text not null,
    status text not null,
    attempts integer not null default 0,
    next_attempt_at bigint not null,
    created_at bigint not null,
    updated_at bigint not null,
    last_error text,
    last_status_code integer,
    unrecorded_claims integer not null default 0
);
create index deliveries_due on deliveries(next_attempt_at) where status in ('queued', 'retrying', 'in_flight');
create index deliveries_due_webhook on deliveries(webhook_id, next_attempt_at, id)
    where status in ('queued', 'retrying', 'in_flight');
create index deliveries_status on deliveries(status, id);
create index deliveries_webhook on deliveries(webhook_id, id);
create index deliveries_event on deliveries(event_id);
create index deliveries_finished on deliveries(updated_at) where status in ('succeeded', 'failed');

create table attempts (
    id bigserial primary key,
    delivery_id bigint not null references deliveries(id) on delete cascade,
    started_at bigint not null,
    duration_us bigint not null,
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
create index attempts_started on attempts(started_at);

create table workers (
    id text primary key,
    host text not null,
    pid integer not null,
    started_at bigint not null,
    seen_at bigint not null
);

create table objects (
    type text not null,
    id bigint not null,
    data jsonb not null,
    created_at bigint not null,
    updated_at bigint not null,
    primary key (type, id)
);

create table object_sequences (
    type text primary key,
    last_id bigint not null
);

create table object_keys (
    type text not null,
    rule text not null,
    value text not null,
    id bigint not null,
    primary key (type, rule, value)
);
create index object_keys_owner on object_keys(type, id);

create table object_refs (
    type text not null,
    id bigint not null,
    field text not null,
    target_type text not null,
    target_id bigint not null,
    primary key (type, id, field, target_id)
);
create index object_refs_target on object_refs(target_type, target_id);

create table object_changes (
    id bigserial primary key,
    time bigint not null,
    user_id bigint,
    user_name text not null,
    request_id text not null,
    action text not null,
    object_type text not null,
    object_id bigint not null,
    object_repr text not null,
    prechange_data text,
    postchange_data text
);
create index object_changes_object on object_changes(object_type, object_id);
create index object_changes_request on object_changes(request_id);
create index object_changes_time on object_changes(time);

create table herald_meta (
    key text primary key,
    value text not null
);
insert into herald_meta (key, value) values ('id', md5(random()::text || clock_timestamp()::text));
