-- Admin API read model and tenant CRUD, PostgreSQL (gateway/admin_queries.py).
-- The statistics read what changed since their last look (gateway/admin_rollup.py), never the whole table.

-- name: pending_by_app
-- The live backlog per app (pending partial indexes); cost follows the backlog, not the history.
SELECT app_id, count(*) AS n FROM notifications WHERE status = 'pending' GROUP BY app_id;

-- name: pending_since
-- The first look's pending rows per app, and per accepted minute those accepted since $1 (minute
-- NULL: before).  One statement, so the pending count and the window's pending acceptances agree.
SELECT app_id, CASE WHEN accepted_at_ms >= $1 THEN accepted_at_ms / 60000 END AS minute, count(*) AS n
FROM notifications WHERE status = 'pending'
GROUP BY app_id, CASE WHEN accepted_at_ms >= $1 THEN accepted_at_ms / 60000 END;

-- name: accepted_done_between
-- The first look's other acceptances since $1: rows that became terminal since, up to $2 (later
-- transitions are left to the next look, which counts them and their acceptance by conservation).
SELECT app_id, accepted_at_ms / 60000 AS minute, count(*) AS n FROM notifications
WHERE status <> 'pending' AND done_at_ms >= $1 AND done_at_ms <= $2 AND accepted_at_ms >= $1
GROUP BY app_id, accepted_at_ms / 60000;

-- name: done_between
-- Terminal transitions in ($1, $2] per app, status and minute (notifications_done index);
-- bridge_reason is set for relay rows only (Apple's reason, '' when relayed).
SELECT app_id, status, CASE WHEN kind = 'apns' THEN coalesce(reason, '') END AS bridge_reason,
       done_at_ms / 60000 AS minute, count(*) AS n
FROM notifications WHERE status <> 'pending' AND done_at_ms > $1 AND done_at_ms <= $2
GROUP BY app_id, status, CASE WHEN kind = 'apns' THEN coalesce(reason, '') END, done_at_ms / 60000;

-- name: ack_latencies
-- Accept-to-ack times (ms) of notifications acked since $1, newest first.
SELECT done_at_ms - accepted_at_ms AS ms FROM notifications
WHERE status <> 'pending' AND status = 'delivered' AND kind = 'local' AND done_at_ms >= $1
ORDER BY done_at_ms DESC LIMIT $2;

-- name: ack_latency_counts
-- Accept-to-ack times (ms) of the acks in ($1, $2], with how many had each (the worker's histogram).
SELECT done_at_ms - accepted_at_ms AS ms, count(*) AS n FROM notifications
WHERE status <> 'pending' AND status = 'delivered' AND kind = 'local' AND done_at_ms > $1 AND done_at_ms <= $2
GROUP BY done_at_ms - accepted_at_ms;

-- name: search_devices
SELECT DISTINCT d.device_id, d.app_id, d.user_id, d.created_at_ms
FROM devices d LEFT JOIN tokens t ON t.device_id = d.device_id
WHERE ($1::text = '' OR d.device_id = $1 OR d.user_id = $1 OR t.token LIKE $2)
  AND ($3::bigint IS NULL OR d.app_id = $3)
ORDER BY d.created_at_ms DESC, d.device_id LIMIT $4;

-- name: search_apns_tokens
SELECT token, app_id, topic, environment, active, user_id FROM tokens
WHERE device_id IS NULL AND $1::text <> '' AND (token LIKE $2 OR user_id = $1)
  AND ($3::bigint IS NULL OR app_id = $3)
ORDER BY token LIMIT $4;

-- name: pending_count
SELECT count(*) FROM notifications WHERE device_id = $1 AND status = 'pending';

-- name: notification_detail
SELECT id, apns_id::text AS apns_id, app_id, token, topic, payload, priority, push_type, expiration, expires_at_s,
       collapse_id, device_id, kind, status, reason, accepted_at_ms, deliver_at_ms, sent_at_ms,
       done_at_ms, apple_id
FROM notifications WHERE app_id = $1 AND apns_id = $2::uuid;

-- name: recent_notifications
SELECT id, apns_id::text AS apns_id, app_id, token, topic, priority, push_type, kind, status, reason, accepted_at_ms, done_at_ms
FROM notifications
WHERE ($1::bigint IS NULL OR app_id = $1) AND ($2::text = '' OR status = $2)
  AND ($3::text = '' OR device_id = $3 OR token = $3)
ORDER BY id DESC LIMIT $4;

-- name: list_teams
SELECT team_id, name, created_at_ms FROM teams ORDER BY team_id;

-- name: get_team
SELECT team_id, name, created_at_ms FROM teams WHERE team_id = $1;

-- name: rename_team
UPDATE teams SET name = $2 WHERE team_id = $1;

-- name: team_app_count
SELECT count(*) FROM apps WHERE team_id = $1;

-- name: delete_team_keys
DELETE FROM provider_keys WHERE team_id = $1;

-- name: delete_team
-- Only a team without apps (checked first); its provider keys go with it.
DELETE FROM teams WHERE team_id = $1;

-- name: rename_app
UPDATE apps SET name = $2 WHERE app_id = $1;

-- name: app_device_count
SELECT (SELECT count(*) FROM devices WHERE app_id = $1) + (SELECT count(*) FROM tokens WHERE app_id = $1);

-- name: delete_app_api_keys
DELETE FROM api_keys WHERE app_id = $1;

-- name: delete_app
DELETE FROM apps WHERE app_id = $1;

-- name: list_provider_keys
SELECT key_id, team_id, revoked FROM provider_keys WHERE $1::text IS NULL OR team_id = $1 ORDER BY team_id, key_id;

-- name: delete_api_key
DELETE FROM api_keys WHERE app_id = $1 AND key_prefix = $2;

-- name: delete_webhook
DELETE FROM webhooks WHERE app_id = $1;
