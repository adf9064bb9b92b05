-- How a printer's SNMP agent must be asked (issue 17): JSON of fleet_snmp::quirks::Quirks,
-- NULL for an ordinary agent; and when it was last learned or re-probed (epoch ms), so the
-- poller asks again the plain way now and then (a fixed firmware gets the fast path back).
ALTER TABLE printers ADD COLUMN quirks TEXT;
ALTER TABLE printers ADD COLUMN quirks_learned_ms INTEGER;
