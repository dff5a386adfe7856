-- Device sessions in batches (see sql/postgres/sessions_queries.sql).

-- name: connect_devices
SELECT d.device_id, d.app_id, d.user_id, d.created_at_ms, d.secret_hash, d.overflow, a.bundle_id,
       s.quiet_start_min, s.quiet_end_min, s.quiet_tz
FROM devices d
JOIN apps a ON a.app_id = d.app_id
LEFT JOIN device_settings s ON s.device_id = d.device_id
WHERE d.device_id IN (SELECT value FROM json_each(?1));
