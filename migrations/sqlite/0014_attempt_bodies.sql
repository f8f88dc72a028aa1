-- An attempt stores its request body only when it is not its event's own body (a webhook
-- with a body template, a batch): NULL means the event's body, which the event keeps.
create table attempts_new (
    id integer primary key,
    delivery_id integer not null references deliveries(id) on delete cascade,
    started_at integer not null,
    duration_us integer not null,
    request_method text not null,
    request_url text not null,
    request_headers text not null,
    request_body text,
    response_status integer,
    response_headers text not null,
    response_body text,
    error text
);
insert into attempts_new select id, delivery_id, started_at, duration_us, request_method, request_url,
    request_headers, request_body, response_status, response_headers, response_body, error from attempts;
drop table attempts;
alter table attempts_new rename to attempts;
create index attempts_delivery on attempts(delivery_id, id);
create index attempts_started on attempts(started_at);
