//! Meters: a printer's usage counters beyond the Printer-MIB's lifetime count (print,
//! copy, fax, scan; mono and colour; sides, sheets, length), as the support library maps
//! them per vendor ([`MeterMap`], inside [`crate::library::VendorData`]) and as a report
//! carries them ([`Meter`]: one entry per counter read, known or not).
//!
//! A map names the vendor subtrees that hold counters (walked whole, so a counter the map
//! does not know is still listed with its OID and value) and rules giving the meaning of
//! the ones it knows. A rule fills one of the seed's `counters` fields only when it says
//! so and its unit is the field's (sides for `…SideCount`, sheets for `…SheetCount`): a
//! meaning the vendor's documentation leaves open stays a meter, never a guessed counter.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// An OID written as dotted text in the library (`"1.3.6.1.4.1.11.2"`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dotted(pub Vec<u32>);

impl fmt::Display for Dotted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Dotted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Dotted {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dotted {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.trim_start_matches('.')
            .split('.')
            .map(str::parse::<u32>)
            .collect::<Result<Vec<u32>, _>>()
            .map(Dotted)
            .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a dotted OID")))
    }
}

/// A rule's OID: dotted arcs where `*` stands for any one arc
/// (`"1.3.6.1.4.1.2385.1.1.19.2.1.3.1.4.*"`).
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern(pub Vec<Option<u32>>);

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            match a {
                Some(a) => write!(f, "{a}")?,
                None => f.write_str("*")?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.trim_start_matches('.')
            .split('.')
            .map(|a| {
                if a == "*" {
                    Ok(None)
                } else {
                    a.parse::<u32>().map(Some)
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Pattern)
            .map_err(|_| {
                serde::de::Error::custom(format!(
                    "{s:?} is not a dotted OID pattern (numbers and '*')"
                ))
            })
    }
}

impl Pattern {
    /// Tells whether `oid` is the pattern, arc for arc.
    pub fn matches(&self, oid: &[u32]) -> bool {
        oid.len() == self.0.len()
            && self
                .0
                .iter()
                .zip(oid)
                .all(|(p, a)| p.is_none_or(|p| p == *a))
    }

    /// The pattern as an OID when it has no `*`.
    pub fn exact(&self) -> Option<Vec<u32>> {
        self.0.iter().copied().collect()
    }

    /// Tells whether every OID the pattern matches lies under `prefix`.
    pub fn under(&self, prefix: &[u32]) -> bool {
        self.0.len() > prefix.len() && self.0.iter().zip(prefix).all(|(p, a)| *p == Some(*a))
    }
}

/// What a meter counts for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Function {
    /// Printed jobs (PDL, print service).
    Print,
    /// Copies.
    Copy,
    /// Fax (received and printed, or sent).
    Fax,
    /// Scans (originals read by the scanner).
    Scan,
    /// Every function together.
    Total,
    /// Anything else (duplex, document filing, jams, ...): the rule's name says what.
    Other,
}

/// Which colour mode a meter counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Colour {
    /// Every mode together.
    All,
    /// Black and white.
    Mono,
    /// Any colour mode.
    Colour,
    /// Full colour (process colour).
    FullColour,
    /// Two colour.
    TwoColour,
    /// Single colour (one colorant other than black).
    SingleColour,
}

/// What a meter's value counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Unit {
    /// Sides (printed faces of a sheet).
    Sides,
    /// Impressions: the Printer-MIB's and PWG's word for sides.
    Impressions,
    /// Sheets (a duplex sheet is one).
    Sheets,
    /// Scanned images.
    Images,
    /// Occurrences (jams, jobs, power-ons, ...).
    Events,
    /// Printed length (label and roll printers).
    Millimetres,
    /// Printed length.
    Centimetres,
    /// Printed length.
    Metres,
    /// Printed length.
    Inches,
    /// Printed length.
    Feet,
    /// Another unit, named by the rule.
    Other,
}

