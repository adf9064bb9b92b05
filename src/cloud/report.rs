//! Upload decisions: the seed's rule for when to send, over the keyed view of a printer
//! report and its merge-patch diffs (`fleet_protocol::keyed`).

use crate::printer::PrinterReport;
use fleet_protocol::keyed::diff;
use serde_json::Value;

pub use fleet_protocol::upload::Trigger;

/// What to send after a poll.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Nothing (page counters alone never trigger an upload).
    Nothing,
    /// The whole keyed report.
    Snapshot(Trigger),
    /// A merge patch against the last sent state.
    Delta(Trigger, Value),
}

/// The upload rule's thresholds (`[upload]` in the configuration).
pub use crate::config::UploadRule as Rule;

/// The last state sent to the cloud for one printer.
#[derive(Clone, Debug, PartialEq)]
pub struct Sent {
    /// Keyed view of what the cloud holds.
    pub keyed: Value,
    /// Its report sequence number.
    pub seq: u64,
    /// When the last snapshot was sent (epoch ms).
    pub last_snapshot_ms: i64,
}

/// Returns the keyed view of a report ([`fleet_protocol::keyed::keyed`]).
pub fn keyed(report: &PrinterReport) -> Value {
    fleet_protocol::keyed::keyed(serde_json::to_value(report).unwrap_or(Value::Null))
}

fn percent_of(s: &Value) -> Option<i64> {
    s.get("currentLevel").and_then(Value::as_i64)
}

fn raw_level(s: &Value) -> Option<i64> {
    s.pointer("/ext/prtMarkerSuppliesLevel")
        .and_then(Value::as_i64)
        .filter(|l| *l >= 0)
}

/// A fingerprint of everything [`decide`] compares, read from the typed report: the alert
/// keys, the identity (serial, model, manufacturer, firmware) and each supply's levels and
/// chip serial.
/// Two reports with the same fingerprint get the same decision against the same sent
/// state (short of a due snapshot), so the uploader skips a poll whose fingerprint equals
/// the last one decided without building the keyed view or reading the stored state.
/// Page counters and times are left out: they never trigger an upload. It is only ever
/// compared with fingerprints computed by this same function in this process.
pub fn fingerprint(report: &PrinterReport) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut alerts: Vec<&str> = report.alerts.iter().map(|a| a.alert_key.as_str()).collect();
    alerts.sort_unstable();
    alerts.dedup();
    alerts.hash(&mut h);
    report.serial_number.hash(&mut h);
    report.model_name.hash(&mut h);
    report.manufacturer.hash(&mut h);
    report.device.firmware_version.hash(&mut h);
    let mut supplies: Vec<_> = report
        .supplies
        .iter()
        .map(|s| {
            (
                s.supply_key.as_str(),
                s.current_level,
                s.ext.prt_marker_supplies_level,
                s.serial_number.as_deref(),
            )
        })
        .collect();
    supplies.sort_unstable();
    supplies.hash(&mut h);
    // An unread section is kept as the cloud holds it: reading it again must be decided
    // afresh even when it reads empty (an alert cleared meanwhile).
    for u in &report.device.unavailable {
        u.section.hash(&mut h);
    }
    h.finish()
}

/// Where each section a reading may fail to read lives in the keyed view.
const SECTIONS: &[(&str, &[&str])] = &[
    ("supplies", &["/supplies"]),
    ("alerts", &["/alerts"]),
    ("counters", &["/counters"]),
    ("meters", &["/meters"]),
    ("inputTrays", &["/device/inputTrays"]),
    ("console", &["/device/consoleDisplay"]),
    (
        "status",
        &[
            "/device/hrDeviceStatus",
            "/device/hrPrinterStatus",
            "/device/hrPrinterDetectedErrorState",
        ],
    ),
    (
        "identity",
        &[
            "/serialNumber",
            "/modelName",
            "/manufacturer",
            "/device/firmwareVersion",
            "/device/macAddress",
        ],
    ),
];

