-- Power state does not outlive what it is about (issue 8; Maintenance purges the rest).
--
-- Quiet hours belong to a device: deleting the device deletes them (cascade).
-- Rows of devices deleted before this migration go first.
DELETE FROM device_settings s WHERE NOT EXISTS (SELECT 1 FROM devices d WHERE d.device_id = s.device_id);
ALTER TABLE device_settings
    ADD CONSTRAINT device_settings_device FOREIGN KEY (device_id) REFERENCES devices (device_id) ON DELETE CASCADE;

-- The background budget counts the last hour only; older rows of devices
-- that got no background push since are purged by time.
CREATE INDEX background_sends_at ON background_sends (at_ms);
