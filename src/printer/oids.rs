//! The one table of OIDs the agent reads from a printer, and vendor knowledge as data.
//!
//! Every object is fetched either as the first instance under it (`First`, sent as a
//! GETNEXT of the object, so index-agnostic) or as a whole column (`Column`, walked).
//! Column OIDs are given without instance; tables are indexed first by hrDeviceIndex,
//! which is discovered, never assumed to be 1.

/// The report section an object feeds, and its name when it is in the poll plan (or a
/// row of a column that is): what a reading says it could not read.
pub fn describe(oid: &fleet_snmp::Oid) -> (&'static str, Option<&'static str>) {
    let arcs = oid.arcs();
    let name = STANDARD
        .iter()
        .filter(|o| arcs.starts_with(o.oid))
        .max_by_key(|o| o.oid.len())
        .map(|o| o.name);
    const SECTIONS: &[(&[u32], &str)] = &[
        (&[1, 3, 6, 1, 2, 1, 43, 11], "supplies"),
        (&[1, 3, 6, 1, 2, 1, 43, 12], "supplies"),
        (&[1, 3, 6, 1, 2, 1, 43, 18], "alerts"),
        (&[1, 3, 6, 1, 2, 1, 43, 10], "counters"),
        (&[1, 3, 6, 1, 4, 1, 2699], "counters"),
        (&[1, 3, 6, 1, 2, 1, 43, 8], "inputTrays"),
        (&[1, 3, 6, 1, 2, 1, 43, 16], "console"),
        (&[1, 3, 6, 1, 2, 1, 25, 3], "status"),
    ];
    let section = SECTIONS
        .iter()
        .find(|(p, _)| arcs.starts_with(p))
        .map_or("identity", |(_, s)| s);
    (section, name)
}

/// How an object is fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetch {
    /// The first instance under the OID (scalars such as sysDescr.0).
    First,
    /// Every instance under the OID (a table column).
    Column,
}

/// One object of the poll plan.
#[derive(Clone, Copy, Debug)]
pub struct Object {
    /// MIB name, for documentation and `walk` annotations.
    pub name: &'static str,
    /// OID (object or column, without instance suffix).
    pub oid: &'static [u32],
    /// How it is fetched.
    pub fetch: Fetch,
}

