-- Reference cloud: one row per applied report, so tests and integrators can check that
-- every reading arrived exactly once (no gap, no repeat) after outages and crashes.
CREATE TABLE applied_reports (
    agent_id    TEXT    NOT NULL,
    serial      TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    received_ms INTEGER NOT NULL
);
CREATE INDEX applied_reports_by_asset ON applied_reports(agent_id, serial, seq);