impl Unit {
    /// The Printer-MIB's PrtMarkerCounterUnitTC (impressions 7, sheets 8, feet 16,
    /// meters 17; anything else is `other`).
    pub fn of_printer_mib(tc: i64) -> Unit {
        match tc {
            7 => Unit::Impressions,
            8 => Unit::Sheets,
            16 => Unit::Feet,
            17 => Unit::Metres,
            _ => Unit::Other,
        }
    }

    fn is_sides(self) -> bool {
        matches!(self, Unit::Sides | Unit::Impressions)
    }

    /// A length unit as printers name it in text ("CENTIMETERS", "in"), any case.
    pub fn of_word(word: &str) -> Option<Unit> {
        Some(match word.to_ascii_lowercase().as_str() {
            "mm" | "millimeter" | "millimeters" | "millimetre" | "millimetres" => Unit::Millimetres,
            "cm" | "centimeter" | "centimeters" | "centimetre" | "centimetres" => Unit::Centimetres,
            "m" | "meter" | "meters" | "metre" | "metres" => Unit::Metres,
            "in" | "inch" | "inches" => Unit::Inches,
            "ft" | "foot" | "feet" => Unit::Feet,
            _ => return None,
        })
    }
}

/// How a rule's value is served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Form {
    /// An integer, counter or gauge.
    #[default]
    Integer,
    /// Text starting with a whole count (thousands commas allowed), optionally followed by
    /// its unit's name: `"89667 INCHES, 227775 CENTIMETERS"` reads as 89667 inches (the
    /// first quantity). The unit the text names wins over the rule's. An integer is
    /// read as such.
    Text,
}

impl Form {
    fn is_integer(&self) -> bool {
        *self == Form::Integer
    }

    /// The count (and the unit named after it) at the start of a text counter; `None` when
    /// the text does not start with a number or the number does not fit an `i64`. Reads
    /// at most the first 64 bytes.
    pub fn read_text(text: &[u8]) -> Option<(i64, Option<Unit>)> {
        let head = &text[..text.len().min(64)];
        let head = std::str::from_utf8(head)
            .unwrap_or_else(|e| std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or(""));
        let head = head.trim_start();
        let end = head
            .find(|c: char| !(c.is_ascii_digit() || c == ','))
            .unwrap_or(head.len());
        let number = &head[..end];
        // Commas only as thousands separators: "1,234,567", never "12,34" or ",5".
        let groups: Vec<&str> = number.split(',').collect();
        let grouped = groups.len() == 1
            || (!groups[0].is_empty()
                && groups[0].len() <= 3
                && groups[1..].iter().all(|g| g.len() == 3));
        if number.is_empty() || !grouped || groups.iter().any(|g| g.is_empty()) {
            return None;
        }
        let value: i64 = number.replace(',', "").parse().ok()?;
        let word: String = head[end..]
            .trim_start()
            .chars()
            .take_while(char::is_ascii_alphabetic)
            .collect();
        Some((value, Unit::of_word(&word)))
    }
}

/// A seed `counters` field a meter can fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub enum CounterField {
    /// `printSideCount`.
    PrintSideCount,
    /// `monoPrintSideCount`.
    MonoPrintSideCount,
    /// `colorPrintSideCount`.
    ColorPrintSideCount,
    /// `copySideCount`.
    CopySideCount,
    /// `monoCopySideCount`.
    MonoCopySideCount,
    /// `colorCopySideCount`.
    ColorCopySideCount,
    /// `faxSideCount`.
    FaxSideCount,
    /// `monoSideCount`.
    MonoSideCount,
    /// `colorSideCount`.
    ColorSideCount,
    /// `totalSideCount`.
    TotalSideCount,
    /// `totalSheetCount`.
    TotalSheetCount,
    /// `totalScanCount`.
    TotalScanCount,
    /// `blankCopySideCount`.
    BlankCopySideCount,
    /// `blankFaxSideCount`.
    BlankFaxSideCount,
}

