-- Named queries of the SQLite store (gateway/store/sqlite.py); ?N are positional.

-- name: create_team
INSERT INTO teams (team_id, name, created_at_ms) VALUES (?1, ?2, ?3)
ON CONFLICT (team_id) DO UPDATE SET name = EXCLUDED.name
RETURNING team_id, name;

-- name: create_app
INSERT INTO apps (team_id, bundle_id, name) VALUES (?1, ?2, ?3) RETURNING app_id, team_id, bundle_id, name;

-- name: get_app
SELECT app_id, team_id, bundle_id, name FROM apps WHERE app_id = ?1;

-- name: get_app_by_bundle
SELECT app_id, team_id, bundle_id, name FROM apps WHERE bundle_id = ?1;

-- name: list_apps
SELECT app_id, team_id, bundle_id, name FROM apps WHERE ?1 IS NULL OR team_id = ?1 ORDER BY app_id;

-- name: add_provider_key
INSERT INTO provider_keys (key_id, team_id, public_key_pem) VALUES (?1, ?2, ?3)
ON CONFLICT (key_id) DO UPDATE SET team_id = EXCLUDED.team_id, public_key_pem = EXCLUDED.public_key_pem, revoked = 0
RETURNING key_id, team_id, public_key_pem, revoked;

-- name: get_provider_key
SELECT key_id, team_id, public_key_pem, revoked FROM provider_keys WHERE key_id = ?1;

-- name: revoke_provider_key
UPDATE provider_keys SET revoked = 1 WHERE key_id = ?1;

-- name: create_api_key
INSERT INTO api_keys (key_hash, key_prefix, app_id, created_at_ms) VALUES (?1, ?2, ?3, ?4);

-- name: verify_api_key
SELECT k.key_hash, a.app_id, a.team_id, a.bundle_id, a.name
FROM api_keys k JOIN apps a ON a.app_id = k.app_id WHERE k.key_hash = ?1;

-- name: create_device
INSERT INTO devices (device_id, app_id, user_id, secret_hash, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5);

-- name: get_device
SELECT device_id, app_id, user_id, created_at_ms, secret_hash FROM devices WHERE device_id = ?1;

-- name: deactivate_device_tokens
UPDATE tokens SET active = 0, invalidated_at_ms = ?2 WHERE device_id = ?1 AND active
RETURNING token, app_id, device_id, topic, environment, kind, active, invalidated_at_ms, user_id;

-- name: discard_device_rows
UPDATE notifications SET status = 'discarded', reason = 'DeviceDeleted', done_at_ms = ?2
WHERE device_id = ?1 AND status = 'pending';

-- name: delete_device
DELETE FROM devices WHERE device_id = ?1;

-- name: insert_token
INSERT INTO tokens (token, app_id, device_id, topic, environment, kind, active, user_id, created_at_ms)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8)
RETURNING token, app_id, device_id, topic, environment, kind, active, invalidated_at_ms, user_id;

-- name: register_apns_token
INSERT INTO tokens (token, app_id, device_id, topic, environment, kind, active, user_id, created_at_ms)
VALUES (?1, ?2, NULL, ?3, ?4, 'apns', 1, ?5, ?6)
ON CONFLICT (token) DO UPDATE SET app_id = EXCLUDED.app_id, topic = EXCLUDED.topic,
    environment = EXCLUDED.environment, kind = 'apns', active = true, invalidated_at_ms = NULL,
    user_id = EXCLUDED.user_id
RETURNING token, app_id, device_id, topic, environment, kind, active, invalidated_at_ms, user_id;

-- name: get_token
SELECT token, app_id, device_id, topic, environment, kind, active, invalidated_at_ms, user_id
FROM tokens WHERE token = ?1;

