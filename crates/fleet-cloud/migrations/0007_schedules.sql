-- Reference cloud: recurring jobs (a compliance check every day...). Each period a new
-- pending job is queued for the agent, with the schedule's type, printer and params.
CREATE TABLE schedules (
    schedule_id TEXT    PRIMARY KEY,
    agent_id    TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    printer     TEXT,
    params      TEXT    NOT NULL,
    every_ms    INTEGER NOT NULL,
    next_ms     INTEGER NOT NULL,
    created_ms  INTEGER NOT NULL
);