/// Keeps in `new` (a keyed view) what the cloud holds (`prev`) for every section the
/// reading could not read (`device.unavailable`): unknown is not empty, so a supplies
/// table that timed out once is neither a "supply replaced" nor an "alert cleared".
/// Returns whether anything was carried over.
pub fn carry_unread(report: &PrinterReport, prev: Option<&Sent>, new: &mut Value) -> bool {
    let Some(prev) = prev else { return false };
    let mut carried = false;
    for (section, pointers) in SECTIONS {
        if !report.unread(section) {
            continue;
        }
        for ptr in *pointers {
            let Some((parent, key)) = ptr.rsplit_once('/') else {
                continue;
            };
            let parent = if parent.is_empty() {
                Some(&mut *new)
            } else {
                new.pointer_mut(parent)
            };
            let Some(Value::Object(m)) = parent else {
                continue;
            };
            // What the cloud holds, or nothing when it holds nothing (a half-read value
            // is not sent as if it were read).
            match prev.keyed.pointer(ptr) {
                Some(old) => m.insert(key.to_string(), old.clone()),
                None => m.remove(key),
            };
            carried = true;
        }
    }
    carried
}

/// Decides what to upload after a poll, following the seed: a new printer gets a
/// snapshot; at least one snapshot per heartbeat period; otherwise a delta only when an
/// alert changed, a supply went down (or was replaced) or the identity changed. Page
/// counter changes alone wait (they ride along in the next upload).
pub fn decide(prev: Option<&Sent>, report: &PrinterReport, now_ms: i64, rule: Rule) -> Decision {
    let Some(prev) = prev else {
        return Decision::Snapshot(Trigger::Enrolment);
    };
    decide_keyed(Some(prev), &keyed(report), now_ms, rule)
}

