-- Tags on webhooks and event rules, as NetBox keeps them: the ids of `extras.tag` objects, as a
-- JSON list. A tag deleted later is left out when the record is shown.
alter table webhooks add column tags text not null default '[]';
alter table event_rules add column tags text not null default '[]';
