//! mDNS/DNS-SD discovery inside a network namespace the test creates (mdns-sd joins
//! multicast on every interface at start, so it never runs in the host namespace here):
//! an SNMP-only printer, a printer seen by SNMP and mDNS, and an mDNS-only printer must
//! give three devices, not four. Needs root and iproute2 (`.ci/run` runs it).

use std::process::Command;

struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        Command::new("ip")
            .args(["netns", "del", &self.0])
            .status()
            .ok();
    }
}

/// Set in the copy of this test that runs inside the namespace.
const INSIDE: &str = "FLEET_AGENT_TEST_NETNS";

#[test]
#[ignore = "needs root and iproute2 (ip netns); run by .ci/run"]
#[allow(
    clippy::disallowed_methods,
    reason = "a synchronous black-box test waiting for child processes"
)]
fn snmp_only_mdns_only_and_both_make_three_devices() {
    if std::env::var_os(INSIDE).is_some() {
        return inside();
    }
    // The namespace, then this same test again inside it (a process's namespace is
    // chosen when it starts): the simulator and the advertisers run in that copy.
    let name = format!("fa-mdns-{}", std::process::id());
    assert!(
        Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success(),
        "ip netns add (root?)"
    );
    let _ns = Ns(name.clone());
    assert!(
        Command::new("ip")
            .args(["netns", "exec", &name, "ip", "link", "set", "lo", "up"])
            .status()
            .unwrap()
            .success()
    );
    let out = Command::new("ip")
        .args(["netns", "exec", &name])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "mdns_netns::snmp_only_mdns_only_and_both_make_three_devices",
            "--include-ignored",
            "--nocapture",
        ])
        .env(INSIDE, &name)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "inside the namespace:\n{text}");
    assert!(text.contains("1 passed"), "the copy inside ran: {text}");
}

/// The test proper, in the namespace.
#[allow(
    clippy::disallowed_methods,
    reason = "a synchronous black-box test waiting for child processes"
)]
fn inside() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/snmprec");
    // acme-color at 127.0.0.11 (SNMP only), acme-mono-v1 at 127.0.0.12 (also advertised).
    let _sim = crate::common::simulate(&[
        "--data-dir",
        fixtures,
        "--fleet-start",
        "127.0.0.11",
        "--port",
        "161",
    ]);
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let two = fleet_agent::discovery::mdns::advertise(
        "Printer Two",
        "_ipp._tcp.local.",
        "printer-two.local.",
        ip("127.0.0.12"),
        631,
        &[("UUID", "uuid-two"), ("ty", "Acme Mono")],
    )
    .unwrap();
    let three = fleet_agent::discovery::mdns::advertise(
        "Printer Three",
        "_ipps._tcp.local.",
        "printer-three.local.",
        ip("127.0.0.13"),
        631,
        &[
            ("UUID", "uuid-three"),
            ("ty", "Acme InkJet 100"),
            ("adminurl", "http://127.0.0.13/"),
        ],
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let out = Command::new(crate::common::bin())
        .args([
            "discover",
            "-t",
            "127.0.0.11-127.0.0.12",
            "--mdns-secs",
            "4",
            "--no-store",
            "--timeout-ms",
            "300",
            "--json",
        ])
        .output()
        .unwrap();
    two.shutdown().ok();
    three.shutdown().ok();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let devices = v["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 3, "{v:#}");
    let by = |ip: &str| {
        devices
            .iter()
            .find(|d| d["address"] == ip)
            .unwrap_or_else(|| panic!("no device at {ip}: {v:#}"))
    };
    assert_eq!(
        by("127.0.0.11")["discoveredBy"],
        serde_json::json!(["snmp"])
    );
    assert_eq!(by("127.0.0.11")["deviceKey"], "sn:lexmark|ACX123456");
    let both = by("127.0.0.12");
    assert_eq!(both["discoveredBy"], serde_json::json!(["snmp", "mdns"]));
    assert_eq!(
        both["deviceKey"], "sn:hp|PHBXK12345",
        "the serial, not the mDNS UUID, keys a device SNMP can read"
    );
    assert_eq!(both["mdns"]["UUID"], "uuid-two");
    let mdns_only = by("127.0.0.13");
    assert_eq!(mdns_only["discoveredBy"], serde_json::json!(["mdns"]));
    assert_eq!(mdns_only["deviceKey"], "uuid:uuid-three");
    assert_eq!(mdns_only["model"], "Acme InkJet 100");
    assert_eq!(mdns_only["mdns"]["adminurl"], "http://127.0.0.13/");
    // The per-IP report also has the mDNS-only address, marked as such.
    let r = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == "127.0.0.13")
        .unwrap();
    assert_eq!(r["sources"], serde_json::json!(["mdns"]));
}
