//! Black-box tests: the simulator binary serves the project's own recordings on
//! 127.0.0.1 and the CLI polls them. Self-contained (no external tools).

use crate::common::*;
use serde_json::{Value, json};

fn supply<'a>(r: &'a Value, key: &str) -> &'a Value {
    r["supplies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["supplyKey"] == key)
        .unwrap_or_else(|| panic!("no supply {key}"))
}

#[test]
fn poll_reports_identity_counters_supplies_and_alerts() {
    let (sim, addr) = simulate_dir(&own_fixtures(), &[]);
    let r = poll_json(addr, &["-c", "acme-color"]);
    drop(sim);
    assert_eq!(r["manufacturer"], "Lexmark");
    assert_eq!(r["modelName"], "Acme ColorLaser 6500de");
    // A binary 01 15 prefix and trailing NULs are stripped from identity strings.
    assert_eq!(r["serialNumber"], "ACX123456");
    assert_eq!(r["device"]["serialSource"], "prtGeneralSerialNumber");
    assert_eq!(r["counters"]["lifetimeCount"], 123456);
    assert_eq!(r["counters"]["lifetimeCountUnit"], "Sides");
    assert_eq!(r["counters"]["ext"]["prtMarkerPowerOnCount"], 321);
    let d = &r["device"];
    assert_eq!(d["ipAddress"], "127.0.0.1");
    // ipAdEntIfIndex.127.0.0.1 = 2 selects ifPhysAddress.2, not the loopback interface.
    assert_eq!(d["macAddress"], "00:21:b7:aa:bb:cc");
    assert_eq!(d["sysObjectID"], "1.3.6.1.4.1.641.1.6500");
    assert_eq!(d["sysName"], "acme-color-01");
    assert_eq!(d["printerName"], "Marketing colour");
    assert_eq!(d["firmwareVersion"], "FA.1.2");
    assert_eq!(d["uptimeSeconds"], 86400);
    assert_eq!(d["hrDeviceStatus"], 3);
    assert_eq!(d["printerState"], "nonCriticalAlert");
    assert_eq!(
        d["hrPrinterDetectedErrorState"],
        json!(["lowToner", "serviceRequested"])
    );
    assert_eq!(d["consoleDisplay"], json!(["Ready"]));
    assert_eq!(d["inputTrays"][0]["levelState"], "someRemaining");
    assert_eq!(d["snmpVersion"], "v2c");

    // Percent unit: the level is the percentage.
    let s = supply(&r, "m:1.1");
    assert_eq!(s["description"], "Cyan Cartridge");
    assert_eq!(s["color"], "Cyan");
    assert_eq!(s["currentLevel"], 42);
    assert_eq!(s["percentRemaining"], 42);
    assert_eq!(s["capacityUnit"], "Percent");
    assert_eq!(s["type"], "Toner");
    assert_eq!(s["ext"]["prtMarkerSuppliesType"], 21);
    // -3: some remaining, no invented percentage; trailing NUL stripped from the text.
    let s = supply(&r, "m:1.2");
    assert_eq!(s["description"], "Black Toner");
    assert_eq!(s["color"], "Black");
    assert_eq!(s["ext"]["levelState"], "someRemaining");
    assert_eq!(s["ext"]["prtMarkerSuppliesLevel"], -3);
    assert_eq!(s["currentLevel"], Value::Null);
    assert_eq!(s["percentRemaining"], Value::Null);
    assert_eq!(s["maximumCapacity"], 20000);
    // Receptacle: level is free space; percentRemaining stays null, percentFilled is set.
    let s = supply(&r, "m:1.3");
    assert_eq!(
        s["description"], "Wien \u{b7} l\u{b7}\u{e4}lo",
        "Latin-1 fallback"
    );
    assert_eq!(s["type"], "Waste Toner");
    assert_eq!(s["color"], "none");
    assert_eq!(s["currentLevel"], 25);
    assert_eq!(s["percentRemaining"], Value::Null);
    assert_eq!(s["ext"]["percentFilled"], 75);
    assert_eq!(s["ext"]["prtMarkerSuppliesClass"], 4);
    // -1 unrestricted, -2 max: maximumCapacity null, raw kept.
    let s = supply(&r, "m:1.4");
    assert_eq!(s["ext"]["levelState"], "unrestricted");
    assert_eq!(s["maximumCapacity"], Value::Null);
    assert_eq!(s["ext"]["prtMarkerSuppliesMaxCapacity"], -2);
    let s = supply(&r, "m:1.5");
    assert_eq!(s["ext"]["levelState"], "unknown");
    assert_eq!(s["color"], "Magenta");
    assert_eq!(s["currentLevel"], Value::Null);

    let alerts = r["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0]["alertKey"], "a:11.2.1104");
    assert_eq!(alerts[0]["status"], "WARNING");
    assert_eq!(
        alerts[0]["issue"], "Black toner low ",
        "alert text is kept untrimmed"
    );
    assert_eq!(alerts[0]["ext"]["binary"], true);
    assert_eq!(alerts[0]["ext"]["supplyAlert"], true);
    let collected = r["collectedAt"].as_i64().unwrap();
    assert_eq!(
        alerts[0]["ext"]["raisedAt"].as_i64().unwrap(),
        collected - 100_000
    );
    assert_eq!(alerts[1]["alertKey"], "a:6.1.3.3");
    assert_eq!(alerts[1]["status"], "ERROR");
    assert_eq!(alerts[1]["ext"]["codeName"], "coverOpen");
}

#[test]
fn simulator_warns_about_bad_lines_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        own_fixtures().join("acme-color.snmprec"),
        dir.path().join("acme-color.snmprec"),
    )
    .unwrap();
    let (sim, addr) = simulate_dir(dir.path(), &[]);
    // The printer is still served despite the bad lines.
    let r = poll_json(addr, &["-c", "acme-color"]);
    assert_eq!(r["serialNumber"], "ACX123456");
    let err = sim.warnings.join("\n");
    let lines: Vec<usize> = std::fs::read_to_string(own_fixtures().join("acme-color.snmprec"))
        .unwrap()
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("this line") || l.contains("not-a-number"))
        .map(|(i, _)| i + 1)
        .collect();
    for n in lines {
        assert!(
            err.contains(&format!("acme-color.snmprec:{n}: ")),
            "no warning for line {n} in {err}"
        );
    }
}

