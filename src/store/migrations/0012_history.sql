-- One point a day per printer for the page's trends: the lifetime page count and each
-- supply's level (one byte each in the report's supply order, 255 = no number), the
-- supply keys only when they differ from the printer's previous point. Written when a
-- poll's reading changed, replaced through the day; 400 days kept.
CREATE TABLE history (
    printer_id INTEGER NOT NULL,
    day        INTEGER NOT NULL,
    pages      INTEGER,
    levels     BLOB    NOT NULL,
    keys       TEXT,
    PRIMARY KEY (printer_id, day)
) WITHOUT ROWID;
