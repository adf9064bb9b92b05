//! The real UDP client against hand-made responders on loopback: late replies answered by
//! a retry, stray ids and wrong sources dropped, and the one SNMPv3 resynchronisation.

use fleet_secret::Secret;
use fleet_sim::{Layout, Printer, Simulator};
use fleet_snmp::agent::{MibView, UsmAgent};
use fleet_snmp::message::{Pdu, PduType, Version, decode_community, encode_community};
use fleet_snmp::usm::{AuthProtocol, PrivProtocol};
use fleet_snmp::{Oid, Security, SnmpError, Target, UdpClient, UsmUser, Value, VarBind, walk};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;

fn reply_to(req: &[u8], id_override: Option<i32>) -> Vec<u8> {
    let m = decode_community(req).unwrap();
    let pdu = Pdu {
        kind: PduType::Response,
        request_id: id_override.unwrap_or(m.pdu.request_id),
        error_status: 0,
        error_index: 0,
        varbinds: m
            .pdu
            .varbinds
            .iter()
            .map(|v| VarBind::new(v.oid.clone(), Value::Integer(7)))
            .collect(),
    };
    encode_community(Version::V2c, &m.community, &pdu)
}

fn target(addr: SocketAddr, timeout_ms: u64, retries: u32) -> Target {
    let mut t = Target::new(addr, Security::v2c("public"));
    t.timeout = Duration::from_millis(timeout_ms);
    t.retries = retries;
    t
}

fn oid() -> Vec<Oid> {
    vec!["1.3.6.1.2.1.1.7.0".parse().unwrap()]
}

#[tokio::test]
async fn a_late_reply_answers_the_retry_and_the_duplicate_is_dropped() {
    let agent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = agent.local_addr().unwrap();
    let client = UdpClient::new().unwrap();
    let responder = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        // First attempt: answer only after the client's 150 ms timeout fired.
        let (n, from) = agent.recv_from(&mut buf).await.unwrap();
        let first = buf[..n].to_vec();
        let (n2, _) = agent.recv_from(&mut buf).await.unwrap(); // the retry
        let second = buf[..n2].to_vec();
        agent.send_to(&reply_to(&first, None), from).await.unwrap();
        agent.send_to(&reply_to(&second, None), from).await.unwrap();
        // Then a normal exchange.
        let (n, from) = agent.recv_from(&mut buf).await.unwrap();
        agent
            .send_to(&reply_to(&buf[..n], None), from)
            .await
            .unwrap();
    });
    let got = walk::get(&client, &target(addr, 150, 2), &oid())
        .await
        .unwrap();
    assert_eq!(got[0].value, Value::Integer(7));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let got = walk::get(&client, &target(addr, 500, 0), &oid())
        .await
        .unwrap();
    assert_eq!(got[0].value, Value::Integer(7));
    responder.await.unwrap();
    let s = client.stats();
    assert_eq!(s.stale, 1, "the duplicate reply was dropped: {s:?}");
    assert_eq!(s.timeouts, 1);
}

#[tokio::test]
async fn replies_with_a_wrong_id_or_from_another_address_are_ignored() {
    let agent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let other = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let addr = agent.local_addr().unwrap();
    let client = UdpClient::new().unwrap();
    let responder = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        let (n, from) = agent.recv_from(&mut buf).await.unwrap();
        agent
            .send_to(&reply_to(&buf[..n], Some(12345)), from)
            .await
            .unwrap();
        other
            .send_to(&reply_to(&buf[..n], None), from)
            .await
            .unwrap();
    });
    let e = walk::get(&client, &target(addr, 300, 0), &oid())
        .await
        .unwrap_err();
    assert!(matches!(e, SnmpError::Timeout { attempts: 1, .. }), "{e}");
    responder.await.unwrap();
    assert_eq!(client.stats().stale, 2);
}

#[tokio::test]
async fn many_concurrent_requests_share_one_socket() {
    let view = MibView::new(vec![(
        "1.3.6.1.2.1.1.5.0".parse().unwrap(),
        Value::OctetString(b"p".to_vec()),
    )]);
    let sim = Simulator::start(
        vec![Printer::recorded("p", Arc::new(view))],
        Layout::SinglePort("127.0.0.1:0".parse().unwrap()),
        vec![],
    )
    .await
    .unwrap();
    let addr = sim.addrs()[0];
    let client = UdpClient::new().unwrap();
    let mut t = Target::new(addr, Security::v2c("p"));
    t.timeout = Duration::from_millis(2000);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..500 {
        let (c, t) = (client.clone(), t.clone());
        set.spawn(async move { walk::get(&c, &t, &["1.3.6.1.2.1.1.5.0".parse().unwrap()]).await });
    }
    let mut ok = 0;
    while let Some(r) = set.join_next().await {
        assert_eq!(
            r.unwrap().unwrap()[0].value,
            Value::OctetString(b"p".to_vec())
        );
        ok += 1;
    }
    assert_eq!(ok, 500);
    sim.stop().await;
}

