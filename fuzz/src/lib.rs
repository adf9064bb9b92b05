//! The bodies of the agent's fuzz targets, one per parser of outside input. The stable
//! stand-in test (`tests/it/fuzz_inputs.rs`) includes this file, so both run the same
//! checks: each body returns (no panic), and what a parser accepts stays bounded.

use std::sync::OnceLock;

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// The key the fuzz inputs are signed with: signed documents then reach the checks that
/// come after the signature, which is where a hostile but signed input would go.
fn key() -> &'static (ed25519_dalek::SigningKey, Vec<String>) {
    static KEY: OnceLock<(ed25519_dalek::SigningKey, Vec<String>)> = OnceLock::new();
    KEY.get_or_init(|| {
        use base64::Engine;
        let k = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let public = base64::engine::general_purpose::STANDARD.encode(k.verifying_key().as_bytes());
        (k, vec![public])
    })
}

/// The configuration file (and the discovery it would run: never past its cap).
pub fn config(data: &[u8]) {
    let Some(t) = text(data) else { return };
    if let Ok(c) = fleet_agent::config::parse("fuzz.toml", t) {
        let cap = c.discovery.max_addresses.min(1 << 12);
        if let Ok(e) = c.discovery.targets.expand(cap) {
            assert!(e.addresses.len() as u128 <= cap);
        }
        for p in &c.printers {
            assert!(p.profile < c.profiles.len());
        }
    }
}

/// A discovery import file.
pub fn import(data: &[u8]) {
    let Some(t) = text(data) else { return };
    let (specs, errors) = fleet_agent::targets::parse_import("fuzz.csv", t);
    // Errors are capped (the first ones and a "more" line).
    assert!(
        errors.len() <= fleet_agent::targets::IMPORT_MAX_ERRORS + 1,
        "{} errors",
        errors.len()
    );
    for s in &specs {
        let _ = s.size();
    }
}

/// One discovery target (address, range, CIDR, name), as typed on the page or the CLI.
pub fn target_spec(data: &[u8]) {
    let Some(t) = text(data) else { return };
    if let Ok(spec) = t.parse::<fleet_agent::targets::Spec>() {
        let set = fleet_agent::targets::TargetSet {
            include: vec![spec.clone(), spec],
            exclude: vec![],
        };
        if let Ok(e) = set.expand(1 << 12) {
            assert!(e.addresses.len() <= 1 << 12);
        }
    }
}

/// `t` signed with [`key`]: (signature, key id).
fn signed(t: &str) -> (String, String) {
    fleet_protocol::signing::sign(t.as_bytes(), &key().0)
}

/// The printer support library, signed: verified, checked, installed.
pub fn library(data: &[u8]) {
    let Some(t) = text(data) else { return };
    let (signature, key_id) = signed(t);
    let package = fleet_protocol::library::Package {
        library: t.to_string(),
        signature,
        key_id,
    };
    let handle =
        fleet_agent::printer::library::Handle::new(fleet_agent::printer::library::builtin());
    handle.install(&package, &key().1).ok();
    serde_json::from_slice::<fleet_protocol::library::Package>(data).ok();
}

/// An agent update's manifest, signed: verified and checked against a file.
pub fn update_manifest(data: &[u8]) {
    let Some(t) = text(data) else { return };
    let (signature, key_id) = signed(t);
    let package = fleet_protocol::update::Package {
        manifest: t.to_string(),
        signature,
        key_id,
    };
    if let Ok(m) = fleet_agent::update::verify(&package, &key().1) {
        fleet_agent::update::check_file(&m, b"fuzz").ok();
    }
}

/// A job document from the cloud: decoded, and what decodes re-encodes and decodes again.
pub fn job(data: &[u8]) {
    if let Ok(job) = serde_json::from_slice::<fleet_protocol::jobs::Job>(data) {
        let _ = job.has_valid_id();
        let _ = job.command.type_name();
        let again = serde_json::to_string(&job).expect("a decoded job encodes");
        serde_json::from_str::<fleet_protocol::jobs::Job>(&again).expect("an encoded job decodes");
    }
}

/// A printer's IPP answer: decoded within the codec's bounds, and what decodes maps into a
/// report within the mapping's row bounds.
pub fn ipp_response(data: &[u8]) {
    if let Ok(r) = fleet_ipp::codec::decode(data) {
        let attributes: usize = r.groups.iter().map(|g| g.attributes.len()).sum();
        assert!(attributes <= fleet_ipp::codec::MAX_ATTRIBUTES);
        let report = fleet_agent::printer::ipp::report(&r, None, 0);
        assert!(report.supplies.len() <= 64 && report.alerts.len() <= 64);
        for v in r
            .groups
            .iter()
            .flat_map(|g| &g.attributes)
            .flat_map(|a| &a.values)
        {
            let _ = v.to_string();
        }
    }
}
