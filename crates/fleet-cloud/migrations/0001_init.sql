-- Reference cloud: agent instances, activation codes, tokens, received messages, assets.
CREATE TABLE agents (
    id            TEXT    PRIMARY KEY,
    name          TEXT    NOT NULL,
    client_id     TEXT    UNIQUE,
    client_secret TEXT,
    settings      TEXT    NOT NULL,
    created_ms    INTEGER NOT NULL
);
CREATE TABLE activation_codes (
    code       TEXT    PRIMARY KEY,
    agent_id   TEXT    NOT NULL REFERENCES agents(id),
    expires_ms INTEGER NOT NULL,
    used_ms    INTEGER
);
CREATE TABLE tokens (
    token      TEXT    PRIMARY KEY,
    agent_id   TEXT    NOT NULL REFERENCES agents(id),
    expires_ms INTEGER NOT NULL
);
-- Idempotency: a message id is applied once.
CREATE TABLE messages (
    message_id  TEXT    PRIMARY KEY,
    agent_id    TEXT    NOT NULL,
    received_ms INTEGER NOT NULL
);
-- The assembled state of each printer (keyed view) and the seed's bookkeeping fields.
CREATE TABLE assets (
    agent_id          TEXT    NOT NULL,
    serial            TEXT    NOT NULL,
    seq               INTEGER NOT NULL,
    keyed             TEXT    NOT NULL,
    date_created_ms   INTEGER NOT NULL,
    date_modified_ms  INTEGER NOT NULL,
    last_data_refresh INTEGER NOT NULL,
    PRIMARY KEY (agent_id, serial)
);
