-- A digest window whose token was unregistered (or its device deleted) before
-- the window ended is closed without a summary (gateway/digest.py): its items
-- get summary_apns_id = '' (closed, so every "open window" query and index
-- keeps working unchanged), summarized_at_ms = when, and the reason here.
ALTER TABLE digest_items ADD COLUMN dropped_reason text;