-- name: get_tokens
-- Many tokens in one round trip (the token cache's misses of one loop tick or one batch).
SELECT token, app_id, device_id, topic, environment, kind, active, invalidated_at_ms, user_id
FROM tokens WHERE token IN (SELECT value FROM json_each(?1));

-- name: unregister_token
UPDATE tokens SET invalidated_at_ms = CASE WHEN active THEN ?2 ELSE coalesce(invalidated_at_ms, ?2) END,
    active = 0
WHERE token = ?1 RETURNING invalidated_at_ms;

-- name: list_device_tokens
SELECT token, app_id, device_id, topic, environment, kind, active, invalidated_at_ms, user_id
FROM tokens WHERE device_id = ?1 ORDER BY created_at_ms, token;

-- name: list_user_tokens
SELECT token, app_id, device_id, topic, environment, kind, active, invalidated_at_ms, user_id
FROM tokens WHERE app_id = ?1 AND user_id = ?2 AND active ORDER BY token;

-- name: subscribe
INSERT INTO subscriptions (app_id, channel, token) SELECT app_id, ?2, token FROM tokens WHERE token = ?1 AND true
ON CONFLICT DO NOTHING;

-- name: unsubscribe
DELETE FROM subscriptions WHERE token = ?1 AND channel = ?2;

-- name: channel_tokens
SELECT t.token, t.app_id, t.device_id, t.topic, t.environment, t.kind, t.active, t.invalidated_at_ms, t.user_id
FROM subscriptions s JOIN tokens t ON t.token = s.token
WHERE s.app_id = ?1 AND s.channel = ?2 AND s.token > ?3 AND t.active
ORDER BY s.token LIMIT ?4;

-- name: backlog
SELECT id, apns_id, app_id, token, topic, payload, priority, push_type, expiration, collapse_id,
       device_id, kind, status, accepted_at_ms
FROM notifications
WHERE device_id = ?1 AND status = 'pending' AND kind = 'local'
  AND expires_at_s > ?2 AND (deliver_at_ms IS NULL OR deliver_at_ms <= ?3)
  AND (priority < ?4 OR (priority = ?4 AND id > ?5))
ORDER BY priority DESC, id
LIMIT ?6;

-- name: mark_delivered
UPDATE notifications SET status = 'delivered', sent_at_ms = coalesce(sent_at_ms, ?3), done_at_ms = ?4
WHERE device_id = ?1 AND id IN (SELECT value FROM json_each(?2)) AND status = 'pending' AND kind = 'local';

-- name: mark_delivered_many
-- ?1 is a JSON array of [device_id, id] pairs; an id paired with another device matches nothing.
UPDATE notifications SET status = 'delivered', sent_at_ms = coalesce(sent_at_ms, ?2), done_at_ms = ?3
WHERE id IN (
    SELECT n.id FROM json_each(?1) AS a
    JOIN notifications AS n ON n.id = json_extract(a.value, '$[1]') AND n.device_id = json_extract(a.value, '$[0]')
) AND status = 'pending' AND kind = 'local';

-- name: discard
UPDATE notifications SET status = 'discarded', done_at_ms = ?2
WHERE id IN (SELECT value FROM json_each(?1)) AND status = 'pending';

-- name: expire_due
UPDATE notifications SET status = 'expired', done_at_ms = ?3
WHERE id IN (SELECT id FROM notifications WHERE status = 'pending' AND expires_at_s <= ?1
             ORDER BY expires_at_s LIMIT ?2);

-- name: purge
DELETE FROM notifications WHERE id IN (
    SELECT id FROM notifications WHERE status <> 'pending' AND done_at_ms < ?1 LIMIT ?2
);

-- name: get_overflow
SELECT overflow FROM devices WHERE device_id = ?1;

-- name: reset_overflow
UPDATE devices SET overflow = 0 WHERE device_id = ?1;

-- name: status
SELECT apns_id, app_id, token, topic, priority, status, reason, accepted_at_ms, sent_at_ms, done_at_ms
FROM notifications WHERE app_id = ?1 AND apns_id = ?2;

-- name: claim_relay
UPDATE notifications SET lease_owner = ?1, lease_until_ms = ?3 + ?4, sent_at_ms = ?3
WHERE id IN (
    SELECT id FROM notifications
    WHERE status = 'pending' AND kind = 'apns' AND not_before_ms <= ?3 AND lease_until_ms <= ?3
      AND expires_at_s > ?3 / 1000
    ORDER BY not_before_ms, id LIMIT ?2
)
RETURNING id, apns_id, app_id, token, topic, payload, priority, push_type, expiration,
          collapse_id, device_id, kind, status, accepted_at_ms;

-- name: finish_relay
UPDATE notifications SET status = ?2, reason = ?3, apple_id = ?4, done_at_ms = ?5,
    lease_owner = NULL, lease_until_ms = 0
WHERE id = ?1 AND status = 'pending';

-- name: retry_relay
UPDATE notifications SET not_before_ms = ?2, lease_owner = NULL, lease_until_ms = 0
WHERE id = ?1 AND status = 'pending';

-- name: record_feedback
INSERT INTO feedback (app_id, token, reason, at_ms) VALUES (?1, ?2, ?3, ?4);

-- name: list_feedback
SELECT id, app_id, token, reason, at_ms FROM feedback
WHERE app_id = ?1 AND at_ms >= ?2 AND id > ?3 ORDER BY id LIMIT ?4;

-- name: purge_feedback
DELETE FROM feedback WHERE at_ms < ?1;

-- name: set_webhook
INSERT INTO webhooks (app_id, url, secret) VALUES (?1, ?2, ?3)
ON CONFLICT (app_id) DO UPDATE SET url = EXCLUDED.url, secret = EXCLUDED.secret;

-- name: get_webhook
SELECT url, secret FROM webhooks WHERE app_id = ?1;

-- name: enqueue_webhook
INSERT INTO webhook_jobs (app_id, body, next_attempt_ms, created_at_ms) VALUES (?1, ?2, ?3, ?3) RETURNING id;

-- name: claim_webhooks
UPDATE webhook_jobs SET lease_owner = ?1, lease_until_ms = ?3 + ?4
WHERE id IN (
    SELECT id FROM webhook_jobs
    WHERE state = 'pending' AND next_attempt_ms <= ?3 AND lease_until_ms <= ?3
    ORDER BY next_attempt_ms, id LIMIT ?2
)
RETURNING id, app_id, body, state, attempts, next_attempt_ms, last_error, created_at_ms;

-- name: finish_webhook_ok
UPDATE webhook_jobs SET state = 'delivered', lease_owner = NULL, lease_until_ms = 0 WHERE id = ?1;

-- name: finish_webhook_failed
UPDATE webhook_jobs SET attempts = attempts + 1, last_error = ?2,
    state = CASE WHEN ?3 IS NULL THEN 'dead' ELSE 'pending' END,
    next_attempt_ms = coalesce(?3, next_attempt_ms), lease_owner = NULL, lease_until_ms = 0
WHERE id = ?1;

-- name: list_webhook_jobs
SELECT id, app_id, body, state, attempts, next_attempt_ms, last_error, created_at_ms
FROM webhook_jobs WHERE app_id = ?1 AND (?2 IS NULL OR state = ?2) ORDER BY id LIMIT ?3;

-- name: list_api_keys
SELECT key_prefix, app_id, created_at_ms FROM api_keys WHERE app_id = ?1 ORDER BY created_at_ms;

-- accept_many, one row at a time inside one BEGIN IMMEDIATE transaction.

-- name: insert_notification
INSERT INTO notifications (apns_id, app_id, token, topic, payload, priority, push_type, expiration, expires_at_s,
                           collapse_id, device_id, kind, status, accepted_at_ms, deliver_at_ms, not_before_ms)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'pending', ?13, ?14, coalesce(?14, 0))