impl CounterField {
    /// The field's name in the report.
    pub fn name(self) -> &'static str {
        match self {
            CounterField::PrintSideCount => "printSideCount",
            CounterField::MonoPrintSideCount => "monoPrintSideCount",
            CounterField::ColorPrintSideCount => "colorPrintSideCount",
            CounterField::CopySideCount => "copySideCount",
            CounterField::MonoCopySideCount => "monoCopySideCount",
            CounterField::ColorCopySideCount => "colorCopySideCount",
            CounterField::FaxSideCount => "faxSideCount",
            CounterField::MonoSideCount => "monoSideCount",
            CounterField::ColorSideCount => "colorSideCount",
            CounterField::TotalSideCount => "totalSideCount",
            CounterField::TotalSheetCount => "totalSheetCount",
            CounterField::TotalScanCount => "totalScanCount",
            CounterField::BlankCopySideCount => "blankCopySideCount",
            CounterField::BlankFaxSideCount => "blankFaxSideCount",
        }
    }

    /// Tells whether a meter in `unit` may fill this field: sides (impressions) for
    /// `…SideCount`, sheets for `…SheetCount`, images or sides for scans.
    pub fn takes(self, unit: Unit) -> bool {
        match self {
            CounterField::TotalSheetCount => unit == Unit::Sheets,
            CounterField::TotalScanCount => unit == Unit::Images || unit.is_sides(),
            _ => unit.is_sides(),
        }
    }
}

/// One vendor subtree holding counters, walked whole.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeterTable {
    /// The subtree (or the value column of a table): every integer under it is a meter.
    pub oid: Dotted,
    /// A text column whose row at the same index is the printer's own name for the meter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<Dotted>,
    /// An integer column whose row at the same index says which counter the row is
    /// (rules with a `key` match on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Dotted>,
    /// An integer column whose row at the same index gives the row's unit, read through
    /// `unitValues`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<Dotted>,
    /// What the values of the `unit` column mean.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unit_values: Vec<UnitValue>,
}

/// One value of a table's unit column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UnitValue {
    /// The column's value.
    pub value: i64,
    /// Its meaning.
    pub unit: Unit,
}

/// What one known meter means.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeterRule {
    /// Unique in its vendor's maps (`hp.totalMonoPageCount`); written into each meter it names.
    pub name: String,
    /// The meter's instance OID; `*` matches any one arc. With `key`, the value column
    /// of a table: any row under it whose key column holds `key`.
    pub oid: Pattern,
    /// See `oid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<i64>,
    /// What it counts for.
    pub function: Function,
    /// Which colour mode.
    pub colour: Colour,
    /// Its unit; absent when the table's unit column gives it, or when the vendor's
    /// documentation does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<Unit>,
    /// The seed counter it fills when no standard MIB gave that counter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<CounterField>,
    /// It counts blank sides separately from mono ones: the seed counts blank pages as
    /// mono, so its value is added into the mono counter of its function.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blank: bool,
    /// How the value is served: an integer (the default) or a text such as Zebra's
    /// odometer, `"89667 INCHES, 227775 CENTIMETERS"`.
    #[serde(default, skip_serializing_if = "Form::is_integer")]
    pub form: Form,
}

impl MeterRule {
    /// Tells whether this rule names the meter at `oid` whose row's key (when its table
    /// has a key column) is `key`.
    pub fn names(&self, oid: &[u32], key: Option<i64>) -> bool {
        match self.key {
            Some(k) => key == Some(k) && self.oid.exact().is_some_and(|c| oid.starts_with(&c)),
            None => self.oid.matches(oid),
        }
    }
}

/// One vendor's (or model family's) counters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeterMap {
    /// The document the map was written from (the vendor's MIB, by name and version).
    pub source: String,
    /// sysObjectID prefixes of the printers it is for; empty: every printer of the vendor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sys_object_ids: Vec<Dotted>,
    /// Subtrees walked whole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<MeterTable>,
    /// The known meters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<MeterRule>,
}

