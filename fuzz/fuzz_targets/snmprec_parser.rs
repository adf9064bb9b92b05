//! Fuzz target: the `.snmprec` parser and writer never panic, and every line it accepts
//! is written back in a form it parses to the same value.
#![no_main]

use fleet_snmp::snmprec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (records, _warnings) = snmprec::parse("fuzz", &text);
    for (oid, value) in &records {
        let line = snmprec::format_line(oid, value);
        let (again, w) = snmprec::parse("again", &line);
        assert!(w.is_empty(), "{line}");
        assert_eq!(&again[0].1, value);
    }
});
