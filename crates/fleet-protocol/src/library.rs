//! The printer support library document (`updateLibrary`): vendor knowledge as versioned
//! data, not code — which enterprise number is which vendor, the vendor objects holding
//! the serial number, model, firmware and IEEE 1284 device ID, the brand names OEM
//! devices show in sysDescr, which actions a vendor's printers support by which
//! transport, and the vendor's meters ([`crate::meters`]) — and its signed package. A
//! package is verified against the trusted keys and checked whole; the agent decides
//! whether to install it.

pub use crate::meters::MeterMap;
use serde::{Deserialize, Serialize};

/// Transports an action may name.
pub const TRANSPORTS: &[&str] = &["snmp", "http", "https", "raw9100"];

/// The library.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Library {
    /// Increases with every release; only a higher version replaces the one in use.
    pub version: u64,
    /// Vendors by enterprise number.
    pub vendors: Vec<VendorData>,
    /// Brand names matched at the start of sysDescr (case-insensitive), in order.
    pub brands: Vec<Brand>,
}

/// One vendor's knowledge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VendorData {
    /// Display name used for `manufacturer` when nothing better is known.
    pub name: String,
    /// IANA enterprise number (the arc after 1.3.6.1.4.1 in sysObjectID).
    pub enterprise: u32,
    /// Serial number objects (full instance OIDs), tried in order.
    #[serde(default, with = "dotted")]
    pub serial: Vec<Vec<u32>>,
    /// Model name objects, tried in order.
    #[serde(default, with = "dotted")]
    pub model: Vec<Vec<u32>>,
    /// Firmware version objects, tried in order.
    #[serde(default, with = "dotted")]
    pub firmware: Vec<Vec<u32>>,
    /// IEEE 1284 device ID objects.
    #[serde(default, with = "dotted")]
    pub device_id: Vec<Vec<u32>>,
    /// What the vendor's printers support, and how.
    #[serde(default)]
    pub actions: Vec<Action>,
    /// The vendor's usage counters (meters), per model family where needed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub meters: Vec<MeterMap>,
    /// The vendor's supply tables (serial and part numbers of the supplies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supplies: Vec<crate::meters::SupplyTable>,
}

/// A brand shown in sysDescr.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Brand {
    /// Lower-case prefix of sysDescr.
    pub prefix: String,
    /// Manufacturer name to report.
    pub name: String,
    /// An OEM brand on another maker's enterprise number: wins over the vendor's name.
    #[serde(default)]
    pub oem: bool,
}

/// An action and its transport.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Action {
    /// Job type (`reboot`, `panelMessage`, `deployFile`, `firmwareUpdate`, ...).
    pub action: String,
    /// One of [`TRANSPORTS`].
    pub transport: String,
    /// TCP port, when not the transport's usual one (9100, 80, 443).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// HTTP(S) path the printer's web server takes uploads on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

mod dotted {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[Vec<u32>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            v.iter()
                .map(|o| o.iter().map(u32::to_string).collect::<Vec<_>>().join(".")),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u32>>, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        v.iter()
            .map(|s| {
                s.trim_start_matches('.')
                    .split('.')
                    .map(str::parse::<u32>)
                    .collect::<Result<Vec<u32>, _>>()
                    .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a dotted OID")))
            })
            .collect()
    }
}

/// Why a library or a package was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LibraryError {
    /// Not the package format.
    #[error("not a library package: {0}")]
    Format(String),
    /// Signed by a key this agent does not trust.
    #[error(
        "signed by a key this agent does not trust (key id {0}); trusted keys are listed in cloud.library_keys"
    )]
    UnknownKey(String),
    /// The signature does not match the content (tampered or corrupted).
    #[error("the signature does not match the library (tampered or corrupted)")]
    BadSignature,
    /// The content is not a valid library.
    #[error("invalid library: {0}")]
    Invalid(String),
    /// Not newer than the library in use.
    #[error("version {offered} is not newer than the library in use ({current})")]
    NotNewer {
        /// The package's version.
        offered: u64,
        /// The version in use.
        current: u64,
    },
}

/// The most vendors and brands a library may hold.
pub const MAX_ENTRIES: usize = 10_000;

/// A display name: 1..=128 bytes, no control characters.
fn plain_name(name: &str) -> Result<(), &'static str> {
    if name.trim().is_empty() {
        Err("empty")
    } else if name.len() > 128 {
        Err("longer than 128 bytes")
    } else if name.chars().any(char::is_control) {
        Err("holds control characters")
    } else {
        Ok(())
    }
}

/// An HTTP path sent to printers: starts with `/`, at most 256 bytes of visible ASCII
/// (no spaces, no control characters: a CR or LF would inject headers), no `..` segment.
pub fn url_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        Err("must start with '/'")
    } else if path.len() > 256 {
        Err("longer than 256 bytes")
    } else if !path.bytes().all(|b| b.is_ascii_graphic()) {
        Err("only visible ASCII characters (no spaces, CR, LF or other control characters)")
    } else if path.split(['/', '?']).any(|seg| seg == "..") {
        Err("no '..' segment")
    } else {
        Ok(())
    }
}

