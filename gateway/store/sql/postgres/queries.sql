-- Named queries of the PostgreSQL store (gateway/store/postgres.py).

-- name: create_team
INSERT INTO teams (team_id, name, created_at_ms) VALUES ($1, $2, $3)
ON CONFLICT (team_id) DO UPDATE SET name = EXCLUDED.name
RETURNING team_id, name;

-- name: create_app
INSERT INTO apps (team_id, bundle_id, name) VALUES ($1, $2, $3) RETURNING app_id, team_id, bundle_id, name;

-- name: get_app
SELECT app_id, team_id, bundle_id, name FROM apps WHERE app_id = $1;

-- name: get_app_by_bundle
SELECT app_id, team_id, bundle_id, name FROM apps WHERE bundle_id = $1;

-- name: list_apps
SELECT app_id, team_id, bundle_id, name FROM apps WHERE $1::text IS NULL OR team_id = $1 ORDER BY app_id;

-- name: add_provider_key
INSERT INTO provider_keys (key_id, team_id, public_key_pem) VALUES ($1, $2, $3)
ON CONFLICT (key_id) DO UPDATE SET team_id = EXCLUDED.team_id, public_key_pem = EXCLUDED.public_key_pem, revoked = false
RETURNING key_id, team_id, public_key_pem, revoked;

-- name: get_provider_key
SELECT key_id, team_id, public_key_pem, revoked FROM provider_keys WHERE key_id = $1;

-- name: revoke_provider_key
UPDATE provider_keys SET revoked = true WHERE key_id = $1;

-- name: create_api_key
INSERT INTO api_keys (key_hash, key_prefix, app_id, created_at_ms) VALUES ($1, $2, $3, $4);

-- name: verify_api_key
SELECT k.key_hash, a.app_id, a.team_id, a.bundle_id, a.name
FROM api_keys k JOIN apps a ON a.app_id = k.app_id WHERE k.key_hash = $1;

-- name: create_device
INSERT INTO devices (device_id, app_id, user_id, secret_hash, created_at_ms) VALUES ($1, $2, $3, $4, $5);

-- name: get_device
SELECT device_id, app_id, user_id, created_at_ms, secret_hash FROM devices WHERE device_id = $1;

-- name: deactivate_device_tokens
UPDATE tokens SET active = false, invalidated_at_ms = $2 WHERE device_id = $1 AND active
RETURNING token, app_id, device_id, topic, environment, kind, active, invalidated_at_ms, user_id;

-- name: discard_device_rows
UPDATE notifications SET status = 'discarded', reason = 'DeviceDeleted', done_at_ms = $2
WHERE device_id = $1 AND status = 'pending';

-- name: delete_device
DELETE FROM devices WHERE device_id = $1;

-- name: insert_token
INSERT INTO tokens (token, app_id, device_id, topic, environment, kind, active, user_id, created_at_ms)
VALUES ($1, $2, $3, $4, $5, $6, true, $7, $8)
RETURNING token, app_id, device_id, topic, environment, kind, active, invalidated_at_ms, user_id;

-- name: register_apns_token
INSERT INTO tokens (token, app_id, device_id, topic, environment, kind, active, user_id, created_at_ms)
VALUES ($1, $2, NULL, $3, $4, 'apns', true, $5, $6)
ON CONFLICT (token) DO UPDATE SET app_id = EXCLUDED.app_id, topic = EXCLUDED.topic,
    environment = EXCLUDED.environment, kind = 'apns', active = true, invalidated_at_ms = NULL,
    user_id = EXCLUDED.user_id
RETURNING token, app_id, device_id, topic, environment, kind, active, invalidated_at_ms, user_id;

-- name: get_token
SELECT token, app_id, device_id, topic, environment, kind, active, invalidated_at_ms, user_id
FROM tokens WHERE token = $1;

