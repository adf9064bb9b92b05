//! mDNS/DNS-SD discovery inside a network namespace the test creates (mdns-sd joins
//! multicast on every interface at start, so it never runs in the host namespace here):
//! an SNMP-only printer, a printer seen by SNMP and mDNS, and an mDNS-only printer must
//! give three devices, not four. Needs root and iproute2 (`.ci/run` runs it).

use std::process::{Child, Command, Stdio};

struct Ns(String, Vec<Child>);

impl Drop for Ns {
    fn drop(&mut self) {
        for c in &mut self.1 {
            c.kill().ok();
            c.wait().ok();
        }
        Command::new("ip")
            .args(["netns", "del", &self.0])
            .status()
            .ok();
    }
}

fn in_ns(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_fleet-agent")])
        .args(args);
    c
}

#[test]
#[ignore = "needs root and iproute2 (ip netns); run by .ci/run"]
#[allow(
    clippy::disallowed_methods,
    reason = "a synchronous black-box test waiting for child processes"
)]
fn snmp_only_mdns_only_and_both_make_three_devices() {
    let name = format!("fa-mdns-{}", std::process::id());
    assert!(
        Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success(),
        "ip netns add (root?)"
    );
    let mut ns = Ns(name.clone(), Vec::new());
    assert!(
        Command::new("ip")
            .args(["netns", "exec", &name, "ip", "link", "set", "lo", "up"])
            .status()
            .unwrap()
            .success()
    );
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/snmprec");
    // acme-color at 127.0.0.11 (SNMP only), acme-mono-v1 at 127.0.0.12 (also advertised).
    ns.1.push(
        in_ns(
            &name,
            &[
                "simulate",
                "--data-dir",
                fixtures,
                "--fleet-start",
                "127.0.0.11",
                "--port",
                "161",
            ],
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap(),
    );
    ns.1.push(
        in_ns(
            &name,
            &[
                "mdns-advertise",
                "--instance",
                "Printer Two",
                "--ip",
                "127.0.0.12",
                "--txt",
                "UUID=uuid-two",
                "--txt",
                "ty=Acme Mono",
            ],
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap(),
    );
    ns.1.push(
        in_ns(
            &name,
            &[
                "mdns-advertise",
                "--instance",
                "Printer Three",
                "--service-type",
                "_ipps._tcp.local.",
                "--ip",
                "127.0.0.13",
                "--txt",
                "UUID=uuid-three",
                "--txt",
                "ty=Acme InkJet 100",
                "--txt",
                "adminurl=http://127.0.0.13/",
            ],
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap(),
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let out = in_ns(
        &name,
        &[
            "discover",
            "-t",
            "127.0.0.11-127.0.0.12",
            "--mdns-secs",
            "4",
            "--no-store",
            "--timeout-ms",
            "300",
            "--json",
        ],
    )
    .output()
    .unwrap();
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
