-- Running totals of the outbox, kept by triggers on every insert and delete (enqueue,
-- acknowledgement, rejection, eviction, unenrolment), so the byte cap and the status
-- figures never scan the queue: `SUM(bytes)` read every queued body, and its cost grew
-- with the backlog on every enqueue (issue 16).
CREATE TABLE outbox_totals (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    messages INTEGER NOT NULL,
    bytes    INTEGER NOT NULL
);
INSERT INTO outbox_totals(id, messages, bytes)
    SELECT 1, COUNT(*), COALESCE(SUM(bytes), 0) FROM outbox;
CREATE TRIGGER outbox_totals_insert AFTER INSERT ON outbox BEGIN
    UPDATE outbox_totals SET messages = messages + 1, bytes = bytes + NEW.bytes WHERE id = 1;
END;
CREATE TRIGGER outbox_totals_delete AFTER DELETE ON outbox BEGIN
    UPDATE outbox_totals SET messages = messages - 1, bytes = bytes - OLD.bytes WHERE id = 1;
END;

-- A snapshot that a newer snapshot of the same printer supersedes is marked when the
-- newer one is queued, so eviction finds it through a small partial index instead of
-- comparing every queued snapshot with every other.
ALTER TABLE outbox ADD COLUMN superseded INTEGER NOT NULL DEFAULT 0;
UPDATE outbox SET superseded = 1 WHERE kind = 'snapshot' AND EXISTS (
    SELECT 1 FROM outbox n WHERE n.kind = 'snapshot' AND n.printer_key IS outbox.printer_key AND n.id > outbox.id);
CREATE INDEX outbox_superseded ON outbox(id) WHERE superseded = 1;
CREATE INDEX outbox_by_printer ON outbox(printer_key, kind, id);
