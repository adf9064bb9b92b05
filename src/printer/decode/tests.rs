use super::*;

#[test]
fn percent_is_only_computed_from_real_values() {
    type Case = (i64, Option<i64>, Option<i64>, Option<u8>);
    let cases: &[Case] = &[
        (42, Some(100), Some(19), Some(42)),
        (42, Some(-2), Some(19), Some(42)), // percent unit, unknown max
        (11501, Some(12000), Some(7), Some(96)),
        (22050, Some(45000), None, Some(49)),
        (-3, Some(100), Some(19), None),
        (-2, Some(100), None, None),
        (-1, Some(100), None, None),
        (100, Some(-2), Some(7), None), // sharp waste toner: level without capacity
        (5, Some(0), None, None),
        (150, Some(100), Some(7), Some(100)), // level above capacity is clamped
    ];
    for &(level, max, unit, want) in cases {
        assert_eq!(
            percent(level, max, unit),
            want,
            "level {level} max {max:?} unit {unit:?}"
        );
    }
}

#[test]
fn level_states() {
    assert_eq!(level_state(0), LevelState::Known);
    assert_eq!(level_state(-1), LevelState::Unrestricted);
    assert_eq!(level_state(-2), LevelState::Unknown);
    assert_eq!(level_state(-3), LevelState::SomeRemaining);
    assert_eq!(level_state(-7), LevelState::Unknown);
}

#[test]
fn error_state_bits_msb_first_missing_octets_zero() {
    assert_eq!(error_state_bits(&[0x80]), ["lowPaper"]);
    assert_eq!(error_state_bits(&[0x20, 0x00]), ["lowToner"]);
    assert_eq!(error_state_bits(&[0x01, 0x00]), ["serviceRequested"]);
    assert_eq!(error_state_bits(&[0x00, 0x80]), ["inputTrayMissing"]);
    assert_eq!(error_state_bits(&[0x00, 0x02]), ["overduePreventMaint"]);
    assert!(error_state_bits(&[]).is_empty());
    assert_eq!(error_state_bits(&[0x0c]), ["doorOpen", "jammed"]);
}

#[test]
fn printer_states_follow_rfc3805() {
    assert_eq!(printer_state(Some(2), Some(3), &[]), "idle");
    assert_eq!(printer_state(Some(2), Some(4), &[]), "busy");
    assert_eq!(printer_state(Some(2), Some(5), &[]), "warmup");
    assert_eq!(printer_state(Some(2), Some(1), &[]), "standby");
    assert_eq!(
        printer_state(Some(3), Some(3), &["lowToner"]),
        "nonCriticalAlert"
    );
    assert_eq!(
        printer_state(Some(5), Some(1), &["jammed"]),
        "criticalAlert"
    );
    assert_eq!(printer_state(Some(5), Some(1), &[]), "unavailable");
    assert_eq!(printer_state(Some(5), Some(1), &["offline"]), "offline");
    assert_eq!(printer_state(None, None, &[]), "unknown");
}

#[test]
fn model_names_lose_the_maker_prefix_and_series() {
    assert_eq!(
        strip_model("HP Color LaserJet M452nw", Some("HP")),
        "Color LaserJet M452nw"
    );
    assert_eq!(
        strip_model("HL-5370DW series", Some("Brother")),
        "HL-5370DW"
    );
    assert_eq!(
        strip_model("Brother MFC-L2710DW series", Some("Brother")),
        "MFC-L2710DW"
    );
    assert_eq!(strip_model("Dell S5830dn", Some("Dell")), "S5830dn");
    assert_eq!(strip_model("CX825", Some("Lexmark")), "CX825");
    assert_eq!(strip_model("HP", Some("HP")), "HP");
}

#[test]
fn firmware_from_sysdescr_patterns() {
    assert_eq!(
        firmware_from_descr("Lexmark T640 version NS.NP.N219 kernel 2.6.6 All-N-1").as_deref(),
        Some("NS.NP.N219")
    );
    assert_eq!(
        firmware_from_descr("Brother NC-6800h, Firmware Ver.1.01  (08.12.12),MID 84UB05")
            .as_deref(),
        Some("1.01")
    );
    assert_eq!(firmware_from_descr("SHARP MX-3570N"), None);
}

