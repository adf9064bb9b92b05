//! Pure decoding of collected SNMP values into a [`PrinterReport`].

use super::library::Library;
use super::oids::{self, Fetch};
use super::text;
use super::{
    Alert, AlertExt, Counters, Device, InputTray, LevelState, Marker, PrinterReport, Supply,
    SupplyExt,
};
use fleet_snmp::{Oid, Value, Version};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Returns the poll plan: objects fetched as first instance (standard and vendor), and
/// columns walked. Vendor objects are asked by their parent so the GETNEXT lands on them.
pub fn plan(library: &Library) -> (Vec<Oid>, Vec<Oid>) {
    let mut firsts = Vec::new();
    let mut columns = Vec::new();
    for o in oids::STANDARD {
        match o.fetch {
            Fetch::First => firsts.push(Oid::from_slice(o.oid)),
            Fetch::Column => columns.push(Oid::from_slice(o.oid)),
        }
    }
    let mut seen = BTreeSet::new();
    for v in library.vendor_objects() {
        let parent = Oid::from_slice(&v[..v.len() - 1]);
        if seen.insert(parent.clone()) {
            firsts.push(parent);
        }
    }
    (firsts, columns)
}

/// Everything decoding needs: the values collected and the context of the poll.
pub struct Collected<'a> {
    /// Values by instance OID.
    pub values: &'a BTreeMap<Oid, Value>,
    /// Address polled (selects the MAC of that interface).
    pub ip: Option<IpAddr>,
    /// Collection time, epoch ms.
    pub collected_at: i64,
    /// SNMP version used.
    pub version: Option<Version>,
    /// The support library to decode with (the one in use when the poll started).
    pub library: &'a Library,
}

impl Collected<'_> {
    pub(super) fn get(&self, oid: &[u32]) -> Option<&Value> {
        self.values.get(&Oid::from_slice(oid))
    }

    /// Rows of a column as (index suffix, value).
    pub(super) fn column<'s>(
        &'s self,
        col: &'s [u32],
    ) -> impl Iterator<Item = (&'s [u32], &'s Value)> + 's {
        let start = Oid::from_slice(col);
        self.values
            .range(start..)
            .take_while(move |(k, _)| k.arcs().starts_with(col))
            .filter_map(move |(k, v)| {
                let s = &k.arcs()[col.len()..];
                (!s.is_empty()).then_some((s, v))
            })
    }

    pub(super) fn first<'s>(&'s self, object: &'s [u32]) -> Option<&'s Value> {
        self.column(object).next().map(|(_, v)| v)
    }

    pub(super) fn cell(&self, col: &[u32], index: &[u32]) -> Option<&Value> {
        let mut arcs = col.to_vec();
        arcs.extend_from_slice(index);
        self.values.get(&Oid::new(arcs))
    }

    pub(super) fn int(&self, col: &[u32], index: &[u32]) -> Option<i64> {
        self.cell(col, index).and_then(Value::as_i64)
    }

    pub(super) fn text(&self, col: &[u32], index: &[u32]) -> Option<String> {
        self.cell(col, index)
            .and_then(Value::as_bytes)
            .map(text::decode)
    }

    /// Indexes present in any of `cols`, as owned suffixes, in order.
    pub(super) fn rows(&self, cols: &[&[u32]]) -> Vec<Vec<u32>> {
        let mut set = BTreeSet::new();
        for c in cols {
            for (s, _) in self.column(c) {
                set.insert(s.to_vec());
            }
        }
        set.into_iter().collect()
    }
}

fn ident_of(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_bytes).and_then(text::identity)
}

fn text_of(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_bytes)
        .map(text::decode)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn index_str(ix: &[u32]) -> String {
    ix.iter().map(u32::to_string).collect::<Vec<_>>().join(".")
}

/// Interprets a Printer-MIB level.
pub fn level_state(level: i64) -> LevelState {
    match level {
        -3 => LevelState::SomeRemaining,
        -1 => LevelState::Unrestricted,
        l if l < 0 => LevelState::Unknown,
        _ => LevelState::Known,
    }
}

