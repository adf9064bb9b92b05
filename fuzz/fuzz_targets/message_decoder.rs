//! Fuzz target: every decoder that sees bytes from the network (client and agent side)
//! returns an error instead of panicking, and decoded values re-encode.
#![no_main]

use fleet_snmp::agent::{self, MibView, UsmAgent};
use fleet_snmp::ber::Reader;
use fleet_snmp::message::{self, ScopedPdu, Version};
use fleet_snmp::Value;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn usm() -> &'static UsmAgent {
    static U: OnceLock<UsmAgent> = OnceLock::new();
    U.get_or_init(|| UsmAgent::new(b"\x80\x00\x00\x01fuzz".to_vec(), 1, vec![]))
}

fuzz_target!(|data: &[u8]| {
    let _ = message::peek_correlation_id(data);
    let _ = message::peek_version(data);
    if let Ok(m) = message::decode_community(data) {
        let bytes = message::encode_community(m.version, &m.community, &m.pdu);
        let again = message::decode_community(&bytes).expect("re-encoded message decodes");
        assert_eq!(again.pdu, m.pdu);
        let mut view = MibView::new(vec![("1.3.6.1.2.1.1.1.0".parse().unwrap(), Value::Integer(1))]);
        let _ = agent::respond(&mut view, m.version, &m.pdu, 1500);
    }
    let _ = message::parse_v3(data);
    let _ = ScopedPdu::decode(data);
    let _ = usm().incoming(data);
    let mut r = Reader::new(data);
    while let Ok(v) = Value::decode(&mut r) {
        let _ = v.as_u64();
    }
    let _ = Version::V1;
});
