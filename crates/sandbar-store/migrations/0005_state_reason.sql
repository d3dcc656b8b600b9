-- Why and when a sandbox last changed state (auto-stop, OOM kill, archive, ...): `state_reason`
-- is NULL when a user asked for the change. See docs/lifecycle.md.
ALTER TABLE sandboxes ADD COLUMN state_reason TEXT;
ALTER TABLE sandboxes ADD COLUMN state_changed_at TEXT;
UPDATE sandboxes SET state_changed_at = updated_at;