/// Computes a percentage from a raw level and capacity, or `None` when the values do
/// not allow it (special values, unknown capacity). `unit` 19 is percent.
pub fn percent(level: i64, max: Option<i64>, unit: Option<i64>) -> Option<u8> {
    if level < 0 {
        return None;
    }
    if unit == Some(19) && level <= 100 && max.is_none_or(|m| m <= 0 || m == 100) {
        return Some(level as u8);
    }
    match max {
        Some(m) if m > 0 => {
            // In i128: an IPP printer's level and capacity are text, parsed as any i64.
            let (l, m) = (i128::from(level), i128::from(m));
            let p = (100 * l + m / 2) / m;
            Some(p.clamp(0, 100) as u8)
        }
        _ => None,
    }
}

/// IANA PrtMarkerSuppliesTypeTC names.
pub fn supply_type_name(code: i64) -> Option<&'static str> {
    const NAMES: [&str; 34] = [
        "other",
        "unknown",
        "toner",
        "wasteToner",
        "ink",
        "inkCartridge",
        "inkRibbon",
        "wasteInk",
        "opc",
        "developer",
        "fuserOil",
        "solidWax",
        "ribbonWax",
        "wasteWax",
        "fuser",
        "coronaWire",
        "fuserOilWick",
        "cleanerUnit",
        "fuserCleaningPad",
        "transferUnit",
        "tonerCartridge",
        "fuserOiler",
        "water",
        "wasteWater",
        "glueWaterAdditive",
        "wastePaper",
        "bindingSupply",
        "bandingSupply",
        "stitchingWire",
        "shrinkWrap",
        "paperWrap",
        "staples",
        "inserts",
        "covers",
    ];
    usize::try_from(code - 1)
        .ok()
        .and_then(|i| NAMES.get(i).copied())
}

fn supply_display_type(code: i64) -> &'static str {
    match code {
        3 | 21 => "Toner",
        4 => "Waste Toner",
        5 | 6 => "Ink",
        7 => "Ribbon",
        8 => "Waste Ink",
        9 => "Photoconductor",
        10 => "Developer",
        15 => "Fuser",
        18 => "Cleaner",
        20 => "Transfer Unit",
        32 => "Staples",
        2 => "Unknown",
        _ => "Other",
    }
}

fn unit_display(code: i64) -> &'static str {
    match code {
        2 => "Unknown",
        3 => "TenThousandthsOfInches",
        4 => "Micrometers",
        7 => "Sides",
        8 => "Sheets",
        11 => "Hours",
        12 => "ThousandthsOfOunces",
        13 => "TenthsOfGrams",
        14 => "HundredthsOfFluidOunces",
        15 => "TenthsOfMilliliters",
        16 => "Feet",
        17 => "Meters",
        18 => "Items",
        19 => "Percent",
        _ => "Other",
    }
}

/// IANA PrtAlertCodeTC names (the common ones).
pub fn alert_code_name(code: i64) -> Option<&'static str> {
    Some(match code {
        1 => "other",
        2 => "unknown",
        3 => "coverOpen",
        4 => "coverClosed",
        5 => "interlockOpen",
        6 => "interlockClosed",
        7 => "configurationChange",
        8 => "jam",
        9 => "subunitMissing",
        10 => "subunitLifeAlmostOver",
        11 => "subunitLifeOver",
        12 => "subunitAlmostEmpty",
        13 => "subunitEmpty",
        14 => "subunitAlmostFull",
        15 => "subunitFull",
        16 => "subunitNearLimit",
        17 => "subunitAtLimit",
        18 => "subunitOpened",
        19 => "subunitClosed",
        20 => "subunitTurnedOn",
        21 => "subunitTurnedOff",
        22 => "subunitOffline",
        23 => "subunitPowerSaver",
        24 => "subunitWarmingUp",
        25 => "subunitAdded",
        26 => "subunitRemoved",
        29 => "subunitRecoverableFailure",
        30 => "subunitUnrecoverableFailure",
        501 => "doorOpen",
        502 => "doorClosed",
        503 => "powerUp",
        504 => "powerDown",
        505 => "printerNMSReset",
        506 => "printerManualReset",
        507 => "printerReadyToPrint",
        801 => "inputMediaTrayMissing",
        807 => "inputMediaSupplyLow",
        808 => "inputMediaSupplyEmpty",
        809 => "inputMediaChangeRequest",
        810 => "inputManualInputRequest",
        901 => "outputMediaTrayMissing",
        902 => "outputMediaTrayAlmostFull",
        903 => "outputMediaTrayFull",
        1001 => "markerFuserUnderTemperature",
        1002 => "markerFuserOverTemperature",
        1101 => "markerTonerEmpty",
        1102 => "markerInkEmpty",
        1104 => "markerTonerAlmostEmpty",
        1105 => "markerInkAlmostEmpty",
        1107 => "markerWasteTonerReceptacleAlmostFull",
        1109 => "markerWasteTonerReceptacleFull",
        1111 => "markerOpcLifeAlmostOver",
        1112 => "markerOpcLifeOver",
        1113 => "markerDeveloperAlmostEmpty",
        1114 => "markerDeveloperEmpty",
        1115 => "markerTonerCartridgeMissing",
        1301 => "mediaPathMediaTrayMissing",
        1302 => "mediaPathMediaTrayAlmostFull",
        1303 => "mediaPathMediaTrayFull",
        1801 => "alertRemovalOfBinaryChangeEntry",
        _ => return None,
    })
}

