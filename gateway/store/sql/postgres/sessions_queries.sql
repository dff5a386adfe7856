-- Device sessions in batches: a shard connects and drains many devices at once
-- (a reconnect storm), one statement for all of them instead of one per device.

-- name: connect_devices
-- Everything a connecting device needs, in one read: credential hash, app, pending
-- overflow count and quiet hours.  No write: the overflow is only taken when > 0.
SELECT d.device_id, d.app_id, d.user_id, d.created_at_ms, d.secret_hash, d.overflow, a.bundle_id,
       s.quiet_start_min, s.quiet_end_min, s.quiet_tz
FROM devices d
JOIN apps a ON a.app_id = d.app_id
LEFT JOIN device_settings s ON s.device_id = d.device_id
WHERE d.device_id = ANY($1::text[]);

-- name: backlog_many
-- One backlog page per (device, cursor, limit), each as the ``backlog`` query reads it;
-- ``request`` is the 1-based position of the request its row answers.
SELECT r.request, n.id, n.apns_id::text AS apns_id, n.app_id, n.token, n.topic, n.payload, n.priority, n.push_type, n.expiration,
       n.collapse_id, n.device_id, n.kind, n.status, n.accepted_at_ms
FROM unnest($1::text[], $2::int[], $3::bigint[], $4::int[]) WITH ORDINALITY AS r(device_id, prio, last_id, lim, request)
CROSS JOIN LATERAL (
    SELECT * FROM notifications
    WHERE hashtext(device_id) = hashtext(r.device_id) AND device_id = r.device_id
      AND status = 'pending' AND kind = 'local'
      AND expires_at_s > $5 AND (deliver_at_ms IS NULL OR deliver_at_ms <= $6)
      AND (priority < r.prio OR (priority = r.prio AND id > r.last_id))
    ORDER BY priority DESC, id
    LIMIT r.lim
) n;
