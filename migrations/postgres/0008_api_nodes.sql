-- The API nodes of the fleet, by heartbeat, with the addresses they listen on: every worker
-- refuses to deliver to them (a webhook must not call Herald's own API), wherever it runs.
create table api_nodes (
    id text primary key,
    host text not null,
    pid integer not null,
    -- A JSON list of "address:port".
    addresses text not null,
    seen_at bigint not null
);
