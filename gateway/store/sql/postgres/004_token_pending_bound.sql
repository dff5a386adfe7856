-- An upper bound of each token's pending notifications, so the backlog cap
-- is checked exactly only for tokens that may be over it (reading every
-- pending row of every token of a batch cost ~17 us per accepted row).
-- Only accept makes rows pending, and it adds what it inserted in the same
-- transaction; every other change lowers the true count, so the bound stays
-- an upper bound.  The exact check resets it to the true count.
ALTER TABLE tokens ADD COLUMN pending_bound bigint NOT NULL DEFAULT 0;
UPDATE tokens t SET pending_bound = c.n
FROM (SELECT token, count(*) AS n FROM notifications WHERE status = 'pending' GROUP BY token) c
WHERE t.token = c.token;
-- Room in each page so the per-batch bound updates stay HOT (no index writes).
ALTER TABLE tokens SET (fillfactor = 70);
