-- Power-aware delivery: quiet hours, background budget, Live Activity state
-- (gateway/store/power_postgres.py).

-- name: get_quiet_hours
SELECT quiet_start_min, quiet_end_min, quiet_tz FROM device_settings WHERE device_id = $1;

-- name: set_quiet_hours
-- A deleted device has no settings (016's foreign key): setting them is a no-op.
INSERT INTO device_settings (device_id, quiet_start_min, quiet_end_min, quiet_tz, updated_at_ms)
SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM devices WHERE device_id = $1)
ON CONFLICT (device_id) DO UPDATE
SET quiet_start_min = excluded.quiet_start_min, quiet_end_min = excluded.quiet_end_min,
    quiet_tz = excluded.quiet_tz, updated_at_ms = excluded.updated_at_ms;

-- name: lock_device_budget
SELECT pg_advisory_xact_lock(hashtext('pushgw-background:' || $1));

-- name: background_forget
DELETE FROM background_sends WHERE device_id = $1 AND at_ms <= $2;

-- name: background_recent
SELECT notification_id, at_ms FROM background_sends WHERE device_id = $1 ORDER BY at_ms;

-- name: background_record
INSERT INTO background_sends (device_id, notification_id, at_ms) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING;

-- name: background_supersede
UPDATE notifications SET status = 'superseded', reason = 'BackgroundBudget', done_at_ms = $3
WHERE hashtext(device_id) = hashtext($1) AND device_id = $1
  AND push_type = 'background' AND status = 'pending' AND kind = 'local'
  AND id < $2 AND NOT (id = ANY($4::bigint[]));

-- name: activity_state
SELECT last_timestamp, ended_id FROM live_activities WHERE token = $1 FOR UPDATE;

-- name: activity_save
INSERT INTO live_activities (token, last_timestamp, ended_id, updated_at_ms) VALUES ($1, $2, $3, $4)
ON CONFLICT (token) DO UPDATE
SET last_timestamp = excluded.last_timestamp, ended_id = excluded.ended_id, updated_at_ms = excluded.updated_at_ms;

-- name: settle_refused
UPDATE notifications SET status = $2, reason = $3, done_at_ms = $4 WHERE id = $1 AND status = 'pending';

-- name: purge_live_activities
-- Activities last at most 12 hours (APNS.md section 7): a row untouched for
-- the retention period orders nothing any more.
DELETE FROM live_activities WHERE token IN (
    SELECT token FROM live_activities WHERE updated_at_ms < $1 LIMIT $2
);

-- name: purge_background_sends
DELETE FROM background_sends WHERE (device_id, notification_id) IN (
    SELECT device_id, notification_id FROM background_sends WHERE at_ms <= $1 LIMIT $2
);