const ERROR_STATE_BITS: [&str; 16] = [
    "lowPaper",
    "noPaper",
    "lowToner",
    "noToner",
    "doorOpen",
    "jammed",
    "offline",
    "serviceRequested",
    "inputTrayMissing",
    "outputTrayMissing",
    "markerSupplyMissing",
    "outputNearFull",
    "outputFull",
    "inputTrayEmpty",
    "overduePreventMaint",
    "bit15",
];

/// Names the bits set in hrPrinterDetectedErrorState (bit 0 = MSB of the first octet;
/// missing octets read as zero).
pub fn error_state_bits(bytes: &[u8]) -> Vec<&'static str> {
    let mut out = Vec::new();
    for (i, name) in ERROR_STATE_BITS.iter().enumerate() {
        let byte = i / 8;
        let bit = 7 - (i % 8);
        if bytes.get(byte).is_some_and(|b| b & (1 << bit) != 0) {
            out.push(*name);
        }
    }
    out
}

/// hrPrinterDetectedErrorState bits that stop the printer (RFC 3805's critical ones).
pub const CRITICAL_ERROR_BITS: [&str; 8] = [
    "noPaper",
    "noToner",
    "doorOpen",
    "jammed",
    "inputTrayMissing",
    "outputTrayMissing",
    "markerSupplyMissing",
    "outputFull",
];

fn printer_state(dev: Option<i64>, prt: Option<i64>, bits: &[&str]) -> &'static str {
    let has = |n: &str| bits.contains(&n);
    let critical = CRITICAL_ERROR_BITS.iter().any(|b| has(b));
    match (dev, prt) {
        (Some(5), _) if has("offline") => "offline",
        (Some(5), _) if critical => "criticalAlert",
        (Some(5), _) => "unavailable",
        (Some(3), _) if has("offline") => "offline",
        (Some(3), _) => "nonCriticalAlert",
        (Some(2), Some(3)) => "idle",
        (Some(2), Some(4)) => "busy",
        (Some(2), Some(5)) => "warmup",
        (Some(2), Some(1)) => "standby",
        (Some(2), None) => "idle",
        _ => "unknown",
    }
}

