//! A printer read over IPP (Get-Printer-Attributes, PWG 5100.13 supplies): the same
//! [`PrinterReport`] as from SNMP, every row marked `source: "ipp"`.
//!
//! Supplies keep the Printer-MIB's raw semantics: `printer-supply` is the MIB's supply
//! row written as `key=value;` text, so class, type and unit map back to the MIB's
//! numbers, the level keeps −1/−2/−3, and a percentage is given only when computable.
//! Alerts come from `printer-state-reasons` (`-error` / `-warning` / `-report`).

use super::decode::{SupplyRow, maker_name, strip_model, supply_row, supply_type_name};
use super::{Alert, AlertExt, Counters, Device, PrinterReport, Supply, text};
use fleet_ipp::{Response, Value};

/// What the agent asks a printer for: the attributes it maps, so the answer stays a few
/// KiB (an unrestricted answer carries media databases).
pub const REQUESTED: &[&str] = &[
    "printer-device-id",
    "printer-make-and-model",
    "printer-uuid",
    "printer-serial-number",
    "printer-firmware-name",
    "printer-firmware-string-version",
    "printer-name",
    "printer-info",
    "printer-location",
    "printer-state",
    "printer-state-reasons",
    "printer-state-message",
    "printer-supply",
    "printer-supply-description",
    "printer-up-time",
    "printer-impressions-completed",
    "printer-media-sheets-completed",
];

/// The HTTP client the agent asks printers' IPP with. Printers are on the local network:
/// never through a proxy, never redirected. Its TLS configuration is its own (ring, no
/// trusted roots: IPPS with a pinned certificate is not built yet), never a process-wide
/// default.
///
/// # Errors
/// When the TLS or HTTP client cannot be set up.
pub fn http_client(connect_timeout: std::time::Duration) -> Result<reqwest::Client, String> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .build()
        .map_err(|e| format!("HTTP client set-up: {e}"))
}

/// The longest text kept from one attribute value (descriptions, names, messages).
const MAX_TEXT: usize = 256;
/// The most supplies and alerts kept from one answer.
const MAX_ROWS: usize = 64;

fn first_text(r: &Response, name: &str) -> Option<String> {
    first_text_within(r, name, MAX_TEXT)
}

fn first_text_within(r: &Response, name: &str, max: usize) -> Option<String> {
    r.printer(name)
        .iter()
        .find_map(|v| v.text())
        .map(|t| clip_to(t.trim(), max))
        .filter(|t| !t.is_empty())
}

fn clip(s: &str) -> String {
    clip_to(s, MAX_TEXT)
}

