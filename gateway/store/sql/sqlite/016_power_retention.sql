-- Power state does not outlive what it is about (issue 8; Maintenance purges the rest).
--
-- Quiet hours belong to a device: deleting the device deletes them (cascade).
-- SQLite cannot add a constraint to a table: rebuild it, without the rows of
-- devices deleted before this migration.
CREATE TABLE device_settings_new (
    device_id        text PRIMARY KEY REFERENCES devices (device_id) ON DELETE CASCADE,
    quiet_start_min  integer,
    quiet_end_min    integer,
    quiet_tz         text,
    updated_at_ms    bigint NOT NULL
);
INSERT INTO device_settings_new
SELECT s.* FROM device_settings s WHERE EXISTS (SELECT 1 FROM devices d WHERE d.device_id = s.device_id);
DROP TABLE device_settings;
ALTER TABLE device_settings_new RENAME TO device_settings;

-- The background budget counts the last hour only; older rows of devices
-- that got no background push since are purged by time.
CREATE INDEX background_sends_at ON background_sends (at_ms);