/// Decodes collected values into a report.
pub fn decode(c: &Collected<'_>) -> PrinterReport {
    let sys_descr = text_of(c.first(oids::SYS_DESCR));
    let sys_object_id = c
        .first(oids::SYS_OBJECT_ID)
        .and_then(Value::as_oid)
        .cloned();
    let enterprise = sys_object_id.as_ref().and_then(|o| {
        o.suffix(&Oid::from_slice(&[1, 3, 6, 1, 4, 1]))
            .and_then(|s| s.first().copied())
    });
    let library = c.library;
    let vendor = enterprise.and_then(|e| library.vendor(e));

    // The printer's hrDeviceIndex: the hrDeviceTable row typed hrDevicePrinter, else the
    // first index used by the Printer-MIB supplies or markers.
    let hr_index = c
        .column(oids::HR_DEVICE_TYPE)
        .find(|(_, v)| {
            v.as_oid()
                .is_some_and(|o| o.arcs() == oids::HR_DEVICE_PRINTER)
        })
        .map(|(s, _)| s[0])
        .or_else(|| {
            c.column(oids::PRT_SUPPLIES_DESCRIPTION)
                .next()
                .map(|(s, _)| s[0])
        })
        .or_else(|| {
            c.column(oids::PRT_MARKER_LIFE_COUNT)
                .next()
                .map(|(s, _)| s[0])
        });
    let hr_ix = hr_index.map(|i| vec![i]).unwrap_or_default();
    let hr_device_descr = hr_index.and_then(|i| text_of(c.cell(oids::HR_DEVICE_DESCR, &[i])));

    // IEEE 1284 device ID: PWG Port Monitor MIB, then vendor objects.
    let device_id = text_of(c.first(oids::PPM_1284_DEVICE_ID)).or_else(|| {
        vendor
            .into_iter()
            .chain(library.vendors.iter())
            .flat_map(|v| v.device_id.iter())
            .find_map(|o| text_of(c.get(o)))
    });
    let fields = device_id
        .as_deref()
        .map(text::parse_1284)
        .unwrap_or_default();

    let descr_lower = sys_descr
        .as_deref()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let brand = library
        .brands
        .iter()
        .find(|b| descr_lower.starts_with(&b.prefix))
        .map(|b| (b.oem, b.name.as_str()));
    let manufacturer = text::field_1284(&fields, &["MFG", "MANUFACTURER"])
        .map(maker_name)
        .or_else(|| {
            brand
                .filter(|(is_oem, _)| *is_oem)
                .map(|(_, n)| n.to_string())
        })
        .or_else(|| vendor.map(|v| v.name.clone()))
        .or_else(|| brand.map(|(_, n)| n.to_string()));

    let raw_model = text::field_1284(&fields, &["MDL", "MODEL"])
        .map(str::to_string)
        .or_else(|| vendor.and_then(|v| v.model.iter().find_map(|o| ident_of(c.get(o)))))
        .or_else(|| hr_device_descr.clone());
    let model_name = raw_model.map(|m| strip_model(&m, manufacturer.as_deref()));

    let (serial_number, serial_source) = serial(c, &hr_ix, vendor, library, &fields);

    let firmware_version = vendor
        .and_then(|v| v.firmware.iter().find_map(|o| ident_of(c.get(o))))
        .or_else(|| firmware_from_descr(sys_descr.as_deref().unwrap_or_default()));

    let uptime_ticks = c
        .first(oids::HR_SYSTEM_UPTIME)
        .and_then(Value::as_u64)
        .or_else(|| c.first(oids::SYS_UPTIME).and_then(Value::as_u64));
    let sys_uptime = c.first(oids::SYS_UPTIME).and_then(Value::as_u64);

    let hr_device_status = hr_index.and_then(|i| c.int(oids::HR_DEVICE_STATUS, &[i]));
    let hr_printer_status = hr_index.and_then(|i| c.int(oids::HR_PRINTER_STATUS, &[i]));
    let bits = hr_index
        .and_then(|i| c.cell(oids::HR_PRINTER_ERROR_STATE, &[i]))
        .and_then(Value::as_bytes)
        .map(error_state_bits)
        .unwrap_or_default();

    let mut device = Device {
        ip_address: c.ip.map(|i| i.to_string()),
        mac_address: mac(c),
        serial_source,
        sys_name: text_of(c.first(oids::SYS_NAME)),
        sys_descr: sys_descr.clone(),
        sys_object_id: sys_object_id.map(|o| o.to_string()),
        sys_location: text_of(c.first(oids::SYS_LOCATION)),
        sys_contact: text_of(c.first(oids::SYS_CONTACT)),
        printer_name: c
            .column(oids::PRT_GENERAL_PRINTER_NAME)
            .find_map(|(_, v)| text_of(Some(v))),
        ieee1284_device_id: device_id,
        firmware_version,
        uptime_seconds: uptime_ticks.map(|t| t / 100),
        last_boot_at: uptime_ticks.map(|t| c.collected_at - i64::try_from(t).unwrap_or(0) * 10),
        hr_device_index: hr_index,
        hr_device_descr,
        hr_device_status,
        hr_printer_status,
        printer_state: printer_state(hr_device_status, hr_printer_status, &bits),
        hr_printer_detected_error_state: bits,
        console_display: c
            .column(oids::PRT_CONSOLE_TEXT)
            .filter_map(|(_, v)| text_of(Some(v)))
            .collect(),
        input_trays: inputs(c),
        snmp_version: c.version,
        cuts: Vec::new(),
        quirks: None,
        printer_uuid: None,
        source: None,
        unavailable: Vec::new(),
    };
    let mut counters = counters(c, hr_index);
    let (meters, meters_cut) = super::meters::decode(c, &mut counters);
    device.cuts.extend(meters_cut);

    PrinterReport {
        manufacturer,
        model_name,
        serial_number,
        collected_at: c.collected_at,
        counters,
        meters,
        supplies: {
            let mut s = supplies(c);
            super::meters::supply_ids(c, &mut s);
            s
        },
        alerts: alerts(c, sys_uptime),
        device,
    }
}

