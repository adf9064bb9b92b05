-- Jobs from the cloud. A job is recorded here before it runs, so a restart never runs it
-- twice (a job found 'running' at start was interrupted and is reported as such) and its
-- result survives until the cloud has it (result_sent).
CREATE TABLE jobs (
    job_id      TEXT    PRIMARY KEY,
    kind        TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('accepted', 'running', 'done')),
    result      TEXT,
    result_sent INTEGER NOT NULL DEFAULT 0,
    received_ms INTEGER NOT NULL,
    finished_ms INTEGER
);
