-- Printers the agent manages, their health and schedule bookkeeping.
CREATE TABLE printers (
    id                   INTEGER PRIMARY KEY,
    address              TEXT    NOT NULL UNIQUE,
    serial               TEXT,
    manufacturer         TEXT,
    model                TEXT,
    health               TEXT    NOT NULL DEFAULT 'unknown',
    health_reason        TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    first_seen_ms        INTEGER,
    last_seen_ms         INTEGER,
    last_attempt_ms      INTEGER
);

-- The latest successful report per printer (JSON, the `poll --json` shape).
CREATE TABLE latest_state (
    printer_id      INTEGER PRIMARY KEY REFERENCES printers(id) ON DELETE CASCADE,
    collected_at_ms INTEGER NOT NULL,
    report          TEXT    NOT NULL
);

-- Change events the cloud link needs: health transitions, counter resets and jumps,
-- supply replacements, alerts raised and cleared.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY,
    printer_id INTEGER NOT NULL REFERENCES printers(id) ON DELETE CASCADE,
    at_ms      INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    detail     TEXT    NOT NULL
);
CREATE INDEX events_by_printer ON events(printer_id, id);
