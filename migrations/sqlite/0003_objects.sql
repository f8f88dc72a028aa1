-- The inventory. Objects of every catalog type share one table; their data is JSON in
-- NetBox's minimal form (foreign keys as ids, choices as raw values, tags as ids).
create table objects (
    type text not null,
    id integer not null,
    data text not null,
    created_at integer not null,
    updated_at integer not null,
    primary key (type, id)
) without rowid;

-- Ids per type, never reused (as PostgreSQL sequences behave).
create table object_sequences (
    type text primary key,
    last_id integer not null
) without rowid;

-- Unique rules: one row per rule per object; the primary key enforces them.
create table object_keys (
    type text not null,
    rule text not null,
    value text not null,
    id integer not null,
    primary key (type, rule, value)
) without rowid;
create index object_keys_owner on object_keys(type, id);

-- Foreign keys and tags, so a delete finds what depends on an object by index.
create table object_refs (
    type text not null,
    id integer not null,
    field text not null,
    target_type text not null,
    target_id integer not null,
    primary key (type, id, field, target_id)
) without rowid;
create index object_refs_target on object_refs(target_type, target_id);

-- NetBox's ObjectChange: one row per create, update or delete.
create table object_changes (
    id integer primary key,
    time integer not null,
    user_id integer,
    user_name text not null,
    request_id text not null,
    action text not null,
    object_type text not null,
    object_id integer not null,
    object_repr text not null,
    prechange_data text,
    postchange_data text
);
create index object_changes_object on object_changes(object_type, object_id);
create index object_changes_request on object_changes(request_id);