impl MeterMap {
    /// Tells whether the map is for a printer whose sysObjectID is `sys_object_id`.
    pub fn applies_to(&self, sys_object_id: &[u32]) -> bool {
        self.sys_object_ids.is_empty()
            || self
                .sys_object_ids
                .iter()
                .any(|p| sys_object_id.starts_with(&p.0))
    }

    /// Rules whose OID lies under none of the tables: fetched one by one. (A rule with
    /// a key names rows of a table.)
    pub fn lone_rules(&self) -> impl Iterator<Item = &MeterRule> {
        self.rules
            .iter()
            .filter(|r| r.key.is_none() && !self.tables.iter().any(|t| r.oid.under(&t.oid.0)))
    }
}

/// A vendor table naming each supply's serial and part number (the chip's), joined to
/// the Printer-MIB's supplies by description, else by a colorant only one supply has.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SupplyTable {
    /// The document the table was written from.
    pub source: String,
    /// How a row finds its Printer-MIB supply.
    #[serde(default, skip_serializing_if = "SupplyJoin::is_default")]
    pub join: SupplyJoin,
    /// The description column (text, compared with prtMarkerSuppliesDescription);
    /// needed by the `description` join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Dotted>,
    /// The colorant column (text: `black`, `cyan`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colorant: Option<Dotted>,
    /// The serial number column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<Dotted>,
    /// The part number column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<Dotted>,
}

impl SupplyTable {
    /// Every column to read.
    pub fn columns(&self) -> impl Iterator<Item = &Dotted> {
        [&self.description, &self.colorant, &self.serial, &self.part]
            .into_iter()
            .flatten()
    }
}

/// How a vendor supply row finds its Printer-MIB supply. Either way a row that could be
/// two supplies', or a supply that two rows could be, is left unjoined: nothing guessed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SupplyJoin {
    /// By description (case and spaces aside, unique on both sides), else by a colorant
    /// only one supply and one row have.
    #[default]
    Description,
    /// By the row's part number appearing as a word of one supply's description: HP
    /// describes a cartridge as `Black Cartridge HP CF410A`, and its consumable table
    /// gives the part `CF410A` with the chip's serial number.
    PartInDescription,
}

impl SupplyJoin {
    fn is_default(&self) -> bool {
        *self == SupplyJoin::Description
    }
}

/// Checks a vendor's supply tables like [`check`].
pub fn check_supplies(tables: &[SupplyTable], at: &str, problems: &mut Vec<String>) {
    if tables.len() > MAX_TABLES {
        problems.push(format!("{at}.supplies: at most {MAX_TABLES}"));
    }
    for (i, t) in tables.iter().enumerate() {
        let at = format!("{at}.supplies[{i}]");
        if t.source.trim().is_empty() || t.source.len() > 256 || t.source.contains(char::is_control)
        {
            problems.push(format!(
                "{at}.source: 1 to 256 bytes without control characters"
            ));
        }
        for (field, o) in [
            ("description", t.description.as_ref()),
            ("colorant", t.colorant.as_ref()),
            ("serial", t.serial.as_ref()),
            ("part", t.part.as_ref()),
        ] {
            if let Some(o) = o
                && !oid_ok(&o.0)
            {
                problems.push(format!(
                    "{at}.{field}: not an OID under 1.3.6.1 (7 to 64 arcs)"
                ));
            }
        }
        if t.serial.is_none() && t.part.is_none() {
            problems.push(format!("{at}: names neither a serial nor a part column"));
        }
        match t.join {
            SupplyJoin::Description if t.description.is_none() => {
                problems.push(format!("{at}.description: the description join needs it"));
            }
            SupplyJoin::PartInDescription if t.part.is_none() => {
                problems.push(format!("{at}.part: the partInDescription join needs it"));
            }
            _ => {}
        }
    }
}

/// The most maps per vendor, tables per map, rules per map and unit values per table.
pub const MAX_MAPS: usize = 16;
/// See [`MAX_MAPS`].
pub const MAX_TABLES: usize = 32;
/// See [`MAX_MAPS`].
pub const MAX_RULES: usize = 512;
/// See [`MAX_MAPS`].
pub const MAX_UNIT_VALUES: usize = 32;

