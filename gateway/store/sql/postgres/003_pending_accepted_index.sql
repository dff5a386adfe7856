-- Route repair: find connected devices whose pending rows were accepted a
-- moment ago but may never have been routed (the API died between commit
-- and publish, or a doorbell was lost).  Scanned by acceptance time window.
CREATE INDEX IF NOT EXISTS notifications_pending_accepted ON notifications (accepted_at_ms)
    WHERE status = 'pending' AND kind = 'local';
-- Scheduled pushes (deliver_at_ms) come due long after acceptance: the route
-- repair finds them by due time, so a connected device gets them on time.
CREATE INDEX IF NOT EXISTS notifications_pending_due ON notifications (deliver_at_ms)
    WHERE status = 'pending' AND kind = 'local' AND deliver_at_ms IS NOT NULL;
