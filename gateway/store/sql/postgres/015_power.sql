-- Power-aware delivery (issue 8): per-device settings, the background budget
-- and per-activity Live Activity state.  Additive: no existing table changes.

-- Quiet hours: minutes after local midnight in an IANA zone; no row = none.
CREATE TABLE device_settings (
    device_id        text PRIMARY KEY,
    quiet_start_min  integer,
    quiet_end_min    integer,
    quiet_tz         text,
    updated_at_ms    bigint NOT NULL
);

-- Background pushes sent to a device in the last hour (the budget counts
-- them; a resend of the same notification is not counted twice).
CREATE TABLE background_sends (
    device_id        text NOT NULL,
    notification_id  bigint NOT NULL,
    at_ms            bigint NOT NULL,
    PRIMARY KEY (device_id, notification_id)
);

-- One row per Live Activity push token: the newest timestamp sent, and the
-- notification that ended the activity.
CREATE TABLE live_activities (
    token           text PRIMARY KEY,
    last_timestamp  double precision NOT NULL,
    ended_id        bigint,
    updated_at_ms   bigint NOT NULL
);
CREATE INDEX live_activities_updated ON live_activities (updated_at_ms);
