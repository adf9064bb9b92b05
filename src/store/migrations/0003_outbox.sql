-- Messages for the cloud, durable before the agent considers them sent. Sent in id order;
-- message_id is the idempotency key the cloud uses to count a resend once.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    message_id      TEXT    NOT NULL UNIQUE,
    printer_key     TEXT,
    kind            TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    bytes           INTEGER NOT NULL,
    created_ms      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_by_kind ON outbox(kind, id);

-- Monotonic counters that must survive restarts (outbox evictions and rejections).
CREATE TABLE counters (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
);