fn oid_ok(o: &[u32]) -> bool {
    o.len() >= 7 && o.len() <= 64 && o[..4] == [1, 3, 6, 1]
}

/// Checks a vendor's maps, pushing one line per problem, each naming its place
/// (`at` is the vendor's, e.g. `vendors[3]`).
pub fn check(maps: &[MeterMap], at: &str, problems: &mut Vec<String>) {
    if maps.len() > MAX_MAPS {
        problems.push(format!("{at}.meters: at most {MAX_MAPS} maps"));
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, m) in maps.iter().enumerate() {
        let at = format!("{at}.meters[{i}]");
        if m.source.trim().is_empty() || m.source.len() > 256 || m.source.contains(char::is_control)
        {
            problems.push(format!(
                "{at}.source: 1 to 256 bytes without control characters"
            ));
        }
        if m.tables.len() > MAX_TABLES {
            problems.push(format!("{at}.tables: at most {MAX_TABLES}"));
        }
        if m.rules.len() > MAX_RULES {
            problems.push(format!("{at}.rules: at most {MAX_RULES}"));
        }
        for (j, p) in m.sys_object_ids.iter().enumerate() {
            if !oid_ok(&p.0) {
                problems.push(format!(
                    "{at}.sysObjectIds[{j}]: not an OID under 1.3.6.1 (7 to 64 arcs)"
                ));
            }
        }
        for (j, t) in m.tables.iter().enumerate() {
            let at = format!("{at}.tables[{j}]");
            if t.oid.0.len() < 9 {
                problems.push(format!(
                    "{at}.oid: at least 9 arcs (a subtree of a vendor, not the vendor)"
                ));
            }
            for (field, o) in [
                ("oid", Some(&t.oid)),
                ("label", t.label.as_ref()),
                ("key", t.key.as_ref()),
                ("unit", t.unit.as_ref()),
            ] {
                if let Some(o) = o
                    && !oid_ok(&o.0)
                {
                    problems.push(format!(
                        "{at}.{field}: not an OID under 1.3.6.1 (7 to 64 arcs)"
                    ));
                }
            }
            if t.unit_values.len() > MAX_UNIT_VALUES {
                problems.push(format!("{at}.unitValues: at most {MAX_UNIT_VALUES}"));
            }
            if !t.unit_values.is_empty() && t.unit.is_none() {
                problems.push(format!("{at}.unitValues: needs a unit column"));
            }
        }
        for (j, r) in m.rules.iter().enumerate() {
            let at = format!("{at}.rules[{j}]");
            let name_ok = !r.name.is_empty()
                && r.name.len() <= 64
                && r.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !name_ok {
                problems.push(format!(
                    "{at}.name: letters, digits, '.', '-' and '_' only, 1 to 64"
                ));
            } else if !names.insert(r.name.clone()) {
                problems.push(format!("{at}.name: {:?} appears twice", r.name));
            }
            // Never a whole enterprise (or more) to walk: the first 9 arcs are fixed.
            let fixed_head = r.oid.0.len() >= 9
                && r.oid.0.len() <= 64
                && r.oid.0[..9].iter().all(Option::is_some)
                && r.oid.0[..4] == [Some(1), Some(3), Some(6), Some(1)];
            if !fixed_head {
                problems.push(format!(
                    "{at}.oid: not an OID pattern under 1.3.6.1 (9 to 64 arcs, no '*' in the first 9)"
                ));
            }
            if r.key.is_some() {
                let table = r
                    .oid
                    .exact()
                    .and_then(|o| m.tables.iter().find(|t| t.oid.0 == o));
                if table.is_none_or(|t| t.key.is_none()) {
                    problems.push(format!(
                        "{at}.key: the oid must be a table of this map with a key column"
                    ));
                }
            }
            if let (Some(c), Some(u)) = (r.counter, r.unit)
                && !c.takes(u)
            {
                problems.push(format!(
                    "{at}.counter: {} cannot take a meter in {u:?}",
                    c.name()
                ));
            }
            if r.blank && r.colour != Colour::All && r.colour != Colour::Mono {
                problems.push(format!(
                    "{at}.blank: a blank-side meter has colour all or mono"
                ));
            }
        }
    }
}

