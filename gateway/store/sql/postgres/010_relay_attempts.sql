-- Relay attempts per notification (kind apns), counted when a sender claims
-- the row: a restarted sender keeps the backoff schedule and the limit on
-- attempts, and a row that crashes its senders cannot be claimed forever.
-- A constant default adds the column without rewriting the table.
ALTER TABLE notifications ADD COLUMN relay_attempts integer NOT NULL DEFAULT 0;
