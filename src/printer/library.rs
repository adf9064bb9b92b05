//! The printer support library in use: the one built into the agent (from
//! [`super::oids`] and `meters.json`, version 1) until the cloud installs a newer signed one
//! (`fleet_protocol::library`), swapped in through a [`Handle`] while the agent runs.

pub use fleet_protocol::library::{
    Action, Brand, Library, LibraryError, Package, TRANSPORTS, VendorData, key_id, public_key,
    sign, verify,
};
use parking_lot::RwLock;
use std::sync::Arc;

/// Lexmark's enterprise number: the built-in library sends files to its printers only.
const LEXMARK: u32 = 641;

/// The enterprise number under 1.3.6.1.4.1 in a sysObjectID (the vendor the library
/// files it under).
pub fn enterprise(sys_object_id: &str) -> Option<u32> {
    sys_object_id
        .trim_start_matches('.')
        .strip_prefix("1.3.6.1.4.1.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// What the support library says can be done to a printer whose sysObjectID is
/// `sys_object_id`: each action with its transport (`deployFile (raw9100)`), in the
/// library's order; empty for a vendor it does not know.
pub fn commands(library: &Library, sys_object_id: Option<&str>) -> Vec<String> {
    let Some(v) = sys_object_id
        .and_then(enterprise)
        .and_then(|e| library.vendor(e))
    else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for a in &v.actions {
        let line = format!("{} ({})", a.action, a.transport);
        if !out.contains(&line) {
            out.push(line);
        }
    }
    out
}

/// The version of [`builtin`]: any library the cloud installs replaces it.
pub const BUILTIN_VERSION: u64 = 1;

/// The built-in meter maps and supply tables (`meters.json`, in the library's own format).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BuiltinMeters {
    enterprise: u32,
    meters: Vec<fleet_protocol::meters::MeterMap>,
    #[serde(default)]
    supplies: Vec<fleet_protocol::meters::SupplyTable>,
}

fn builtin_meters() -> Vec<BuiltinMeters> {
    // Checked whole by the tests (`the_builtin_library_is_valid_and_maps_meters`).
    serde_json::from_str(include_str!("meters.json")).unwrap_or_default()
}

/// The library built into this agent (from [`super::oids`] and `meters.json`),
/// version [`BUILTIN_VERSION`].
pub fn builtin() -> Library {
    let mut meters = builtin_meters();
    let own = |v: &[&[u32]]| v.iter().map(|o| o.to_vec()).collect::<Vec<_>>();
    let snmp = |actions: &[&str]| {
        actions
            .iter()
            .map(|a| Action {
                action: (*a).into(),
                transport: "snmp".into(),
                port: None,
                path: None,
            })
            .collect::<Vec<_>>()
    };
    Library {
        version: BUILTIN_VERSION,
        vendors: super::oids::VENDORS
            .iter()
            .map(|v| VendorData {
                name: v.name.into(),
                enterprise: v.enterprise,
                serial: own(v.serial),
                model: own(v.model),
                firmware: own(v.firmware),
                device_id: own(v.device_id),
                // What the agent does for every printer through the Printer-MIB, and,
                // for the vendor whose file formats the seed deploys (settings bundles,
                // UCF, eSF apps, flash files), files as a raw 9100 stream. Any other
                // vendor's printer would print such a file as pages of garbage: files
                // go to a vendor only once a library names its way.
                actions: {
                    let mut a = snmp(&["reboot", "panelMessage", "mibWalk"]);
                    if v.enterprise == LEXMARK {
                        a.extend(["deployFile", "firmwareUpdate"].map(|action| Action {
                            action: action.into(),
                            transport: "raw9100".into(),
                            port: None,
                            path: None,
                        }));
                    }
                    a
                },
                meters: meters
                    .iter_mut()
                    .find(|m| m.enterprise == v.enterprise)
                    .map(|m| std::mem::take(&mut m.meters))
                    .unwrap_or_default(),
                supplies: meters
                    .iter_mut()
                    .find(|m| m.enterprise == v.enterprise)
                    .map(|m| std::mem::take(&mut m.supplies))
                    .unwrap_or_default(),
            })
            .collect(),
        brands: super::oids::BRANDS
            .iter()
            .map(|(p, n)| Brand {
                prefix: (*p).into(),
                name: (*n).into(),
                oem: super::oids::OEM_BRANDS.contains(p),
            })
            .collect(),
    }
}

/// The library in use, shared by everything that decodes readings or picks a printer's
/// transport: a handle (cheap to clone) whose library the cloud can replace while the agent
/// runs. Readings being decoded keep the library they started with (an `Arc`).
#[derive(Clone)]
pub struct Handle(Arc<RwLock<Arc<Library>>>);

impl Default for Handle {
    fn default() -> Self {
        Handle::new(builtin())
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "library::Handle(version {})", self.current().version)
    }
}

impl Handle {
    /// A handle on `library`.
    pub fn new(library: Library) -> Handle {
        Handle(Arc::new(RwLock::new(Arc::new(library))))
    }

    /// The library in use.
    pub fn current(&self) -> Arc<Library> {
        self.0.read().clone()
    }

    /// Verifies a package and swaps it in when it is newer than the library in use.
    ///
    /// # Errors
    /// As [`verify`], and [`LibraryError::NotNewer`].
    pub fn install(
        &self,
        package: &Package,
        trusted: &[String],
    ) -> Result<Arc<Library>, LibraryError> {
        let lib = verify(package, trusted)?;
        let mut cur = self.0.write();
        if lib.version <= cur.version {
            return Err(LibraryError::NotNewer {
                offered: lib.version,
                current: cur.version,
            });
        }
        *cur = Arc::new(lib);
        Ok(cur.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_go_only_to_the_vendor_the_library_names_a_way_for() {
        let lib = builtin();
        let lexmark = commands(&lib, Some("1.3.6.1.4.1.641.1.6500"));
        assert!(
            lexmark.contains(&"deployFile (raw9100)".to_owned()),
            "{lexmark:?}"
        );
        assert!(lexmark.contains(&"firmwareUpdate (raw9100)".to_owned()));
        let hp = commands(&lib, Some(".1.3.6.1.4.1.11.2.3.9.1"));
        assert!(hp.contains(&"reboot (snmp)".to_owned()), "{hp:?}");
        assert!(!hp.iter().any(|c| c.starts_with("deployFile")), "{hp:?}");
        assert!(commands(&lib, Some("1.3.6.1.4.1.99999.1")).is_empty());
        assert!(commands(&lib, None).is_empty());
    }

    #[test]
    fn the_builtin_library_is_valid_and_round_trips_as_json() {
        let lib = builtin();
        lib.check().unwrap();
        assert!(lib.vendor(641).is_some_and(|v| v.name == "Lexmark"));
        let text = serde_json::to_string(&lib).unwrap();
        assert!(text.contains("\"1.3.6.1.4.1.641.2.1.2.1.6.1\""), "{text}");
        assert_eq!(serde_json::from_str::<Library>(&text).unwrap(), lib);
        assert!(lib.brands.iter().any(|b| b.prefix == "utax" && b.oem));
        assert!(lib.brands.iter().any(|b| b.prefix == "xerox" && !b.oem));
    }
}
