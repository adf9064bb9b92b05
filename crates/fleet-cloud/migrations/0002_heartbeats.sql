-- Reference cloud: the last heartbeat of each agent.
CREATE TABLE heartbeats (
    agent_id    TEXT    PRIMARY KEY REFERENCES agents(id),
    received_ms INTEGER NOT NULL,
    body        TEXT    NOT NULL
);
