//! Printer domain model (asset identity, counters, supplies, alerts, device state) shaped
//! like the seed's API (`../shared/design/DATA-MODEL.md` §1 and §4.6), and its pure
//! decoding from SNMP values. No I/O here.
//!
//! Raw values are kept beside every interpretation (`ext`), and nothing is guessed: a
//! percentage exists only when level and capacity allow computing it.

mod decode;
pub mod ipp;
pub mod library;
pub mod limits;
pub mod meters;
pub mod oids;
pub mod text;

pub use decode::{CRITICAL_ERROR_BITS, Collected, decode, plan};

pub use fleet_protocol::meters::Meter;
use serde::Serialize;

/// One printer as read over SNMP (the `--json` report and the upload's snapshot body).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrinterReport {
    /// Maker (`MFG:` of the 1284 ID, a brand in sysDescr, or the enterprise number's owner).
    pub manufacturer: Option<String>,
    /// Model without the maker's prefix.
    pub model_name: Option<String>,
    /// Printer serial number (where it came from: `device.serialSource`).
    pub serial_number: Option<String>,
    /// Collection time, Unix epoch milliseconds.
    pub collected_at: i64,
    /// Page counters.
    pub counters: Counters,
    /// Every usage counter read ([`meters`]): standard ones and the vendor's, known to
    /// the support library or not.
    pub meters: Vec<Meter>,
    /// Marker supplies (toner, drums, waste containers, ...).
    pub supplies: Vec<Supply>,
    /// Current alerts (prtAlertTable).
    pub alerts: Vec<Alert>,
    /// Device identity and state not in the seed's public API.
    pub device: Device,
}

/// Page counters (seed names; `null` where the printer does not report one).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    /// Engine lifetime count (prtMarkerLifeCount of the first marker).
    pub lifetime_count: Option<u64>,
    /// `Sides` (impressions), `Sheets` or `Other`.
    pub lifetime_count_unit: Option<String>,
    /// Printed sides, total (PWG print service).
    pub print_side_count: Option<u64>,
    /// Printed sides, mono.
    pub mono_print_side_count: Option<u64>,
    /// Printed sides, colour.
    pub color_print_side_count: Option<u64>,
    /// Copied sides, total (PWG copy service).
    pub copy_side_count: Option<u64>,
    /// Copied sides, mono.
    pub mono_copy_side_count: Option<u64>,
    /// Copied sides, colour.
    pub color_copy_side_count: Option<u64>,
    /// Fax sides printed (PWG faxIn service).
    pub fax_side_count: Option<u64>,
    /// All mono sides (PWG system totals).
    pub mono_side_count: Option<u64>,
    /// All colour sides (PWG system totals).
    pub color_side_count: Option<u64>,
    /// All sides (PWG system totals).
    pub total_side_count: Option<u64>,
    /// All sheets (PWG system totals).
    pub total_sheet_count: Option<u64>,
    /// Scans, total (a vendor meter the support library maps).
    pub total_scan_count: Option<u64>,
    /// Blank sides produced by copying (vendor meter).
    pub blank_copy_side_count: Option<u64>,
    /// Blank sides in fax output (vendor meter).
    pub blank_fax_side_count: Option<u64>,
    /// Agent-only raw values.
    pub ext: CountersExt,
}

/// Raw counter sources.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CountersExt {
    /// prtMarkerCounterUnit of the marker behind `lifetimeCount`.
    pub prt_marker_counter_unit: Option<i64>,
    /// prtMarkerPowerOnCount of that marker.
    pub prt_marker_power_on_count: Option<u64>,
    /// Every marker row: key `hrDeviceIndex.prtMarkerIndex`.
    pub markers: Vec<Marker>,
    /// Counter name → source (e.g. `printer-mib:prtMarkerLifeCount.1.1`).
    pub sources: std::collections::BTreeMap<String, String>,
}

/// One prtMarkerTable row.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Marker {
    /// `hrDeviceIndex.prtMarkerIndex`.
    pub index: String,
    /// prtMarkerLifeCount.
    pub life_count: Option<u64>,
    /// prtMarkerPowerOnCount.
    pub power_on_count: Option<u64>,
    /// prtMarkerCounterUnit.
    pub counter_unit: Option<i64>,
    /// prtMarkerProcessColorants (1 = mono device).
    pub process_colorants: Option<i64>,
}

/// What a supply level means (Printer-MIB special values).
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum LevelState {
    /// A real level (≥ 0).
    Known,
    /// −3: at least some remains (or some space remains, for receptacles).
    SomeRemaining,
    /// −2, or any other negative value: unknown.
    Unknown,
    /// −1: other / no restriction.
    Unrestricted,
}