macro_rules! objects {
    ($( $konst:ident = $name:literal, $fetch:ident, [$($arc:literal),+] ; )+) => {
        $( #[doc = concat!("`", $name, "`")] pub const $konst: &[u32] = &[$($arc),+]; )+
        /// Every object of the standard poll plan.
        pub const STANDARD: &[Object] = &[
            $( Object { name: $name, oid: $konst, fetch: Fetch::$fetch }, )+
        ];
    };
}

objects! {
    // SNMPv2-MIB system group (RFC 3418)
    SYS_DESCR = "sysDescr", First, [1,3,6,1,2,1,1,1];
    SYS_OBJECT_ID = "sysObjectID", First, [1,3,6,1,2,1,1,2];
    SYS_UPTIME = "sysUpTime", First, [1,3,6,1,2,1,1,3];
    SYS_CONTACT = "sysContact", First, [1,3,6,1,2,1,1,4];
    SYS_NAME = "sysName", First, [1,3,6,1,2,1,1,5];
    SYS_LOCATION = "sysLocation", First, [1,3,6,1,2,1,1,6];
    // HOST-RESOURCES-MIB (RFC 2790)
    HR_SYSTEM_UPTIME = "hrSystemUptime", First, [1,3,6,1,2,1,25,1,1];
    HR_DEVICE_TYPE = "hrDeviceType", Column, [1,3,6,1,2,1,25,3,2,1,2];
    HR_DEVICE_DESCR = "hrDeviceDescr", Column, [1,3,6,1,2,1,25,3,2,1,3];
    HR_DEVICE_STATUS = "hrDeviceStatus", Column, [1,3,6,1,2,1,25,3,2,1,5];
    HR_PRINTER_STATUS = "hrPrinterStatus", Column, [1,3,6,1,2,1,25,3,5,1,1];
    HR_PRINTER_ERROR_STATE = "hrPrinterDetectedErrorState", Column, [1,3,6,1,2,1,25,3,5,1,2];
    // IF-MIB / IP-MIB: MAC of the polled address
    IF_TYPE = "ifType", Column, [1,3,6,1,2,1,2,2,1,3];
    IF_PHYS_ADDRESS = "ifPhysAddress", Column, [1,3,6,1,2,1,2,2,1,6];
    IP_AD_ENT_IF_INDEX = "ipAdEntIfIndex", Column, [1,3,6,1,2,1,4,20,1,2];
    // Printer-MIB (RFC 3805)
    PRT_GENERAL_PRINTER_NAME = "prtGeneralPrinterName", Column, [1,3,6,1,2,1,43,5,1,1,16];
    PRT_GENERAL_SERIAL_NUMBER = "prtGeneralSerialNumber", Column, [1,3,6,1,2,1,43,5,1,1,17];
    PRT_INPUT_TYPE = "prtInputType", Column, [1,3,6,1,2,1,43,8,2,1,2];
    PRT_INPUT_CAPACITY_UNIT = "prtInputCapacityUnit", Column, [1,3,6,1,2,1,43,8,2,1,8];
    PRT_INPUT_MAX_CAPACITY = "prtInputMaxCapacity", Column, [1,3,6,1,2,1,43,8,2,1,9];
    PRT_INPUT_CURRENT_LEVEL = "prtInputCurrentLevel", Column, [1,3,6,1,2,1,43,8,2,1,10];
    PRT_INPUT_STATUS = "prtInputStatus", Column, [1,3,6,1,2,1,43,8,2,1,11];
    PRT_INPUT_MEDIA_NAME = "prtInputMediaName", Column, [1,3,6,1,2,1,43,8,2,1,12];
    PRT_INPUT_NAME = "prtInputName", Column, [1,3,6,1,2,1,43,8,2,1,13];
    PRT_MARKER_COUNTER_UNIT = "prtMarkerCounterUnit", Column, [1,3,6,1,2,1,43,10,2,1,3];
    PRT_MARKER_LIFE_COUNT = "prtMarkerLifeCount", Column, [1,3,6,1,2,1,43,10,2,1,4];
    PRT_MARKER_POWER_ON_COUNT = "prtMarkerPowerOnCount", Column, [1,3,6,1,2,1,43,10,2,1,5];
    PRT_MARKER_PROCESS_COLORANTS = "prtMarkerProcessColorants", Column, [1,3,6,1,2,1,43,10,2,1,6];
    PRT_SUPPLIES_COLORANT_INDEX = "prtMarkerSuppliesColorantIndex", Column, [1,3,6,1,2,1,43,11,1,1,3];
    PRT_SUPPLIES_CLASS = "prtMarkerSuppliesClass", Column, [1,3,6,1,2,1,43,11,1,1,4];
    PRT_SUPPLIES_TYPE = "prtMarkerSuppliesType", Column, [1,3,6,1,2,1,43,11,1,1,5];
    PRT_SUPPLIES_DESCRIPTION = "prtMarkerSuppliesDescription", Column, [1,3,6,1,2,1,43,11,1,1,6];
    PRT_SUPPLIES_UNIT = "prtMarkerSuppliesSupplyUnit", Column, [1,3,6,1,2,1,43,11,1,1,7];
    PRT_SUPPLIES_MAX_CAPACITY = "prtMarkerSuppliesMaxCapacity", Column, [1,3,6,1,2,1,43,11,1,1,8];
    PRT_SUPPLIES_LEVEL = "prtMarkerSuppliesLevel", Column, [1,3,6,1,2,1,43,11,1,1,9];
    PRT_COLORANT_VALUE = "prtMarkerColorantValue", Column, [1,3,6,1,2,1,43,12,1,1,4];
    PRT_CONSOLE_TEXT = "prtConsoleDisplayBufferText", Column, [1,3,6,1,2,1,43,16,5,1,2];
    PRT_ALERT_SEVERITY = "prtAlertSeverityLevel", Column, [1,3,6,1,2,1,43,18,1,1,2];
    PRT_ALERT_TRAINING = "prtAlertTrainingLevel", Column, [1,3,6,1,2,1,43,18,1,1,3];
    PRT_ALERT_GROUP = "prtAlertGroup", Column, [1,3,6,1,2,1,43,18,1,1,4];
    PRT_ALERT_GROUP_INDEX = "prtAlertGroupIndex", Column, [1,3,6,1,2,1,43,18,1,1,5];
    PRT_ALERT_LOCATION = "prtAlertLocation", Column, [1,3,6,1,2,1,43,18,1,1,6];
    PRT_ALERT_CODE = "prtAlertCode", Column, [1,3,6,1,2,1,43,18,1,1,7];
    PRT_ALERT_DESCRIPTION = "prtAlertDescription", Column, [1,3,6,1,2,1,43,18,1,1,8];
    PRT_ALERT_TIME = "prtAlertTime", Column, [1,3,6,1,2,1,43,18,1,1,9];
    // PWG Port Monitor MIB: IEEE 1284 device ID
    PPM_1284_DEVICE_ID = "ppmPrinterIEEE1284DeviceId", First, [1,3,6,1,4,1,2699,1,2,1,2,1,1,3];
    // PWG-IMAGING-COUNTER-MIB (PWG 5106.1): key → service, impressions and sheets
    IC_KEY_SERVICE_TYPE = "icKeyServiceType", Column, [1,3,6,1,4,1,2699,1,3,1,2,1,1,2];
    IC_IMP_TOTAL = "icImpressionTotalImps", Column, [1,3,6,1,4,1,2699,1,3,1,8,1,1,4];
    IC_IMP_MONO = "icImpressionMonochromeImps", Column, [1,3,6,1,4,1,2699,1,3,1,8,1,1,5];
    IC_IMP_FULL_COLOR = "icImpressionFullColorImps", Column, [1,3,6,1,4,1,2699,1,3,1,8,1,1,7];
    IC_SHEET_TOTAL = "icSheetTotalSheets", Column, [1,3,6,1,4,1,2699,1,3,1,10,1,1,4];
}

/// hrDevicePrinter (the hrDeviceType value of a printer row).
pub const HR_DEVICE_PRINTER: &[u32] = &[1, 3, 6, 1, 2, 1, 25, 3, 1, 5];

/// Vendor knowledge: identity objects a vendor publishes outside the standard MIBs.
/// OIDs are full instance OIDs. Sources: the vendors' MIBs as used by LibreNMS and
/// CUPS/PAPPL, and DATA-MODEL.md §2 for Lexmark (note its pitfalls: the Lexmark serial
/// is 641.2.1.2.1.6.1, not 641.21.… nor 641.4.4.…).
#[derive(Debug)]
pub struct Vendor {
    /// Display name used for `manufacturer` when nothing better is known.
    pub name: &'static str,
    /// IANA enterprise number (the arc after 1.3.6.1.4.1 in sysObjectID).
    pub enterprise: u32,
    /// Serial number objects, tried in order.
    pub serial: &'static [&'static [u32]],
    /// Model name objects, tried in order.
    pub model: &'static [&'static [u32]],
    /// Firmware version objects, tried in order.
    pub firmware: &'static [&'static [u32]],
    /// IEEE 1284 device ID objects.
    pub device_id: &'static [&'static [u32]],
}