#[test]
fn the_plan_walks_columns_and_asks_vendor_objects_by_parent() {
    let (firsts, columns) = plan(&crate::printer::library::builtin());
    let has = |v: &[Oid], s: &str| v.contains(&s.parse().unwrap());
    assert!(has(&firsts, "1.3.6.1.2.1.1.1"));
    assert!(has(&columns, "1.3.6.1.2.1.43.11.1.1.9"));
    // Lexmark prtgenSerialNo.1 (641.2.1.2.1.6.1), asked as GETNEXT of its column.
    assert!(has(&firsts, "1.3.6.1.4.1.641.2.1.2.1.6"));
    assert!(
        !has(&firsts, "1.3.6.1.4.1.641.21.2.1"),
        "the GLPI pitfall OID is not used"
    );
    let mut f = firsts.clone();
    f.sort();
    f.dedup();
    assert_eq!(f.len(), firsts.len(), "no object asked twice");
}

#[test]
fn decode_of_an_empty_collection_is_all_null_not_guessed() {
    let values = BTreeMap::new();
    let r = decode(&Collected {
        values: &values,
        ip: None,
        collected_at: 1000,
        version: None,
        library: &crate::printer::library::builtin(),
    });
    assert_eq!(r.manufacturer, None);
    assert_eq!(r.serial_number, None);
    assert!(r.supplies.is_empty() && r.alerts.is_empty());
    assert_eq!(r.counters.lifetime_count, None);
    assert_eq!(r.device.printer_state, "unknown");
}

/// A library pushed by the cloud teaches the agent a vendor it did not know: the poll
/// plan asks the new vendor's objects and decoding reads the serial and model from them.
#[test]
fn a_hot_swapped_library_adds_a_vendor() {
    use crate::printer::library::{self, VendorData};
    let key = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let trusted = vec![{
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(key.verifying_key().as_bytes())
    }];
    let mut lib = library::builtin();
    lib.version = 1_000;
    lib.vendors.push(VendorData {
        name: "Initech".into(),
        enterprise: 64_999,
        serial: vec![vec![1, 3, 6, 1, 4, 1, 64_999, 1, 2, 0]],
        model: vec![vec![1, 3, 6, 1, 4, 1, 64_999, 1, 3, 0]],
        firmware: vec![],
        device_id: vec![],
        actions: vec![],
        meters: vec![],
        supplies: vec![],
    });
    let handle = library::Handle::default();
    let before = handle.current();
    let installed = handle
        .install(&library::sign(&lib, &key), &trusted)
        .unwrap();
    assert_eq!(installed.version, 1_000);
    assert_eq!(
        before.version,
        library::BUILTIN_VERSION,
        "what started with the old library keeps it"
    );
    let (firsts, _) = plan(&handle.current());
    assert!(firsts.contains(&"1.3.6.1.4.1.64999.1.2".parse().unwrap()));

    let mut values = BTreeMap::new();
    let put = |v: &mut BTreeMap<Oid, Value>, o: &str, x: Value| {
        v.insert(o.parse::<Oid>().unwrap(), x);
    };
    put(
        &mut values,
        "1.3.6.1.2.1.1.2.0",
        Value::ObjectId("1.3.6.1.4.1.64999.7".parse().unwrap()),
    );
    put(
        &mut values,
        "1.3.6.1.4.1.64999.1.2.0",
        Value::OctetString(b"INI-0042".to_vec()),
    );
    put(
        &mut values,
        "1.3.6.1.4.1.64999.1.3.0",
        Value::OctetString(b"TPS 9000".to_vec()),
    );
    let r = decode(&Collected {
        values: &values,
        ip: None,
        collected_at: 1000,
        version: None,
        library: &handle.current(),
    });
    assert_eq!(r.serial_number.as_deref(), Some("INI-0042"));
    assert_eq!(r.manufacturer.as_deref(), Some("Initech"));
    assert_eq!(r.model_name.as_deref(), Some("TPS 9000"));
    // An older or equal version is not installed over it.
    lib.version = 999;
    assert!(matches!(
        handle.install(&library::sign(&lib, &key), &trusted),
        Err(library::LibraryError::NotNewer {
            offered: 999,
            current: 1_000
        })
    ));
}
