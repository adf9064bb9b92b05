//! SNMPv3 against a real agent: Debian's net-snmp `snmpd`, configured by the test with
//! users for SHA-256/AES-128, MD5/DES, SHA-512/AES-256 and SHA-1/AES-256 (Blumenthal key
//! extension), plus the wrong-pass-phrase and unknown-user cases.
//!
//! Ignored by plain `cargo test` (needs `snmpd`, installed by `.ci/run`).

use fleet_agent::poller;
use fleet_secret::Secret;
use fleet_snmp::usm::{AuthProtocol, PrivProtocol};
use fleet_snmp::{Security, SnmpError, Target, UdpClient, UsmUser, walk};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

struct Snmpd {
    child: Child,
    _dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl Drop for Snmpd {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

const USERS: &[(&str, &str, &str)] = &[
    ("sha256aes", "SHA-256", "AES"),
    ("md5des", "MD5", "DES"),
    ("sha512aes256", "SHA-512", "AES-256"),
    ("sha1aes256", "SHA", "AES-256"),
];

async fn start_snmpd() -> Snmpd {
    let dir = tempfile::tempdir().unwrap();
    let port = 40000 + (std::process::id() % 20000) as u16;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut conf =
        format!("agentAddress udp:{addr}\nsysName snmpd-printer\nrocommunity public 127.0.0.1\n");
    for (u, a, p) in USERS {
        conf.push_str(&format!(
            "createUser {u} {a} \"authpass123\" {p} \"privpass123\"\nrouser {u} priv\n"
        ));
    }
    conf.push_str("createUser authonly SHA-256 \"authpass123\"\nrouser authonly auth\n");
    // snmpd has no Printer-MIB: fake a few objects the way RUST-STACK.md §2.1 describes.
    conf.push_str(
        "override 1.3.6.1.2.1.43.5.1.1.17.1 octet_str \"SNMPD-SERIAL-1\"\n\
         override 1.3.6.1.2.1.43.10.2.1.4.1.1 counter 123456\n\
         override 1.3.6.1.2.1.43.11.1.1.6.1.1 octet_str \"Black Toner\"\n\
         override 1.3.6.1.2.1.43.11.1.1.8.1.1 integer 10000\n\
         override 1.3.6.1.2.1.43.11.1.1.9.1.1 integer 4200\n",
    );
    let conf_path = dir.path().join("snmpd.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let persist = dir.path().join("persist");
    std::fs::create_dir_all(&persist).unwrap();
    let child = Command::new(
        std::env::var("FLEET_AGENT_SNMPD").unwrap_or_else(|_| "/usr/sbin/snmpd".into()),
    )
    .env("SNMP_PERSISTENT_DIR", &persist)
    .env("MIBS", "")
    .args(["-f", "-Lo", "-C", "-c"])
    .arg(&conf_path)
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("snmpd (apt-get install snmpd, or set FLEET_AGENT_SNMPD)");
    let s = Snmpd {
        child,
        _dir: dir,
        addr,
    };
    let client = UdpClient::new().unwrap();
    let mut t = Target::new(addr, Security::v2c("public"));
    t.timeout = Duration::from_millis(200);
    t.retries = 0;
    for _ in 0..100 {
        if walk::get(&client, &t, &["1.3.6.1.2.1.1.5.0".parse().unwrap()])
            .await
            .is_ok_and(|v| !v.is_empty())
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("snmpd did not answer on {addr}");
}

fn user(
    name: &str,
    auth: AuthProtocol,
    apw: &str,
    privacy: Option<(PrivProtocol, &str)>,
) -> Security {
    Security::Usm(Arc::new(UsmUser::new(
        name,
        Some((auth, Secret::new(apw))),
        privacy.map(|(p, pw)| (p, Secret::new(pw))),
    )))
}

fn target(addr: SocketAddr, sec: Security) -> Target {
    let mut t = Target::new(addr, sec);
    t.timeout = Duration::from_millis(700);
    t.retries = 1;
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian snmpd (installed by .ci/run)"]
async fn v3_auth_priv_users_poll_a_real_agent() {
    let d = start_snmpd().await;
    let client = UdpClient::new().unwrap();
    let cases = [
        ("sha256aes", AuthProtocol::Sha256, PrivProtocol::Aes128),
        ("md5des", AuthProtocol::Md5, PrivProtocol::Des),
        ("sha512aes256", AuthProtocol::Sha512, PrivProtocol::Aes256),
        ("sha1aes256", AuthProtocol::Sha1, PrivProtocol::Aes256),
    ];
    for (name, a, p) in cases {
        let t = target(
            d.addr,
            user(name, a, "authpass123", Some((p, "privpass123"))),
        );
        let (r, _) = poller::Reader::default()
            .read(&client, &t, &mut Default::default())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.serial_number.as_deref(), Some("SNMPD-SERIAL-1"), "{name}");
        assert_eq!(r.counters.lifetime_count, Some(123_456), "{name}");
        assert_eq!(
            r.supplies[0].ext.prt_marker_supplies_level,
            Some(4200),
            "{name}"
        );
        assert_eq!(r.supplies[0].current_level, Some(42), "{name}");
        assert_eq!(
            r.device.sys_name.as_deref(),
            Some("snmpd-printer"),
            "{name}"
        );
        // A walk over several GETBULK round trips also works encrypted. (hrStorage and
        // hrDevice, not all of HOST-RESOURCES: snmpd builds hrSWInstalled from the dpkg
        // database on demand, which can take seconds.)
        let mut w = t.clone();
        w.max_repetitions = 10;
        w.timeout = Duration::from_millis(3000);
        let vals = walk::walk(
            &client,
            &w,
            &"1.3.6.1.2.1.25.2".parse().unwrap(),
            walk::Budget::WALK,
        )
        .await
        .unwrap()
        .values;
        assert!(vals.len() > 20, "{name}: {} values", vals.len());
    }
    let t = target(
        d.addr,
        user("authonly", AuthProtocol::Sha256, "authpass123", None),
    );
    let got = walk::get(&client, &t, &["1.3.6.1.2.1.1.5.0".parse().unwrap()])
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian snmpd (installed by .ci/run)"]
async fn v3_errors_are_distinct() {
    let d = start_snmpd().await;
    let client = UdpClient::new().unwrap();
    let oid = ["1.3.6.1.2.1.1.5.0".parse().unwrap()];
    let t = target(
        d.addr,
        user(
            "sha256aes",
            AuthProtocol::Sha256,
            "wrongpass99",
            Some((PrivProtocol::Aes128, "privpass123")),
        ),
    );
    let e = walk::get(&client, &t, &oid).await.unwrap_err();
    assert!(
        matches!(e, SnmpError::WrongDigest { .. }),
        "wrong auth pass: {e}"
    );
    let t = target(
        d.addr,
        user("nobody", AuthProtocol::Sha256, "authpass123", None),
    );
    let e = walk::get(&client, &t, &oid).await.unwrap_err();
    assert!(
        matches!(e, SnmpError::UnknownUser { .. }),
        "unknown user: {e}"
    );
    // Wrong auth protocol for an existing user is a wrong digest too.
    let t = target(
        d.addr,
        user(
            "md5des",
            AuthProtocol::Sha1,
            "authpass123",
            Some((PrivProtocol::Des, "privpass123")),
        ),
    );
    let e = walk::get(&client, &t, &oid).await.unwrap_err();
    assert!(
        matches!(e, SnmpError::WrongDigest { .. }),
        "wrong auth protocol: {e}"
    );
    // A wrong privacy pass phrase: snmpd drops the request, so it is a timeout, and the
    // error says that this is what a wrong privacy pass phrase looks like.
    let mut t = target(
        d.addr,
        user(
            "sha256aes",
            AuthProtocol::Sha256,
            "authpass123",
            Some((PrivProtocol::Aes128, "wrongpriv99")),
        ),
    );
    t.timeout = Duration::from_millis(300);
    t.retries = 0;
    let e = walk::get(&client, &t, &oid).await.unwrap_err();
    match &e {
        SnmpError::Timeout { hint, .. } => assert!(hint.contains("privacy"), "{e}"),
        SnmpError::DecryptionError { .. } => {}
        other => panic!("wrong privacy pass phrase: {other}"),
    }
}