/// The vendor table.
pub const VENDORS: &[Vendor] = &[
    Vendor {
        name: "HP",
        enterprise: 11,
        serial: &[&[1, 3, 6, 1, 4, 1, 11, 2, 3, 9, 4, 2, 1, 1, 3, 3, 0]],
        model: &[&[1, 3, 6, 1, 4, 1, 11, 2, 3, 9, 4, 2, 1, 1, 3, 2, 0]],
        firmware: &[&[1, 3, 6, 1, 4, 1, 11, 2, 3, 9, 4, 2, 1, 1, 3, 5, 0]],
        device_id: &[&[1, 3, 6, 1, 4, 1, 11, 2, 3, 9, 1, 1, 7, 0]],
    },
    Vendor {
        name: "Lexmark",
        enterprise: 641,
        serial: &[
            &[1, 3, 6, 1, 4, 1, 641, 2, 1, 2, 1, 6, 1],
            &[1, 3, 6, 1, 4, 1, 641, 6, 2, 3, 1, 5, 1],
        ],
        model: &[
            &[1, 3, 6, 1, 4, 1, 641, 6, 2, 3, 1, 4, 1],
            &[1, 3, 6, 1, 4, 1, 641, 2, 1, 2, 1, 2, 1],
        ],
        firmware: &[&[1, 3, 6, 1, 4, 1, 641, 2, 1, 2, 1, 4, 1]],
        device_id: &[&[1, 3, 6, 1, 4, 1, 641, 2, 1, 2, 1, 3, 1]],
    },
    Vendor {
        name: "Brother",
        enterprise: 2435,
        serial: &[&[1, 3, 6, 1, 4, 1, 2435, 2, 3, 9, 4, 2, 1, 5, 5, 1, 0]],
        model: &[],
        firmware: &[&[1, 3, 6, 1, 4, 1, 2435, 2, 4, 3, 1240, 6, 5, 0]],
        device_id: &[&[1, 3, 6, 1, 4, 1, 2435, 2, 3, 9, 1, 1, 7, 0]],
    },
    Vendor {
        name: "Ricoh",
        enterprise: 367,
        serial: &[&[1, 3, 6, 1, 4, 1, 367, 3, 2, 1, 2, 1, 4, 0]],
        model: &[&[1, 3, 6, 1, 4, 1, 367, 3, 2, 1, 1, 1, 1, 0]],
        firmware: &[&[1, 3, 6, 1, 4, 1, 367, 3, 2, 1, 1, 1, 2, 0]],
        device_id: &[],
    },
    Vendor {
        name: "Kyocera",
        enterprise: 1347,
        serial: &[&[1, 3, 6, 1, 4, 1, 1347, 43, 5, 1, 1, 28, 1]],
        model: &[&[1, 3, 6, 1, 4, 1, 1347, 43, 5, 1, 1, 1, 1]],
        firmware: &[&[1, 3, 6, 1, 4, 1, 1347, 43, 5, 4, 1, 5, 1, 1]],
        device_id: &[],
    },
    Vendor {
        name: "Xerox",
        enterprise: 253,
        serial: &[&[1, 3, 6, 1, 4, 1, 253, 8, 53, 3, 2, 1, 3, 1]],
        model: &[],
        firmware: &[],
        device_id: &[&[1, 3, 6, 1, 4, 1, 253, 8, 51, 1, 2, 1, 20, 1]],
    },
    Vendor {
        name: "Canon",
        enterprise: 1602,
        serial: &[&[1, 3, 6, 1, 4, 1, 1602, 1, 2, 1, 4, 0]],
        model: &[&[1, 3, 6, 1, 4, 1, 1602, 1, 1, 1, 1, 0]],
        firmware: &[&[1, 3, 6, 1, 4, 1, 1602, 1, 1, 1, 4, 0]],
        device_id: &[],
    },
    Vendor {
        name: "Konica Minolta",
        enterprise: 18334,
        serial: &[],
        model: &[&[1, 3, 6, 1, 4, 1, 18334, 1, 1, 1, 1, 6, 2, 1, 0]],
        firmware: &[&[1, 3, 6, 1, 4, 1, 18334, 1, 1, 1, 1, 6, 1, 0]],
        device_id: &[],
    },
    Vendor {
        name: "Epson",
        enterprise: 1248,
        serial: &[&[1, 3, 6, 1, 4, 1, 1248, 1, 1, 3, 1, 1, 1, 0]],
        model: &[],
        firmware: &[],
        device_id: &[],
    },
    Vendor {
        name: "Dell",
        enterprise: 674,
        serial: &[],
        model: &[],
        firmware: &[&[1, 3, 6, 1, 4, 1, 674, 10898, 100, 1, 1, 1, 0]],
        device_id: &[&[1, 3, 6, 1, 4, 1, 674, 10898, 100, 2, 1, 2, 1, 3, 1]],
    },
    Vendor {
        name: "Sharp",
        enterprise: 2385,
        serial: &[],
        model: &[],
        firmware: &[],
        device_id: &[],
    },
    Vendor {
        name: "Samsung",
        enterprise: 236,
        serial: &[],
        model: &[],
        firmware: &[],
        device_id: &[],
    },
    Vendor {
        name: "Toshiba",
        enterprise: 1129,
        serial: &[],
        model: &[],
        firmware: &[],
        device_id: &[],
    },
    Vendor {
        name: "OKI",
        enterprise: 2001,
        serial: &[],
        model: &[],
        firmware: &[],
        device_id: &[],
    },
    Vendor {
        name: "Fujifilm",
        enterprise: 297,
        serial: &[],
        model: &[],
        firmware: &[],
        device_id: &[],
    },
    Vendor {
        name: "Zebra",
        enterprise: 10642,
        serial: &[],
        model: &[],
        firmware: &[],
        device_id: &[],
    },
    Vendor {
        name: "Panasonic",
        enterprise: 258,
        serial: &[],
        model: &[],
        firmware: &[],
        device_id: &[],
    },
    Vendor {
        name: "Pantum",
        enterprise: 40093,
        serial: &[],
        model: &[],
        firmware: &[],
        device_id: &[],
    },
];

