-- This database's identity: Herald notes it beside the file, so a file that is deleted or
-- swapped for another is noticed instead of silently replaced.
create table herald_meta (
    key text primary key,
    value text not null
) without rowid;
insert into herald_meta (key, value) values ('id', lower(hex(randomblob(16))));
insert into herald_meta (key, value) values ('created_at', strftime('%Y-%m-%dT%H:%M:%SZ', 'now'));