-- name: get_tokens
-- Many tokens in one round trip (the token cache's misses of one loop tick or one batch).
SELECT token, app_id, device_id, topic, environment, kind, active, invalidated_at_ms, user_id
FROM tokens WHERE token = ANY($1::text[]);

-- name: unregister_token
UPDATE tokens SET invalidated_at_ms = CASE WHEN active THEN $2 ELSE coalesce(invalidated_at_ms, $2) END,
    active = false
WHERE token = $1 RETURNING invalidated_at_ms;

-- name: list_device_tokens
SELECT token, app_id, device_id, topic, environment, kind, active, invalidated_at_ms, user_id
FROM tokens WHERE device_id = $1 ORDER BY created_at_ms, token;

-- name: list_user_tokens
SELECT token, app_id, device_id, topic, environment, kind, active, invalidated_at_ms, user_id
FROM tokens WHERE app_id = $1 AND user_id = $2 AND active ORDER BY token;

-- name: subscribe
INSERT INTO subscriptions (app_id, channel, token) SELECT app_id, $2, token FROM tokens WHERE token = $1
ON CONFLICT DO NOTHING;

-- name: unsubscribe
DELETE FROM subscriptions WHERE token = $1 AND channel = $2;

-- name: channel_tokens
SELECT t.token, t.app_id, t.device_id, t.topic, t.environment, t.kind, t.active, t.invalidated_at_ms, t.user_id
FROM subscriptions s JOIN tokens t ON t.token = s.token
WHERE s.app_id = $1 AND s.channel = $2 AND s.token > $3 AND t.active
ORDER BY s.token LIMIT $4;

-- name: backlog
SELECT id, apns_id::text AS apns_id, app_id, token, topic, payload, priority, push_type, expiration, collapse_id,
       device_id, kind, status, accepted_at_ms
FROM notifications
WHERE hashtext(device_id) = hashtext($1) AND device_id = $1 AND status = 'pending' AND kind = 'local'
  AND expires_at_s > $2 AND (deliver_at_ms IS NULL OR deliver_at_ms <= $3)
  AND (priority < $4 OR (priority = $4 AND id > $5))
ORDER BY priority DESC, id
LIMIT $6;

-- name: mark_delivered
UPDATE notifications SET status = 'delivered', sent_at_ms = coalesce(sent_at_ms, $3), done_at_ms = $4
WHERE device_id = $1 AND id = ANY($2::bigint[]) AND status = 'pending' AND kind = 'local';

-- name: mark_delivered_many
-- (device_id, id) pairs of many devices in one statement; an id paired with another device matches nothing.
UPDATE notifications n SET status = 'delivered', sent_at_ms = coalesce(n.sent_at_ms, $3), done_at_ms = $4
FROM unnest($1::text[], $2::bigint[]) AS a(device_id, id)
WHERE n.id = a.id AND n.device_id = a.device_id AND n.status = 'pending' AND n.kind = 'local';

-- name: discard
UPDATE notifications SET status = 'discarded', done_at_ms = $2
WHERE id = ANY($1::bigint[]) AND status = 'pending';

-- name: expire_due
WITH due AS (
    SELECT id FROM notifications WHERE status = 'pending' AND expires_at_s <= $1
    ORDER BY expires_at_s LIMIT $2 FOR UPDATE SKIP LOCKED
)
UPDATE notifications n SET status = 'expired', done_at_ms = $3 FROM due WHERE n.id = due.id;

-- name: purge
DELETE FROM notifications WHERE id IN (
    SELECT id FROM notifications WHERE status <> 'pending' AND done_at_ms < $1 LIMIT $2
);

-- name: take_overflow
UPDATE devices d SET overflow = 0
FROM (SELECT device_id, overflow FROM devices WHERE device_id = $1 FOR UPDATE) old
WHERE d.device_id = old.device_id
RETURNING old.overflow;

-- name: status
-- $2 is a lowercase UUID (the store checks it before asking).
SELECT apns_id::text AS apns_id, app_id, token, topic, priority, status, reason, accepted_at_ms, sent_at_ms, done_at_ms
FROM notifications WHERE app_id = $1 AND apns_id = $2::uuid;

-- name: claim_relay
WITH c AS (
    SELECT id FROM notifications
    WHERE status = 'pending' AND kind = 'apns' AND not_before_ms <= $3 AND lease_until_ms <= $3
      AND expires_at_s > $3 / 1000
    ORDER BY not_before_ms, id LIMIT $2 FOR UPDATE SKIP LOCKED
)
UPDATE notifications n SET lease_owner = $1, lease_until_ms = $3 + $4, sent_at_ms = $3
FROM c WHERE n.id = c.id
RETURNING n.id, n.apns_id::text AS apns_id, n.app_id, n.token, n.topic, n.payload, n.priority, n.push_type, n.expiration,
          n.collapse_id, n.device_id, n.kind, n.status, n.accepted_at_ms;

-- name: finish_relay
UPDATE notifications SET status = $2, reason = $3, apple_id = $4, done_at_ms = $5,
    lease_owner = NULL, lease_until_ms = 0
WHERE id = $1 AND status = 'pending';

-- name: retry_relay
UPDATE notifications SET not_before_ms = $2, lease_owner = NULL, lease_until_ms = 0
WHERE id = $1 AND status = 'pending';

-- name: record_feedback
INSERT INTO feedback (app_id, token, reason, at_ms) VALUES ($1, $2, $3, $4);

-- name: list_feedback
SELECT id, app_id, token, reason, at_ms FROM feedback
WHERE app_id = $1 AND at_ms >= $2 AND id > $3 ORDER BY id LIMIT $4;

-- name: purge_feedback
DELETE FROM feedback WHERE at_ms < $1;

-- name: set_webhook
INSERT INTO webhooks (app_id, url, secret) VALUES ($1, $2, $3)
ON CONFLICT (app_id) DO UPDATE SET url = EXCLUDED.url, secret = EXCLUDED.secret;

-- name: get_webhook
SELECT url, secret FROM webhooks WHERE app_id = $1;

-- name: enqueue_webhook
INSERT INTO webhook_jobs (app_id, body, next_attempt_ms, created_at_ms) VALUES ($1, $2, $3, $3) RETURNING id;

-- name: claim_webhooks
WITH c AS (
    SELECT id FROM webhook_jobs
    WHERE state = 'pending' AND next_attempt_ms <= $3 AND lease_until_ms <= $3
    ORDER BY next_attempt_ms, id LIMIT $2 FOR UPDATE SKIP LOCKED
)
UPDATE webhook_jobs j SET lease_owner = $1, lease_until_ms = $3 + $4 FROM c WHERE j.id = c.id
RETURNING j.id, j.app_id, j.body, j.state, j.attempts, j.next_attempt_ms, j.last_error, j.created_at_ms;

-- name: finish_webhook_ok
UPDATE webhook_jobs SET state = 'delivered', lease_owner = NULL, lease_until_ms = 0 WHERE id = $1;

-- name: finish_webhook_failed
UPDATE webhook_jobs SET attempts = attempts + 1, last_error = $2,
    state = CASE WHEN $3::bigint IS NULL THEN 'dead' ELSE 'pending' END,
    next_attempt_ms = coalesce($3, next_attempt_ms), lease_owner = NULL, lease_until_ms = 0
WHERE id = $1;

-- name: list_webhook_jobs
SELECT id, app_id, body, state, attempts, next_attempt_ms, last_error, created_at_ms
FROM webhook_jobs WHERE app_id = $1 AND ($2::text IS NULL OR state = $2) ORDER BY id LIMIT $3;

-- name: list_api_keys
SELECT key_prefix, app_id, created_at_ms FROM api_keys WHERE app_id = $1 ORDER BY created_at_ms;

-- accept_many in one short transaction: BEGIN, accept_prepare, COPY of the
-- new rows with their pre-assigned ids, accept_bound, COMMIT (postgres.py).
-- Collapse and the exact cap check run only when a batch needs them.  The
-- caller removes duplicates inside the batch and computes expires_at_s.

-- name: accept_prepare
-- One round trip before the COPY, taking no row lock:
-- * ids: $3 fresh ids in one call, handed out in input order so ids follow
--   acceptance order;
-- * known: the (app_id, apns_id) already accepted (idempotency), id and status
--   (the store passes empty arrays while it has seen no resends: postgres.py).
WITH known AS (
    -- LIMIT 1 keeps this a probe of the unique index per row (it cannot be
    -- turned into a join that scans the table).
    SELECT k.app_id, k.apns_id, k.id, k.status
    FROM unnest($1::bigint[], $2::uuid[]) AS u(app_id, apns_id), LATERAL (
        SELECT n.app_id, n.apns_id, n.id, n.status FROM notifications n
        WHERE n.app_id = u.app_id AND n.apns_id = u.apns_id LIMIT 1
    ) k
)
SELECT (SELECT array_agg(nextval('notifications_id_seq')) FROM generate_series(1, $3::int)) AS ids,
       ARRAY(SELECT k.app_id FROM known k) AS known_app_ids,
       ARRAY(SELECT k.apns_id::text FROM known k) AS known_apns_ids,
       ARRAY(SELECT k.id FROM known k) AS known_ids,
       ARRAY(SELECT k.status FROM known k) AS known_statuses;

-- name: accept_bound
-- After the COPY, just before COMMIT: the pending bound of each token
-- (migration 004) grows by its rows of the batch (a known row counted too
-- only loosens the upper bound).  It locks the token rows ($1 sorted: one
-- lock order) until the commit, so it comes last: a concurrent batch of
-- another process with some of the same tokens waits for this UPDATE and the
-- commit, not for the COPY too.  Returned: the tokens whose bound passes the
-- cap $3 (they get the exact check) and how many tokens have a row to keep a
-- bound in (fewer than $1: the others are checked exactly too).
WITH bound AS (
    UPDATE tokens t SET pending_bound = t.pending_bound + u.n
    FROM unnest($1::text[], $2::bigint[]) AS u(token, n)
    WHERE t.token = u.token
    RETURNING t.token, t.pending_bound
)
SELECT ARRAY(SELECT b.token FROM bound b WHERE b.pending_bound > $3) AS over_tokens,
       (SELECT count(*) FROM bound) AS bounded;

-- name: accept_registered_tokens
-- Which of the batch's tokens have a token row (rarely needed: see bounded).
SELECT token FROM tokens WHERE token = ANY($1::text[]);

-- name: accept_collapse
-- Per (token, collapse_id) of the batch only the newest pending row survives.
UPDATE notifications n SET status = 'collapsed', done_at_ms = $4
FROM unnest($1::text[], $2::text[], $3::bigint[]) AS k(token, collapse_id, keep)
WHERE n.token = k.token AND n.collapse_id = k.collapse_id AND n.status = 'pending' AND n.id < k.keep
RETURNING n.id, n.token, n.collapse_id;

-- name: accept_bound_reset
-- After the exact check: the bound becomes the true pending count (the two
-- halves as migration 005 splits them: a device token's rows through the
-- drain index, the others through the token index).
UPDATE tokens t SET pending_bound = (
    SELECT count(*) FROM notifications n
    WHERE hashtext(n.device_id) = hashtext(t.device_id) AND n.device_id = t.device_id AND n.token = t.token
      AND n.status = 'pending' AND n.kind = 'local'
) + (
    SELECT count(*) FROM notifications n
    WHERE n.token = t.token AND n.status = 'pending' AND (n.kind <> 'local' OR n.device_id IS NULL)
)
WHERE t.token = ANY($1::text[]);

-- name: accept_cap
-- Backlog cap: keep the $3 highest-priority, newest pending rows per token
-- ($1 tokens, $2 their device or NULL); the dropped rows' devices learn it
-- through devices.overflow.
WITH t AS (
    SELECT * FROM unnest($1::text[], $2::text[]) AS t(token, device_id)
), over AS (
    SELECT x.id FROM t, LATERAL (
        SELECT n.id FROM notifications n
        WHERE hashtext(n.device_id) = hashtext(t.device_id) AND n.device_id = t.device_id AND n.token = t.token
          AND n.status = 'pending' AND n.kind = 'local'
        ORDER BY n.priority DESC, n.id DESC
        OFFSET $3
    ) x
    WHERE t.device_id IS NOT NULL
    UNION ALL
    SELECT x.id FROM t, LATERAL (
        SELECT n.id FROM notifications n
        WHERE n.token = t.token AND n.status = 'pending' AND (n.kind <> 'local' OR n.device_id IS NULL)
        ORDER BY n.priority DESC, n.id DESC
        OFFSET $3
    ) x
    WHERE t.device_id IS NULL
), dropped AS (
    UPDATE notifications n SET status = 'dropped', done_at_ms = $4
    FROM over WHERE n.id = over.id
    RETURNING n.id, n.device_id
), counted AS (
    UPDATE devices d SET overflow = d.overflow + c.cnt
    FROM (SELECT device_id, count(*) AS cnt FROM dropped WHERE device_id IS NOT NULL GROUP BY device_id) c
    WHERE d.device_id = c.device_id
)
SELECT id FROM dropped;

-- name: pending_devices
-- Accepted in the window (the doorbell may have been lost), or scheduled
-- and come due in it (nobody routed it: it was not due at acceptance).
SELECT device_id FROM notifications
WHERE status = 'pending' AND kind = 'local' AND device_id IS NOT NULL
  AND accepted_at_ms >= $1 AND accepted_at_ms < $2
UNION
SELECT device_id FROM notifications
WHERE status = 'pending' AND kind = 'local' AND device_id IS NOT NULL AND deliver_at_ms IS NOT NULL
  AND deliver_at_ms >= $1 AND deliver_at_ms < $2
LIMIT $3;

-- Relay in batches (the bridge's hot path): a claim counts an attempt and
-- brings the token's environment along; answers are finished or rescheduled
-- many rows per statement.

-- name: claim_relay_batch
WITH c AS (
    SELECT id FROM notifications
    WHERE status = 'pending' AND kind = 'apns' AND not_before_ms <= $3 AND lease_until_ms <= $3
      AND expires_at_s > $3 / 1000
    ORDER BY not_before_ms, id LIMIT $2 FOR UPDATE SKIP LOCKED
)
UPDATE notifications n SET lease_owner = $1, lease_until_ms = $3 + $4, sent_at_ms = $3,
    relay_attempts = n.relay_attempts + 1
FROM c WHERE n.id = c.id
RETURNING n.id, n.apns_id::text AS apns_id, n.app_id, n.token, n.topic, n.payload, n.priority, n.push_type, n.expiration,
          n.collapse_id, n.device_id, n.kind, n.status, n.accepted_at_ms, n.relay_attempts,
          (SELECT t.environment FROM tokens t WHERE t.token = n.token) AS environment;

-- name: finish_relay_many
UPDATE notifications n SET status = u.status, reason = u.reason, apple_id = u.apple_id, done_at_ms = $5,
    lease_owner = NULL, lease_until_ms = 0
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS u(id, status, reason, apple_id)
WHERE n.id = u.id AND n.status = 'pending';

-- name: retry_relay_many
UPDATE notifications n SET not_before_ms = u.not_before_ms, lease_owner = NULL, lease_until_ms = 0
FROM unnest($1::bigint[], $2::bigint[]) AS u(id, not_before_ms)
WHERE n.id = u.id AND n.status = 'pending';

-- ---------------------------------------------------------------------------
-- Recurring schedules (020) and digests (021): gateway/store/schedules_store.py

-- name: schedule_insert
INSERT INTO schedules (schedule_id, app_id, target_kind, target, topic, push_type, priority, ttl_s, collapse_id,
                       payloads, every_s, cron, timezone, next_slot_ms, next_index, paused, created_at_ms)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
RETURNING *;

-- name: schedule_get
SELECT * FROM schedules WHERE app_id = $1 AND schedule_id = $2;

-- name: schedule_list
-- A page in creation order, after the (created_at_ms, schedule_id) cursor.
SELECT * FROM schedules WHERE app_id = $1 AND (created_at_ms, schedule_id) > ($2, $3)
ORDER BY created_at_ms, schedule_id LIMIT $4;

-- name: schedule_delete
DELETE FROM schedules WHERE app_id = $1 AND schedule_id = $2;

-- name: schedule_set_paused
-- Resuming moves next_slot_ms to the first slot from now on (the worker
-- computes it): slots that fell while paused are not caught up.
UPDATE schedules SET paused = $3, next_slot_ms = coalesce($4, next_slot_ms), next_index = coalesce($5, next_index)
WHERE app_id = $1 AND schedule_id = $2
RETURNING *;

-- name: schedule_due
SELECT * FROM schedules WHERE NOT paused AND next_slot_ms <= $1 ORDER BY next_slot_ms LIMIT $2;

-- name: schedule_advance
-- Compare-and-set on next_slot_ms: of two workers firing one slot, one advances.
UPDATE schedules
SET next_slot_ms = $3, next_index = $4, last_slot_ms = coalesce($5, last_slot_ms),
    fired = fired + $6, skipped = skipped + $7, last_error = $8
WHERE schedule_id = $1 AND next_slot_ms = $2;

-- name: digest_rule_set
INSERT INTO digest_rules (app_id, window_s, max_priority, push_types, updated_at_ms)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (app_id) DO UPDATE
SET window_s = EXCLUDED.window_s, max_priority = EXCLUDED.max_priority, push_types = EXCLUDED.push_types,
    updated_at_ms = EXCLUDED.updated_at_ms
RETURNING *;

-- name: digest_rule_get
SELECT * FROM digest_rules WHERE app_id = $1;

-- name: digest_rule_delete
DELETE FROM digest_rules WHERE app_id = $1;

-- name: digest_item_insert
-- An item joins the open window of its token, or opens one ending $11.
INSERT INTO digest_items (app_id, apns_id, token, topic, device_id, kind, priority, payload, accepted_at_ms,
                          window_end_ms)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, coalesce(
    (SELECT min(window_end_ms) FROM digest_items
     WHERE app_id = $1 AND token = $3 AND summary_apns_id IS NULL AND window_end_ms > $9),
    $10))
ON CONFLICT (app_id, apns_id) DO NOTHING
RETURNING *;

-- name: digest_item_get
SELECT * FROM digest_items WHERE app_id = $1 AND apns_id = $2;

-- name: digest_due_tokens
SELECT DISTINCT app_id, token FROM digest_items
WHERE summary_apns_id IS NULL AND window_end_ms <= $1
LIMIT $2;

-- name: digest_window_items
SELECT * FROM digest_items
WHERE app_id = $1 AND token = $2 AND summary_apns_id IS NULL AND window_end_ms <= $3
ORDER BY id;

-- name: digest_mark
UPDATE digest_items SET summary_apns_id = $2, summarized_at_ms = $3
WHERE id = ANY($1::bigint[]) AND summary_apns_id IS NULL;

-- name: digest_drop
UPDATE digest_items SET summary_apns_id = '', summarized_at_ms = $3, dropped_reason = $2
WHERE id = ANY($1::bigint[]) AND summary_apns_id IS NULL;

-- name: digest_purge
DELETE FROM digest_items WHERE id IN (
    SELECT id FROM digest_items WHERE summary_apns_id IS NOT NULL AND summarized_at_ms < $1 LIMIT $2
);

-- name: forget_apns_token
-- Apple answered BadDeviceToken: the token is no token at all, so it is
-- forgotten (its subscriptions with it) and a later push gets 400
-- BadDeviceToken, as Apple would answer; registering it again starts afresh.
WITH gone_subscriptions AS (DELETE FROM subscriptions WHERE token = $1 AND EXISTS (
    SELECT 1 FROM tokens WHERE token = $1 AND kind = 'apns'))
DELETE FROM tokens WHERE token = $1 AND kind = 'apns';
