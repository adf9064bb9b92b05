-- Every applied report asks which other agent holds its printer (by serial alone): without
-- this index that was a scan of all assets per report (the outage bench's drain at
-- 10,000 printers: 889 reports per second, falling as the fleet grew).
CREATE INDEX assets_by_serial ON assets(serial);
