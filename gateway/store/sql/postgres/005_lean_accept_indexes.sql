-- Every accepted row of a device token was written into two per-token
-- B-trees at a random leaf: the drain index (device_id, ...) and the cap
-- index (token, ...).  Measured: ~10 us and ~15-25 us of server CPU per row.
-- The backlog cap of a device token reads the drain index instead (device,
-- then the token as a filter), so the cap index keeps only the rows the
-- drain index does not hold: relay rows (kind apns) and rows without a
-- device.  The two predicates split the pending rows without overlap.
DROP INDEX IF EXISTS notifications_token_pending;
CREATE INDEX notifications_token_pending ON notifications (token, priority, id)
    WHERE status = 'pending' AND (kind <> 'local' OR device_id IS NULL);