ON CONFLICT (app_id, apns_id) DO NOTHING
RETURNING id;

-- name: existing_notification
SELECT id, status FROM notifications WHERE app_id = ?1 AND apns_id = ?2;

-- name: collapse
UPDATE notifications SET status = 'collapsed', done_at_ms = ?4
WHERE token = ?1 AND collapse_id = ?2 AND status = 'pending' AND id < ?3
RETURNING id;

-- name: add_pending_bound
-- The token's pending bound (migration 004) after this batch's new rows;
-- no row when the token is not registered (then the exact check runs).
UPDATE tokens SET pending_bound = pending_bound + ?2 WHERE token = ?1 RETURNING pending_bound;

-- name: reset_pending_bound
UPDATE tokens SET pending_bound = (
    SELECT count(*) FROM notifications n WHERE n.token = tokens.token AND n.status = 'pending'
) WHERE token = ?1;

-- name: over_cap
SELECT id, device_id FROM notifications
WHERE token = ?1 AND status = 'pending'
ORDER BY priority DESC, id DESC
LIMIT -1 OFFSET ?2;

-- name: drop_row
UPDATE notifications SET status = 'dropped', done_at_ms = ?2 WHERE id = ?1;

-- name: add_overflow
UPDATE devices SET overflow = overflow + ?2 WHERE device_id = ?1;

-- name: pending_devices
-- Accepted in the window (the doorbell may have been lost), or scheduled
-- and come due in it (nobody routed it: it was not due at acceptance).
SELECT device_id FROM notifications
WHERE status = 'pending' AND kind = 'local' AND device_id IS NOT NULL
  AND accepted_at_ms >= ?1 AND accepted_at_ms < ?2
UNION
SELECT device_id FROM notifications
WHERE status = 'pending' AND kind = 'local' AND device_id IS NOT NULL AND deliver_at_ms IS NOT NULL
  AND deliver_at_ms >= ?1 AND deliver_at_ms < ?2
LIMIT ?3;