/// One marker supply.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Supply {
    /// Stable key `m:<hrDeviceIndex>.<prtMarkerSuppliesIndex>`.
    pub supply_key: String,
    /// Supply chip serial (not in Printer-MIB: from the vendor's supply table, where the
    /// support library names one).
    pub serial_number: Option<String>,
    /// Level in percent (remaining supply; remaining space for receptacles), when computable.
    pub current_level: Option<u8>,
    /// `Black`, `Cyan`, ... from prtMarkerColorantValue; `none` when no colorant.
    pub color: Option<String>,
    /// prtMarkerSuppliesDescription as served (trailing NULs removed).
    pub description: Option<String>,
    /// Max capacity in `capacityUnit`; `null` for −1/−2.
    pub maximum_capacity: Option<i64>,
    /// Display type (`Toner`, `Waste Toner`, `Photoconductor`, `Fuser`, `Ink`, `Other`, ...).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Display unit (`Percent`, `Sides`, `Sheets`, `Items`, `Other`, ...).
    pub capacity_unit: Option<String>,
    /// Percent of supply remaining; only for consumables with a computable level.
    pub percent_remaining: Option<u8>,
    /// Raw values and interpretation details.
    pub ext: SupplyExt,
}

/// Raw Printer-MIB values of a supply.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SupplyExt {
    /// Always `printer-mib` for now.
    pub source: &'static str,
    /// hrDeviceIndex.
    pub hr_device_index: u32,
    /// prtMarkerSuppliesIndex.
    pub prt_marker_supplies_index: u32,
    /// prtMarkerSuppliesClass: 3 consumed, 4 receptacle filled.
    pub prt_marker_supplies_class: Option<i64>,
    /// prtMarkerSuppliesType (IANA PrtMarkerSuppliesTypeTC).
    pub prt_marker_supplies_type: Option<i64>,
    /// IANA name of the type (`toner`, `opc`, ...).
    pub type_name: Option<&'static str>,
    /// prtMarkerSuppliesSupplyUnit.
    pub prt_marker_supplies_supply_unit: Option<i64>,
    /// prtMarkerSuppliesMaxCapacity, raw.
    pub prt_marker_supplies_max_capacity: Option<i64>,
    /// prtMarkerSuppliesLevel, raw.
    pub prt_marker_supplies_level: Option<i64>,
    /// Meaning of the level.
    pub level_state: Option<LevelState>,
    /// prtMarkerColorantValue, raw.
    pub colorant_value: Option<String>,
    /// For receptacles (waste): percent filled, when computable.
    pub percent_filled: Option<u8>,
    /// Part number, from the vendor's supply table (with `serialNumber`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part_number: Option<String>,
}

/// One alert (prtAlertTable row).
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// Stable key `a:<group>.<groupIndex>.<code>[.<location>]` (prtAlertIndex moves).
    pub alert_key: String,
    /// `ERROR` (critical) or `WARNING`.
    pub status: Option<&'static str>,
    /// prtAlertDescription, untrimmed (as the seed keeps it).
    pub issue: Option<String>,
    /// Raw values.
    pub ext: AlertExt,
}

/// Raw prtAlertTable values.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertExt {
    /// Always `printer-mib`.
    pub source: &'static str,
    /// prtAlertIndex (not stable across table wraps).
    pub prt_alert_index: u32,
    /// prtAlertSeverityLevel.
    pub prt_alert_severity_level: Option<i64>,
    /// prtAlertTrainingLevel.
    pub prt_alert_training_level: Option<i64>,
    /// prtAlertGroup.
    pub prt_alert_group: Option<i64>,
    /// prtAlertGroupIndex.
    pub prt_alert_group_index: Option<i64>,
    /// prtAlertLocation.
    pub prt_alert_location: Option<i64>,
    /// prtAlertCode.
    pub prt_alert_code: Option<i64>,
    /// IANA name of the code, when known.
    pub code_name: Option<&'static str>,
    /// prtAlertTime (sysUpTime ticks when raised).
    pub prt_alert_time: Option<u64>,
    /// Wall-clock time the alert was raised (epoch ms), from prtAlertTime and sysUpTime.
    pub raised_at: Option<i64>,
    /// Binary change event (critical / warningBinaryChangeEvent): present = active.
    pub binary: bool,
    /// Supply alert (groups 11, 12) rather than printer alert.
    pub supply_alert: bool,
}

