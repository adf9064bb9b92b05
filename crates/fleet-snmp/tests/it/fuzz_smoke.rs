//! Stable-toolchain stand-in for the cargo-fuzz targets (`fuzz/`): feeds random bytes and
//! random mutations of valid messages and recordings through every network-facing
//! decoder, the agent responder and the `.snmprec` parser. None may panic.

use fleet_snmp::agent::{self, MibView, UsmAgent};
use fleet_snmp::message::{self, Pdu, PduType, ScopedPdu, Version};
use fleet_snmp::snmprec;
use fleet_snmp::{Value, VarBind};

fn seeds() -> Vec<Vec<u8>> {
    let pdu = Pdu {
        kind: PduType::GetBulk,
        request_id: 7,
        error_status: 1,
        error_index: 5,
        varbinds: vec![
            VarBind::null("1.3.6.1.2.1.1.1".parse().unwrap()),
            VarBind::new(
                "1.3.6.1.2.1.43.11.1.1.9.1.1".parse().unwrap(),
                Value::Integer(-3),
            ),
        ],
    };
    let mut out = vec![message::encode_community(Version::V2c, b"public", &pdu)];
    let usm = message::UsmParams {
        engine_id: b"\x80\x00\x00\x01e".to_vec(),
        boots: 1,
        time: 2,
        user: b"u".to_vec(),
    };
    let scoped = ScopedPdu {
        context_engine_id: vec![],
        context_name: vec![],
        pdu,
    };
    out.push(message::encode_v3(&message::V3Out {
        msg_id: 9,
        max_size: 1500,
        reportable: true,
        usm: &usm,
        keys: None,
        auth: false,
        privacy: false,
        salt: 0,
        scoped: &scoped,
    }));
    out
}

#[test]
fn decoders_never_panic_on_mutated_input() {
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let usm = UsmAgent::new(b"\x80\x00\x00\x01fuzz".to_vec(), 1, vec![]);
    let mut view = MibView::new(vec![(
        "1.3.6.1.2.1.1.1.0".parse().unwrap(),
        Value::Integer(1),
    )]);
    let seeds = seeds();
    for i in 0..60_000 {
        let mut data = if i % 4 == 0 {
            (0..rng.usize(0..64))
                .map(|_| rng.u8(..))
                .collect::<Vec<u8>>()
        } else {
            seeds[i % seeds.len()].clone()
        };
        for _ in 0..rng.usize(1..4) {
            if data.is_empty() {
                break;
            }
            let at = rng.usize(..data.len());
            match rng.u8(..3) {
                0 => data[at] = rng.u8(..),
                1 => data.truncate(at),
                _ => data.insert(at, rng.u8(..)),
            }
        }
        let _ = message::peek_correlation_id(&data);
        message::parse_v3(&data).ok();
        ScopedPdu::decode(&data).ok();
        let _ = usm.incoming(&data);
        if let Ok(m) = message::decode_community(&data) {
            let re = message::encode_community(m.version, &m.community, &m.pdu);
            assert_eq!(message::decode_community(&re).unwrap().pdu, m.pdu);
            let _ = agent::respond(&mut view, m.version, &m.pdu, 1500);
        }
    }
}

#[test]
fn snmprec_parser_never_panics_and_round_trips_what_it_accepts() {
    let mut rng = fastrand::Rng::with_seed(42);
    let base = "1.3.6.1.2.1.1.1.0|4|Printer\n1.3.6.1.2.1.1.2.0|6|.1.3.6.1.4.1.641\n1.3.6.1.2.1.25.3.5.1.2.1|4x|2000\n1.3.6.1.2.1.43.10.2.1.4.1.1|65|7792\n1.3.6.1.2.1.4.20.1.1.1.2.3.4|64x|01020304\n";
    let alphabet = b"0123456789.|x-:\n\r abcdef\\";
    for _ in 0..20_000 {
        let mut b = base.as_bytes().to_vec();
        for _ in 0..rng.usize(1..6) {
            let at = rng.usize(..b.len());
            b[at] = alphabet[rng.usize(..alphabet.len())];
        }
        let text = String::from_utf8_lossy(&b);
        let (records, _) = snmprec::parse("fuzz", &text);
        for (oid, value) in &records {
            let line = snmprec::format_line(oid, value);
            let (again, w) = snmprec::parse("again", &line);
            assert!(w.is_empty(), "{line}: {w:?}");
            assert_eq!(&again[0].1, value, "{line}");
        }
    }
}
