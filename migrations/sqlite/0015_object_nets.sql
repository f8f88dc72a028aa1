-- The network index: each address and prefix field of an object as the span of addresses it
-- covers (an address: its host alone) and its mask length, so `parent=`, `within=`,
-- `contains=`, `mask_length=` and `address=` are index ranges. Keys are 34 hex digits: the
-- family, then 16 bytes (`values::net_key`). Existing objects are indexed by the migration.
create table object_nets (
    type text not null,
    id integer not null,
    field text not null,
    lo text not null,
    hi text not null,
    len integer not null,
    primary key (type, id, field)
) without rowid;
create index object_nets_lo on object_nets(type, field, lo);
create index object_nets_len on object_nets(type, field, len);
