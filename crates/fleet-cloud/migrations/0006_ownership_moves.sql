-- Reference cloud: printers moved from one agent to another by takeover (the last move
-- holds the printer where it went for a while, so two agents never trade it back and forth).
CREATE TABLE ownership_moves (
    serial     TEXT    NOT NULL,
    from_agent TEXT    NOT NULL,
    to_agent   TEXT    NOT NULL,
    at_ms      INTEGER NOT NULL
);
CREATE INDEX ownership_moves_by_serial ON ownership_moves(serial, at_ms);