/// The maker's name as the agent spells it (one key per printer, whichever source named
/// it): HP's 1284 IDs say "Hewlett-Packard".
pub(super) fn maker_name(m: &str) -> String {
    if m.eq_ignore_ascii_case("hewlett-packard") {
        "HP".to_string()
    } else {
        m.to_string()
    }
}

pub(super) fn strip_model(model: &str, manufacturer: Option<&str>) -> String {
    let mut m = model.trim().to_string();
    let mut prefixes: Vec<String> = manufacturer
        .map(|s| vec![s.to_string()])
        .unwrap_or_default();
    prefixes.extend(
        [
            "HP",
            "Hewlett-Packard",
            "Brother",
            "Lexmark",
            "Dell",
            "Canon",
            "Kyocera",
            "KONICA MINOLTA",
            "Xerox",
            "Ricoh",
            "Epson",
            "Sharp",
        ]
        .map(String::from),
    );
    for p in prefixes {
        if m.len() > p.len() + 1
            // `get`: the model may start with a multi-byte character, where a prefix's
            // length is not a character boundary.
            && m.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(&p))
            && m.as_bytes()[p.len()] == b' '
        {
            m = m[p.len() + 1..].trim_start().to_string();
            break;
        }
    }
    if let Some(s) = m
        .strip_suffix(" series")
        .or_else(|| m.strip_suffix(" Series"))
    {
        m = s.trim_end().to_string();
    }
    m
}

fn firmware_from_descr(d: &str) -> Option<String> {
    for key in ["version ", "Firmware Ver."] {
        if let Some(i) = d.find(key) {
            let rest = &d[i + key.len()..];
            let v: String = rest
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != ',' && *c != ';')
                .collect();
            if !v.is_empty() {
                return Some(v);
            }
        }
    }
    None
}

fn serial(
    c: &Collected<'_>,
    hr_ix: &[u32],
    vendor: Option<&super::library::VendorData>,
    library: &super::library::Library,
    fields: &[(String, String)],
) -> (Option<String>, Option<String>) {
    let from_prt = (!hr_ix.is_empty())
        .then(|| ident_of(c.cell(oids::PRT_GENERAL_SERIAL_NUMBER, hr_ix)))
        .flatten()
        .or_else(|| {
            c.column(oids::PRT_GENERAL_SERIAL_NUMBER)
                .find_map(|(_, v)| ident_of(Some(v)))
        });
    if let Some(s) = from_prt {
        return (Some(s), Some("prtGeneralSerialNumber".into()));
    }
    // The detected vendor's objects first, then every vendor's (OEM devices often
    // implement another maker's MIB: Brother answers HP's serial object).
    for v in vendor.into_iter().chain(library.vendors.iter()) {
        for o in &v.serial {
            if let Some(s) = ident_of(c.get(o)) {
                return (Some(s), Some(format!("vendor:{}", v.name)));
            }
        }
    }
    if let Some(s) = text::field_1284(fields, &["SN", "SERN", "SERIALNUMBER"])
        .and_then(|s| text::identity(s.as_bytes()))
    {
        return (Some(s), Some("ieee1284".into()));
    }
    (None, None)
}

fn mac(c: &Collected<'_>) -> Option<String> {
    if let Some(IpAddr::V4(ip)) = c.ip {
        let ix: Vec<u32> = ip.octets().iter().map(|&b| u32::from(b)).collect();
        if let Some(if_index) = c.int(oids::IP_AD_ENT_IF_INDEX, &ix)
            && let Ok(i) = u32::try_from(if_index)
            && let Some(m) = c
                .cell(oids::IF_PHYS_ADDRESS, &[i])
                .and_then(Value::as_bytes)
                .and_then(text::mac)
        {
            return Some(m);
        }
    }
    let physical = |ix: &[u32]| matches!(c.int(oids::IF_TYPE, ix), Some(6) | Some(71));
    c.column(oids::IF_PHYS_ADDRESS)
        .filter(|(ix, _)| physical(ix))
        .find_map(|(_, v)| v.as_bytes().and_then(text::mac))
        .or_else(|| {
            c.column(oids::IF_PHYS_ADDRESS)
                .find_map(|(_, v)| v.as_bytes().and_then(text::mac))
        })
}

