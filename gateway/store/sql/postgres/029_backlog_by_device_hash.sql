-- The drain index gets one entry per accepted row at a random leaf (one
-- device's rows sit together).  Keyed by a 4-byte hash of the device id
-- instead of the 22-character id, its entries are half the size (24 bytes):
-- fewer leaves to find in cache and split, integer comparisons on the way
-- down.  Every query that reads it names both `hashtext(device_id) =
-- hashtext(<id>)` (the index key) and `device_id = <id>` (the rows of one
-- device among the few that share a hash); the order within a key is still
-- priority DESC, id, so a backlog page needs no sort.
-- hashtext() is immutable and hashes the bytes (the column's collation is
-- deterministic), as hash indexes on text rely on too.
DROP INDEX IF EXISTS notifications_backlog;
CREATE INDEX notifications_backlog ON notifications (hashtext(device_id), priority DESC, id)
    WHERE status = 'pending' AND kind = 'local';
