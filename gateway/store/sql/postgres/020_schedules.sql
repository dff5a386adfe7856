-- Recurring schedules (gateway/schedules.py).  A schedule fires one push per
-- slot to a token or to every token subscribed to a channel.  next_slot_ms is
-- the earliest slot not yet fired or skipped; the worker advances it with a
-- compare-and-set after the slot's pushes are committed, and the pushes'
-- apns-ids are derived from (schedule_id, slot, token), so a slot fired twice
-- (crash before the advance, two workers) stores and delivers nothing twice.
CREATE TABLE schedules (
    schedule_id     text PRIMARY KEY,
    app_id          bigint NOT NULL REFERENCES apps (app_id),
    target_kind     text NOT NULL,          -- token | channel
    target          text NOT NULL,
    topic           text,                   -- NULL: the token's own topic
    push_type       text NOT NULL,
    priority        smallint NOT NULL,
    ttl_s           bigint,                 -- apns-expiration = slot + ttl_s
    collapse_id     text,
    payloads        bytea NOT NULL,         -- JSON array of payload objects, rotated per slot
    every_s         bigint,                 -- exactly one of every_s / cron
    cron            text,
    timezone        text NOT NULL DEFAULT 'UTC',
    next_slot_ms    bigint NOT NULL,
    next_index      bigint NOT NULL DEFAULT 0,  -- slot number of next_slot_ms
    paused          boolean NOT NULL DEFAULT false,
    fired           bigint NOT NULL DEFAULT 0,
    skipped         bigint NOT NULL DEFAULT 0,
    last_slot_ms    bigint,
    last_error      text,
    created_at_ms   bigint NOT NULL
);
CREATE INDEX schedules_app ON schedules (app_id, created_at_ms);
CREATE INDEX schedules_due ON schedules (next_slot_ms) WHERE NOT paused;
