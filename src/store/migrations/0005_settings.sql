-- Agent settings and secrets (secrets are encrypted with the key file in the state
-- directory, see store::secrets).
CREATE TABLE settings (
    name      TEXT    PRIMARY KEY,
    value     TEXT    NOT NULL,
    encrypted INTEGER NOT NULL DEFAULT 0
);