#[test]
fn snmpv1_poll_handles_vendor_serial_text_mac_and_counter64() {
    let (_sim, addr) = simulate_dir(&own_fixtures(), &[]);
    let r = poll_json(addr, &["-c", "acme-mono-v1", "--v1"]);
    assert_eq!(r["manufacturer"], "HP");
    assert_eq!(r["modelName"], "LaserJet Pro M404dn");
    assert_eq!(r["serialNumber"], "PHBXK12345");
    assert_eq!(r["device"]["serialSource"], "vendor:HP");
    assert_eq!(r["device"]["macAddress"], "00:50:56:b6:2c:10");
    assert_eq!(r["device"]["snmpVersion"], "v1");
    assert_eq!(r["counters"]["lifetimeCount"], 987654);
    assert_eq!(r["counters"]["lifetimeCountUnit"], "Sheets");
    assert_eq!(supply(&r, "m:1.1")["currentLevel"], 25);
    assert_eq!(r["device"]["hrPrinterDetectedErrorState"], json!([]));
    assert_eq!(r["device"]["printerState"], "idle");
    // The same printer over v2c gives the same report apart from the version and time.
    let mut v2 = poll_json(addr, &["-c", "acme-mono-v1"]);
    let mut v1 = r.clone();
    for x in [&mut v1, &mut v2] {
        x["collectedAt"] = Value::Null;
        x["device"]["snmpVersion"] = Value::Null;
        x["device"]["lastBootAt"] = Value::Null;
    }
    assert_eq!(v1, v2);
}

