-- A job waiting for its window (a firmwareUpdate's startAt) is recorded as 'waiting':
-- it holds no job slot while it waits, and a restart re-arms it instead of reporting it
-- interrupted. SQLite cannot change a CHECK constraint in place: the table is rebuilt.
CREATE TABLE jobs_new (
    job_id      TEXT    PRIMARY KEY,
    kind        TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('accepted', 'waiting', 'running', 'done')),
    result      TEXT,
    result_sent INTEGER NOT NULL DEFAULT 0,
    received_ms INTEGER NOT NULL,
    finished_ms INTEGER
);
INSERT INTO jobs_new (job_id, kind, body, state, result, result_sent, received_ms, finished_ms)
    SELECT job_id, kind, body, state, result, result_sent, received_ms, finished_ms FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
