-- Browser sessions of the admin pages: kept in the database so that any node accepts them.
-- The key is stored as its SHA-256 only.
create table sessions (
    key_hash text primary key,
    user_id integer not null references users(id) on delete cascade,
    csrf text not null,
    created_at integer not null,
    expires_at integer not null
) without rowid;
create index sessions_user on sessions(user_id);
create index sessions_expires on sessions(expires_at);
