-- Reference cloud: jobs queued for agents (SEED-AGENT.md §2.3 states: pending,
-- inProgress, completed, failed, stopped, expired).
CREATE TABLE jobs (
    job_id       TEXT    PRIMARY KEY,
    agent_id     TEXT    NOT NULL REFERENCES agents(id),
    kind         TEXT    NOT NULL,
    printer      TEXT,
    params       TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    created_ms   INTEGER NOT NULL,
    not_after_ms INTEGER,
    ack_ms       INTEGER,
    done_ms      INTEGER,
    progress     TEXT,
    result       TEXT
);
CREATE INDEX jobs_by_agent ON jobs(agent_id, state, created_ms);