fn counters(c: &Collected<'_>, hr_index: Option<u32>) -> Counters {
    let rows = c.rows(&[
        oids::PRT_MARKER_LIFE_COUNT,
        oids::PRT_MARKER_COUNTER_UNIT,
        oids::PRT_MARKER_POWER_ON_COUNT,
    ]);
    let markers: Vec<Marker> = rows
        .iter()
        .map(|ix| Marker {
            index: index_str(ix),
            life_count: c
                .cell(oids::PRT_MARKER_LIFE_COUNT, ix)
                .and_then(Value::as_u64),
            power_on_count: c
                .cell(oids::PRT_MARKER_POWER_ON_COUNT, ix)
                .and_then(Value::as_u64),
            counter_unit: c.int(oids::PRT_MARKER_COUNTER_UNIT, ix),
            process_colorants: c.int(oids::PRT_MARKER_PROCESS_COLORANTS, ix),
        })
        .collect();
    let main = rows
        .iter()
        .position(|ix| Some(ix[0]) == hr_index && c.cell(oids::PRT_MARKER_LIFE_COUNT, ix).is_some())
        .or_else(|| {
            rows.iter()
                .position(|ix| c.cell(oids::PRT_MARKER_LIFE_COUNT, ix).is_some())
        });
    let mut out = Counters::default();
    if let Some(m) = main {
        let mk = &markers[m];
        out.lifetime_count = mk.life_count;
        out.lifetime_count_unit = mk.counter_unit.map(|u| match u {
            7 => "Sides".to_string(),
            8 => "Sheets".to_string(),
            _ => "Other".to_string(),
        });
        out.ext.prt_marker_counter_unit = mk.counter_unit;
        out.ext.prt_marker_power_on_count = mk.power_on_count;
        out.ext.sources.insert(
            "lifetimeCount".into(),
            format!("printer-mib:prtMarkerLifeCount.{}", mk.index),
        );
    }
    out.ext.markers = markers;
    pwg_counters(c, &mut out);
    out
}

/// PWG Imaging System Counters: lifetime (persistence 3) work totals (work type 3) per
/// service key (systemTotals 3, print 11, copy 4, faxIn 7).
fn pwg_counters(c: &Collected<'_>, out: &mut Counters) {
    for (key_ix, v) in c.column(oids::IC_KEY_SERVICE_TYPE) {
        let Some(service) = v.as_i64() else { continue };
        let key = key_ix[0];
        let cell = |col: &[u32]| c.cell(col, &[key, 3, 3]).and_then(Value::as_u64);
        let mut set = |name: &str, field: &mut Option<u64>, col: &[u32], col_name: &str| {
            if let Some(val) = cell(col) {
                *field = Some(val);
                out.ext
                    .sources
                    .insert(name.into(), format!("pwg:{col_name}.{key}.3.3"));
            }
        };
        let (mut a, mut b, mut d, mut e) = (None, None, None, None);
        match service {
            3 => {
                set(
                    "totalSideCount",
                    &mut a,
                    oids::IC_IMP_TOTAL,
                    "icImpressionTotalImps",
                );
                set(
                    "monoSideCount",
                    &mut b,
                    oids::IC_IMP_MONO,
                    "icImpressionMonochromeImps",
                );
                set(
                    "colorSideCount",
                    &mut d,
                    oids::IC_IMP_FULL_COLOR,
                    "icImpressionFullColorImps",
                );
                set(
                    "totalSheetCount",
                    &mut e,
                    oids::IC_SHEET_TOTAL,
                    "icSheetTotalSheets",
                );
                out.total_side_count = a.or(out.total_side_count);
                out.mono_side_count = b.or(out.mono_side_count);
                out.color_side_count = d.or(out.color_side_count);
                out.total_sheet_count = e.or(out.total_sheet_count);
            }
            11 => {
                set(
                    "printSideCount",
                    &mut a,
                    oids::IC_IMP_TOTAL,
                    "icImpressionTotalImps",
                );
                set(
                    "monoPrintSideCount",
                    &mut b,
                    oids::IC_IMP_MONO,
                    "icImpressionMonochromeImps",
                );
                set(
                    "colorPrintSideCount",
                    &mut d,
                    oids::IC_IMP_FULL_COLOR,
                    "icImpressionFullColorImps",
                );
                out.print_side_count = a.or(out.print_side_count);
                out.mono_print_side_count = b.or(out.mono_print_side_count);
                out.color_print_side_count = d.or(out.color_print_side_count);
            }
            4 => {
                set(
                    "copySideCount",
                    &mut a,
                    oids::IC_IMP_TOTAL,
                    "icImpressionTotalImps",
                );
                set(
                    "monoCopySideCount",
                    &mut b,
                    oids::IC_IMP_MONO,
                    "icImpressionMonochromeImps",
                );
                set(
                    "colorCopySideCount",
                    &mut d,
                    oids::IC_IMP_FULL_COLOR,
                    "icImpressionFullColorImps",
                );
                out.copy_side_count = a.or(out.copy_side_count);
                out.mono_copy_side_count = b.or(out.mono_copy_side_count);
                out.color_copy_side_count = d.or(out.color_copy_side_count);
            }
            7 => {
                set(
                    "faxSideCount",
                    &mut a,
                    oids::IC_IMP_TOTAL,
                    "icImpressionTotalImps",
                );
                out.fax_side_count = a.or(out.fax_side_count);
            }
            _ => {}
        }
    }
}