-- Relay in batches (the bridge's hot path): a claim counts an attempt and
-- brings the token's environment along; answers are finished or rescheduled
-- many rows per transaction.

-- name: claim_relay_batch
UPDATE notifications SET lease_owner = ?1, lease_until_ms = ?3 + ?4, sent_at_ms = ?3,
    relay_attempts = relay_attempts + 1
WHERE id IN (
    SELECT id FROM notifications
    WHERE status = 'pending' AND kind = 'apns' AND not_before_ms <= ?3 AND lease_until_ms <= ?3
      AND expires_at_s > ?3 / 1000
    ORDER BY not_before_ms, id LIMIT ?2
)
RETURNING id, apns_id, app_id, token, topic, payload, priority, push_type, expiration,
          collapse_id, device_id, kind, status, accepted_at_ms, relay_attempts,
          (SELECT t.environment FROM tokens t WHERE t.token = notifications.token) AS environment;

-- ---------------------------------------------------------------------------
-- Recurring schedules (020) and digests (021): gateway/store/schedules_store.py

-- name: schedule_insert
INSERT INTO schedules (schedule_id, app_id, target_kind, target, topic, push_type, priority, ttl_s, collapse_id,
                       payloads, every_s, cron, timezone, next_slot_ms, next_index, paused, created_at_ms)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
RETURNING *;

-- name: schedule_get
SELECT * FROM schedules WHERE app_id = ?1 AND schedule_id = ?2;

-- name: schedule_list
-- A page in creation order, after the (created_at_ms, schedule_id) cursor.
SELECT * FROM schedules WHERE app_id = ?1 AND (created_at_ms, schedule_id) > (?2, ?3)
ORDER BY created_at_ms, schedule_id LIMIT ?4;

-- name: schedule_delete
DELETE FROM schedules WHERE app_id = ?1 AND schedule_id = ?2;

-- name: schedule_set_paused
UPDATE schedules SET paused = ?3, next_slot_ms = coalesce(?4, next_slot_ms), next_index = coalesce(?5, next_index)
WHERE app_id = ?1 AND schedule_id = ?2
RETURNING *;

-- name: schedule_due
SELECT * FROM schedules WHERE paused = 0 AND next_slot_ms <= ?1 ORDER BY next_slot_ms LIMIT ?2;

-- name: schedule_advance
UPDATE schedules
SET next_slot_ms = ?3, next_index = ?4, last_slot_ms = coalesce(?5, last_slot_ms),
    fired = fired + ?6, skipped = skipped + ?7, last_error = ?8
WHERE schedule_id = ?1 AND next_slot_ms = ?2;

-- name: digest_rule_set
INSERT INTO digest_rules (app_id, window_s, max_priority, push_types, updated_at_ms)
VALUES (?1, ?2, ?3, ?4, ?5)
ON CONFLICT (app_id) DO UPDATE
SET window_s = excluded.window_s, max_priority = excluded.max_priority, push_types = excluded.push_types,
    updated_at_ms = excluded.updated_at_ms
RETURNING *;

-- name: digest_rule_get
SELECT * FROM digest_rules WHERE app_id = ?1;

-- name: digest_rule_delete
DELETE FROM digest_rules WHERE app_id = ?1;

-- name: digest_item_insert
INSERT INTO digest_items (app_id, apns_id, token, topic, device_id, kind, priority, payload, accepted_at_ms,
                          window_end_ms)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, coalesce(
    (SELECT min(window_end_ms) FROM digest_items
     WHERE app_id = ?1 AND token = ?3 AND summary_apns_id IS NULL AND window_end_ms > ?9),
    ?10))
ON CONFLICT (app_id, apns_id) DO NOTHING
RETURNING *;

-- name: digest_item_get
SELECT * FROM digest_items WHERE app_id = ?1 AND apns_id = ?2;

-- name: digest_due_tokens
SELECT DISTINCT app_id, token FROM digest_items
WHERE summary_apns_id IS NULL AND window_end_ms <= ?1
LIMIT ?2;

-- name: digest_window_items
SELECT * FROM digest_items
WHERE app_id = ?1 AND token = ?2 AND summary_apns_id IS NULL AND window_end_ms <= ?3
ORDER BY id;

-- name: digest_mark
UPDATE digest_items SET summary_apns_id = ?2, summarized_at_ms = ?3
WHERE id IN (SELECT value FROM json_each(?1)) AND summary_apns_id IS NULL;

-- name: digest_drop
UPDATE digest_items SET summary_apns_id = '', summarized_at_ms = ?3, dropped_reason = ?2
WHERE id IN (SELECT value FROM json_each(?1)) AND summary_apns_id IS NULL;

-- name: digest_purge
DELETE FROM digest_items WHERE id IN (
    SELECT id FROM digest_items WHERE summary_apns_id IS NOT NULL AND summarized_at_ms < ?1 LIMIT ?2
);


-- Apple answered BadDeviceToken: the token is no token at all, so it is
-- forgotten (its subscriptions with it) and a later push gets 400
-- BadDeviceToken, as Apple would answer; registering it again starts afresh.

-- name: forget_apns_token_subscriptions
DELETE FROM subscriptions WHERE token = ?1 AND EXISTS (SELECT 1 FROM tokens WHERE token = ?1 AND kind = 'apns');

-- name: forget_apns_token
DELETE FROM tokens WHERE token = ?1 AND kind = 'apns';
