-- Groups of users, and NetBox's object permissions (actions on object types) given to users
-- and groups.
create table groups (
    id integer primary key,
    name text not null unique,
    description text not null default ''
);

create table user_groups (
    user_id integer not null references users(id) on delete cascade,
    group_id integer not null references groups(id) on delete cascade,
    primary key (user_id, group_id)
) without rowid;
create index user_groups_group on user_groups(group_id);

create table permissions (
    id integer primary key,
    name text not null unique,
    description text not null default '',
    enabled integer not null,
    object_types text not null,
    actions text not null,
    created_at integer not null,
    updated_at integer not null
);

create table permission_users (
    permission_id integer not null references permissions(id) on delete cascade,
    user_id integer not null references users(id) on delete cascade,
    primary key (permission_id, user_id)
) without rowid;
create index permission_users_user on permission_users(user_id);

create table permission_groups (
    permission_id integer not null references permissions(id) on delete cascade,
    group_id integer not null references groups(id) on delete cascade,
    primary key (permission_id, group_id)
) without rowid;
create index permission_groups_group on permission_groups(group_id);