fn clip_to(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

fn first_int(r: &Response, name: &str) -> Option<i64> {
    r.printer(name).iter().find_map(Value::int).map(i64::from)
}

/// Maps a Get-Printer-Attributes answer into a report.
pub fn report(r: &Response, ip: Option<std::net::IpAddr>, collected_at: i64) -> PrinterReport {
    // 1284 IDs run to several hundred characters with the serial near the end: the
    // SNMP path's text budget, not the short one.
    let device_id = first_text_within(r, "printer-device-id", super::limits::MAX_TEXT_BYTES);
    let fields = device_id
        .as_deref()
        .map(text::parse_1284)
        .unwrap_or_default();
    let make_model = first_text(r, "printer-make-and-model");
    let manufacturer = text::field_1284(&fields, &["MFG", "MANUFACTURER"])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(maker_name)
        .or_else(|| {
            make_model
                .as_deref()
                .and_then(|m| m.split_whitespace().next())
                .map(maker_name)
        });
    let model = text::field_1284(&fields, &["MDL", "MODEL"])
        .map(str::to_string)
        .or_else(|| make_model.clone())
        .map(|m| strip_model(&m, manufacturer.as_deref()))
        .filter(|m| !m.is_empty());
    let (serial_number, serial_source) =
        match first_text(r, "printer-serial-number").and_then(|s| text::identity(s.as_bytes())) {
            Some(s) => (Some(s), Some("ipp:printer-serial-number".to_string())),
            None => match text::field_1284(&fields, &["SN", "SERN", "SERIALNUMBER"])
                .and_then(|s| text::identity(s.as_bytes()))
            {
                Some(s) => (Some(s), Some("ipp:printer-device-id".to_string())),
                None => (None, None),
            },
        };
    let reasons: Vec<String> = r
        .printer("printer-state-reasons")
        .iter()
        .filter_map(|v| v.text().map(|t| clip(t.trim())))
        .filter(|t| !t.is_empty() && t != "none")
        .take(MAX_ROWS)
        .collect();
    let state = first_int(r, "printer-state");
    let bits = error_bits(&reasons);
    let uptime = first_int(r, "printer-up-time").and_then(|t| u64::try_from(t).ok());
    let mut counters = Counters::default();
    for (attr, field, slot) in [
        (
            "printer-impressions-completed",
            "totalSideCount",
            &mut counters.total_side_count,
        ),
        (
            "printer-media-sheets-completed",
            "totalSheetCount",
            &mut counters.total_sheet_count,
        ),
    ] {
        if let Some(n) = first_int(r, attr).and_then(|n| u64::try_from(n).ok()) {
            *slot = Some(n);
            counters
                .ext
                .sources
                .insert(field.into(), format!("ipp:{attr}"));
        }
    }
    PrinterReport {
        manufacturer,
        model_name: model,
        serial_number,
        collected_at,
        counters,
        meters: Vec::new(),
        supplies: supplies(r),
        alerts: alerts(&reasons),
        device: Device {
            ip_address: ip.map(|i| i.to_string()),
            serial_source,
            sys_location: first_text(r, "printer-location"),
            printer_name: first_text(r, "printer-info").or_else(|| first_text(r, "printer-name")),
            ieee1284_device_id: device_id,
            firmware_version: first_text(r, "printer-firmware-string-version"),
            // printer-up-time counts seconds since the printer's start (RFC 8011 §5.4.29)
            // but some printers report seconds since the epoch; past ten years it is
            // not an uptime.
            uptime_seconds: uptime.filter(|u| *u < 10 * 365 * 86_400),
            last_boot_at: uptime
                .filter(|u| *u < 10 * 365 * 86_400)
                .and_then(|u| i64::try_from(u).ok())
                .map(|u| collected_at - u * 1000),
            printer_state: printer_state(state, &reasons, &bits),
            hr_printer_detected_error_state: bits,
            console_display: first_text(r, "printer-state-message").into_iter().collect(),
            printer_uuid: first_text(r, "printer-uuid").filter(|u| is_uuid_urn(u)),
            source: Some("ipp"),
            ..Device::default()
        },
    }
}

/// `urn:uuid:` and a well-formed, non-nil UUID (RFC 4122): a device is keyed by it, so a
/// malformed or nil one would merge unrelated printers.
fn is_uuid_urn(u: &str) -> bool {
    let Some(id) = u.strip_prefix("urn:uuid:") else {
        return false;
    };
    let shape = id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    shape && id.bytes().any(|b| b != b'0' && b != b'-')
}

/// The reason without its severity suffix, and the severity.
fn split_reason(reason: &str) -> (&str, Option<&'static str>) {
    for (suffix, sev) in [
        ("-error", Some("ERROR")),
        ("-warning", Some("WARNING")),
        ("-report", None),
    ] {
        if let Some(base) = reason.strip_suffix(suffix) {
            return (base, sev);
        }
    }
    // RFC 8011 §5.4.12: a reason without a suffix is an error.
    (reason, Some("ERROR"))
}

/// The hrPrinterDetectedErrorState names the reasons stand for, so the page and the
/// cloud read one vocabulary whichever source answered.
fn error_bits(reasons: &[String]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in reasons {
        let (base, _) = split_reason(r);
        let bit = match base {
            "media-low" => "lowPaper",
            "media-empty" | "media-needed" => "noPaper",
            "toner-low" | "marker-supply-low" => "lowToner",
            "toner-empty" | "marker-supply-empty" => "noToner",
            "door-open" | "cover-open" | "interlock-open" => "doorOpen",
            "media-jam" => "jammed",
            "offline" | "shutdown" => "offline",
            "input-tray-missing" => "inputTrayMissing",
            "output-tray-missing" => "outputTrayMissing",
            "marker-supply-missing" | "toner-missing" => "markerSupplyMissing",
            "output-area-almost-full" => "outputNearFull",
            "output-area-full" => "outputFull",
            _ => continue,
        };
        if !out.contains(&bit) {
            out.push(bit);
        }
    }
    out
}

fn printer_state(state: Option<i64>, reasons: &[String], bits: &[&str]) -> &'static str {
    let severity = |s: &str| reasons.iter().any(|r| split_reason(r).1 == Some(s));
    if bits.contains(&"offline") {
        "offline"
    } else if severity("ERROR") {
        "criticalAlert"
    } else if state == Some(5) {
        "unavailable"
    } else if severity("WARNING") {
        "nonCriticalAlert"
    } else {
        match state {
            Some(3) => "idle",
            Some(4) => "busy",
            _ => "unknown",
        }
    }
}

