-- Digest (gateway/digest.py): an app's opt-in rule, and the pushes it holds.
-- A matching push is stored here instead of in notifications; when its
-- token's window ends the worker commits one summary notification and points
-- every item of the window at it (summary_apns_id).  Items are durable from
-- the provider's 200 on, so a worker that dies mid-window loses nothing.
CREATE TABLE digest_rules (
    app_id          bigint PRIMARY KEY REFERENCES apps (app_id),
    window_s        integer NOT NULL,
    max_priority    smallint NOT NULL,
    push_types      text NOT NULL,          -- comma-separated
    updated_at_ms   bigint NOT NULL
);

CREATE TABLE digest_items (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id            bigint NOT NULL,
    apns_id           text NOT NULL,
    token             text NOT NULL,
    topic             text NOT NULL,
    device_id         text,
    kind              text NOT NULL,
    priority          smallint NOT NULL,
    payload           BLOB NOT NULL,
    accepted_at_ms    bigint NOT NULL,
    window_end_ms     bigint NOT NULL,
    summary_apns_id   text,
    summarized_at_ms  bigint,
    UNIQUE (app_id, apns_id)
);
CREATE INDEX digest_items_open ON digest_items (window_end_ms) WHERE summary_apns_id IS NULL;
CREATE INDEX digest_items_token ON digest_items (app_id, token, id) WHERE summary_apns_id IS NULL;
CREATE INDEX digest_items_done ON digest_items (summarized_at_ms) WHERE summary_apns_id IS NOT NULL;
