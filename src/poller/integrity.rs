//! Counter and supply integrity between two polls of one printer: resets, impossible
//! jumps, replacements and alert transitions become events; raw values are never turned
//! into negative deltas. Pure functions over a compact memory of the previous poll.

use crate::printer::PrinterReport;
use crate::store::Event;
use serde_json::json;

/// What the next poll needs to remember about this one (kept small: ~100 bytes plus a
/// few bytes per supply and alert).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Memory {
    /// Lifetime count and when it was read (epoch ms).
    pub life: Option<(u64, i64)>,
    /// Per supply: key index (`hrDeviceIndex << 16 | supplyIndex`), receptacle flag, raw
    /// level and percent (if any).
    pub supplies: Vec<(u32, bool, i64, Option<u8>)>,
    /// Current alert keys (hashed to keep memory flat).
    pub alerts: Vec<u64>,
}

fn hash(s: &str) -> u64 {
    // FNV-1a: stable across runs, enough to compare small sets.
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

impl Memory {
    /// Remembers what the next comparison needs from `r`.
    pub fn of(r: &PrinterReport) -> Memory {
        Memory {
            life: r.counters.lifetime_count.map(|c| (c, r.collected_at)),
            supplies: r
                .supplies
                .iter()
                .filter_map(|s| {
                    let level = s.ext.prt_marker_supplies_level?;
                    let key =
                        (s.ext.hr_device_index << 16) | (s.ext.prt_marker_supplies_index & 0xffff);
                    Some((
                        key,
                        s.ext.prt_marker_supplies_class == Some(4),
                        level,
                        s.current_level,
                    ))
                })
                .collect(),
            alerts: r.alerts.iter().map(|a| hash(&a.alert_key)).collect(),
        }
    }
}

impl Memory {
    /// The memory after `r`, keeping what `prev` knew of the sections `r` could not read.
    pub fn after(prev: &Memory, r: &PrinterReport) -> Memory {
        let mut m = Memory::of(r);
        if r.unread("counters") && m.life.is_none() {
            m.life = prev.life;
        }
        if r.unread("supplies") {
            m.supplies = prev.supplies.clone();
        }
        if r.unread("alerts") {
            m.alerts = prev.alerts.clone();
        }
        m
    }
}

/// Compares a new report with the memory of the previous poll and returns the events.
/// Also sets `report.counters.ext` flags is not needed: the events carry the facts.
pub fn compare(prev: &Memory, report: &PrinterReport, max_pages_per_minute: u64) -> Vec<Event> {
    let mut events = Vec::new();
    if let (Some((old, at)), Some(new), false) = (
        prev.life,
        report.counters.lifetime_count,
        report.unread("counters"),
    ) {
        if new < old {
            events.push(Event {
                kind: "counterReset",
                detail: json!({"counter": "lifetimeCount", "from": old, "to": new,
                               "note": "the counter went backwards (reset, controller or device replaced); kept raw, no negative delta"}),
            });
        } else {
            let minutes = ((report.collected_at - at).max(0) as f64 / 60_000.0).max(1.0 / 60.0);
            let allowed = (max_pages_per_minute as f64 * minutes).ceil() as u64 + 10;
            if new - old > allowed {
                events.push(Event {
                    kind: "counterJump",
                    detail: json!({"counter": "lifetimeCount", "from": old, "to": new, "allowed": allowed,
                                   "note": "more pages than the interval allows (device replaced or counter corrupted)"}),
                });
            }
        }
    }
    for s in &report.supplies {
        let Some(level) = s.ext.prt_marker_supplies_level else {
            continue;
        };
        let key = (s.ext.hr_device_index << 16) | (s.ext.prt_marker_supplies_index & 0xffff);
        let Some(&(_, receptacle, old_level, old_pct)) = prev.supplies.iter().find(|x| x.0 == key)
        else {
            continue;
        };
        if level < 0 || old_level < 0 {
            continue;
        }
        // A consumable whose level rises, or a receptacle whose free space rises, was
        // replaced (or emptied). Percent when both are known, else raw level.
        let rose = match (old_pct, s.current_level) {
            (Some(a), Some(b)) => b > a.saturating_add(5),
            _ => level > old_level,
        };
        if rose {
            events.push(Event {
                kind: "supplyReplaced",
                detail: json!({"supplyKey": s.supply_key, "description": s.description,
                               "fromLevel": old_level, "toLevel": level, "receptacle": receptacle}),
            });
        }
    }
    if report.unread("alerts") {
        // Unknown this time: neither raised nor cleared.
        return events;
    }
    let now: Vec<u64> = report.alerts.iter().map(|a| hash(&a.alert_key)).collect();
    for a in &report.alerts {
        if !prev.alerts.contains(&hash(&a.alert_key)) {
            events.push(Event {
                kind: "alertRaised",
                detail: json!({"alertKey": a.alert_key, "status": a.status, "issue": a.issue,
                               "lifetimeCount": report.counters.lifetime_count}),
            });
        }
    }
    let cleared = prev.alerts.iter().filter(|h| !now.contains(h)).count();
    if cleared > 0 {
        events.push(Event {
            kind: "alertCleared",
            detail: json!({"count": cleared, "lifetimeCount": report.counters.lifetime_count}),
        });
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::printer::{Collected, decode};
    use fleet_snmp::{Oid, Value};
    use std::collections::BTreeMap;

    fn report(life: u64, toner: i64, at: i64, alert: bool) -> PrinterReport {
        let o = |s: &str| s.parse::<Oid>().unwrap();
        let mut v = BTreeMap::new();
        v.insert(o("1.3.6.1.2.1.1.1.0"), Value::OctetString(b"p".to_vec()));
        v.insert(
            o("1.3.6.1.2.1.43.10.2.1.4.1.1"),
            Value::Counter32(life as u32),
        );
        v.insert(
            o("1.3.6.1.2.1.43.11.1.1.6.1.1"),
            Value::OctetString(b"Black".to_vec()),
        );
        v.insert(o("1.3.6.1.2.1.43.11.1.1.8.1.1"), Value::Integer(1000));
        v.insert(o("1.3.6.1.2.1.43.11.1.1.9.1.1"), Value::Integer(toner));
        if alert {
            v.insert(o("1.3.6.1.2.1.43.18.1.1.2.1.1"), Value::Integer(5));
            v.insert(o("1.3.6.1.2.1.43.18.1.1.7.1.1"), Value::Integer(1104));
        }
        decode(&Collected {
            values: &v,
            ip: None,
            collected_at: at,
            version: None,
            library: &crate::printer::library::builtin(),
        })
    }

    fn kinds(e: &[Event]) -> Vec<&str> {
        e.iter().map(|e| e.kind).collect()
    }

    #[test]
    fn normal_progress_produces_no_event() {
        let a = report(1000, 500, 0, false);
        let b = report(1100, 480, 300_000, false);
        assert!(compare(&Memory::of(&a), &b, 600).is_empty());
    }

    #[test]
    fn a_counter_going_backwards_is_a_reset_not_a_negative_delta() {
        let a = report(1000, 500, 0, false);
        let b = report(12, 500, 300_000, false);
        let e = compare(&Memory::of(&a), &b, 600);
        assert_eq!(kinds(&e), ["counterReset"]);
        assert_eq!(e[0].detail["from"], 1000);
        assert_eq!(e[0].detail["to"], 12);
        // The raw value stays in the report.
        assert_eq!(b.counters.lifetime_count, Some(12));
    }

    #[test]
    fn an_impossible_jump_is_flagged() {
        let a = report(1000, 500, 0, false);
        // 5 minutes at 600 pages/min allows 3,010; 50,000 is not possible.
        let b = report(51_000, 500, 300_000, false);
        assert_eq!(kinds(&compare(&Memory::of(&a), &b, 600)), ["counterJump"]);
        let c = report(3_900, 500, 300_000, false);
        assert!(compare(&Memory::of(&a), &c, 600).is_empty());
    }

    #[test]
    fn a_level_that_rises_is_a_replacement() {
        let a = report(1000, 40, 0, false);
        let b = report(1010, 990, 60_000, false);
        let e = compare(&Memory::of(&a), &b, 600);
        assert_eq!(kinds(&e), ["supplyReplaced"]);
        assert_eq!(e[0].detail["supplyKey"], "m:1.1");
    }

    #[test]
    fn alerts_raised_and_cleared() {
        let a = report(1000, 40, 0, false);
        let b = report(1000, 40, 60_000, true);
        assert_eq!(kinds(&compare(&Memory::of(&a), &b, 600)), ["alertRaised"]);
        let c = report(1000, 40, 120_000, false);
        assert_eq!(kinds(&compare(&Memory::of(&b), &c, 600)), ["alertCleared"]);
    }
}
