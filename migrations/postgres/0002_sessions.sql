-- Browser sessions of the admin pages: kept in the database so that any node accepts them.
-- The key is stored as its SHA-256 only.
create table sessions (
    key_hash text primary key,
    user_id bigint not null references users(id) on delete cascade,
    csrf text not null,
    created_at bigint not null,
    expires_at bigint not null
);
create index sessions_user on sessions(user_id);
create index sessions_expires on sessions(expires_at);