fn alerts(reasons: &[String]) -> Vec<Alert> {
    reasons
        .iter()
        .map(|r| {
            let (base, status) = split_reason(r);
            Alert {
                alert_key: format!("ipp:{base}"),
                status,
                issue: Some(r.clone()),
                ext: AlertExt {
                    source: "ipp",
                    prt_alert_index: 0,
                    prt_alert_severity_level: None,
                    prt_alert_training_level: None,
                    prt_alert_group: None,
                    prt_alert_group_index: None,
                    prt_alert_location: None,
                    prt_alert_code: None,
                    code_name: None,
                    prt_alert_time: None,
                    raised_at: None,
                    binary: status == Some("ERROR"),
                    supply_alert: [
                        "toner",
                        "marker",
                        "ink",
                        "developer",
                        "opc",
                        "waste",
                        "fuser",
                        "supply",
                    ]
                    .iter()
                    .any(|k| base.contains(k)),
                },
            }
        })
        .collect()
}

/// Reads `key=value;` pairs (PWG 5100.13 §6.5.8); keys compared without case.
fn supply_fields(s: &str) -> Vec<(String, String)> {
    s.split(';')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

fn class_code(name: &str) -> Option<i64> {
    Some(match name {
        "other" => 1,
        "unknown" => 2,
        "supplyThatIsConsumed" => 3,
        "receptacleThatIsFilled" => 4,
        _ => return None,
    })
}

fn type_code(name: &str) -> Option<i64> {
    (1..=34)
        .find(|c| supply_type_name(*c) == Some(name))
        .or(match name {
            "matteToner" => Some(35),
            "matteInk" => Some(36),
            _ => None,
        })
}

fn unit_code(name: &str) -> Option<i64> {
    Some(match name {
        "other" => 1,
        "unknown" => 2,
        "tenThousandthsOfInches" => 3,
        "micrometers" => 4,
        "impressions" => 7,
        "sheets" => 8,
        "hours" => 11,
        "thousandthsOfOunces" => 12,
        "tenthsOfGrams" => 13,
        "hundrethsOfFluidOunces" | "hundredthsOfFluidOunces" => 14,
        "tenthsOfMilliliters" => 15,
        "feet" => 16,
        "meters" => 17,
        "items" => 18,
        "percent" => 19,
        _ => return None,
    })
}

fn supplies(r: &Response) -> Vec<Supply> {
    let descriptions = r.printer("printer-supply-description");
    r.printer("printer-supply")
        .iter()
        .take(MAX_ROWS)
        .enumerate()
        .filter_map(|(pos, v)| {
            let f = supply_fields(&v.text()?);
            let get = |k: &str| f.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
            let int = |k: &str| get(k).and_then(|v| v.parse::<i64>().ok());
            let index = int("index")
                .and_then(|i| u32::try_from(i).ok())
                .unwrap_or(u32::try_from(pos + 1).unwrap_or(u32::MAX));
            let class = get("class").and_then(class_code);
            let kind = get("type").and_then(type_code);
            let unit = get("unit").and_then(unit_code);
            let max = int("maxcapacity");
            let level = int("level");
            let colorant_value = get("colorantname")
                .map(|c| clip(c.trim()))
                .filter(|c| !c.is_empty() && c != "unknown");
            let color = match get("colorantname") {
                Some("none") => Some("none".to_string()),
                _ => colorant_value.as_deref().map(text::capitalize),
            };
            // The MIB's key for the same row (PWG 5100.13: index = prtMarkerSuppliesIndex
            // of the printer's one hrDevice), so a printer read over SNMP one day and IPP
            // the next keeps its supplies.
            Some(supply_row(SupplyRow {
                source: "ipp",
                hr_index: 1,
                index,
                class,
                kind,
                unit,
                max,
                level,
                color,
                colorant_value,
                description: descriptions
                    .get(pos)
                    .and_then(|d| d.text().map(|t| clip(t.trim())))
                    .filter(|d| !d.is_empty()),
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_ipp::codec::{Attribute, Group, delimiter, tag};

    fn kw(s: &str) -> Value {
        Value::String(tag::KEYWORD, s.into())
    }
    fn txt(s: &str) -> Value {
        Value::String(tag::TEXT, s.into())
    }

    fn answer(attrs: Vec<(&str, Vec<Value>)>) -> Response {
        Response {
            version: (2, 0),
            status: 0,
            request_id: 1,
            groups: vec![Group {
                tag: delimiter::PRINTER,
                attributes: attrs
                    .into_iter()
                    .map(|(n, values)| Attribute {
                        name: n.into(),
                        values,
                    })
                    .collect(),
            }],
        }
    }

    #[test]
    fn supplies_keep_the_printer_mib_semantics() {
        let r = answer(vec![
            (
                "printer-supply",
                vec![
                    Value::Octets(b"index=1;class=receptacleThatIsFilled;type=wasteToner;unit=percent;maxcapacity=100;level=25;colorantname=unknown;".to_vec()),
                    Value::Octets(b"index=2;class=supplyThatIsConsumed;type=toner;unit=percent;maxcapacity=100;level=75;colorantname=black;".to_vec()),
                    Value::Octets(b"index=3;class=supplyThatIsConsumed;type=opc;unit=impressions;maxcapacity=-2;level=-3;".to_vec()),
                    Value::Octets(b"index=4;type=toner;unit=sheets;maxcapacity=20000;level=5000;colorantname=cyan;".to_vec()),
                ],
            ),
            ("printer-supply-description", vec![txt("Toner Waste Tank"), txt("Black Toner")]),
        ]);
        let s = supplies(&r);
        assert_eq!(s.len(), 4);
        let waste = &s[0];
        assert_eq!(waste.supply_key, "m:1.1");
        assert_eq!(waste.description.as_deref(), Some("Toner Waste Tank"));
        assert_eq!(waste.ext.prt_marker_supplies_class, Some(4));
        assert_eq!(waste.ext.type_name, Some("wasteToner"));
        assert_eq!(
            (waste.percent_remaining, waste.ext.percent_filled),
            (None, Some(75))
        );
        assert_eq!(waste.color, None);
        let black = &s[1];
        assert_eq!(
            (black.current_level, black.percent_remaining),
            (Some(75), Some(75))
        );
        assert_eq!(black.color.as_deref(), Some("Black"));
        assert_eq!(black.kind.as_deref(), Some("Toner"));
        assert_eq!(black.ext.source, "ipp");
        // "some remaining": no percentage made up, the raw level kept.
        let drum = &s[2];
        assert_eq!(
            (drum.current_level, drum.ext.prt_marker_supplies_level),
            (None, Some(-3))
        );
        assert_eq!(
            drum.ext.level_state,
            Some(crate::printer::LevelState::SomeRemaining)
        );
        assert_eq!(drum.description, None);
        // A capacity in sheets: a percentage computed from it.
        assert_eq!(s[3].current_level, Some(25));
        assert_eq!(s[3].capacity_unit.as_deref(), Some("Sheets"));
    }

    #[test]
    fn identity_state_and_alerts_come_from_their_attributes() {
        let r = answer(vec![
            (
                "printer-device-id",
                vec![txt("MFG:Acme;MDL:Acme Laser 9000 series;CMD:PWG;SN:XY123;")],
            ),
            ("printer-make-and-model", vec![txt("Acme Laser 9000")]),
            (
                "printer-uuid",
                vec![Value::String(
                    tag::URI,
                    "urn:uuid:f119f7ed-31f1-3647-5d3d-79b700c9950a".into(),
                )],
            ),
            ("printer-location", vec![txt("Floor 2")]),
            ("printer-state", vec![Value::Enum(3)]),
            (
                "printer-state-reasons",
                vec![
                    kw("toner-low-warning"),
                    kw("media-jam-error"),
                    kw("cleaning-report"),
                ],
            ),
            ("printer-firmware-string-version", vec![txt("1.2.3")]),
            ("printer-up-time", vec![Value::Integer(3600)]),
            ("printer-impressions-completed", vec![Value::Integer(12345)]),
        ]);
        let rep = report(&r, Some("10.0.0.9".parse().unwrap()), 1_000_000_000);
        assert_eq!(rep.manufacturer.as_deref(), Some("Acme"));
        assert_eq!(rep.model_name.as_deref(), Some("Laser 9000"));
        assert_eq!(rep.serial_number.as_deref(), Some("XY123"));
        assert_eq!(
            rep.device.serial_source.as_deref(),
            Some("ipp:printer-device-id")
        );
        assert_eq!(
            rep.device.printer_uuid.as_deref(),
            Some("urn:uuid:f119f7ed-31f1-3647-5d3d-79b700c9950a")
        );
        assert_eq!(rep.device.sys_location.as_deref(), Some("Floor 2"));
        assert_eq!(rep.device.firmware_version.as_deref(), Some("1.2.3"));
        assert_eq!(rep.device.last_boot_at, Some(1_000_000_000 - 3_600_000));
        assert_eq!(rep.device.source, Some("ipp"));
        assert_eq!(rep.counters.total_side_count, Some(12345));
        assert_eq!(rep.device.printer_state, "criticalAlert");
        assert_eq!(
            rep.device.hr_printer_detected_error_state,
            ["lowToner", "jammed"]
        );
        let keys: Vec<_> = rep
            .alerts
            .iter()
            .map(|a| (a.alert_key.as_str(), a.status))
            .collect();
        assert_eq!(
            keys,
            [
                ("ipp:toner-low", Some("WARNING")),
                ("ipp:media-jam", Some("ERROR")),
                ("ipp:cleaning", None)
            ]
        );
        assert!(rep.alerts[0].ext.supply_alert && !rep.alerts[1].ext.supply_alert);
        // Idle with nothing to say.
        let r = answer(vec![
            ("printer-state", vec![Value::Enum(3)]),
            ("printer-state-reasons", vec![kw("none")]),
        ]);
        let rep = report(&r, None, 0);
        assert_eq!((rep.device.printer_state, rep.alerts.len()), ("idle", 0));
        assert_eq!((rep.manufacturer, rep.serial_number), (None, None));
    }

    #[test]
    fn hostile_values_are_refused_or_cut_without_panicking() {
        let r = answer(vec![
            // A model starting with a multi-byte character (the maker-prefix check).
            (
                "printer-device-id",
                vec![txt("MFG:Hewlett-Packard;MDL:Ré 9000;")],
            ),
            (
                "printer-uuid",
                vec![txt("urn:uuid:00000000-0000-0000-0000-000000000000")],
            ),
            (
                "printer-supply",
                vec![Value::Octets(
                    b"index=1;type=toner;level=92233720368547758;maxcapacity=1;".to_vec(),
                )],
            ),
        ]);
        let rep = report(&r, None, 0);
        assert_eq!(rep.model_name.as_deref(), Some("Ré 9000"));
        // One maker name whichever source named it.
        assert_eq!(rep.manufacturer.as_deref(), Some("HP"));
        // A nil UUID names no device.
        assert_eq!(rep.device.printer_uuid, None);
        assert_eq!(rep.supplies[0].current_level, Some(100));
        assert!(is_uuid_urn("urn:uuid:f119f7ed-31f1-3647-5d3d-79b700c9950a"));
        assert!(!is_uuid_urn("urn:uuid:"));
        assert!(!is_uuid_urn("f119f7ed-31f1-3647-5d3d-79b700c9950a"));
        assert!(!is_uuid_urn(
            "urn:uuid:f119f7ed+31f1-3647-5d3d-79b700c9950a"
        ));
        // A long device ID keeps its serial at the end.
        let id = format!("MFG:Acme;MDL:X;CMD:{};SN:LATE1;", "P".repeat(600));
        let rep = report(
            &answer(vec![("printer-device-id", vec![txt(&id)])]),
            None,
            0,
        );
        assert_eq!(rep.serial_number.as_deref(), Some("LATE1"));
    }

    #[test]
    fn long_values_and_many_rows_are_cut() {
        let long = "x".repeat(10_000);
        let many: Vec<Value> = (0..500)
            .map(|i| Value::Octets(format!("index={i};level=1;").into_bytes()))
            .collect();
        let reasons: Vec<Value> = (0..500).map(|i| kw(&format!("r{i}-warning"))).collect();
        let r = answer(vec![
            ("printer-location", vec![txt(&long)]),
            ("printer-supply", many),
            ("printer-state-reasons", reasons),
        ]);
        let rep = report(&r, None, 0);
        assert_eq!(rep.device.sys_location.unwrap().len(), MAX_TEXT);
        assert_eq!(rep.supplies.len(), MAX_ROWS);
        assert_eq!(rep.alerts.len(), MAX_ROWS);
    }
}
