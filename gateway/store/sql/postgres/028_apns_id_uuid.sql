-- apns_id holds a lowercase UUID (schemas/apns.py and every generator make
-- sure of it), so it is stored as one: 16 bytes instead of 37 in the row and
-- in the (app_id, apns_id) uniqueness index, whose insert lands on a random
-- leaf for every accepted row.  Measured with `python -m loadtest store
-- --window 0 --batch 500 --flushers 8`: ~2 us of server CPU per row less
-- (BENCHMARKS.md, sixth session).  Queries read it back as text
-- (`apns_id::text`), so callers still see the same strings.
-- The table is rewritten once, under an exclusive lock.
ALTER TABLE notifications ALTER COLUMN apns_id TYPE uuid USING apns_id::uuid;