/// Brand names that OEM devices show in sysDescr while using another vendor's enterprise
/// number (UTAX and TA use Kyocera's, Savin/Lanier/Gestetner/NRG use Ricoh's, Develop
/// uses Konica Minolta's). Matched case-insensitively at the start of sysDescr.
pub const BRANDS: &[(&str, &str)] = &[
    ("ta_utax", "UTAX"),
    ("utax", "UTAX"),
    ("triumph-adler", "TA Triumph-Adler"),
    ("develop", "Develop"),
    ("gestetner", "Gestetner"),
    ("lanier", "Lanier"),
    ("savin", "Savin"),
    ("nrg", "NRG"),
    ("dell", "Dell"),
    ("fuji xerox", "Fuji Xerox"),
    ("fujifilm", "Fujifilm"),
    ("xerox", "Xerox"),
    ("konica minolta", "Konica Minolta"),
    ("kyocera", "Kyocera"),
    ("lexmark", "Lexmark"),
    ("brother", "Brother"),
    ("canon", "Canon"),
    ("epson", "Epson"),
    ("ricoh", "Ricoh"),
    ("sharp", "Sharp"),
    ("samsung", "Samsung"),
    ("toshiba", "Toshiba"),
    ("oki", "OKI"),
    ("zebra", "Zebra"),
    ("hp ", "HP"),
];

/// The [`BRANDS`] that are OEM labels on another maker's enterprise number: their name
/// wins over that maker's.
pub const OEM_BRANDS: &[&str] = &[
    "ta_utax",
    "utax",
    "triumph-adler",
    "develop",
    "gestetner",
    "lanier",
    "savin",
    "nrg",
    "dell",
];

/// Returns the vendor entry for an enterprise number.
pub fn vendor(enterprise: u32) -> Option<&'static Vendor> {
    VENDORS.iter().find(|v| v.enterprise == enterprise)
}

/// Every vendor instance OID, fetched as `First` objects (their parent) in the poll.
pub fn vendor_objects() -> Vec<&'static [u32]> {
    let mut v: Vec<&'static [u32]> = Vec::new();
    for ven in VENDORS {
        for set in [ven.serial, ven.model, ven.firmware, ven.device_id] {
            v.extend(set.iter().copied());
        }
    }
    v
}

/// Looks up the MIB name of a column or object OID (for annotating walks).
pub fn name_of(oid: &[u32]) -> Option<&'static str> {
    STANDARD
        .iter()
        .filter(|o| oid.starts_with(o.oid))
        .max_by_key(|o| o.oid.len())
        .map(|o| o.name)
}
