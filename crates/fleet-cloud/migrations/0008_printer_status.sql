-- Reference cloud: each printer's communication status as its agent last reported it
-- (heartbeat `printerStatus`, sent on change), keyed by the address the agent polls.
CREATE TABLE printer_status (
    agent_id    TEXT    NOT NULL REFERENCES agents(id),
    address     TEXT    NOT NULL,
    serial      TEXT,
    body        TEXT    NOT NULL,
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (agent_id, address)
);
CREATE INDEX printer_status_serial ON printer_status(agent_id, serial);