fn supplies(c: &Collected<'_>) -> Vec<Supply> {
    let rows = c.rows(&[
        oids::PRT_SUPPLIES_DESCRIPTION,
        oids::PRT_SUPPLIES_LEVEL,
        oids::PRT_SUPPLIES_TYPE,
        oids::PRT_SUPPLIES_MAX_CAPACITY,
        oids::PRT_SUPPLIES_CLASS,
    ]);
    rows.iter()
        .filter(|ix| ix.len() == 2)
        .map(|ix| {
            let class = c.int(oids::PRT_SUPPLIES_CLASS, ix);
            let kind = c.int(oids::PRT_SUPPLIES_TYPE, ix);
            let unit = c.int(oids::PRT_SUPPLIES_UNIT, ix);
            let max = c.int(oids::PRT_SUPPLIES_MAX_CAPACITY, ix);
            let level = c.int(oids::PRT_SUPPLIES_LEVEL, ix);
            let colorant_index = c.int(oids::PRT_SUPPLIES_COLORANT_INDEX, ix);
            let colorant_value = colorant_index
                .filter(|&ci| ci > 0)
                .and_then(|ci| u32::try_from(ci).ok())
                .and_then(|ci| c.text(oids::PRT_COLORANT_VALUE, &[ix[0], ci]))
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty());
            let color = match (colorant_index, &colorant_value) {
                (Some(0), _) => Some("none".to_string()),
                (_, Some(v)) => Some(text::capitalize(v)),
                _ => None,
            };
            supply_row(SupplyRow {
                source: "printer-mib",
                hr_index: ix[0],
                index: ix[1],
                class,
                kind,
                unit,
                max,
                level,
                color,
                colorant_value,
                description: c.text(oids::PRT_SUPPLIES_DESCRIPTION, ix),
            })
        })
        .collect()
}

/// One supply row in the Printer-MIB's terms, whichever source read it.
pub(super) struct SupplyRow {
    /// `printer-mib` or `ipp`.
    pub source: &'static str,
    /// hrDeviceIndex.
    pub hr_index: u32,
    /// prtMarkerSuppliesIndex.
    pub index: u32,
    /// prtMarkerSuppliesClass, raw.
    pub class: Option<i64>,
    /// prtMarkerSuppliesType, raw.
    pub kind: Option<i64>,
    /// prtMarkerSuppliesSupplyUnit, raw.
    pub unit: Option<i64>,
    /// prtMarkerSuppliesMaxCapacity, raw.
    pub max: Option<i64>,
    /// prtMarkerSuppliesLevel, raw (−1/−2/−3 kept).
    pub level: Option<i64>,
    /// The colour shown.
    pub color: Option<String>,
    /// The colorant's own text.
    pub colorant_value: Option<String>,
    /// The supply's description.
    pub description: Option<String>,
}