#[tokio::test]
async fn v3_resynchronises_once_after_an_agent_reboot() {
    let user = Arc::new(UsmUser::new(
        "fleet",
        Some((AuthProtocol::Sha256, Secret::new("authpass123"))),
        Some((PrivProtocol::Aes128, Secret::new("privpass123"))),
    ));
    let view = Arc::new(MibView::new(vec![(
        "1.3.6.1.2.1.1.5.0".parse().unwrap(),
        Value::OctetString(b"v3".to_vec()),
    )]));
    let engine = b"\x80\x00\xfa\xfa\x04reboot-test".to_vec();
    let start = |boots: u32, addr: SocketAddr| {
        let usm = UsmAgent::new(engine.clone(), boots, vec![user.clone()]);
        Simulator::start_with_engine(
            vec![Printer::recorded("p", view.clone())],
            Layout::SinglePort(addr),
            Some(usm),
        )
    };
    let sim = start(1, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = sim.addrs()[0];
    let client = UdpClient::new().unwrap();
    let mut t = Target::new(addr, Security::Usm(user.clone()));
    t.timeout = Duration::from_millis(500);
    let o = ["1.3.6.1.2.1.1.5.0".parse::<Oid>().unwrap()];
    assert_eq!(walk::get(&client, &t, &o).await.unwrap().len(), 1);
    // The agent "reboots": same engine ID, engineBoots 2. Our cached boots are now stale,
    // the agent answers notInTimeWindow, and the client resynchronises once.
    sim.stop().await;
    let sim = start(2, addr).await.unwrap();
    let sent_before = client.stats().sent;
    assert_eq!(walk::get(&client, &t, &o).await.unwrap().len(), 1);
    assert_eq!(
        client.stats().sent - sent_before,
        2,
        "one rejected request, one resynchronised retry"
    );
    sim.stop().await;
}

#[tokio::test]
async fn the_connected_client_takes_replies_larger_than_16_kib() {
    // Issue 18: discovery's client read into 16 KiB, so a larger reply was "no answer".
    let agent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = agent.local_addr().unwrap();
    let responder = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        let (n, from) = agent.recv_from(&mut buf).await.unwrap();
        let m = decode_community(&buf[..n]).unwrap();
        let pdu = Pdu {
            kind: PduType::Response,
            request_id: m.pdu.request_id,
            error_status: 0,
            error_index: 0,
            varbinds: vec![VarBind::new(
                m.pdu.varbinds[0].oid.clone(),
                Value::OctetString(vec![b'x'; 40_000]),
            )],
        };
        let reply = encode_community(Version::V2c, &m.community, &pdu);
        assert!(reply.len() > 40_000);
        agent.send_to(&reply, from).await.unwrap();
    });
    let client = UdpClient::connected().unwrap();
    let got = walk::get(&client, &target(addr, 2000, 0), &oid())
        .await
        .unwrap();
    assert_eq!(got[0].value.as_bytes().unwrap().len(), 40_000);
    responder.await.unwrap();
}

#[tokio::test]
async fn an_unparsable_reply_is_a_malformed_answer_not_silence() {
    // Issue 18: garbage in reply was reported as "no response" (exit 3, not 5).
    for connected in [false, true] {
        let agent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = agent.local_addr().unwrap();
        let responder = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            for _ in 0..2 {
                let (_, from) = agent.recv_from(&mut buf).await.unwrap();
                agent.send_to(b"\x30\xff garbage", from).await.unwrap();
            }
        });
        let client = if connected {
            UdpClient::connected().unwrap()
        } else {
            UdpClient::new().unwrap()
        };
        let err = walk::get(&client, &target(addr, 200, 1), &oid())
            .await
            .unwrap_err();
        assert!(
            matches!(err, SnmpError::Malformed { .. }),
            "connected={connected}: {err}"
        );
        responder.await.unwrap();
        // A silent agent is still a timeout.
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let err = walk::get(
            &client,
            &target(silent.local_addr().unwrap(), 100, 0),
            &oid(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, SnmpError::Timeout { .. }), "{err}");
    }
}
