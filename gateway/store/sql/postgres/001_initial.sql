-- pushgw schema, PostgreSQL.  Times are epoch milliseconds unless named *_s.

CREATE TABLE teams (
    team_id        text PRIMARY KEY,
    name           text NOT NULL,
    created_at_ms  bigint NOT NULL
);

CREATE TABLE apps (
    app_id         bigserial PRIMARY KEY,
    team_id        text NOT NULL REFERENCES teams (team_id),
    bundle_id      text NOT NULL UNIQUE,
    name           text NOT NULL DEFAULT ''
);

CREATE TABLE provider_keys (
    key_id          text PRIMARY KEY,
    team_id         text NOT NULL REFERENCES teams (team_id),
    public_key_pem  text NOT NULL,
    revoked         boolean NOT NULL DEFAULT false
);

-- Only the sha256 of an API key is stored; key_prefix is for listings.
CREATE TABLE api_keys (
    key_hash       bytea PRIMARY KEY,
    key_prefix     text NOT NULL,
    app_id         bigint NOT NULL REFERENCES apps (app_id),
    created_at_ms  bigint NOT NULL
);

CREATE TABLE devices (
    device_id      text PRIMARY KEY,
    app_id         bigint NOT NULL REFERENCES apps (app_id),
    user_id        text,
    secret_hash    bytea NOT NULL,
    created_at_ms  bigint NOT NULL,
    overflow       bigint NOT NULL DEFAULT 0
);

-- device_id is kept after the device is deleted so a later push can be
-- answered with 410 and the token's history stays readable.
CREATE TABLE tokens (
    token              text PRIMARY KEY,
    app_id             bigint NOT NULL REFERENCES apps (app_id),
    device_id          text,
    topic              text NOT NULL,
    environment        text NOT NULL,
    kind               text NOT NULL,
    active             boolean NOT NULL DEFAULT true,
    invalidated_at_ms  bigint,
    user_id            text,
    created_at_ms      bigint NOT NULL
);
CREATE INDEX tokens_device ON tokens (device_id);
CREATE INDEX tokens_user ON tokens (app_id, user_id) WHERE user_id IS NOT NULL;

CREATE TABLE subscriptions (
    app_id   bigint NOT NULL,
    channel  text NOT NULL,
    token    text NOT NULL REFERENCES tokens (token),
    PRIMARY KEY (app_id, channel, token)
);

CREATE TABLE notifications (
    id              bigserial PRIMARY KEY,
    apns_id         text NOT NULL,
    app_id          bigint NOT NULL,
    token           text NOT NULL,
    topic           text NOT NULL,
    payload         bytea NOT NULL,
    priority        smallint NOT NULL,
    push_type       text NOT NULL,
    expiration      bigint,            -- the apns-expiration header as given
    expires_at_s    bigint NOT NULL,   -- effective end of life (retention applied)
    collapse_id     text,
    device_id       text,
    kind            text NOT NULL,
    status          text NOT NULL,
    reason          text,
    accepted_at_ms  bigint NOT NULL,
    deliver_at_ms   bigint,
    sent_at_ms      bigint,
    done_at_ms      bigint,
    -- relay lease (kind apns): claimable when not_before_ms <= now and the lease is over
    not_before_ms   bigint NOT NULL DEFAULT 0,
    lease_owner     text,
    lease_until_ms  bigint NOT NULL DEFAULT 0,
    apple_id        text,
    UNIQUE (app_id, apns_id)
);
-- The device drain: pending rows of one device by priority desc, id asc.
CREATE INDEX notifications_backlog ON notifications (device_id, priority DESC, id)
    WHERE status = 'pending' AND kind = 'local';
-- Collapse lookup and per-token backlog cap.
CREATE INDEX notifications_token_pending ON notifications (token, priority, id)
    WHERE status = 'pending';
CREATE INDEX notifications_collapse ON notifications (token, collapse_id)
    WHERE status = 'pending' AND collapse_id IS NOT NULL;
CREATE INDEX notifications_expiry ON notifications (expires_at_s) WHERE status = 'pending';
CREATE INDEX notifications_relay ON notifications (not_before_ms, id)
    WHERE status = 'pending' AND kind = 'apns';
CREATE INDEX notifications_purge ON notifications (accepted_at_ms) WHERE status <> 'pending';

CREATE TABLE feedback (
    id      bigserial PRIMARY KEY,
    app_id  bigint NOT NULL,
    token   text NOT NULL,
    reason  text NOT NULL,
    at_ms   bigint NOT NULL
);
CREATE INDEX feedback_app ON feedback (app_id, id);
CREATE INDEX feedback_at ON feedback (at_ms);

CREATE TABLE webhooks (
    app_id  bigint PRIMARY KEY REFERENCES apps (app_id),
    url     text NOT NULL,
    secret  text NOT NULL
);

CREATE TABLE webhook_jobs (
    id               bigserial PRIMARY KEY,
    app_id           bigint NOT NULL,
    body             bytea NOT NULL,
    state            text NOT NULL DEFAULT 'pending',
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_ms  bigint NOT NULL,
    last_error       text,
    created_at_ms    bigint NOT NULL,
    lease_owner      text,
    lease_until_ms   bigint NOT NULL DEFAULT 0
);
CREATE INDEX webhook_jobs_due ON webhook_jobs (next_attempt_ms, id) WHERE state = 'pending';
CREATE INDEX webhook_jobs_app ON webhook_jobs (app_id, id);
