-- Claims of a delivery since its last recorded outcome: a delivery whose worker dies (or is
-- stopped) every time it is sent stops being claimed after a few, instead of forever.
alter table deliveries add column unrecorded_claims integer not null default 0;
