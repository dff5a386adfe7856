-- Route repair: see the PostgreSQL migration of the same name.
CREATE INDEX IF NOT EXISTS notifications_pending_accepted ON notifications (accepted_at_ms)
    WHERE status = 'pending' AND kind = 'local';
CREATE INDEX IF NOT EXISTS notifications_pending_due ON notifications (deliver_at_ms)
    WHERE status = 'pending' AND kind = 'local' AND deliver_at_ms IS NOT NULL;
