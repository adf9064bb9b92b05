-- Since when a printer has its current health (epoch ms), sent to the cloud with each
-- printer's communication status (issue 19); NULL until the first poll ends.
ALTER TABLE printers ADD COLUMN health_since_ms INTEGER;
