-- Event rules (NetBox 3.7 and later): which object types and events, under which conditions,
-- fire which webhook. A webhook fires through its own triggers, through the rules that point
-- at it, or both; deleting a webhook deletes its rules, as NetBox does.
-- AUTOINCREMENT: an id is never given again, since deliveries keep naming a deleted rule by it.
create table event_rules (
    id integer primary key autoincrement,
    name text not null unique,
    description text not null,
    object_types text not null,
    event_types text not null,
    enabled integer not null,
    conditions text,
    action_object_id integer not null references webhooks(id) on delete cascade,
    created_at integer not null,
    updated_at integer not null
);
create index event_rules_webhook on event_rules(action_object_id);

-- NetBox 4's webhook description.
alter table webhooks add column description text not null default '';

-- Which rule queued a delivery; NULL when the webhook's own triggers did. Kept as a plain
-- number, so a rule deleted later leaves its deliveries as they were.
alter table deliveries add column event_rule_id integer;