#[test]
fn walk_snmprec_output_is_servable_and_polls_identically() {
    let (_sim, addr) = simulate_dir(&own_fixtures(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("copy.snmprec");
    let a = addr.to_string();
    let out = run(&[
        "walk",
        &a,
        "-c",
        "acme-color",
        "--format",
        "snmprec",
        "-o",
        out_file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&out_file).unwrap();
    // 81 good lines (83 minus 2 bad) in the source recording, every one walked back.
    assert_eq!(text.lines().count(), 81);
    assert!(text.contains("1.3.6.1.2.1.43.11.1.1.6.1.2|4x|426c61636b20546f6e657200"));
    let (_sim2, addr2) = simulate_dir(dir.path(), &[]);
    let mut a1 = poll_json(addr, &["-c", "acme-color"]);
    let mut a2 = poll_json(addr2, &["-c", "copy"]);
    for x in [&mut a1, &mut a2] {
        x["collectedAt"] = Value::Null;
        x["device"]["lastBootAt"] = Value::Null;
        for al in x["alerts"].as_array_mut().unwrap() {
            al["ext"]["raisedAt"] = Value::Null;
        }
    }
    assert_eq!(a1, a2);
}

#[test]
fn wrong_community_and_closed_port_exit_3_with_a_clear_message() {
    let (_sim, addr) = simulate_dir(&own_fixtures(), &[]);
    let a = addr.to_string();
    let out = run(&[
        "poll",
        &a,
        "-c",
        "nope",
        "--timeout-ms",
        "200",
        "--retries",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "printer {a}: no response after 2 attempt(s) of 200 ms"
        )),
        "{err}"
    );
    // The secret community never appears in the error.
    assert!(!err.contains("nope"), "{err}");
    let out = run(&[
        "poll",
        "127.0.0.1:9",
        "--timeout-ms",
        "100",
        "--retries",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn snmpv3_users_and_distinct_errors_against_the_simulator() {
    let (_sim, addr) = simulate_dir(
        &own_fixtures(),
        &[
            "--v3-user",
            "fleet:sha256:authpass123:aes128:privpass123",
            "--v3-user",
            "legacy:md5:authpass123:des:privpass123",
        ],
    );
    let r = poll_json(
        addr,
        &[
            "--v3-user",
            "fleet",
            "--auth-protocol",
            "sha256",
            "--auth-pass",
            "authpass123",
            "--priv-protocol",
            "aes128",
            "--priv-pass",
            "privpass123",
            "--context",
            "acme-color",
        ],
    );
    assert_eq!(r["serialNumber"], "ACX123456");
    assert_eq!(r["device"]["snmpVersion"], "v3");
    let r = poll_json(
        addr,
        &[
            "--v3-user",
            "legacy",
            "--auth-protocol",
            "md5",
            "--auth-pass",
            "authpass123",
            "--priv-protocol",
            "des",
            "--priv-pass",
            "privpass123",
            "--context",
            "acme-mono-v1",
        ],
    );
    assert_eq!(r["serialNumber"], "PHBXK12345");

    let a = addr.to_string();
    let base = [
        "poll",
        a.as_str(),
        "--timeout-ms",
        "300",
        "--retries",
        "0",
        "--context",
        "acme-color",
    ];
    let case = |extra: &[&str]| {
        let mut v: Vec<&str> = base.to_vec();
        v.extend_from_slice(extra);
        let out = run(&v);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = case(&[
        "--v3-user",
        "fleet",
        "--auth-protocol",
        "sha256",
        "--auth-pass",
        "wrongpass99",
        "--priv-protocol",
        "aes128",
        "--priv-pass",
        "privpass123",
    ]);
    assert_eq!(code, Some(4));
    assert!(err.contains("wrong digest"), "{err}");
    assert!(!err.contains("wrongpass99"));
    let (code, err) = case(&[
        "--v3-user",
        "nobody",
        "--auth-protocol",
        "sha256",
        "--auth-pass",
        "authpass123",
    ]);
    assert_eq!(code, Some(4));
    assert!(err.contains("unknown user name \"nobody\""), "{err}");
    let (code, err) = case(&[
        "--v3-user",
        "fleet",
        "--auth-protocol",
        "sha256",
        "--auth-pass",
        "authpass123",
        "--priv-protocol",
        "aes128",
        "--priv-pass",
        "wrongpriv99",
    ]);
    assert_eq!(code, Some(4));
    assert!(err.contains("decryption error"), "{err}");
    let (code, err) = case(&[
        "--v3-user",
        "fleet",
        "--auth-protocol",
        "sha256",
        "--auth-pass",
        "authpass123",
    ]);
    assert_eq!(code, Some(4));
    assert!(err.contains("security level not supported"), "{err}");
}

#[test]
fn synthetic_fleet_answers_on_its_own_loopback_addresses() {
    let port = 20000 + (std::process::id() % 20000) as u16;
    let p = port.to_string();
    let _sim = simulate(&[
        "--synthetic",
        "6",
        "--fleet-start",
        "127.77.0.1",
        "--port",
        &p,
    ]);
    let mut serials = std::collections::BTreeSet::new();
    for i in 1..=6 {
        let addr: std::net::SocketAddr = format!("127.77.0.{i}:{port}").parse().unwrap();
        let r = poll_json(addr, &[]);
        assert!(r["counters"]["lifetimeCount"].as_u64().unwrap() > 1000);
        assert!(!r["supplies"].as_array().unwrap().is_empty());
        assert_eq!(r["device"]["ipAddress"], format!("127.77.0.{i}"));
        serials.insert(r["serialNumber"].as_str().unwrap().to_string());
    }
    assert_eq!(
        serials.len(),
        6,
        "every synthetic printer has its own serial"
    );
}

#[test]
fn version_and_usage_errors() {
    let out = run(&["version"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("fleet-agent "));
    let out = run(&["poll"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["walk", "127.0.0.1", "1.3.x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("OID argument"));
    // The lab tools are not the agent's commands.
    let out = run(&["simulate", "--data-dir", "/nonexistent/dir"]);
    assert_eq!(out.status.code(), Some(2));
}

/// Issue 17: a printer whose agent drops every request naming one column (as snmpsim did
/// with a real HP recording) and does not answer GETBULK is still reported, exit 0, with
/// every other value; the quirks and what could not be read are named, in the JSON and
/// in the table.
#[test]
fn a_printer_that_drops_an_object_and_getbulk_is_read_with_everything_else() {
    let (healthy_sim, healthy) = simulate_dir(&own_fixtures(), &[]);
    let full = poll_json(healthy, &["-c", "acme-color"]);
    drop(healthy_sim);
    let level = "1.3.6.1.2.1.43.11.1.1.9";
    let drop_level = format!("drop={level}");
    let (_sim, addr) = simulate_dir(
        &own_fixtures(),
        &["--quirk", &drop_level, "--quirk", "bulk=drop"],
    );
    let start = tokio::time::Instant::now();
    let r = poll_json(addr, &["-c", "acme-color"]);
    println!("first poll of the quirky printer: {:?}", start.elapsed());
    let d = &r["device"];
    assert_eq!(d["quirks"]["noBulk"], true, "{d}");
    assert_eq!(d["quirks"]["skip"][0]["oid"], level);
    assert_eq!(d["quirks"]["skip"][0]["reason"], "noAnswer");
    assert_eq!(
        d["unavailable"],
        json!([{"section": "supplies", "object": "prtMarkerSuppliesLevel", "oid": level,
                "reason": "no answer to a request holding it"}])
    );
    // Everything else as from the healthy printer (alerts' raisedAt moves with the clock).
    let (mut r, mut full) = (r.clone(), full);
    for v in [&mut r, &mut full] {
        for al in v["alerts"].as_array_mut().unwrap() {
            al["ext"]["raisedAt"] = Value::Null;
        }
    }
    let d = &r["device"];
    for k in [
        "serialNumber",
        "manufacturer",
        "modelName",
        "counters",
        "alerts",
    ] {
        assert_eq!(r[k], full[k], "{k}");
    }
    for k in [
        "macAddress",
        "sysName",
        "firmwareVersion",
        "inputTrays",
        "consoleDisplay",
    ] {
        assert_eq!(d[k], full["device"][k], "{k}");
    }
    let descriptions = |v: &Value| -> Vec<Value> {
        v["supplies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["description"].clone())
            .collect()
    };
    assert_eq!(descriptions(&r), descriptions(&full));
    assert!(
        r["supplies"][0]
            .get("currentLevel")
            .is_none_or(Value::is_null)
    );

    let out = run(&["poll", &addr.to_string(), "-c", "acme-color"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Agent quirks (worked around)\n  GETNEXT only (GETBULK fails); 1 object(s) skipped")
            && text.contains(
                "Not read (unknown, not empty)\n  supplies: prtMarkerSuppliesLevel (1.3.6.1.2.1.43.11.1.1.9) not read"
            ),
        "{text}"
    );
}

/// The other quirks of the simulator each still give the full report (slow answers within
/// the timeout, late duplicates ignored).
#[test]
fn v1_only_too_big_and_one_repetition_agents_give_the_full_report() {
    let (healthy_sim, healthy) = simulate_dir(&own_fixtures(), &[]);
    let mut full = poll_json(healthy, &["-c", "acme-color"]);
    drop(healthy_sim);
    let strip = |v: &mut Value| {
        v["collectedAt"] = Value::Null;
        v["device"]["lastBootAt"] = Value::Null;
        v["device"]["snmpVersion"] = Value::Null;
        v["device"]["quirks"] = Value::Null;
        for al in v["alerts"].as_array_mut().unwrap() {
            al["ext"]["raisedAt"] = Value::Null;
        }
    };
    strip(&mut full);
    // What each must teach the poller: only a real limit, never a passing slowness.
    for (quirk, version, learned) in [
        ("v1-only", "v1", json!({"v1": true})),
        ("too-big-above=5", "v2c", json!({"maxObjects": 5})),
        ("bulk=one", "v2c", Value::Null),
        ("bulk=generr", "v2c", json!({"noBulk": true})),
        ("slow=100-600", "v2c", Value::Null),
        ("duplicate", "v2c", Value::Null),
    ] {
        let (_sim, addr) = simulate_dir(&own_fixtures(), &["--quirk", quirk]);
        let mut r = poll_json(addr, &["-c", "acme-color"]);
        assert_eq!(r["device"]["snmpVersion"], version, "{quirk}");
        assert!(r["device"].get("unavailable").is_none(), "{quirk}: {r}");
        let q = &r["device"]["quirks"];
        match learned.as_object() {
            None => assert!(q.is_null(), "{quirk}: learned {q}"),
            Some(want) => {
                for (k, v) in want {
                    assert_eq!(&q[k], v, "{quirk}: {q}");
                }
                assert_eq!(q["skip"], json!([]), "{quirk}: {q}");
            }
        }
        strip(&mut r);
        assert_eq!(r, full, "{quirk}");
    }
    // tooBig for a response of more than 10 values: learned as limits that keep every
    // response within 10 (objects per request, values per response), the full report read.
    let (_sim, addr) = simulate_dir(&own_fixtures(), &["--quirk", "too-big-response=10"]);
    let mut r = poll_json(addr, &["-c", "acme-color"]);
    let q = r["device"]["quirks"].clone();
    let at_most_10 = |k: &str| q[k].as_u64().is_some_and(|n| (1..=10).contains(&n));
    assert!(at_most_10("maxObjects") && at_most_10("maxValues"), "{q}");
    assert!(r["device"].get("unavailable").is_none(), "{r}");
    strip(&mut r);
    assert_eq!(r, full);
}

/// An agent that goes backwards inside a table, or answers with the wrong types, still
/// gives a report: the looping column ends where it looped (named under
/// `device.unavailable`), wrong types are left out, everything else is read.
#[test]
fn backwards_and_wrongly_typed_tables_give_a_report_with_the_rest() {
    let level = "1.3.6.1.2.1.43.11.1.1.9";
    let quirk = format!("backwards={level}");
    let (_sim, addr) = simulate_dir(&own_fixtures(), &["--quirk", &quirk]);
    let r = poll_json(addr, &["-c", "acme-color"]);
    let un = &r["device"]["unavailable"];
    assert_eq!(un[0]["section"], "supplies", "{r}");
    assert_eq!(un[0]["reason"], "non-increasing OID in the walk");
    assert!(
        r["device"].get("quirks").is_none(),
        "nothing to remember: {r}"
    );
    assert_eq!(r["serialNumber"], "ACX123456");
    assert_eq!(r["counters"]["lifetimeCount"], 123456);
    assert!(r["alerts"].as_array().is_some_and(|a| !a.is_empty()));

    let quirk = format!("wrong-type={level}");
    let (_sim, addr) = simulate_dir(&own_fixtures(), &["--quirk", &quirk]);
    let r = poll_json(addr, &["-c", "acme-color"]);
    let supplies = r["supplies"].as_array().unwrap();
    assert!(!supplies.is_empty());
    assert!(
        supplies
            .iter()
            .all(|s| s["ext"]["prtMarkerSuppliesLevel"].is_null() && s["currentLevel"].is_null()),
        "{r}"
    );
    assert_eq!(r["serialNumber"], "ACX123456");
}

/// An agent that answers genErr, or noSuchName (as some v2c agents still do), for every
/// request touching one column: that column is skipped and named, the rest is read, exit 0.
#[test]
fn a_column_refused_with_generr_or_nosuchname_is_named_and_the_rest_read() {
    let level = "1.3.6.1.2.1.43.11.1.1.9";
    for (quirk, reason, why) in [
        ("generr", "genErr", "genErr"),
        ("nosuchname", "refused", "refused by the agent"),
    ] {
        let q = format!("{quirk}={level}");
        let (_sim, addr) = simulate_dir(&own_fixtures(), &["--quirk", &q]);
        let r = poll_json(addr, &["-c", "acme-color"]);
        let d = &r["device"];
        assert_eq!(d["quirks"]["skip"][0]["oid"], level, "{quirk}: {d}");
        assert_eq!(d["quirks"]["skip"][0]["reason"], reason, "{quirk}: {d}");
        let unavailable = d["unavailable"].as_array().unwrap();
        assert_eq!(
            unavailable[0],
            json!({"section": "supplies", "object": "prtMarkerSuppliesLevel", "oid": level,
                    "reason": why}),
            "{quirk}"
        );
        // The walk of the column before it ends where the agent refused the step into
        // the refused column: named as where it stopped (the agent cannot tell whether
        // more rows follow), its rows read.
        for u in &unavailable[1..] {
            assert_eq!(u["section"], "supplies", "{quirk}: {u}");
            assert!(
                u["oid"]
                    .as_str()
                    .unwrap()
                    .starts_with("1.3.6.1.2.1.43.11.1.1.8."),
                "{quirk}: {u}"
            );
        }
        assert!(r["serialNumber"].is_string(), "{quirk}: {r}");
        let supplies = r["supplies"].as_array().unwrap();
        assert!(!supplies.is_empty(), "{quirk}");
        assert!(
            supplies
                .iter()
                .all(|s| s["ext"]["prtMarkerSuppliesMaxCapacity"].is_i64()),
            "{quirk}: every row of the column before was read: {supplies:?}"
        );
        assert!(r["counters"]["lifetimeCount"].is_u64(), "{quirk}");
    }
}

/// The README's exit-code table, row by row, each from a command a user runs (75, the
/// restart into an agent update, is `update_job.rs`'s: it needs a staged update).
#[test]
fn every_exit_code_of_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, addr) = simulate_dir(
        &own_fixtures(),
        &[
            "--v3-user",
            "fleet:sha256:authpass123:aes128:privpass123",
            "--quirk",
            "generr=1.3.6.1.2.1.1.1",
        ],
    );
    let a = addr.to_string();
    // A port nothing listens on (bound, then freed).
    let silent = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let bad_conf = dir.path().join("bad.toml");
    std::fs::write(&bad_conf, "[agent]\nlog_level = \"verbose\"\n").unwrap();
    let missing = dir.path().join("missing.toml");
    let quick = ["--timeout-ms", "300", "--retries", "0"];
    let with = |base: &[&str], extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| (*s).to_owned()).collect()
    };
    let rows: Vec<(i32, Vec<String>, &str)> = vec![
        (0, with(&["version"], &[]), ""),
        (1, with(&["walk", &a, "1.3.x"], &[]), "OID argument"),
        (
            1,
            with(&["poll", "127.0.0.1:99999"], &[]),
            "port 99999 is out of range",
        ),
        (2, with(&["poll"], &[]), "required"),
        (3, with(&["poll", &silent], &quick), "no response"),
        (
            4,
            with(
                &[
                    "poll",
                    &a,
                    "--context",
                    "acme-color",
                    "--v3-user",
                    "fleet",
                    "--auth-protocol",
                    "sha256",
                    "--auth-pass",
                    "wrongpass99",
                ],
                &quick,
            ),
            "",
        ),
        (
            5,
            with(&["walk", &a, "1.3.6.1.2.1.1", "-c", "acme-color"], &quick),
            "genErr",
        ),
        (
            64,
            with(&["config", "validate", bad_conf.to_str().unwrap()], &[]),
            "agent.log_level",
        ),
        (
            65,
            with(&["discover", "--no-store", "-t", "10.0.0.0/33"], &[]),
            "not a valid subnet",
        ),
        (
            65,
            with(&["discover", "--no-store", "-t", "10.0.0.0/8"], &[]),
            "more than the cap of 65536",
        ),
        (
            66,
            with(&["config", "validate", missing.to_str().unwrap()], &[]),
            "No such file",
        ),
        (
            66,
            with(
                &[
                    "status",
                    "--state-dir",
                    dir.path().join("none").to_str().unwrap(),
                ],
                &[],
            ),
            "no store yet",
        ),
    ];
    for (code, args, says) in rows {
        let v: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&v);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
