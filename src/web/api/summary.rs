//! What the printer list shows at a glance: one state per printer that combines
//! reachability with the printer's own condition (its overall state and detected errors,
//! its alerts, its supply levels), with the reason in words; each supply drawn as a level
//! (remaining, or filling for waste receptacles, or a state when there is no number).

use crate::store::{Health, PrinterRow};
use serde::Serialize;
use serde_json::Value;

/// A supply below this many percent remaining (or a receptacle above 100 minus it, full)
/// makes the printer "low supply".
pub const LOW_PERCENT: u64 = 10;

/// A printer's state in the list, worst first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Hash)]
#[serde(rename_all = "camelCase")]
pub enum State {
    /// Does not answer.
    NotCommunicating,
    /// Answers but refuses the agent's credentials.
    NeedsCredentials,
    /// Stopped: a critical alert, a jam, no paper, a door open, offline.
    Error,
    /// A warning alert, or a missed poll.
    Warning,
    /// A supply nearly empty (or a waste receptacle nearly full).
    LowSupply,
    /// Nothing to look at.
    Ok,
    /// Not read yet.
    Unknown,
}

impl State {
    /// Every state, worst first (the summary's order).
    pub const ALL: [State; 7] = [
        State::NotCommunicating,
        State::NeedsCredentials,
        State::Error,
        State::Warning,
        State::LowSupply,
        State::Ok,
        State::Unknown,
    ];

    /// The API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::NotCommunicating => "notCommunicating",
            State::NeedsCredentials => "needsCredentials",
            State::Error => "error",
            State::Warning => "warning",
            State::LowSupply => "lowSupply",
            State::Ok => "ok",
            State::Unknown => "unknown",
        }
    }
}

/// One supply as a level to draw.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Level {
    /// Its name (description, else type).
    pub name: String,
    /// Its colorant, lower case (`black`, `cyan`, ...), when it has one.
    pub color: Option<String>,
    /// Percent remaining, or for a receptacle percent filled; none when not a number.
    pub percent: Option<u64>,
    /// `remaining` (consumables), `filled` (waste receptacles).
    pub kind: &'static str,
    /// When there is no number: `someRemaining`, `unknown`, `unrestricted`.
    pub state: Option<String>,
}

impl Level {
    /// How much is left, in percent (for a receptacle: the room left), to find and sort
    /// by the supply that needs attention first; 100 without a number.
    pub fn left(&self) -> u64 {
        match (self.kind, self.percent) {
            ("filled", p) => 100 - p.unwrap_or(0).min(100),
            (_, p) => p.unwrap_or(100),
        }
    }
}

/// The list's view of one printer.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Its state.
    pub state: State,
    /// Why, in words.
    pub reason: Option<String>,
    /// Its supplies, in the printer's order.
    pub supplies: Vec<Level>,
    /// The supply with the least left (or the fullest receptacle), named.
    pub lowest: Option<Level>,
    /// Active alerts.
    pub alerts: usize,
    /// sysLocation.
    pub location: Option<String>,
    /// sysName.
    pub name: Option<String>,
    /// Lifetime page count.
    pub pages: Option<u64>,
}

/// Detected error states that stop the printer: RFC 3805's critical ones, and offline.
fn stopping(bit: &str) -> bool {
    bit == "offline" || crate::printer::CRITICAL_ERROR_BITS.contains(&bit)
}