/// Device identity and state.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Polled address.
    pub ip_address: Option<String>,
    /// MAC of the polled interface.
    pub mac_address: Option<String>,
    /// Which object gave `serialNumber`.
    pub serial_source: Option<String>,
    /// sysName.0.
    pub sys_name: Option<String>,
    /// sysDescr.0.
    pub sys_descr: Option<String>,
    /// sysObjectID.0.
    #[serde(rename = "sysObjectID")]
    pub sys_object_id: Option<String>,
    /// sysLocation.0.
    pub sys_location: Option<String>,
    /// sysContact.0.
    pub sys_contact: Option<String>,
    /// prtGeneralPrinterName.
    pub printer_name: Option<String>,
    /// IEEE 1284 device ID.
    pub ieee1284_device_id: Option<String>,
    /// Firmware version.
    pub firmware_version: Option<String>,
    /// Uptime in seconds (hrSystemUptime, else sysUpTime).
    pub uptime_seconds: Option<u64>,
    /// Boot time, epoch ms.
    pub last_boot_at: Option<i64>,
    /// hrDeviceIndex of the printer row.
    pub hr_device_index: Option<u32>,
    /// hrDeviceDescr of the printer row.
    pub hr_device_descr: Option<String>,
    /// hrDeviceStatus (1 unknown, 2 running, 3 warning, 4 testing, 5 down).
    pub hr_device_status: Option<i64>,
    /// hrPrinterStatus (1 other, 2 unknown, 3 idle, 4 printing, 5 warmup).
    pub hr_printer_status: Option<i64>,
    /// hrPrinterDetectedErrorState bit names.
    pub hr_printer_detected_error_state: Vec<&'static str>,
    /// Overall state (RFC 3805 §2.2.13.2).
    pub printer_state: &'static str,
    /// Front-panel text lines.
    pub console_display: Vec<String>,
    /// Input trays.
    pub input_trays: Vec<InputTray>,
    /// SNMP version used.
    pub snmp_version: Option<fleet_snmp::Version>,
    /// What budgets left out of this reading (long texts, long tables, a collection
    /// stopped early); empty for an ordinary printer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cuts: Vec<String>,
    /// How this printer's SNMP agent must be asked, when it needs anything special
    /// (learned by the poller: a request it drops, GETBULK it fails, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quirks: Option<fleet_snmp::quirks::Quirks>,
    /// IPP's `printer-uuid` (`urn:uuid:...`), when the printer was read over IPP: an
    /// identity that survives address changes like the serial number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub printer_uuid: Option<String>,
    /// Which source gave this reading (`ipp` when read over IPP; absent for SNMP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'static str>,
    /// What this reading could not read, by section; the section's values are unknown
    /// (not empty) in such a reading. Empty when everything was read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<Unavailable>,
}

impl PrinterReport {
    /// Tells whether this reading could not read (some of) `section`: its values are
    /// unknown, not empty.
    pub fn unread(&self, section: &str) -> bool {
        self.device.unavailable.iter().any(|u| u.section == section)
    }
}

/// One object a reading could not read.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Unavailable {
    /// The report section it feeds: `supplies`, `alerts`, `counters`, `meters`,
    /// `inputTrays`, `status`, `console` or `identity`.
    pub section: &'static str,
    /// The MIB object's name, when it is one of the poll plan's.
    pub object: Option<&'static str>,
    /// The object (or, for a column the device hangs in, the last row read).
    pub oid: String,
    /// Why it was not read.
    pub reason: String,
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: ", self.section)?;
        match self.object {
            Some(o) => write!(f, "{o} ({})", self.oid)?,
            None => f.write_str(&self.oid)?,
        }
        write!(f, " not read: {}", self.reason)
    }
}

impl Unavailable {
    /// Describes a [`fleet_snmp::quirks::Skip`] of a collection.
    pub fn of(skip: &fleet_snmp::quirks::Skip) -> Unavailable {
        let o = oids::describe(&skip.oid);
        Unavailable {
            section: o.0,
            object: o.1,
            oid: skip.oid.to_string(),
            reason: skip.reason.to_string(),
        }
    }
}

/// One input tray.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InputTray {
    /// `hrDeviceIndex.prtInputIndex`.
    pub index: String,
    /// prtInputName.
    pub name: Option<String>,
    /// prtInputMediaName.
    pub media_name: Option<String>,
    /// prtInputType.
    pub input_type: Option<i64>,
    /// prtInputMaxCapacity, raw.
    pub max_capacity: Option<i64>,
    /// prtInputCurrentLevel, raw.
    pub current_level: Option<i64>,
    /// Meaning of the level.
    pub level_state: Option<LevelState>,
    /// Percent full when computable.
    pub percent: Option<u8>,
    /// prtInputCapacityUnit.
    pub capacity_unit: Option<i64>,
    /// prtInputStatus.
    pub status: Option<i64>,
}