/// One meter of a report: a counter the printer serves, with what the library knows of
/// it. A meter the library does not know has its OID and value only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meter {
    /// Instance OID.
    pub oid: String,
    /// Raw value as served.
    pub value: i64,
    /// What it counts, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<Unit>,
    /// What for, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<Function>,
    /// Which colour mode, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colour: Option<Colour>,
    /// The rule that named it (`printer-mib.prtMarkerLifeCount`, `hp.totalMonoPageCount`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The printer's own name for it, when its table has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(json: serde_json::Value) -> MeterMap {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn supply_tables_need_the_columns_their_join_reads() {
        let table =
            |json: serde_json::Value| -> SupplyTable { serde_json::from_value(json).unwrap() };
        let tables = [
            table(serde_json::json!({"source": "a", "serial": "1.3.6.1.4.1.9.1.1"})),
            table(
                serde_json::json!({"source": "b", "join": "partInDescription",
                                     "serial": "1.3.6.1.4.1.9.1.1"}),
            ),
            table(
                serde_json::json!({"source": "c", "join": "partInDescription",
                                     "serial": "1.3.6.1.4.1.9.1.1", "part": "1.3.6.1.4.1.9.1.2"}),
            ),
            table(
                serde_json::json!({"source": "d", "description": "1.3.6.1.4.1.9.1.3",
                                     "serial": "1.3.6.1.4.1.9.1.1"}),
            ),
        ];
        let mut problems = Vec::new();
        check_supplies(&tables, "vendors[0]", &mut problems);
        assert_eq!(
            problems,
            [
                "vendors[0].supplies[0].description: the description join needs it",
                "vendors[0].supplies[1].part: the partInDescription join needs it"
            ]
        );
        // The default join is not written out, so a library signed before the field
        // existed reads the same.
        let out = serde_json::to_value(&tables[3]).unwrap();
        assert!(out.get("join").is_none(), "{out}");
    }

    #[test]
    fn text_counters_read_their_first_quantity_and_its_unit() {
        let read = |t: &str| Form::read_text(t.as_bytes());
        assert_eq!(
            read("89667 INCHES, 227775 CENTIMETERS"),
            Some((89667, Some(Unit::Inches)))
        );
        assert_eq!(
            read("227775 CENTIMETERS"),
            Some((227775, Some(Unit::Centimetres)))
        );
        assert_eq!(
            read("  1,234,567 cm"),
            Some((1_234_567, Some(Unit::Centimetres)))
        );
        assert_eq!(read("42"), Some((42, None)));
        assert_eq!(
            read("42 labels"),
            Some((42, None)),
            "no unit word: unit unknown"
        );
        assert_eq!(read("12,34 in"), None, "not a thousands grouping");
        assert_eq!(read(",5 in"), None);
        assert_eq!(read("INCHES 5"), None, "the number comes first");
        assert_eq!(read(""), None);
        assert_eq!(read("99999999999999999999 in"), None, "beyond i64");
        // Only the first 64 bytes are looked at, and bad UTF-8 after the number is fine.
        let mut long = b"7 ft".to_vec();
        long.extend([0xff; 100]);
        assert_eq!(Form::read_text(&long), Some((7, Some(Unit::Feet))));
        let far = format!("{}5 in", " ".repeat(70));
        assert_eq!(read(&far), None);
    }

    #[test]
    fn patterns_and_keys_name_the_meters_they_should() {
        let m = map(serde_json::json!({
            "source": "test MIB",
            "tables": [{"oid": "1.3.6.1.4.1.9.9.1.3", "key": "1.3.6.1.4.1.9.9.1.2"}],
            "sysObjectIds": ["1.3.6.1.4.1.9.9.5"],
            "rules": [
                {"name": "t.print", "oid": "1.3.6.1.4.1.9.9.2.1.*.61", "function": "print",
                 "colour": "mono", "unit": "impressions", "counter": "monoPrintSideCount"},
                {"name": "t.keyed", "oid": "1.3.6.1.4.1.9.9.1.3", "key": 17, "function": "copy",
                 "colour": "all"}
            ]
        }));
        let mut problems = Vec::new();
        check(std::slice::from_ref(&m), "vendors[0]", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let print = &m.rules[0];
        assert!(print.names(&[1, 3, 6, 1, 4, 1, 9, 9, 2, 1, 4, 61], None));
        assert!(!print.names(&[1, 3, 6, 1, 4, 1, 9, 9, 2, 1, 4, 63], None));
        assert!(!print.names(&[1, 3, 6, 1, 4, 1, 9, 9, 2, 1, 4, 61, 0], None));
        let keyed = &m.rules[1];
        assert!(keyed.names(&[1, 3, 6, 1, 4, 1, 9, 9, 1, 3, 1, 5], Some(17)));
        assert!(!keyed.names(&[1, 3, 6, 1, 4, 1, 9, 9, 1, 3, 1, 5], Some(16)));
        assert!(!keyed.names(&[1, 3, 6, 1, 4, 1, 9, 9, 1, 3, 1, 5], None));
        // The print rule lies under no table: it is fetched on its own.
        let lone: Vec<&str> = m.lone_rules().map(|r| r.name.as_str()).collect();
        assert_eq!(lone, ["t.print"]);
        assert_eq!(
            serde_json::to_value(&m).unwrap()["rules"][0]["oid"],
            "1.3.6.1.4.1.9.9.2.1.*.61"
        );
        assert!(m.applies_to(&[1, 3, 6, 1, 4, 1, 9, 9, 5, 1]));
        assert!(!m.applies_to(&[1, 3, 6, 1, 4, 1, 9, 9, 6, 1]));
    }

    #[test]
    fn a_bad_map_is_refused_with_every_place_named() {
        let m = map(serde_json::json!({
            "source": "",
            "sysObjectIds": ["1.3"],
            "tables": [{"oid": "1.3.6.1.4.1.9.9.1.3", "unitValues": [{"value": 4, "unit": "sides"}]},
                       {"oid": "1.3.6.1.4.1.9"}],
            "rules": [
                {"name": "a b", "oid": "1.3.6.*.4.1.9", "function": "print", "colour": "mono"},
                {"name": "x", "oid": "1.3.6.1.4.1.9.9.1.3", "key": 3, "function": "print", "colour": "mono"},
                {"name": "x", "oid": "1.3.6.1.4.1.9.9.1.4", "function": "print", "colour": "mono",
                 "unit": "sheets", "counter": "monoPrintSideCount"}
            ]
        }));
        let mut problems = Vec::new();
        check(&[m], "vendors[2]", &mut problems);
        let all = problems.join("\n");
        for want in [
            "vendors[2].meters[0].source",
            "vendors[2].meters[0].sysObjectIds[0]",
            "vendors[2].meters[0].tables[0].unitValues: needs a unit column",
            "vendors[2].meters[0].tables[1].oid: at least 9 arcs",
            "vendors[2].meters[0].rules[0].name",
            "vendors[2].meters[0].rules[0].oid",
            "vendors[2].meters[0].rules[1].key",
            "vendors[2].meters[0].rules[2].name: \"x\" appears twice",
            "vendors[2].meters[0].rules[2].counter: monoPrintSideCount cannot take a meter in Sheets",
        ] {
            assert!(all.contains(want), "{want}:\n{all}");
        }
        assert!(
            serde_json::from_value::<MeterMap>(serde_json::json!({
                "source": "s", "rules": [{"name": "n", "oid": "1.3.x", "function": "print", "colour": "mono"}]
            }))
            .is_err()
        );
    }
}
