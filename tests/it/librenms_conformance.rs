//! Conformance against real printer recordings (LibreNMS, GPL-3.0 data kept outside the
//! project, located by `$FLEET_AGENT_LIBRENMS_DIR`, default `../shared/fixtures/librenms`).
//!
//! Every recording is served by the project's simulator and polled; the report must
//! match `truth.json` (serial, life count, every supply's description, raw level, raw max
//! and type, trays, system group) and the recordings' documented quirks must behave as
//! TRUTH.md §6 says. A second test serves the same files with snmpsim 1.2.2 (an
//! independent implementation) and checks both simulators give the same reports.
//!
//! Ignored by plain `cargo test` because the recordings live outside the repository and
//! snmpsim comes from PyPI; `.ci/run` runs them with `--include-ignored`.

use fleet_agent::poller;
use fleet_sim::{Layout, Simulator};
use fleet_snmp::{Security, Target, UdpClient};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

fn truth() -> BTreeMap<String, Value> {
    let path = crate::common::librenms_dir().join("truth.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (set FLEET_AGENT_LIBRENMS_DIR)", path.display()));
    let v: Value = serde_json::from_str(&text).unwrap();
    v["recordings"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Undoes truth.json's `\xNN` escapes into the raw bytes, then decodes them the way the
/// agent decodes served strings (UTF-8, else Latin-1; trailing NULs dropped).
fn unescape(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1] == b'x'
            && let Ok(v) = u8::from_str_radix(&s[i + 2..i + 4], 16)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    fleet_agent::printer::text::decode(&out)
}

/// Polls every recording twice as the poller does (the second time with the quirks the
/// first learned, as the store remembers them) and prints each one's round trips.
async fn poll_all(addr: SocketAddr, names: &[String]) -> BTreeMap<String, Value> {
    let client = UdpClient::new().unwrap();
    let mut out = BTreeMap::new();
    println!(
        "{addr}: recording, round trips (answered + probes) of the first and second poll, quirks learned"
    );
    for name in names {
        let mut t = Target::new(addr, Security::v2c(name));
        t.timeout = Duration::from_millis(1500);
        t.retries = 2;
        t.max_repetitions = 25;
        let reader = poller::Reader::default();
        let (first, s1) = reader
            .read(&client, &t, &mut Default::default())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let known = first.device.quirks.clone().unwrap_or_default();
        let (report, s2) = reader
            .read(&client, &t, &mut known.clone())
            .await
            .unwrap_or_else(|e| panic!("{name}: second poll: {e}"));
        println!(
            "  {name:<32} {:>3}+{:<3} {:>3}+{:<3} {known}",
            s1.requests, s1.probes, s2.requests, s2.probes
        );
        assert!(!s2.learned, "{name}: the second poll learned more: {known}");
        let mut v = serde_json::to_value(report).unwrap();
        // Time-dependent fields differ between two polls.
        v["collectedAt"] = Value::Null;
        v["device"]["lastBootAt"] = Value::Null;
        for a in v["alerts"].as_array_mut().unwrap() {
            a["ext"]["raisedAt"] = Value::Null;
        }
        out.insert(name.clone(), v);
    }
    out
}

async fn own_simulator() -> (Simulator, SocketAddr) {
    let (views, warnings) =
        fleet_sim::load_dir(&crate::common::librenms_dir().join("snmprec")).unwrap();
    assert!(
        warnings.is_empty(),
        "the recordings parse without warnings: {warnings:?}"
    );
    let printers = views
        .into_iter()
        .map(|(n, v)| fleet_sim::Printer::recorded(n, v))
        .collect();
    let sim = Simulator::start(
        printers,
        Layout::SinglePort("127.0.0.1:0".parse().unwrap()),
        vec![],
    )
    .await
    .unwrap();
    let addr = sim.addrs()[0];
    (sim, addr)
}

