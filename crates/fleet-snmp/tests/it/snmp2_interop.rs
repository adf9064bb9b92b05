//! Interoperability with snmp2 (the crate the design card names, used here as an
//! independent implementation): snmp2's client reads our simulator over v2c and v3
//! (SHA-256/AES-128, MD5/DES), including GETBULK, and snmp2's decoder accepts what our
//! encoder writes. See docs/design.md for why the agent does not use snmp2
//! for its own wire layer.

use fleet_secret::Secret;
use fleet_sim::{Layout, Printer, Simulator};
use fleet_snmp::agent::MibView;
use fleet_snmp::message::{Pdu, PduType, Version, encode_community};
use fleet_snmp::usm::{AuthProtocol, PrivProtocol};
use fleet_snmp::{UsmUser, Value, VarBind};
use std::sync::Arc;

fn view() -> Arc<MibView> {
    let o = |s: &str| s.parse().unwrap();
    Arc::new(MibView::new(vec![
        (
            o("1.3.6.1.2.1.1.1.0"),
            Value::OctetString(b"Interop printer".to_vec()),
        ),
        (o("1.3.6.1.2.1.1.3.0"), Value::TimeTicks(4242)),
        (o("1.3.6.1.2.1.43.10.2.1.4.1.1"), Value::Counter32(123_456)),
        (o("1.3.6.1.2.1.43.11.1.1.9.1.1"), Value::Integer(-3)),
        (o("1.3.6.1.2.1.43.11.1.1.9.1.2"), Value::Integer(77)),
    ]))
}

fn snmp2_oid(s: &str) -> snmp2::Oid<'static> {
    let arcs: Vec<u64> = s.split('.').map(|a| a.parse().unwrap()).collect();
    snmp2::Oid::from(arcs.as_slice()).unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snmp2_client_reads_our_simulator_over_v2c_and_v3() {
    let users = vec![
        Arc::new(UsmUser::new(
            "sha",
            Some((AuthProtocol::Sha256, Secret::new("authpass123"))),
            Some((PrivProtocol::Aes128, Secret::new("privpass123"))),
        )),
        Arc::new(UsmUser::new(
            "md5",
            Some((AuthProtocol::Md5, Secret::new("authpass123"))),
            Some((PrivProtocol::Des, Secret::new("privpass123"))),
        )),
    ];
    let sim = Simulator::start(
        vec![Printer::recorded("interop", view())],
        Layout::SinglePort("127.0.0.1:0".parse().unwrap()),
        users,
    )
    .await
    .unwrap();
    let addr = sim.addrs()[0];
    let result = tokio::task::spawn_blocking(move || {
        let timeout = Some(std::time::Duration::from_secs(2));
        // v2c GET and GETBULK.
        let mut s = snmp2::SyncSession::new_v2c(addr, b"interop", timeout, 1).unwrap();
        let descr = snmp2_oid("1.3.6.1.2.1.1.1.0");
        let r = s.get(&descr).unwrap();
        let (_, v) = r.varbinds.clone().next().unwrap();
        assert!(matches!(v, snmp2::Value::OctetString(b) if b == b"Interop printer"));
        let start = snmp2_oid("1.3.6.1.2.1.43.11.1.1.9");
        let r = s.getbulk(&[&start], 0, 10).unwrap();
        let vals: Vec<String> = r
            .varbinds
            .clone()
            .map(|(o, v)| format!("{o}={v:?}"))
            .collect();
        assert_eq!(vals[0], "1.3.6.1.2.1.43.11.1.1.9.1.1=INTEGER: -3");
        assert_eq!(vals[1], "1.3.6.1.2.1.43.11.1.1.9.1.2=INTEGER: 77");
        assert!(vals[2].contains("END OF MIB VIEW"), "{vals:?}");
        // v3 authPriv with both cipher families.
        for (user, auth, cipher) in [
            (
                "sha",
                snmp2::v3::AuthProtocol::Sha256,
                snmp2::v3::Cipher::Aes128,
            ),
            ("md5", snmp2::v3::AuthProtocol::Md5, snmp2::v3::Cipher::Des),
        ] {
            let sec = snmp2::v3::Security::new(user.as_bytes(), b"authpass123")
                .with_auth_protocol(auth)
                .with_auth(snmp2::v3::Auth::AuthPriv {
                    cipher,
                    privacy_password: b"privpass123".to_vec(),
                })
                .with_context_name("interop");
            let mut s = snmp2::SyncSession::new_v3(addr, timeout, 1, sec).unwrap();
            s.init().unwrap();
            let life = snmp2_oid("1.3.6.1.2.1.43.10.2.1.4.1.1");
            let r = s.get(&life).unwrap();
            let (_, v) = r.varbinds.clone().next().unwrap();
            assert!(
                matches!(v, snmp2::Value::Counter32(123_456)),
                "{user}: {v:?}"
            );
        }
    })
    .await;
    sim.stop().await;
    result.unwrap();
}

#[test]
fn snmp2_decodes_what_we_encode() {
    let pdu = Pdu {
        kind: PduType::Response,
        request_id: 31337,
        error_status: 0,
        error_index: 0,
        varbinds: vec![
            VarBind::new(
                "1.3.6.1.2.1.43.11.1.1.6.1.1".parse().unwrap(),
                Value::OctetString(vec![b'x'; 300]),
            ),
            VarBind::new(
                "1.3.6.1.2.1.31.1.1.1.6.1".parse().unwrap(),
                Value::Counter64(u64::MAX),
            ),
            VarBind::new(
                "1.3.6.1.2.1.43.11.1.1.9.1.1".parse().unwrap(),
                Value::Integer(-3),
            ),
        ],
    };
    let bytes = encode_community(Version::V2c, b"public", &pdu);
    let p = snmp2::Pdu::from_bytes(&bytes).unwrap();
    assert_eq!(p.req_id, 31337);
    assert_eq!(p.community, b"public");
    let vals: Vec<String> = p.varbinds.map(|(o, v)| format!("{o}={v:?}")).collect();
    assert_eq!(vals.len(), 3);
    assert!(
        vals[1].ends_with("COUNTER64: 18446744073709551615"),
        "{vals:?}"
    );
    assert!(vals[2].ends_with("INTEGER: -3"));
}
