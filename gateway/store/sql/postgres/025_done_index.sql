-- Admin statistics read what happened since their last look (terminal
-- transitions by done_at_ms) instead of scanning the table: the cost of a
-- snapshot follows the traffic since the previous one, not the retention.
-- Rows become terminal with a non-HOT update that already writes every index
-- whose predicate the new row matches; this is one more of those.
CREATE INDEX IF NOT EXISTS notifications_done ON notifications (done_at_ms) WHERE status <> 'pending';