/// [`decide`] with the new report's keyed view already built.
pub fn decide_keyed(prev: Option<&Sent>, new: &Value, now_ms: i64, rule: Rule) -> Decision {
    let Some(prev) = prev else {
        return Decision::Snapshot(Trigger::Enrolment);
    };
    if now_ms - prev.last_snapshot_ms >= rule.heartbeat_ms {
        return Decision::Snapshot(Trigger::Heartbeat24h);
    }
    let Some(patch) = diff(&prev.keyed, new) else {
        return Decision::Nothing;
    };
    let old = &prev.keyed;
    let alerts_changed = {
        let keys = |v: &Value| {
            v.get("alerts")
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
        };
        keys(old) != keys(new)
    };
    if alerts_changed {
        return Decision::Delta(Trigger::AlertChange, patch);
    }
    let identity_changed = ["serialNumber", "modelName", "manufacturer"]
        .iter()
        .any(|k| old.get(*k) != new.get(*k))
        || old.pointer("/device/firmwareVersion") != new.pointer("/device/firmwareVersion");
    if identity_changed {
        return Decision::Delta(Trigger::IdentityChange, patch);
    }
    let mut decreased = false;
    let mut replaced = false;
    if let (Some(Value::Object(a)), Some(Value::Object(b))) =
        (old.get("supplies"), new.get("supplies"))
    {
        for (k, sa) in a {
            let Some(sb) = b.get(k) else { continue };
            // A supply whose chip says another serial number was replaced, whatever its
            // level says (a new cartridge can read as full as the old one did).
            let serial = |s: &Value| {
                s.get("serialNumber")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            if let (Some(x), Some(y)) = (serial(sa), serial(sb))
                && x != y
            {
                replaced = true;
                continue;
            }
            match (percent_of(sa), percent_of(sb)) {
                (Some(x), Some(y)) if y < x => {
                    decreased |= (x - y) >= i64::from(rule.min_percent_drop)
                }
                (Some(x), Some(y)) if y > x => replaced = true,
                _ => match (raw_level(sa), raw_level(sb)) {
                    (Some(x), Some(y)) if y < x => decreased = true,
                    (Some(x), Some(y)) if y > x => replaced = true,
                    _ => {}
                },
            }
        }
    }
    if replaced {
        return Decision::Delta(Trigger::SupplyReplaced, patch);
    }
    if decreased {
        return Decision::Delta(Trigger::SupplyDecrease, patch);
    }
    Decision::Nothing
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::printer::{Collected, decode};
    use fleet_snmp::{Oid, Value as V};
    use std::collections::BTreeMap;

    fn report(pages: u32, black: i64, alert: bool, serial: &str) -> PrinterReport {
        let o = |s: &str| s.parse::<Oid>().unwrap();
        let mut m = BTreeMap::new();
        m.insert(o("1.3.6.1.2.1.1.1.0"), V::OctetString(b"printer".to_vec()));
        m.insert(
            o("1.3.6.1.2.1.43.5.1.1.17.1"),
            V::OctetString(serial.as_bytes().to_vec()),
        );
        m.insert(o("1.3.6.1.2.1.43.10.2.1.4.1.1"), V::Counter32(pages));
        for (i, (d, l)) in [("Black Toner", black), ("Cyan Toner", 60)]
            .iter()
            .enumerate()
        {
            let ix = i + 1;
            m.insert(
                o(&format!("1.3.6.1.2.1.43.11.1.1.6.1.{ix}")),
                V::OctetString(d.as_bytes().to_vec()),
            );
            m.insert(
                o(&format!("1.3.6.1.2.1.43.11.1.1.8.1.{ix}")),
                V::Integer(100),
            );
            m.insert(
                o(&format!("1.3.6.1.2.1.43.11.1.1.9.1.{ix}")),
                V::Integer(*l),
            );
        }
        if alert {
            m.insert(o("1.3.6.1.2.1.43.18.1.1.2.1.4"), V::Integer(5));
            m.insert(o("1.3.6.1.2.1.43.18.1.1.4.1.4"), V::Integer(8));
            m.insert(o("1.3.6.1.2.1.43.18.1.1.5.1.4"), V::Integer(1));
            m.insert(o("1.3.6.1.2.1.43.18.1.1.7.1.4"), V::Integer(807));
            m.insert(
                o("1.3.6.1.2.1.43.18.1.1.8.1.4"),
                V::OctetString(b"Tray 1 Low ".to_vec()),
            );
        }
        decode(&Collected {
            values: &m,
            ip: None,
            collected_at: 0,
            version: None,
            library: &crate::printer::library::builtin(),
        })
    }

    fn sent(r: &PrinterReport, at: i64) -> Sent {
        Sent {
            keyed: keyed(r),
            seq: 1,
            last_snapshot_ms: at,
        }
    }

    const H: i64 = 3_600_000;

    #[test]
    fn the_fingerprint_moves_with_what_the_rule_reads_and_not_with_page_counts() {
        let fp = fingerprint;
        let base = fp(&report(100, 80, false, "S1"));
        assert_eq!(base, fp(&report(5_000, 80, false, "S1")));
        assert_ne!(base, fp(&report(100, 79, false, "S1")));
        assert_ne!(base, fp(&report(100, 80, true, "S1")));
        assert_ne!(base, fp(&report(100, 80, false, "S2")));
    }

    #[test]
    fn the_seed_upload_rule() {
        let base = report(1000, 50, true, "SN1");
        assert_eq!(
            decide(None, &base, 0, Rule::default()),
            Decision::Snapshot(Trigger::Enrolment)
        );
        let s = sent(&base, 0);
        // Page counts alone: nothing, even hours later.
        assert_eq!(
            decide(
                Some(&s),
                &report(1500, 50, true, "SN1"),
                5 * H,
                Rule::default()
            ),
            Decision::Nothing
        );
        // Toner down: a delta touching that supply (and the counters riding along).
        match decide(Some(&s), &report(1100, 49, true, "SN1"), H, Rule::default()) {
            Decision::Delta(Trigger::SupplyDecrease, p) => {
                assert_eq!(p["supplies"]["m:1.1"]["currentLevel"], 49);
                assert_eq!(p["supplies"]["m:1.1"]["ext"]["prtMarkerSuppliesLevel"], 49);
                assert!(
                    p["supplies"].get("m:1.2").is_none(),
                    "only the changed supply: {p}"
                );
                assert_eq!(p["counters"]["lifetimeCount"], 1100);
            }
            d => panic!("{d:?}"),
        }
        // The alert cleared: a delta deleting it by key.
        match decide(
            Some(&s),
            &report(1000, 50, false, "SN1"),
            H,
            Rule::default(),
        ) {
            Decision::Delta(Trigger::AlertChange, p) => {
                assert_eq!(p["alerts"]["a:8.1.807"], serde_json::Value::Null)
            }
            d => panic!("{d:?}"),
        }
        // A toner went up: replaced.
        assert!(matches!(
            decide(
                Some(&s),
                &report(1000, 100, true, "SN1"),
                H,
                Rule::default()
            ),
            Decision::Delta(Trigger::SupplyReplaced, _)
        ));
        // A supply whose chip serial changed, at the same level: replaced (known, not
        // inferred); the same serial, lower: a decrease as usual.
        let chip = |serial: &str, level: i64| {
            let mut r = report(1000, level, true, "SN1");
            r.supplies[0].serial_number = Some(serial.into());
            r
        };
        let with_chip = sent(&chip("CHIP-1", 50), 0);
        assert!(matches!(
            decide(Some(&with_chip), &chip("CHIP-2", 50), H, Rule::default()),
            Decision::Delta(Trigger::SupplyReplaced, _)
        ));
        assert!(matches!(
            decide(Some(&with_chip), &chip("CHIP-1", 40), H, Rule::default()),
            Decision::Delta(Trigger::SupplyDecrease, _)
        ));
        assert_ne!(
            fingerprint(&chip("CHIP-1", 50)),
            fingerprint(&chip("CHIP-2", 50))
        );
        // Serial changed: identity.
        assert!(matches!(
            decide(Some(&s), &report(1000, 50, true, "SN2"), H, Rule::default()),
            Decision::Delta(Trigger::IdentityChange, _)
        ));
        // 24 h after the last snapshot: a snapshot even without change.
        assert_eq!(
            decide(Some(&s), &base, 24 * H, Rule::default()),
            Decision::Snapshot(Trigger::Heartbeat24h)
        );
        // A configurable threshold: a 1-point drop is ignored with min_percent_drop 5.
        let rule = Rule {
            min_percent_drop: 5,
            ..Rule::default()
        };
        assert_eq!(
            decide(Some(&s), &report(1000, 49, true, "SN1"), H, rule),
            Decision::Nothing
        );
    }

    /// Issue 17: sections a reading could not read are unknown, not empty.
    #[test]
    fn unread_sections_keep_what_the_cloud_holds_and_are_decided_afresh_when_read() {
        let unread = |mut r: PrinterReport, sections: &[&'static str]| {
            r.supplies.clear();
            r.alerts.clear();
            r.device.unavailable = sections
                .iter()
                .map(|s| crate::printer::Unavailable {
                    section: s,
                    object: None,
                    oid: "1.3.6.1.2.1.43".into(),
                    reason: "no answer".into(),
                })
                .collect();
            r
        };
        let with_alert = report(1000, 50, true, "SN1");
        let s = sent(&with_alert, 0);
        // Supplies and alerts not read: nothing to send, and what is kept is what the
        // cloud holds (the keyed view the next delta is based on).
        let partial = unread(report(1000, 50, true, "SN1"), &["supplies", "alerts"]);
        let mut k = keyed(&partial);
        assert!(carry_unread(&partial, Some(&s), &mut k));
        assert_eq!(k["supplies"], s.keyed["supplies"]);
        assert_eq!(k["alerts"], s.keyed["alerts"]);
        assert_eq!(
            decide_keyed(Some(&s), &k, H, Rule::default()),
            Decision::Nothing
        );
        // Without the carry, the empty tables would read as an alert cleared.
        assert!(matches!(
            decide_keyed(Some(&s), &keyed(&partial), H, Rule::default()),
            Decision::Delta(Trigger::AlertChange, _)
        ));
        // Read again with the alert really cleared: the fingerprint differs from the
        // unread reading's, so the memo cannot skip it, and the clear is sent.
        let cleared = report(1000, 50, false, "SN1");
        assert_ne!(fingerprint(&partial), fingerprint(&cleared));
        assert!(matches!(
            decide(Some(&s), &cleared, 2 * H, Rule::default()),
            Decision::Delta(Trigger::AlertChange, _)
        ));
        // A section the cloud never had stays absent rather than half-read.
        let mut none = s.clone();
        none.keyed.as_object_mut().unwrap().remove("alerts");
        let mut k = keyed(&partial);
        carry_unread(&partial, Some(&none), &mut k);
        assert!(k.get("alerts").is_none(), "{k}");
        // Nothing unread, nothing carried.
        let mut k = keyed(&cleared);
        assert!(!carry_unread(&cleared, Some(&s), &mut k));
    }
}