impl Library {
    /// Checks the whole library, naming every problem's place.
    ///
    /// # Errors
    /// [`LibraryError::Invalid`] with every problem.
    pub fn check(&self) -> Result<(), LibraryError> {
        let mut problems = Vec::new();
        if self.version == 0 {
            problems.push("version: must be at least 1".to_string());
        }
        if self.vendors.len() > MAX_ENTRIES || self.brands.len() > MAX_ENTRIES {
            problems.push(format!(
                "vendors, brands: at most {MAX_ENTRIES} entries each"
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, v) in self.vendors.iter().enumerate() {
            if let Err(why) = plain_name(&v.name) {
                problems.push(format!("vendors[{i}].name: {why}"));
            }
            if v.actions.len() > 64 {
                problems.push(format!("vendors[{i}].actions: at most 64"));
            }
            if !seen.insert(v.enterprise) {
                problems.push(format!(
                    "vendors[{i}].enterprise: {} appears twice",
                    v.enterprise
                ));
            }
            for (field, list) in [
                ("serial", &v.serial),
                ("model", &v.model),
                ("firmware", &v.firmware),
                ("deviceId", &v.device_id),
            ] {
                for (j, o) in list.iter().enumerate() {
                    if o.len() < 7 || o[..4] != [1, 3, 6, 1] || o.len() > 64 {
                        problems.push(format!(
                            "vendors[{i}].{field}[{j}]: not an object instance under 1.3.6.1"
                        ));
                    }
                }
            }
            crate::meters::check(&v.meters, &format!("vendors[{i}]"), &mut problems);
            crate::meters::check_supplies(&v.supplies, &format!("vendors[{i}]"), &mut problems);
            for (j, a) in v.actions.iter().enumerate() {
                let at = format!("vendors[{i}].actions[{j}]");
                if !TRANSPORTS.contains(&a.transport.as_str()) {
                    problems.push(format!(
                        "{at}.transport: {:?} is not one of {TRANSPORTS:?}",
                        a.transport.chars().take(40).collect::<String>()
                    ));
                }
                let action_ok = !a.action.is_empty()
                    && a.action.len() <= 64
                    && a.action
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b':' || b == b'-' || b == b'_');
                if !action_ok {
                    problems.push(format!(
                        "{at}.action: letters, digits, ':', '-' and '_' only, at most 64"
                    ));
                }
                if a.port == Some(0) {
                    problems.push(format!("{at}.port: 0 is not a port"));
                }
                if let Some(path) = &a.path
                    && let Err(why) = url_path(path)
                {
                    problems.push(format!("{at}.path: {why}"));
                }
            }
        }
        for (i, b) in self.brands.iter().enumerate() {
            if b.prefix.is_empty() || b.prefix != b.prefix.to_lowercase() || b.prefix.len() > 128 {
                problems.push(format!(
                    "brands[{i}].prefix: must be non-empty lower case, at most 128 bytes"
                ));
            }
            if let Err(why) = plain_name(&b.name) {
                problems.push(format!("brands[{i}].name: {why}"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(LibraryError::Invalid(problems.join("; ")))
        }
    }

    /// The vendor entry for an enterprise number.
    pub fn vendor(&self, enterprise: u32) -> Option<&VendorData> {
        self.vendors.iter().find(|v| v.enterprise == enterprise)
    }

    /// Every vendor instance OID (fetched by the poll as the first instance of its parent).
    pub fn vendor_objects(&self) -> impl Iterator<Item = &Vec<u32>> {
        self.vendors.iter().flat_map(|v| {
            v.serial
                .iter()
                .chain(&v.model)
                .chain(&v.firmware)
                .chain(&v.device_id)
        })
    }
}

/// A signed library as the cloud sends it: the library's exact JSON text, its ed25519
/// signature over those bytes, and the signing key's id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Package {
    /// The library, as JSON text (the signed bytes).
    pub library: String,
    /// Base64 (standard) of the 64-byte signature.
    pub signature: String,
    /// [`key_id`] of the signing key.
    pub key_id: String,
}

pub use crate::signing::{key_id, public_key};

/// Signs a library (reference cloud, release tooling, tests).
pub fn sign(library: &Library, key: &ed25519_dalek::SigningKey) -> Package {
    let text = serde_json::to_string_pretty(library).unwrap_or_default();
    let (signature, key_id) = crate::signing::sign(text.as_bytes(), key);
    Package {
        library: text,
        signature,
        key_id,
    }
}

/// Verifies a package against the trusted keys (base64) and checks the library inside.
///
/// # Errors
/// Unknown key, bad signature, invalid content.
pub fn verify(package: &Package, trusted: &[String]) -> Result<Library, LibraryError> {
    use crate::signing::SignatureError as E;
    crate::signing::verify(
        package.library.as_bytes(),
        &package.signature,
        &package.key_id,
        trusted,
    )
    .map_err(|e| match e {
        E::UnknownKey(id) => LibraryError::UnknownKey(id),
        E::Format => LibraryError::Format(e.to_string()),
        E::Mismatch => LibraryError::BadSignature,
    })?;
    let lib: Library =
        serde_json::from_str(&package.library).map_err(|e| LibraryError::Invalid(e.to_string()))?;
    lib.check()?;
    Ok(lib)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn key(seed: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
    }

    fn b64(k: &ed25519_dalek::SigningKey) -> String {
        base64::engine::general_purpose::STANDARD.encode(k.verifying_key().as_bytes())
    }

    fn sample(version: u64) -> Library {
        let vendor = |name: &str, enterprise: u32| VendorData {
            name: name.into(),
            enterprise,
            serial: vec![vec![1, 3, 6, 1, 4, 1, enterprise, 2, 1]],
            model: vec![],
            firmware: vec![],
            device_id: vec![],
            actions: vec![Action {
                action: "reboot".into(),
                transport: "snmp".into(),
                port: None,
                path: None,
            }],
            meters: vec![],
            supplies: vec![],
        };
        Library {
            version,
            vendors: vec![vendor("Lexmark", 641), vendor("HP", 11)],
            brands: vec![Brand {
                prefix: "utax".into(),
                name: "UTAX".into(),
                oem: true,
            }],
        }
    }

    #[test]
    fn a_library_round_trips_as_json_with_dotted_oids() {
        let lib = sample(1);
        lib.check().unwrap();
        let text = serde_json::to_string(&lib).unwrap();
        assert!(text.contains("\"1.3.6.1.4.1.641.2.1\""), "{text}");
        assert_eq!(serde_json::from_str::<Library>(&text).unwrap(), lib);
        assert!(serde_json::from_str::<Library>(&text.replace("1.3.6.1.4.1.641", "1.x")).is_err());
        assert_eq!(lib.vendor(11).unwrap().name, "HP");
    }

    #[test]
    fn signed_packages_verify_and_tampered_ones_do_not() {
        let k = key(7);
        let trusted = vec![b64(&k)];
        let lib = sample(5);
        let pkg = sign(&lib, &k);
        assert_eq!(verify(&pkg, &trusted).unwrap(), lib);
        // One character changed in the library: refused.
        let mut bad = pkg.clone();
        bad.library = bad.library.replacen("Lexmark", "Lexmarc", 1);
        assert_eq!(verify(&bad, &trusted), Err(LibraryError::BadSignature));
        // Signed by a key nobody listed: refused before anything is parsed.
        let other = sign(&lib, &key(8));
        assert!(matches!(
            verify(&other, &trusted),
            Err(LibraryError::UnknownKey(_))
        ));
        // A listed key's id with a signature by another key: refused.
        let mut forged = sign(&lib, &key(8));
        forged.key_id = pkg.key_id.clone();
        assert_eq!(verify(&forged, &trusted), Err(LibraryError::BadSignature));
        // Garbage signature.
        let mut g = pkg.clone();
        g.signature = "abc".into();
        assert!(matches!(verify(&g, &trusted), Err(LibraryError::Format(_))));
        // Signed but invalid content: every problem named.
        let mut wrong = sample(6);
        wrong.vendors[0].serial.push(vec![2, 5]);
        wrong.vendors[1].enterprise = wrong.vendors[0].enterprise;
        wrong.vendors[0].actions.push(Action {
            action: "deployFile".into(),
            transport: "ftp".into(),
            port: None,
            path: None,
        });
        let e = verify(&sign(&wrong, &k), &trusted).unwrap_err().to_string();
        assert!(e.contains("vendors[0].serial[1]"), "{e}");
        assert!(e.contains("vendors[1].enterprise"), "{e}");
        assert!(e.contains("vendors[0].actions[1].transport"), "{e}");
        // The finding: a CRLF in a path injected HTTP headers to the printer.
        let mut lib = sample(3);
        lib.vendors[0].actions.push(Action {
            action: "deployFile".into(),
            transport: "https".into(),
            port: Some(0),
            path: Some("/upload\r\nX-Injected: 1".into()),
        });
        lib.vendors[0].name = "HP\r\nX: y".into();
        let e = lib.check().unwrap_err().to_string();
        for want in ["actions[1].port", "actions[1].path", "vendors[0].name"] {
            assert!(e.contains(want), "{want}: {e}");
        }
        assert!(url_path("/hp/device/upload?x=1").is_ok());
        for bad in [
            "upload",
            "/a b",
            "/../etc",
            "/a/..",
            &format!("/{}", "a".repeat(300)),
        ] {
            assert!(url_path(bad).is_err(), "{bad}");
        }
        assert!(public_key("not base64!").is_err());
        assert!(public_key(&b64(&k)).is_ok());
        // Nothing trusted: nothing installs.
        assert!(matches!(
            verify(&pkg, &[]),
            Err(LibraryError::UnknownKey(_))
        ));
    }
}
