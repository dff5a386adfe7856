-- An upper bound of each token's pending notifications (see the PostgreSQL
-- migration of the same number): the backlog cap is checked exactly only
-- for tokens that may be over it.
ALTER TABLE tokens ADD COLUMN pending_bound INTEGER NOT NULL DEFAULT 0;
UPDATE tokens SET pending_bound = (
    SELECT count(*) FROM notifications n WHERE n.token = tokens.token AND n.status = 'pending'
);