fn expected_serial(rec: &Value) -> Option<String> {
    if let Some(s) = rec["prtGeneral"]["prtGeneralSerialNumber"].as_str() {
        return Some(unescape(s));
    }
    let enterprise = rec["system"]["sysObjectID"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches('.')
        .split('.')
        .nth(6)
        .map(str::to_string);
    if let Some(ids) = rec["vendor_ids"].as_object() {
        for (name, v) in ids {
            let oid = v["oid"].as_str().unwrap_or_default();
            let ent = oid.split('.').nth(6).map(str::to_string);
            if name.to_lowercase().contains("serial") && ent == enterprise {
                return Some(unescape(v["value"].as_str().unwrap()));
            }
        }
    }
    rec["librenms_device"]["serial"]
        .as_str()
        .map(str::to_string)
}

fn check_against_truth(name: &str, rec: &Value, r: &Value, problems: &mut Vec<String>) {
    let mut check = |what: &str, ours: &Value, want: &Value| {
        if ours != want {
            problems.push(format!("{name}: {what}: got {ours}, truth {want}"));
        }
    };
    let sys = &rec["system"];
    let descr = sys["sysDescr"]
        .as_str()
        .map(|s| Value::from(s.trim()))
        .unwrap_or(Value::Null);
    check("sysDescr", &r["device"]["sysDescr"], &descr);
    let soid = sys["sysObjectID"]
        .as_str()
        .map(|s| Value::from(s.trim_start_matches('.')))
        .unwrap_or(Value::Null);
    check("sysObjectID", &r["device"]["sysObjectID"], &soid);
    let serial = expected_serial(rec).map(Value::from).unwrap_or(Value::Null);
    check("serialNumber", &r["serialNumber"], &serial);
    let life = rec["page_counters"][0]["prtMarkerLifeCount"].clone();
    check(
        "counters.lifetimeCount",
        &r["counters"]["lifetimeCount"],
        &life,
    );
    if !life.is_null() {
        check(
            "counters.ext.prtMarkerPowerOnCount",
            &r["counters"]["ext"]["prtMarkerPowerOnCount"],
            &rec["page_counters"][0]["prtMarkerPowerOnCount"],
        );
    }
    let want_supplies = rec["supplies"].as_array().cloned().unwrap_or_default();
    let ours = r["supplies"].as_array().unwrap();
    check(
        "supply count",
        &Value::from(ours.len()),
        &Value::from(want_supplies.len()),
    );
    for s in &want_supplies {
        let key = format!("m:{}", s["index"].as_str().unwrap());
        let Some(o) = ours.iter().find(|x| x["supplyKey"] == key) else {
            check(
                &format!("supply {key}"),
                &Value::Null,
                &Value::from("present"),
            );
            continue;
        };
        check(
            &format!("{key} description"),
            &o["description"],
            &Value::from(unescape(s["description"].as_str().unwrap())),
        );
        check(
            &format!("{key} raw level"),
            &o["ext"]["prtMarkerSuppliesLevel"],
            &s["level"],
        );
        check(
            &format!("{key} raw max"),
            &o["ext"]["prtMarkerSuppliesMaxCapacity"],
            &s["max_capacity"],
        );
        check(
            &format!("{key} type"),
            &o["ext"]["prtMarkerSuppliesType"],
            &s["type"],
        );
        if !s["class"].is_null() {
            check(
                &format!("{key} class"),
                &o["ext"]["prtMarkerSuppliesClass"],
                &s["class"],
            );
        }
        if !s["unit"].is_null() {
            check(
                &format!("{key} unit"),
                &o["ext"]["prtMarkerSuppliesSupplyUnit"],
                &s["unit"],
            );
        }
        // A percentage is reported exactly when the raw values allow computing it.
        let level = s["level"].as_i64().unwrap();
        let max = s["max_capacity"].as_i64().unwrap();
        let pct = if level >= 0 && max > 0 {
            Value::from(((100 * level + max / 2) / max).clamp(0, 100))
        } else {
            Value::Null
        };
        let pct = if level >= 0 && s["unit"] == 19 && level <= 100 {
            Value::from(level)
        } else {
            pct
        };
        check(&format!("{key} currentLevel"), &o["currentLevel"], &pct);
        let state = match level {
            -3 => "someRemaining",
            -1 => "unrestricted",
            l if l < 0 => "unknown",
            _ => "known",
        };
        check(
            &format!("{key} levelState"),
            &o["ext"]["levelState"],
            &Value::from(state),
        );
    }
    let want_trays = rec["input_trays"].as_array().cloned().unwrap_or_default();
    let trays = r["device"]["inputTrays"].as_array().unwrap();
    check(
        "tray count",
        &Value::from(trays.len()),
        &Value::from(want_trays.len()),
    );
    for t in &want_trays {
        let ix = t["index"].as_str().unwrap();
        let Some(o) = trays.iter().find(|x| x["index"] == ix) else {
            check(&format!("tray {ix}"), &Value::Null, &Value::from("present"));
            continue;
        };
        check(
            &format!("tray {ix} max"),
            &o["maxCapacity"],
            &t["max_capacity"],
        );
        check(
            &format!("tray {ix} level"),
            &o["currentLevel"],
            &t["current_level"],
        );
        let want_name = t["name"]
            .as_str()
            .filter(|n| !n.trim().is_empty())
            .map(|n| Value::from(n.trim()))
            .unwrap_or(Value::Null);
        check(&format!("tray {ix} name"), &o["name"], &want_name);
    }
    for dev in rec["hr_printer_devices"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        if r["device"]["hrDeviceIndex"] == dev["hrDeviceIndex"] {
            check(
                "hrDeviceStatus",
                &r["device"]["hrDeviceStatus"],
                &dev["hrDeviceStatus"],
            );
            check(
                "hrDeviceDescr",
                &r["device"]["hrDeviceDescr"],
                &Value::from(dev["hrDeviceDescr"].as_str().unwrap().trim()),
            );
        }
    }
}

/// Every counter sensor LibreNMS found in a recording is one of the report's meters,
/// with the same raw value; a recording whose vendor counters LibreNMS did not list gets
/// no vendor meter the support library names without its vendor's subtree being served.
/// Returns the sensors checked.
fn check_meters(
    truth: &BTreeMap<String, Value>,
    reports: &BTreeMap<String, Value>,
    problems: &mut Vec<String>,
) -> usize {
    let mut checked = 0;
    for (name, rec) in truth {
        let meters = reports[name]["meters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for sensor in rec["librenms_count_sensors"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            checked += 1;
            let oid = sensor["oid"].as_str().unwrap().trim_start_matches('.');
            match meters.iter().find(|m| m["oid"] == oid) {
                None => problems.push(format!(
                    "{name}: counter sensor {oid} ({}) is not among the meters",
                    sensor["descr"]
                )),
                Some(m) if m["value"] != sensor["raw_value"] => problems.push(format!(
                    "{name}: meter {oid}: got {}, LibreNMS {}",
                    m["value"], sensor["raw_value"]
                )),
                Some(_) => {}
            }
        }
        // Nothing invented or altered: every meter is an integer object the recording
        // serves (snmprec tags 2 Integer, 65 Counter32, 66 Gauge32, 70 Counter64), with
        // the value it serves.
        let file = crate::common::librenms_dir().join(rec["snmprec"].as_str().unwrap());
        let served =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for m in &meters {
            let oid = m["oid"].as_str().unwrap();
            let line = served
                .lines()
                .map(|l| l.splitn(3, '|').collect::<Vec<_>>())
                .find(|f| f.len() == 3 && f[0] == oid);
            match line {
                Some(f) if ["2", "65", "66", "70"].contains(&f[1]) => {
                    if f[2].parse::<i64>().ok() != m["value"].as_i64() {
                        problems.push(format!(
                            "{name}: meter {oid} = {}, the recording serves {}",
                            m["value"], f[2]
                        ));
                    }
                }
                Some(f) => problems.push(format!(
                    "{name}: meter {oid} from a value of snmprec type {}",
                    f[1]
                )),
                None => problems.push(format!(
                    "{name}: meter {oid} is not served by the recording"
                )),
            }
        }
    }
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the LibreNMS recordings in ../shared (FLEET_AGENT_LIBRENMS_DIR); run by .ci/run"]
async fn every_recording_matches_truth_json() {
    let truth = truth();
    assert_eq!(truth.len(), 52, "recordings listed in truth.json");
    let (sim, addr) = own_simulator().await;
    let names: Vec<String> = truth.keys().cloned().collect();
    let reports = poll_all(addr, &names).await;
    sim.stop().await;
    let mut problems = Vec::new();
    for (name, rec) in &truth {
        check_against_truth(name, rec, &reports[name], &mut problems);
    }
    let sensors = check_meters(&truth, &reports, &mut problems);
    assert_eq!(
        sensors, 41,
        "LibreNMS counter sensors checked (truth.json: librenms_count_sensors)"
    );
    assert!(
        problems.is_empty(),
        "{} mismatches:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the LibreNMS recordings in ../shared; run by .ci/run"]
async fn recording_quirks_behave_as_truth_md_documents() {
    let (sim, addr) = own_simulator().await;
    let names: Vec<String> = [
        "brother",
        "jetdirect_m880",
        "jetdirect_m130nw",
        "toshiba-tec_ev4",
        "toshiba-tec_fv4",
        "toshiba-tec_sx5t",
        "canonprinter_lbp",
        "brother_hl5370dw",
        "jetdirect_2",
        "konica",
        "epson-scanner_ds-860",
        "jetdirect_1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let r = poll_all(addr, &names).await;
    // brother: the hand-added BROTHER-MIB serial wins over HP's OID, whose served value
    // is the mangled 01 15 'U64969H9N19924' \n '32'.
    assert_eq!(r["brother"]["serialNumber"], "000A5J431816");
    assert_eq!(r["brother"]["device"]["serialSource"], "vendor:Brother");
    // jetdirect_m880: the mangled descriptions are served (and reported) as recorded.
    let d = r["jetdirect_m880"]["supplies"][0]["description"]
        .as_str()
        .unwrap();
    assert!(d.starts_with("Black Cartridge \n38 32 37 41"), "{d:?}");
    // jetdirect_m130nw: prtGeneralSerialNumber is plain; HP's object has a 01 15 prefix.
    assert_eq!(r["jetdirect_m130nw"]["serialNumber"], "VNCRC48198");
    // toshiba-tec_*: sysObjectID written with a leading dot is served and decoded.
    for t in ["toshiba-tec_ev4", "toshiba-tec_fv4", "toshiba-tec_sx5t"] {
        assert!(
            r[t]["device"]["sysObjectID"]
                .as_str()
                .unwrap()
                .starts_with("1.3.6.1.4.1.1129."),
            "{t}"
        );
        assert_eq!(r[t]["manufacturer"], "Toshiba");
    }
    // canonprinter_lbp: duplicated ipAddrTable lines are served once (walk count).
    let client = UdpClient::new().unwrap();
    let t = Target::new(addr, Security::v2c("canonprinter_lbp"));
    let ip = fleet_snmp::walk::walk(
        &client,
        &t,
        &"1.3.6.1.2.1.4.20.1".parse().unwrap(),
        fleet_snmp::walk::Budget::WALK,
    )
    .await
    .unwrap()
    .values;
    // A line served twice would have made the walk fail (a non-increasing OID).
    assert!(ip.contains_key(&"1.3.6.1.2.1.4.20.1.2.192.168.1.0".parse().unwrap()));
    // brother_hl5370dw: two supplies share a description; both are kept, by key.
    let s = r["brother_hl5370dw"]["supplies"].as_array().unwrap();
    assert_eq!(
        s.iter()
            .filter(|x| x["description"] == "Black Toner Cartridge")
            .count(),
        2
    );
    // jetdirect_2: sysObjectID only (no sysDescr) still yields a report.
    assert_eq!(r["jetdirect_2"]["device"]["sysDescr"], Value::Null);
    assert_eq!(r["jetdirect_2"]["manufacturer"], "HP");
    // konica: a composite recording; the Develop model object is what the device reports.
    assert_eq!(r["konica"]["modelName"], "Develop ineo+ 280");
    // epson-scanner: a scanner with no Printer-MIB data: no supplies, no counters.
    assert!(
        r["epson-scanner_ds-860"]["supplies"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        r["epson-scanner_ds-860"]["counters"]["lifetimeCount"],
        Value::Null
    );
    // jetdirect_1: a Kyocera printer behind an HP JetDirect EX: the enterprise wins.
    assert_eq!(r["jetdirect_1"]["manufacturer"], "Kyocera");
    sim.stop().await;
}

struct Snmpsim {
    child: std::process::Child,
    _cache: tempfile::TempDir,
}

impl Drop for Snmpsim {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs snmpsim 1.2.2 (FLEET_AGENT_SNMPSIM, installed by .ci/run) and the recordings"]
async fn our_simulator_and_snmpsim_give_the_same_reports() {
    let bin =
        std::env::var("FLEET_AGENT_SNMPSIM").unwrap_or_else(|_| "snmpsim-command-responder".into());
    let port = 30000 + (std::process::id() % 20000) as u16;
    let cache = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(&bin)
        .env("SNMPSIM_ALLOW_ROOT", "true")
        .arg(format!(
            "--data-dir={}",
            crate::common::librenms_dir().join("snmprec").display()
        ))
        .arg(format!("--agent-udpv4-endpoint=127.0.0.1:{port}"))
        .arg(format!("--cache-dir={}", cache.path().display()))
        .arg("--logging-method=null")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{bin}: {e} (install snmpsim==1.2.2 pysmi==2.0.0, or set FLEET_AGENT_SNMPSIM)")
        });
    let _guard = Snmpsim {
        child,
        _cache: cache,
    };
    let snmpsim_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Readiness: poll sysDescr until it answers (Python start-up takes about 1.5 s).
    let client = UdpClient::new().unwrap();
    let mut t = Target::new(snmpsim_addr, Security::v2c("brother"));
    t.timeout = Duration::from_millis(200);
    t.retries = 0;
    let mut ready = false;
    for _ in 0..150 {
        if fleet_snmp::walk::get(&client, &t, &["1.3.6.1.2.1.1.1.0".parse().unwrap()])
            .await
            .is_ok_and(|v| !v.is_empty())
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "snmpsim did not answer on {snmpsim_addr}");

    let truth = truth();
    let names: Vec<String> = truth.keys().cloned().collect();
    let (sim, addr) = own_simulator().await;
    let ours = poll_all(addr, &names).await;
    sim.stop().await;
    let theirs = poll_all(snmpsim_addr, &names).await;
    let mut diffs = Vec::new();
    for n in &names {
        if ours[n] != theirs[n] {
            diffs.push(format!(
                "{n}:\n  ours   {}\n  snmpsim {}",
                ours[n], theirs[n]
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} recordings differ:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    // And the reports from snmpsim match truth.json too.
    let mut problems = Vec::new();
    for (name, rec) in &truth {
        check_against_truth(name, rec, &theirs[name], &mut problems);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
