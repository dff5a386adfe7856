-- Route repair: see the PostgreSQL migration of the same name.
CREATE INDEX IF NOT EXISTS notifications_pending_accepted ON notifications (accepted_at_ms)
    WHERE status = 'pending' AND kind = 'local';
