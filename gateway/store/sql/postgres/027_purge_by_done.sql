-- Retention counts from when a notification ended (done_at_ms), not from
-- when it was accepted, so the purge reads notifications_done (025) and
-- notifications_purge goes: every terminal transition is a non-HOT update
-- that wrote an entry into both.  Terminal rows from before done_at_ms was
-- set everywhere get their acceptance time, as the old rule used.
UPDATE notifications SET done_at_ms = accepted_at_ms WHERE status <> 'pending' AND done_at_ms IS NULL;
DROP INDEX IF EXISTS notifications_purge;