/// The list's view of a printer from its row and latest report.
pub fn summarize(p: &PrinterRow, report: Option<&Value>) -> Summary {
    let empty = Value::Null;
    let r = report.unwrap_or(&empty);
    let supplies: Vec<Level> = r["supplies"]
        .as_array()
        .into_iter()
        .flatten()
        .map(level)
        .collect();
    let alerts: Vec<&Value> = r["alerts"].as_array().into_iter().flatten().collect();
    let text = |v: &Value| {
        v.as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let lowest = supplies
        .iter()
        .filter(|l| l.percent.is_some())
        .min_by_key(|l| l.left())
        .cloned();
    let (state, reason) = state_of(p, r, &alerts, lowest.as_ref());
    Summary {
        state,
        reason,
        lowest,
        supplies,
        alerts: alerts.len(),
        location: text(&r["device"]["sysLocation"]),
        name: text(&r["device"]["sysName"]),
        pages: r["counters"]["lifetimeCount"].as_u64(),
    }
}

fn level(s: &Value) -> Level {
    let ext = &s["ext"];
    let filled = ext["prtMarkerSuppliesClass"].as_i64() == Some(4);
    let name = [&s["description"], &s["type"]]
        .iter()
        .find_map(|v| v.as_str().map(str::trim).filter(|t| !t.is_empty()))
        .unwrap_or("supply")
        .to_string();
    let color = s["color"]
        .as_str()
        .map(str::to_lowercase)
        .filter(|c| !c.is_empty() && c != "none" && c != "unknown");
    let percent = if filled {
        ext["percentFilled"].as_u64()
    } else {
        s["percentRemaining"].as_u64()
    };
    let state = ext["levelState"]
        .as_str()
        .filter(|st| *st != "known" || percent.is_none())
        .map(str::to_string);
    Level {
        name,
        color,
        percent: percent.map(|p| p.min(100)),
        kind: if filled { "filled" } else { "remaining" },
        state: if percent.is_some() { None } else { state },
    }
}

fn state_of(
    p: &PrinterRow,
    r: &Value,
    alerts: &[&Value],
    lowest: Option<&Level>,
) -> (State, Option<String>) {
    match p.health {
        Health::NotCommunicating => return (State::NotCommunicating, p.health_reason.clone()),
        Health::NeedsCredentials => return (State::NeedsCredentials, p.health_reason.clone()),
        Health::Unknown if r.is_null() => {
            return (State::Unknown, Some("not read yet".into()));
        }
        _ => {}
    }
    let alert_text = |a: &Value| {
        a["issue"]
            .as_str()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .or_else(|| a["ext"]["codeName"].as_str())
            .unwrap_or("an alert")
            .to_string()
    };
    if let Some(a) = alerts.iter().find(|a| a["status"] == "ERROR") {
        return (State::Error, Some(alert_text(a)));
    }
    let detected: Vec<&str> = r["device"]["hrPrinterDetectedErrorState"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if let Some(stop) = detected.iter().find(|d| stopping(d)) {
        return (State::Error, Some(words(stop)));
    }
    if let Some(a) = alerts.first() {
        return (State::Warning, Some(alert_text(a)));
    }
    if p.health == Health::Suspect {
        return (
            State::Warning,
            Some(match &p.health_reason {
                Some(why) => format!("missed its last poll: {why}"),
                None => "missed its last poll".into(),
            }),
        );
    }
    if let Some(l) = lowest {
        let pct = l.percent.unwrap_or(100);
        if l.left() <= LOW_PERCENT {
            let what = if l.kind == "filled" { "full" } else { "left" };
            return (State::LowSupply, Some(format!("{} {pct} % {what}", l.name)));
        }
    }
    if let Some(d) = detected.first() {
        return (State::Warning, Some(words(d)));
    }
    (State::Ok, None)
}

/// `noPaper` → "no paper".
fn words(bit: &str) -> String {
    let mut out = String::new();
    for c in bit.chars() {
        if c.is_ascii_uppercase() {
            out.push(' ');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(health: Health) -> PrinterRow {
        PrinterRow {
            id: 1,
            address: "192.0.2.1:161".into(),
            serial: Some("S".into()),
            manufacturer: None,
            model: None,
            health,
            health_reason: Some("no response".into()),
            consecutive_failures: 0,
            last_seen_ms: None,
            last_attempt_ms: None,
            health_since_ms: None,
            quirks: None,
        }
    }

    fn toner(name: &str, color: &str, pct: u64) -> Value {
        json!({"description": name, "type": "Toner", "color": color, "percentRemaining": pct,
               "ext": {"prtMarkerSuppliesClass": 3, "levelState": "known"}})
    }

    #[test]
    fn the_worst_condition_wins_and_says_why() {
        let ok = json!({"supplies": [toner("Black Toner", "Black", 80)], "alerts": []});
        assert_eq!(summarize(&row(Health::Ok), Some(&ok)).state, State::Ok);
        // "ok" only meant "answers SNMP": 1 % ink with an active warning is a warning.
        let low = json!({"supplies": [toner("Black Toner", "Black", 80), toner("Yellow Ink", "Yellow", 1)],
            "alerts": [{"status": "WARNING", "issue": "Yellow Ink low "}]});
        let s = summarize(&row(Health::Ok), Some(&low));
        assert_eq!(
            (s.state, s.reason.as_deref()),
            (State::Warning, Some("Yellow Ink low"))
        );
        assert_eq!(s.lowest.as_ref().unwrap().name, "Yellow Ink");
        assert_eq!(s.lowest.as_ref().unwrap().color.as_deref(), Some("yellow"));
        let low_only = json!({"supplies": [toner("Cyan Toner", "Cyan", 4)], "alerts": []});
        let s = summarize(&row(Health::Ok), Some(&low_only));
        assert_eq!(
            (s.state, s.reason.as_deref()),
            (State::LowSupply, Some("Cyan Toner 4 % left"))
        );
        let jam = json!({"device": {"hrPrinterDetectedErrorState": ["jammed"]}, "alerts": []});
        let s = summarize(&row(Health::Ok), Some(&jam));
        assert_eq!(
            (s.state, s.reason.as_deref()),
            (State::Error, Some("jammed"))
        );
        let critical = json!({"alerts": [{"status": "WARNING", "issue": "x"}, {"status": "ERROR", "issue": "Paper jam"}]});
        assert_eq!(
            summarize(&row(Health::Ok), Some(&critical))
                .reason
                .as_deref(),
            Some("Paper jam")
        );
        let s = summarize(&row(Health::NotCommunicating), Some(&critical));
        assert_eq!(
            (s.state, s.reason.as_deref()),
            (State::NotCommunicating, Some("no response"))
        );
        assert_eq!(summarize(&row(Health::Unknown), None).state, State::Unknown);
    }

    #[test]
    fn waste_fills_and_states_without_numbers_stay_states() {
        let waste = json!({"description": "Waste Toner Box", "type": "Waste Toner", "color": "none",
            "ext": {"prtMarkerSuppliesClass": 4, "percentFilled": 95, "levelState": "known"}});
        let some = json!({"description": "Fuser", "ext": {"prtMarkerSuppliesClass": 3, "levelState": "someRemaining"}});
        let r = json!({"supplies": [waste, some]});
        let s = summarize(&row(Health::Ok), Some(&r));
        assert_eq!(s.supplies[0].kind, "filled");
        assert_eq!(s.supplies[0].percent, Some(95));
        assert_eq!(s.supplies[0].color, None);
        assert_eq!(s.supplies[1].percent, None);
        assert_eq!(s.supplies[1].state.as_deref(), Some("someRemaining"));
        assert_eq!(
            (s.state, s.reason.as_deref()),
            (State::LowSupply, Some("Waste Toner Box 95 % full"))
        );
    }
}
