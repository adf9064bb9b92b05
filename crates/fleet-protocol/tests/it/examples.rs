//! Every JSON example in docs/protocol.md is read into the type its section documents and
//! written back unchanged: the document and the types cannot drift apart. An example in a
//! section this test does not map fails it, so a new example needs its type named here.

use fleet_protocol::activation::ActivateRequest;
use fleet_protocol::admin::{NewJob, Repeat, Weekday};
use fleet_protocol::heartbeat::{Communication, Heartbeat, PrinterStatus};
use fleet_protocol::jobs::{Command, JobList, JobResult, LibraryParams, UpdateParams};
use fleet_protocol::upload::{Envelope, Report};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// (section heading, example) for every ```json block of the document.
fn examples() -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md");
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    let (mut heading, mut block): (String, Option<String>) = (String::new(), None);
    for line in text.lines() {
        match &mut block {
            Some(b) if line.trim_start().starts_with("```") => {
                out.push((heading.clone(), std::mem::take(b)));
                block = None;
            }
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None if line.trim_start().starts_with("```json") => block = Some(String::new()),
            None if line.starts_with('#') => heading = line.trim_start_matches('#').trim().into(),
            None => {}
        }
    }
    out
}

/// Reads `json` as `T`, writes it back, and checks nothing was lost or added.
fn round_trip<T: DeserializeOwned + Serialize>(heading: &str, json: &str) -> T {
    let original: Value = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("{heading}: the example is not JSON: {e}\n{json}"));
    let typed: T = serde_json::from_value(original.clone())
        .unwrap_or_else(|e| panic!("{heading}: the example does not fit the type: {e}\n{json}"));
    assert_eq!(
        serde_json::to_value(&typed).unwrap(),
        original,
        "{heading}: the type writes the example back differently"
    );
    typed
}

#[test]
fn every_example_reads_into_its_type_and_back() {
    let all = examples();
    assert!(all.len() >= 7, "only {} examples found", all.len());
    for (heading, json) in &all {
        let v: Value = serde_json::from_str(json).unwrap();
        match heading.as_str() {
            "Activation" => {
                let a: ActivateRequest = round_trip(heading, json);
                assert_eq!(a.activation_code, "ABCD-EFGH-JKLM");
            }
            // The settings document is the agent's configuration keys: the agent validates
            // it (tests/it/cloud_settings.rs); here it must be an object.
            "Configuration" => assert!(v.is_object(), "{heading}: {json}"),
            "Telemetry upload" => {
                let e: Envelope = round_trip(heading, json);
                assert!(matches!(e.reports[0], Report::Snapshot(_)));
                assert!(matches!(e.reports[1], Report::Delta(_)));
            }
            "Heartbeat" if v.is_array() => {
                let s: Vec<PrinterStatus> = round_trip(heading, json);
                assert_eq!(s[1].communication, Communication::NeedsCredentials);
            }
            "Heartbeat" => {
                let _: Heartbeat = round_trip(heading, json);
            }
            "Jobs" if v.get("jobs").is_some() => {
                let l: JobList = round_trip(heading, json);
                assert_eq!(l.jobs[0].command, Command::RefreshPrinter);
            }
            "Jobs" => {
                let _: JobResult = round_trip(heading, json);
            }
            "Meters" if v.is_array() => {
                let m: Vec<fleet_protocol::meters::Meter> = round_trip(heading, json);
                assert_eq!(m[1].rule, None);
            }
            "Meters" => {
                let m: fleet_protocol::meters::MeterMap = round_trip(heading, json);
                let mut problems = Vec::new();
                fleet_protocol::meters::check(&[m], "vendors[0]", &mut problems);
                assert!(problems.is_empty(), "{heading}: {problems:?}");
            }
            "Printer support library (`updateLibrary`)" => {
                let _: LibraryParams = round_trip(heading, json);
            }
            "Agent update (`updateAgent`)" => {
                let p: UpdateParams = round_trip(heading, json);
                assert_eq!(p.health_secs, Some(120));
            }
            "Administration (reference cloud)" => {
                let j: NewJob = round_trip(heading, json);
                let r = j.recurrence.expect("a calendar schedule");
                assert_eq!(
                    r.repeat,
                    Repeat::Weekly {
                        days: vec![Weekday::Mon, Weekday::Thu]
                    }
                );
            }
            other => panic!("an example under {other:?} that this test does not map to a type"),
        }
    }
}
