//! IPP against an independent implementation: CUPS's `ippeveprinter`, in a network
//! namespace with its own D-Bus and Avahi (`tests/ipp/with-ippeveprinter.sh`).
//! `fleet-agent poll --ipp` must read the supplies, state reasons and identity that
//! CUPS's own client, `ipptool`, reads from the same server; a supply level changed
//! through the printer's web form must show in the next reading, with its alert; and
//! discovery, hearing it over mDNS with no SNMP answer, takes its identity from IPP.
//! Needs root, iproute2, cups-ipp-utils, avahi-daemon (`.ci/run` installs and runs it).

use serde_json::Value;
use std::process::Command;

/// `name (syntax) = value` lines of `ipptool -tv`, by name.
fn ipptool_attr(out: &str, name: &str) -> Option<String> {
    out.lines().find_map(|l| {
        let l = l.trim();
        let (head, value) = l.split_once(" = ")?;
        let attr = head.split_whitespace().next()?;
        (attr == name).then(|| value.to_string())
    })
}

/// Splits a `printer-supply` 1setOf as ipptool prints it (values joined by ",", each
/// ending in ";") into `key=value` maps.
fn supply_rows(v: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    v.split(";,")
        .map(|row| {
            row.trim_end_matches(';')
                .split(';')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

#[test]
#[ignore = "needs root, iproute2, cups-ipp-utils (ippeveprinter, ipptool) and avahi-daemon; run by .ci/run"]
#[allow(
    clippy::disallowed_methods,
    reason = "a synchronous black-box test waiting for child processes"
)]
fn poll_over_ipp_reads_what_ipptool_reads_from_ippeveprinter() {
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/ipp/with-ippeveprinter.sh"
    );
    // Inside the namespace: our reading, CUPS's reading, the web form, our second reading.
    let steps = r#"
        set -e
        "$AGENT" poll --ipp --json "$IPP_URI" > "$OUT/first.json"
        ipptool -tv "$IPP_URI" get-printer-attributes.test > "$OUT/ipptool.txt"
        exec 3<>/dev/tcp/127.0.0.1/"$IPP_PORT"
        printf 'GET /supplies?supply0=30&supply1=3 HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
        # ippeveprinter keeps the connection open: read the status line only.
        read -r -t 10 status <&3
        exec 3>&-
        case "$status" in *" 200 "*) ;; *) echo "web form: $status" >&2; exit 1 ;; esac
        "$AGENT" poll --ipp --json "$IPP_URI" > "$OUT/second.json"
        ipptool -tv "$IPP_URI" get-printer-attributes.test > "$OUT/ipptool-second.txt"
        "$AGENT" poll --ipp "localhost:$IPP_PORT" > "$OUT/second.txt"
        "$AGENT" discover --no-store --mdns-secs 4 --json > "$OUT/discover.json"
        before=$(grep -c Get-Printer-Attributes "$IPP_LOG" || true)
        "$AGENT" discover --no-store --mdns-secs 4 --no-ipp --json > "$OUT/no-ipp.json"
        after=$(grep -c Get-Printer-Attributes "$IPP_LOG" || true)
        echo "$before $after" > "$OUT/requests.txt"
    "#;
    let out = Command::new(script)
        .args(["bash", "-c", steps])
        .env("AGENT", crate::common::bin())
        .env("OUT", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    let first: Value = serde_json::from_str(&read("first.json")).unwrap();
    let second: Value = serde_json::from_str(&read("second.json")).unwrap();
    let cups = read("ipptool.txt");

    // Identity: the device ID's maker and model, the UUID.
    let device_id =
        ipptool_attr(&cups, "printer-device-id").expect("ipptool read printer-device-id");
    assert!(
        device_id.contains("MFG:Acme;") && device_id.contains("MDL:Laser 9000;"),
        "{device_id}"
    );
    assert_eq!(first["manufacturer"], "Acme");
    assert_eq!(first["modelName"], "Laser 9000");
    assert_eq!(
        first["device"]["printerUuid"].as_str(),
        ipptool_attr(&cups, "printer-uuid").as_deref()
    );
    assert_eq!(first["device"]["sysLocation"], "Floor 2");
    assert_eq!(first["device"]["source"], "ipp");

    // Supplies: each row of printer-supply, with the same index, type, class, level.
    let rows =
        supply_rows(&ipptool_attr(&cups, "printer-supply").expect("ipptool read printer-supply"));
    let ours = first["supplies"].as_array().unwrap();
    assert_eq!(ours.len(), rows.len(), "{ours:?} vs {rows:?}");
    assert!(
        rows.iter()
            .all(|r| r.contains_key("index") && r.contains_key("level")),
        "{rows:?}"
    );
    let descriptions = ipptool_attr(&cups, "printer-supply-description").unwrap();
    for (s, row) in ours.iter().zip(&rows) {
        assert_eq!(s["supplyKey"], format!("m:1.{}", row["index"]));
        assert_eq!(s["ext"]["typeName"], row["type"].as_str());
        assert_eq!(s["ext"]["prtMarkerSuppliesLevel"].to_string(), row["level"]);
        assert_eq!(
            s["ext"]["prtMarkerSuppliesMaxCapacity"].to_string(),
            row["maxcapacity"]
        );
        assert_eq!(s["ext"]["source"], "ipp");
        assert!(
            descriptions.contains(s["description"].as_str().unwrap()),
            "{descriptions}"
        );
    }

    // State reasons: the same set (none here at first).
    // State reasons: the same set as ipptool reads, before ("none": no alert) and after
    // the supply change.
    let issues = |report: &Value| -> Vec<String> {
        report["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["issue"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ipptool_attr(&cups, "printer-state-reasons").as_deref(),
        Some("none")
    );
    assert!(issues(&first).is_empty(), "{first}");
    assert_eq!(first["device"]["printerState"], "idle");
    let cups_after = read("ipptool-second.txt");
    let reasons_after = ipptool_attr(&cups_after, "printer-state-reasons").unwrap();
    assert_ne!(reasons_after, "none");
    assert_eq!(issues(&second).join(","), reasons_after);

    // After the web form: black toner at 3 %, and the printer's toner-low reason.
    let black = second["supplies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["ext"]["typeName"] == "toner")
        .expect("a toner row");
    assert_eq!(black["currentLevel"], 3);
    assert_eq!(black["color"], "Black");
    let keys: Vec<&str> = second["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["alertKey"].as_str().unwrap())
        .collect();
    assert!(keys.contains(&"ipp:toner-low"), "{keys:?}");
    // Discovery: the printer announced itself over mDNS (by Avahi) and answers no SNMP;
    // IPP then gives its identity, and the device is keyed by the IPP UUID.
    let found: Value = serde_json::from_str(&read("discover.json")).unwrap();
    let devices = found["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "{devices:?}");
    let d = &devices[0];
    assert_eq!(d["discoveredBy"], serde_json::json!(["mdns", "ipp"]), "{d}");
    assert_eq!(
        (d["manufacturer"].as_str(), d["model"].as_str()),
        (Some("Acme"), Some("Laser 9000"))
    );
    let uuid = first["device"]["printerUuid"].as_str().unwrap();
    assert_eq!(
        d["deviceKey"].as_str().unwrap(),
        format!("uuid:{}", uuid.trim_start_matches("urn:uuid:"))
    );
    // With IPP off, the same printer is known by its mDNS announcement alone, and the
    // printer logged no request from that run.
    let counts = read("requests.txt");
    let (before, after) = counts.trim().split_once(' ').unwrap();
    assert!(
        before.parse::<u32>().unwrap() > 0,
        "ippeveprinter logs its requests: {counts}"
    );
    assert_eq!(before, after, "discover --no-ipp sent IPP requests");
    let off: Value = serde_json::from_str(&read("no-ipp.json")).unwrap();
    assert_eq!(
        off["devices"][0]["discoveredBy"],
        serde_json::json!(["mdns"])
    );
    let text = read("second.txt");
    assert!(text.starts_with("Printer ipp://localhost:"), "{text}");
    assert!(text.contains("ipp:toner-low"), "{text}");
}
