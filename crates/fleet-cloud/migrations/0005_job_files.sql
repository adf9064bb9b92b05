-- Reference cloud: files agents upload for a job (printer MIB walks, agent log bundles).
CREATE TABLE job_files (
    job_id      TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    agent_id    TEXT    NOT NULL,
    body        BLOB    NOT NULL,
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (job_id, name)
);
