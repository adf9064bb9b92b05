-- Devices found by discovery, keyed by a stable identity (serial + manufacturer, else
-- MAC, else mDNS UUID, else address), with the address and SNMP profile that last worked.
CREATE TABLE devices (
    id            INTEGER PRIMARY KEY,
    device_key    TEXT    NOT NULL UNIQUE,
    serial        TEXT,
    manufacturer  TEXT,
    model         TEXT,
    mac           TEXT,
    mdns_uuid     TEXT,
    address       TEXT,
    profile       TEXT,
    sources       TEXT    NOT NULL DEFAULT '',
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL
);

-- Address changes of a device (a printer that got a new DHCP lease stays one device).
CREATE TABLE device_moves (
    id           INTEGER PRIMARY KEY,
    device_id    INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    at_ms        INTEGER NOT NULL,
    from_address TEXT,
    to_address   TEXT
);

-- The per-IP report of the last discovery run.
CREATE TABLE discovery_results (
    address TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail  TEXT NOT NULL,
    at_ms   INTEGER NOT NULL
);