/// Builds a supply from its raw row: the percentage only when computable, and a
/// receptacle's level read as free space.
pub(super) fn supply_row(r: SupplyRow) -> Supply {
    let pct = r.level.and_then(|l| percent(l, r.max, r.unit));
    let receptacle = r.class == Some(4);
    Supply {
        supply_key: format!("m:{}.{}", r.hr_index, r.index),
        serial_number: None,
        current_level: pct,
        color: r.color,
        description: r.description,
        maximum_capacity: r.max.filter(|&m| m >= 0),
        kind: r.kind.map(|k| supply_display_type(k).to_string()),
        capacity_unit: r.unit.map(|u| unit_display(u).to_string()),
        percent_remaining: if receptacle { None } else { pct },
        ext: SupplyExt {
            source: r.source,
            hr_device_index: r.hr_index,
            prt_marker_supplies_index: r.index,
            prt_marker_supplies_class: r.class,
            prt_marker_supplies_type: r.kind,
            type_name: r.kind.and_then(supply_type_name),
            prt_marker_supplies_supply_unit: r.unit,
            prt_marker_supplies_max_capacity: r.max,
            prt_marker_supplies_level: r.level,
            level_state: r.level.map(level_state),
            colorant_value: r.colorant_value,
            percent_filled: if receptacle {
                pct.map(|p| 100 - p)
            } else {
                None
            },
            part_number: None,
        },
    }
}

fn alerts(c: &Collected<'_>, sys_uptime: Option<u64>) -> Vec<Alert> {
    let rows = c.rows(&[
        oids::PRT_ALERT_SEVERITY,
        oids::PRT_ALERT_CODE,
        oids::PRT_ALERT_DESCRIPTION,
    ]);
    rows.iter()
        .filter(|ix| ix.len() == 2)
        .map(|ix| {
            let severity = c.int(oids::PRT_ALERT_SEVERITY, ix);
            let group = c.int(oids::PRT_ALERT_GROUP, ix);
            let group_index = c.int(oids::PRT_ALERT_GROUP_INDEX, ix);
            let location = c.int(oids::PRT_ALERT_LOCATION, ix);
            let code = c.int(oids::PRT_ALERT_CODE, ix);
            let time = c.cell(oids::PRT_ALERT_TIME, ix).and_then(Value::as_u64);
            let f = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |x| x.to_string());
            let mut key = format!("a:{}.{}.{}", f(group), f(group_index), f(code));
            if let Some(l) = location.filter(|l| *l >= 0) {
                key.push_str(&format!(".{l}"));
            }
            Alert {
                alert_key: key,
                status: match severity {
                    Some(3) => Some("ERROR"),
                    Some(1 | 4 | 5) => Some("WARNING"),
                    _ => None,
                },
                issue: c
                    .cell(oids::PRT_ALERT_DESCRIPTION, ix)
                    .and_then(Value::as_bytes)
                    .map(text::decode),
                ext: AlertExt {
                    source: "printer-mib",
                    prt_alert_index: ix[1],
                    prt_alert_severity_level: severity,
                    prt_alert_training_level: c.int(oids::PRT_ALERT_TRAINING, ix),
                    prt_alert_group: group,
                    prt_alert_group_index: group_index,
                    prt_alert_location: location,
                    prt_alert_code: code,
                    code_name: code.and_then(alert_code_name),
                    prt_alert_time: time,
                    raised_at: match (time, sys_uptime) {
                        (Some(t), Some(u)) if u >= t => {
                            Some(c.collected_at - i64::try_from(u - t).unwrap_or(0) * 10)
                        }
                        _ => None,
                    },
                    binary: matches!(severity, Some(3 | 5)),
                    supply_alert: matches!(group, Some(11 | 12)),
                },
            }
        })
        .collect()
}

fn inputs(c: &Collected<'_>) -> Vec<InputTray> {
    let rows = c.rows(&[
        oids::PRT_INPUT_NAME,
        oids::PRT_INPUT_MAX_CAPACITY,
        oids::PRT_INPUT_CURRENT_LEVEL,
    ]);
    rows.iter()
        .filter(|ix| ix.len() == 2)
        .map(|ix| {
            let max = c.int(oids::PRT_INPUT_MAX_CAPACITY, ix);
            let level = c.int(oids::PRT_INPUT_CURRENT_LEVEL, ix);
            InputTray {
                index: index_str(ix),
                name: text_of(c.cell(oids::PRT_INPUT_NAME, ix)),
                media_name: text_of(c.cell(oids::PRT_INPUT_MEDIA_NAME, ix)),
                input_type: c.int(oids::PRT_INPUT_TYPE, ix),
                max_capacity: max,
                current_level: level,
                level_state: level.map(level_state),
                percent: level.and_then(|l| percent(l, max, None)),
                capacity_unit: c.int(oids::PRT_INPUT_CAPACITY_UNIT, ix),
                status: c.int(oids::PRT_INPUT_STATUS, ix),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
