-- What the cloud holds per printer: the keyed view of the last uploaded state, its
-- report sequence number and when the last full snapshot went out.
CREATE TABLE sent_state (
    printer_key      TEXT    PRIMARY KEY,
    seq              INTEGER NOT NULL,
    keyed            TEXT    NOT NULL,
    last_snapshot_ms INTEGER NOT NULL
);
