//! Meters: every usage counter a reading found (the Printer-MIB's marker counts, the PWG
//! imaging counters, and the vendor counters the support library maps), as the report's
//! `meters` list; and the seed's `counters` fields the library's rules may fill.
//!
//! Vendor counters (and supply tables) are collected only for a printer whose vendor (and
//! model family) the library maps ([`plan`]): with the rest of the poll when the previous
//! poll saw its sysObjectID, else in a second step (`poller::Reader::read_hinted`), so a
//! printer without vendor meters costs nothing more.

use super::decode::Collected;
use super::library::Library;
use super::oids;
use super::{Counters, text};
use fleet_protocol::meters::{
    Colour, CounterField, Form, Function, Meter, MeterMap, MeterRule, SupplyJoin, SupplyTable, Unit,
};
use fleet_snmp::{Oid, Value};
use std::collections::BTreeMap;

/// The most meters a report lists (a printer serving more has a broken or hostile agent;
/// the cut is noted in `device.cuts`).
pub const MAX_METERS: usize = 1024;

/// What the second step of a poll keeps at most: a vendor's counter subtrees hold tens
/// to a few hundred values on real printers.
pub const BUDGET: fleet_snmp::walk::Budget = fleet_snmp::walk::Budget {
    values: 4_000,
    bytes: 512 << 10,
};

fn vendor<'l>(
    library: &'l Library,
    sys_object_id: Option<&Oid>,
) -> Option<&'l fleet_protocol::library::VendorData> {
    super::library::enterprise(&sys_object_id?.to_string()).and_then(|e| library.vendor(e))
}

/// The maps of the library that apply to a printer whose sysObjectID is `sys_object_id`.
pub fn maps<'l>(library: &'l Library, sys_object_id: Option<&Oid>) -> Vec<&'l MeterMap> {
    match (vendor(library, sys_object_id), sys_object_id) {
        (Some(v), Some(soid)) => {
            let mut maps: Vec<&MeterMap> = v
                .meters
                .iter()
                .filter(|m| m.applies_to(soid.arcs()))
                .collect();
            // A model family's map names its meters before the vendor-wide one does.
            maps.sort_by_key(|m| m.sys_object_ids.is_empty());
            maps
        }
        _ => Vec::new(),
    }
}

/// The vendor's supply tables for a printer whose sysObjectID is `sys_object_id`.
pub fn supply_tables<'l>(library: &'l Library, sys_object_id: Option<&Oid>) -> &'l [SupplyTable] {
    vendor(library, sys_object_id).map_or(&[], |v| v.supplies.as_slice())
}

/// The columns of the vendor's supply tables.
pub fn supply_columns(library: &Library, sys_object_id: Option<&Oid>) -> Vec<Oid> {
    supply_tables(library, sys_object_id)
        .iter()
        .flat_map(|t| t.columns().map(|c| Oid::from_slice(&c.0)))
        .collect()
}

/// The subtrees the second step of a poll walks for a printer whose sysObjectID is
/// `sys_object_id`: each meter table with its key, label and unit columns, the parent of
/// each rule outside the tables (so its instance is read whatever its siblings are), and
/// the vendor's supply table columns. Nested subtrees are asked once.
pub fn plan(library: &Library, sys_object_id: Option<&Oid>) -> Vec<Oid> {
    let maps = maps(library, sys_object_id);
    let mut all: Vec<Vec<u32>> = supply_tables(library, sys_object_id)
        .iter()
        .flat_map(|t| t.columns().map(|c| c.0.clone()))
        .collect();
    for m in &maps {
        for t in &m.tables {
            all.push(t.oid.0.clone());
            for c in [&t.key, &t.label, &t.unit].into_iter().flatten() {
                all.push(c.0.clone());
            }
        }
        for r in m.lone_rules() {
            let fixed: Vec<u32> = r.oid.0.iter().map_while(|a| *a).collect();
            let parent = if fixed.len() == r.oid.0.len() {
                fixed[..fixed.len() - 1].to_vec()
            } else {
                fixed
            };
            all.push(parent);
        }
    }
    all.sort();
    all.dedup();
    // Sorted, a subtree comes right after the one holding it.
    let mut out: Vec<Vec<u32>> = Vec::new();
    for o in all {
        if !out.last().is_some_and(|p| o.starts_with(p)) {
            out.push(o);
        }
    }
    out.into_iter().map(Oid::new).collect()
}

/// A counter value: integers, counters and gauges (not time ticks, texts or OIDs).
fn count(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(_) | Value::Counter32(_) | Value::Gauge32(_) | Value::Counter64(_) => {
            v.as_i64()
        }
        _ => None,
    }
}

/// A meter's value, and the unit its text names: a text rule (`form: text`) reads the
/// count at the start of a text, and an integer as one.
fn reading(v: &Value, form: Form) -> Option<(i64, Option<Unit>)> {
    let integer = || count(v).map(|n| (n, None));
    match form {
        Form::Integer => integer(),
        Form::Text => v.as_bytes().and_then(Form::read_text).or_else(integer),
    }
}

/// A printer's name for a meter as shown: control characters out, at most 128 characters.
fn label_text(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(128)
        .collect::<String>()
        .trim()
        .to_string()
}

/// One meter found, with the rule that named it (when one did).
struct Found<'l> {
    meter: Meter,
    rule: Option<&'l MeterRule>,
}

/// Lists the meters of a reading and fills the `counters` fields the standard MIBs left
/// empty from the library's rules (source `library:<rule>`); returns the meters and,
/// when there were more than [`MAX_METERS`], a cut note.
pub fn decode(c: &Collected<'_>, counters: &mut Counters) -> (Vec<Meter>, Option<String>) {
    let mut found: BTreeMap<Oid, Found<'_>> = BTreeMap::new();
    standard(c, &mut found);
    let soid = c
        .first(oids::SYS_OBJECT_ID)
        .and_then(Value::as_oid)
        .cloned();
    for m in maps(c.library, soid.as_ref()) {
        vendor_meters(c, m, &mut found);
    }
    fill(counters, found.values());
    let total = found.len();
    let cut = (total > MAX_METERS)
        .then(|| format!("meters: {total} counters, the first {MAX_METERS} kept"));
    let meters = found
        .into_values()
        .take(MAX_METERS)
        .map(|f| f.meter)
        .collect();
    (meters, cut)
}

/// Printer-MIB marker counts and PWG lifetime totals: already read by every poll.
fn standard(c: &Collected<'_>, found: &mut BTreeMap<Oid, Found<'_>>) {
    for (col, name) in [
        (
            oids::PRT_MARKER_LIFE_COUNT,
            "printer-mib.prtMarkerLifeCount",
        ),
        (
            oids::PRT_MARKER_POWER_ON_COUNT,
            "printer-mib.prtMarkerPowerOnCount",
        ),
    ] {
        for (ix, v) in c.column(col) {
            let Some(value) = count(v) else { continue };
            let unit = c
                .int(oids::PRT_MARKER_COUNTER_UNIT, ix)
                .map(Unit::of_printer_mib);
            let mut arcs = col.to_vec();
            arcs.extend_from_slice(ix);
            let oid = Oid::new(arcs);
            found.insert(
                oid.clone(),
                Found {
                    meter: Meter {
                        oid: oid.to_string(),
                        value,
                        unit,
                        function: Some(Function::Total),
                        colour: Some(Colour::All),
                        rule: Some(name.into()),
                        label: None,
                    },
                    rule: None,
                },
            );
        }
    }
    // PWG 5106.1: lifetime (persistence 3) work totals (work type 3) per service key.
    for (key_ix, v) in c.column(oids::IC_KEY_SERVICE_TYPE) {
        let function = match v.as_i64() {
            Some(3) => Function::Total,
            Some(11) => Function::Print,
            Some(4) => Function::Copy,
            Some(7) => Function::Fax,
            _ => continue,
        };
        let key = key_ix[0];
        for (col, name, colour, unit) in [
            (
                oids::IC_IMP_TOTAL,
                "pwg.icImpressionTotalImps",
                Colour::All,
                Unit::Impressions,
            ),
            (
                oids::IC_IMP_MONO,
                "pwg.icImpressionMonochromeImps",
                Colour::Mono,
                Unit::Impressions,
            ),
            (
                oids::IC_IMP_FULL_COLOR,
                "pwg.icImpressionFullColorImps",
                Colour::FullColour,
                Unit::Impressions,
            ),
            (
                oids::IC_SHEET_TOTAL,
                "pwg.icSheetTotalSheets",
                Colour::All,
                Unit::Sheets,
            ),
        ] {
            let Some(value) = c.cell(col, &[key, 3, 3]).and_then(count) else {
                continue;
            };
            let mut arcs = col.to_vec();
            arcs.extend_from_slice(&[key, 3, 3]);
            let oid = Oid::new(arcs);
            found.insert(
                oid.clone(),
                Found {
                    meter: Meter {
                        oid: oid.to_string(),
                        value,
                        unit: Some(unit),
                        function: Some(function),
                        colour: Some(colour),
                        rule: Some(name.into()),
                        label: None,
                    },
                    rule: None,
                },
            );
        }
    }
}

/// One vendor map: every integer under its tables (named by a rule or not), and its
/// rules outside the tables.
fn vendor_meters<'l>(c: &Collected<'l>, m: &'l MeterMap, found: &mut BTreeMap<Oid, Found<'l>>) {
    for t in &m.tables {
        for (ix, v) in c.column(&t.oid.0) {
            let mut arcs = t.oid.0.clone();
            arcs.extend_from_slice(ix);
            let key = t.key.as_ref().and_then(|k| c.int(&k.0, ix));
            let rule = m.rules.iter().find(|r| r.names(&arcs, key));
            let form = rule.map_or(Form::Integer, |r| r.form);
            let Some((value, text_unit)) = reading(v, form) else {
                continue;
            };
            let label = t
                .label
                .as_ref()
                .and_then(|l| c.cell(&l.0, ix))
                .and_then(Value::as_bytes)
                .map(|b| label_text(&text::decode(b)))
                .filter(|s| !s.is_empty());
            let table_unit = t
                .unit
                .as_ref()
                .and_then(|u| c.int(&u.0, ix))
                .and_then(|u| t.unit_values.iter().find(|x| x.value == u).map(|x| x.unit));
            let oid = Oid::new(arcs);
            found.entry(oid.clone()).or_insert(Found {
                meter: Meter {
                    oid: oid.to_string(),
                    value,
                    // The row's own unit (its text, its unit column) says more than the rule.
                    unit: text_unit.or(table_unit).or(rule.and_then(|r| r.unit)),
                    function: rule.map(|r| r.function),
                    colour: rule.map(|r| r.colour),
                    rule: rule.map(|r| r.name.clone()),
                    label,
                },
                rule,
            });
        }
    }
    for r in m.lone_rules() {
        let fixed: Vec<u32> = r.oid.0.iter().map_while(|a| *a).collect();
        for (ix, v) in c.column(&fixed) {
            let mut arcs = fixed.clone();
            arcs.extend_from_slice(ix);
            if r.oid.matches(&arcs) {
                add_ruled(found, Oid::new(arcs), v, r);
            }
        }
        if let Some(exact) = r.oid.exact()
            && let Some(v) = c.get(&exact)
        {
            add_ruled(found, Oid::new(exact), v, r);
        }
    }
}

/// Lists the value at `oid` as the meter rule `r` names it (outside any table), unless
/// it is no count or already listed.
fn add_ruled<'l>(found: &mut BTreeMap<Oid, Found<'l>>, oid: Oid, v: &Value, r: &'l MeterRule) {
    let Some((value, text_unit)) = reading(v, r.form) else {
        return;
    };
    found.entry(oid.clone()).or_insert(Found {
        meter: Meter {
            oid: oid.to_string(),
            value,
            unit: text_unit.or(r.unit),
            function: Some(r.function),
            colour: Some(r.colour),
            rule: Some(r.name.clone()),
            label: None,
        },
        rule: Some(r),
    });
}

/// Sets each supply's serial and part number from the vendor's supply tables: a vendor
/// row goes to the supply with the same description (case and spaces aside, unique on
/// both sides), else to the only supply of its colorant when it is the only row of that
/// colorant. Anything else is
/// left unset rather than guessed.
pub fn supply_ids(c: &Collected<'_>, supplies: &mut [super::Supply]) {
    let soid = c
        .first(oids::SYS_OBJECT_ID)
        .and_then(Value::as_oid)
        .cloned();
    let norm = |s: &str| {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    for t in supply_tables(c.library, soid.as_ref()) {
        let text = |col: &Option<fleet_protocol::meters::Dotted>, ix: &[u32]| {
            col.as_ref()
                .and_then(|col| c.cell(&col.0, ix))
                .and_then(Value::as_bytes)
                .and_then(text::identity)
        };
        // The rows are those of the column the join reads first.
        let Some(anchor) = t.columns().next() else {
            continue;
        };
        let rows: Vec<Row> = c
            .column(&anchor.0)
            .take(super::limits::MAX_ROWS)
            .map(|(ix, _)| Row {
                description: t
                    .description
                    .as_ref()
                    .and_then(|col| c.cell(&col.0, ix))
                    .and_then(Value::as_bytes)
                    .map(|b| norm(&text::decode(b))),
                colorant: text(&t.colorant, ix).map(|s| norm(&s)),
                serial: text(&t.serial, ix),
                part: text(&t.part, ix),
            })
            .collect();
        let joined: Vec<Option<&Row>> = match t.join {
            SupplyJoin::Description => by_description(supplies, &rows, norm),
            SupplyJoin::PartInDescription => by_part_in_description(supplies, &rows, norm),
        };
        for (s, row) in supplies.iter_mut().zip(joined) {
            if let Some(r) = row {
                s.serial_number = r.serial.clone();
                s.ext.part_number = r.part.clone();
            }
        }
    }
}

/// One row of a vendor's supply table, its description and colorant normalised.
struct Row {
    description: Option<String>,
    colorant: Option<String>,
    serial: Option<String>,
    part: Option<String>,
}

/// Each supply's row by description (unique on both sides), else by a colorant only that
/// supply and one row have.
fn by_description<'r>(
    supplies: &[super::Supply],
    rows: &'r [Row],
    norm: impl Fn(&str) -> String,
) -> Vec<Option<&'r Row>> {
    let colours: Vec<Option<String>> = supplies
        .iter()
        .map(|s| s.color.as_deref().map(&norm))
        .collect();
    let descriptions: Vec<Option<String>> = supplies
        .iter()
        .map(|s| s.description.as_deref().map(&norm))
        .collect();
    (0..supplies.len())
        .map(|i| {
            let by_description = descriptions[i].as_ref().and_then(|d| {
                let mut mine = rows.iter().filter(|r| r.description.as_ref() == Some(d));
                let first = mine.next()?;
                let unique = mine.next().is_none()
                    && descriptions
                        .iter()
                        .filter(|x| x.as_ref() == Some(d))
                        .count()
                        == 1;
                unique.then_some(first)
            });
            by_description.or_else(|| {
                let colour = colours[i].as_ref()?;
                if colours
                    .iter()
                    .filter(|c| c.as_ref() == Some(colour))
                    .count()
                    != 1
                {
                    return None;
                }
                let mut mine = rows.iter().filter(|r| r.colorant.as_ref() == Some(colour));
                let first = mine.next()?;
                mine.next().is_none().then_some(first)
            })
        })
        .collect()
}

/// Each supply's row by the row's part number being a word of the supply's description,
/// when exactly one row's part is in it and that part is in no other supply's.
fn by_part_in_description<'r>(
    supplies: &[super::Supply],
    rows: &'r [Row],
    norm: impl Fn(&str) -> String,
) -> Vec<Option<&'r Row>> {
    let words: Vec<Vec<String>> = supplies
        .iter()
        .map(|s| {
            s.description
                .as_deref()
                .map(|d| norm(d).split(' ').map(str::to_string).collect())
                .unwrap_or_default()
        })
        .collect();
    // Each row's part number, normalised once; a part with a space is no word.
    let parts: Vec<Option<String>> = rows
        .iter()
        .map(|r| r.part.as_deref().map(&norm).filter(|p| !p.contains(' ')))
        .collect();
    words
        .iter()
        .map(|mine| {
            let mut hits =
                (0..rows.len()).filter(|&i| parts[i].as_ref().is_some_and(|p| mine.contains(p)));
            let i = hits.next()?;
            if hits.next().is_some() {
                return None;
            }
            let p = parts[i].as_ref()?;
            let others = words.iter().filter(|w| w.contains(p)).count();
            let rows_with_it = parts.iter().filter(|x| x.as_ref() == Some(p)).count();
            (others == 1 && rows_with_it == 1).then_some(&rows[i])
        })
        .collect()
}

/// The `counters` field a [`CounterField`] names.
pub fn slot(c: &mut Counters, f: CounterField) -> &mut Option<u64> {
    match f {
        CounterField::PrintSideCount => &mut c.print_side_count,
        CounterField::MonoPrintSideCount => &mut c.mono_print_side_count,
        CounterField::ColorPrintSideCount => &mut c.color_print_side_count,
        CounterField::CopySideCount => &mut c.copy_side_count,
        CounterField::MonoCopySideCount => &mut c.mono_copy_side_count,
        CounterField::ColorCopySideCount => &mut c.color_copy_side_count,
        CounterField::FaxSideCount => &mut c.fax_side_count,
        CounterField::MonoSideCount => &mut c.mono_side_count,
        CounterField::ColorSideCount => &mut c.color_side_count,
        CounterField::TotalSideCount => &mut c.total_side_count,
        CounterField::TotalSheetCount => &mut c.total_sheet_count,
        CounterField::TotalScanCount => &mut c.total_scan_count,
        CounterField::BlankCopySideCount => &mut c.blank_copy_side_count,
        CounterField::BlankFaxSideCount => &mut c.blank_fax_side_count,
    }
}

/// Fills the counters the library's rules name, where the standard MIBs gave none and
/// the meter's unit is the field's; then the seed's blank-page rule: a printer that
/// counts blank sides apart has them added into the mono counter of the same function
/// (only into a counter this library filled, whose meaning excludes them).
fn fill<'a, 'l: 'a>(counters: &mut Counters, found: impl Iterator<Item = &'a Found<'l>> + Clone) {
    // A rule naming several meters (a pattern, or a keyed row repeated per device) fills
    // no counter: which one is meant is not known.
    let mut named: BTreeMap<&str, usize> = BTreeMap::new();
    for f in found.clone() {
        if let Some(r) = f.rule {
            *named.entry(r.name.as_str()).or_default() += 1;
        }
    }
    let usable = |f: &Found<'l>| -> Option<(&'l MeterRule, Unit, u64)> {
        let rule = f.rule?;
        let unit = f.meter.unit?;
        let agrees = rule.unit.is_none_or(|u| u == unit);
        (named.get(rule.name.as_str()) == Some(&1) && agrees)
            .then_some(())
            .and_then(|()| u64::try_from(f.meter.value).ok())
            .map(|v| (rule, unit, v))
    };
    for f in found.clone() {
        let Some((rule, unit, value)) = usable(f) else {
            continue;
        };
        let Some(field) = rule.counter.filter(|c| c.takes(unit)) else {
            continue;
        };
        let slot = slot(counters, field);
        if slot.is_none() {
            *slot = Some(value);
            counters
                .ext
                .sources
                .insert(field.name().into(), format!("library:{}", rule.name));
        }
    }
    for f in found {
        let Some((rule, unit, blank)) = usable(f) else {
            continue;
        };
        if !rule.blank || !CounterField::MonoPrintSideCount.takes(unit) {
            continue;
        }
        let mono = match rule.function {
            Function::Print => CounterField::MonoPrintSideCount,
            Function::Copy => CounterField::MonoCopySideCount,
            _ => continue,
        };
        let source = counters.ext.sources.get(mono.name()).cloned();
        let Some(source) = source.filter(|s| s.starts_with("library:")) else {
            continue;
        };
        let slot = slot(counters, mono);
        if let Some(sum) = slot.and_then(|m| m.checked_add(blank)) {
            *slot = Some(sum);
            counters
                .ext
                .sources
                .insert(mono.name().into(), format!("{source}+{}", rule.name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::printer::library;

    fn values<S: AsRef<str>>(pairs: &[(S, Value)]) -> BTreeMap<Oid, Value> {
        pairs
            .iter()
            .map(|(o, v)| (o.as_ref().parse::<Oid>().unwrap(), v.clone()))
            .collect()
    }

    /// The subtrees the vendor step walks for a printer whose sysObjectID is `soid`.
    fn walked(lib: &Library, soid: &str) -> Vec<String> {
        plan(lib, Some(&soid.parse().unwrap()))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Each supply's (chip serial, part number).
    fn chip_ids(r: &crate::printer::PrinterReport) -> Vec<(Option<&str>, Option<&str>)> {
        r.supplies
            .iter()
            .map(|s| (s.serial_number.as_deref(), s.ext.part_number.as_deref()))
            .collect()
    }

    fn read(values: &BTreeMap<Oid, Value>, lib: &Library) -> crate::printer::PrinterReport {
        crate::printer::decode(&Collected {
            values,
            ip: None,
            collected_at: 0,
            version: None,
            library: lib,
        })
    }

    #[test]
    fn the_builtin_library_is_valid_and_maps_meters() {
        let lib = library::builtin();
        lib.check().unwrap();
        let mapped: Vec<&str> = lib
            .vendors
            .iter()
            .filter(|v| !v.meters.is_empty())
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(
            mapped,
            [
                "HP",
                "Lexmark",
                "Brother",
                "Ricoh",
                "Kyocera",
                "Xerox",
                "Canon",
                "Konica Minolta",
                "Epson",
                "Sharp",
                "Samsung",
                "Toshiba",
                "Zebra"
            ]
        );
        // HP: its engine counters subtree, the scan count's parent on its own, and the
        // consumables' serial and part number columns.
        assert_eq!(
            walked(&lib, "1.3.6.1.4.1.11.2.3.9.1"),
            [
                "1.3.6.1.4.1.11.2.3.9.4.2.1.2.2.1.74",
                "1.3.6.1.4.1.11.2.3.9.4.2.1.4.1.2",
                "1.3.6.1.4.1.11.2.3.9.4.2.1.4.1.10.1.1.3",
                "1.3.6.1.4.1.11.2.3.9.4.2.1.4.1.10.1.1.56"
            ]
        );
        // A vendor without maps, or no sysObjectID: no second step.
        let oki: Oid = "1.3.6.1.4.1.2001.1".parse().unwrap();
        assert!(plan(&lib, Some(&oki)).is_empty());
        assert!(plan(&lib, None).is_empty());
    }

    #[test]
    fn keyed_rows_take_their_unit_from_the_table_and_blank_sides_count_as_mono() {
        let t = "1.3.6.1.4.1.641.6.4.2.1.1";
        let row = |col: u32, ix: u32| format!("{t}.{col}.1.{ix}");
        let v = values(&[
            (
                "1.3.6.1.2.1.1.2.0",
                Value::ObjectId("1.3.6.1.4.1.641.2.1".parse().unwrap()),
            ),
            // printMono in sides, blankPrint in sides, printTotal in sheets, a type the
            // library does not know, and a text under the value column.
            (&row(2, 1), Value::Integer(17)),
            (&row(3, 1), Value::Integer(4)),
            (&row(4, 1), Value::Counter32(1000)),
            (&row(2, 2), Value::Integer(65)),
            (&row(3, 2), Value::Integer(4)),
            (&row(4, 2), Value::Counter32(10)),
            (&row(2, 3), Value::Integer(16)),
            (&row(3, 3), Value::Integer(5)),
            (&row(4, 3), Value::Counter32(700)),
            (&row(2, 4), Value::Integer(99)),
            (&row(4, 4), Value::Counter32(5)),
            (&row(4, 5), Value::OctetString(b"n/a".to_vec())),
        ]);
        let r = read(&v, &library::builtin());
        let by_oid = |ix: u32| {
            r.meters
                .iter()
                .find(|m| m.oid == row(4, ix))
                .unwrap_or_else(|| panic!("row {ix}: {:?}", r.meters))
        };
        assert_eq!(by_oid(1).rule.as_deref(), Some("lexmark.printMono"));
        assert_eq!(by_oid(1).unit, Some(Unit::Sides));
        assert_eq!(by_oid(3).unit, Some(Unit::Sheets));
        let unknown = by_oid(4);
        assert_eq!(
            (unknown.value, &unknown.rule, unknown.unit),
            (5, &None, None)
        );
        assert_eq!(r.meters.len(), 4, "the text is not a meter: {:?}", r.meters);
        // Mono print sides include the blank ones (the seed's rule); print sides in
        // sheets do not fill a side counter.
        assert_eq!(r.counters.mono_print_side_count, Some(1010));
        assert_eq!(
            r.counters.ext.sources["monoPrintSideCount"],
            "library:lexmark.printMono+lexmark.blankPrint"
        );
        assert_eq!(r.counters.print_side_count, None);
    }

    #[test]
    fn standard_counters_win_over_vendor_meters_and_both_are_listed() {
        let v = values(&[
            (
                "1.3.6.1.2.1.1.2.0",
                Value::ObjectId("1.3.6.1.4.1.11.2.3.9.1".parse().unwrap()),
            ),
            ("1.3.6.1.2.1.43.10.2.1.4.1.1", Value::Counter32(900)),
            ("1.3.6.1.2.1.43.10.2.1.3.1.1", Value::Integer(7)),
            // PWG system totals (service key 1 = systemTotals): mono 800.
            ("1.3.6.1.4.1.2699.1.3.1.2.1.1.2.1", Value::Integer(3)),
            (
                "1.3.6.1.4.1.2699.1.3.1.8.1.1.5.1.3.3",
                Value::Counter32(800),
            ),
            // HP's own: mono 799 (a different moment), colour 100.
            (
                "1.3.6.1.4.1.11.2.3.9.4.2.1.4.1.2.6.0",
                Value::Counter32(799),
            ),
            (
                "1.3.6.1.4.1.11.2.3.9.4.2.1.4.1.2.7.0",
                Value::Counter32(100),
            ),
        ]);
        let r = read(&v, &library::builtin());
        assert_eq!(r.counters.mono_side_count, Some(800));
        assert_eq!(
            r.counters.ext.sources["monoSideCount"],
            "pwg:icImpressionMonochromeImps.1.3.3"
        );
        assert_eq!(r.counters.color_side_count, Some(100));
        assert_eq!(
            r.counters.ext.sources["colorSideCount"],
            "library:hp.totalColorPageCount"
        );
        let rules: Vec<Option<&str>> = r.meters.iter().map(|m| m.rule.as_deref()).collect();
        assert_eq!(
            rules,
            [
                Some("printer-mib.prtMarkerLifeCount"),
                Some("hp.totalMonoPageCount"),
                Some("hp.totalColorPageCount"),
                Some("pwg.icImpressionMonochromeImps"),
            ]
        );
        assert_eq!(r.meters[0].unit, Some(Unit::Impressions));
    }

    #[test]
    fn supplies_get_their_chip_serial_and_part_number_from_the_vendor_table() {
        let t = "1.3.6.1.4.1.641.6.4.4.1.1";
        let s = |col: u32, ix: u32, text: &str| {
            (
                format!("{t}.{col}.1.{ix}"),
                Value::OctetString(text.as_bytes().to_vec()),
            )
        };
        let mut pairs = vec![(
            "1.3.6.1.2.1.1.2.0".to_string(),
            Value::ObjectId("1.3.6.1.4.1.641.2.1".parse().unwrap()),
        )];
        // Printer-MIB: a black toner, a cyan toner, two imaging units without colorant.
        for (ix, d, colorant) in [
            (1, "Black Cartridge", 1),
            (2, "Cyan Cartridge", 2),
            (3, "Imaging Unit", 0),
            (4, "Imaging Unit", 0),
        ] {
            pairs.push((
                format!("1.3.6.1.2.1.43.11.1.1.6.1.{ix}"),
                Value::OctetString(d.as_bytes().to_vec()),
            ));
            pairs.push((
                format!("1.3.6.1.2.1.43.11.1.1.3.1.{ix}"),
                Value::Integer(colorant),
            ));
        }
        for (ix, c) in [(1, "black"), (2, "cyan")] {
            pairs.push((
                format!("1.3.6.1.2.1.43.12.1.1.4.1.{ix}"),
                Value::OctetString(c.as_bytes().to_vec()),
            ));
        }
        // Lexmark's table: the black one by its description (spacing and case aside),
        // the cyan one by its colorant only, an imaging unit whose description two
        // supplies share.
        pairs.extend([
            s(5, 1, "black  cartridge"),
            s(4, 1, "black"),
            s(6, 1, "CAFE0001"),
            s(7, 1, "24B6035"),
            s(5, 2, "Toner C"),
            s(4, 2, "cyan"),
            s(6, 2, "CAFE0002"),
            s(5, 3, "Imaging Unit"),
            s(4, 3, "none"),
            s(6, 3, "CAFE0003"),
        ]);
        let v = values(&pairs);
        let r = read(&v, &library::builtin());
        let ids = chip_ids(&r);
        assert_eq!(
            ids,
            [
                (Some("CAFE0001"), Some("24B6035")),
                (Some("CAFE0002"), None),
                (None, None),
                (None, None)
            ],
            "two imaging units share their description and colorant: neither is guessed"
        );
        let cols = walked(&library::builtin(), "1.3.6.1.4.1.641.2.1");
        for c in [".4", ".5", ".6", ".7"] {
            assert!(cols.contains(&format!("{t}{c}")), "{c}: {cols:?}");
        }
    }

    #[test]
    fn hp_cartridges_get_their_chip_serial_by_the_part_number_in_their_description() {
        let t = "1.3.6.1.4.1.11.2.3.9.4.2.1.4.1.10.1.1";
        // HP strings start with a symbol-set prefix (0x01 0x15, Roman-8).
        let hp = |text: &str| {
            let mut b = vec![0x01, 0x15];
            b.extend_from_slice(text.as_bytes());
            Value::OctetString(b)
        };
        let mut pairs = vec![(
            "1.3.6.1.2.1.1.2.0".to_string(),
            Value::ObjectId("1.3.6.1.4.1.11.2.3.9.1".parse().unwrap()),
        )];
        for (ix, d) in [
            (1, "Black Cartridge HP CF410A"),
            (2, "Cyan Cartridge HP CF411A"),
            (3, "Magenta Cartridge HP CF413A"),
            (4, "Imaging Drum HP CF232A"),
        ] {
            pairs.push((
                format!("1.3.6.1.2.1.43.11.1.1.6.1.{ix}"),
                Value::OctetString(d.as_bytes().to_vec()),
            ));
            pairs.push((format!("1.3.6.1.2.1.43.11.1.1.3.1.{ix}"), Value::Integer(0)));
        }
        // Rows in another order than the supplies; magenta's part is on two rows (no
        // guess); a row whose part no supply names; no row for the drum.
        for (n, serial, part) in [
            (1, "CRUM-K-0001", "CF411A"),
            (2, "CRUM-K-0002", "CF410A"),
            (3, "CRUM-M-0003", "CF413A"),
            (4, "CRUM-M-0004", "CF413A"),
            (5, "CRUM-X-0005", "W9008MC"),
        ] {
            pairs.push((format!("{t}.3.{n}.0"), hp(serial)));
            pairs.push((format!("{t}.56.{n}.0"), hp(part)));
        }
        let v = values(&pairs);
        let lib = library::builtin();
        let r = read(&v, &lib);
        let ids = chip_ids(&r);
        assert_eq!(
            ids,
            [
                (Some("CRUM-K-0002"), Some("CF410A")),
                (Some("CRUM-K-0001"), Some("CF411A")),
                (None, None),
                (None, None)
            ]
        );
        let cols = walked(&lib, "1.3.6.1.4.1.11.2.3.9.1");
        for c in [".3", ".56"] {
            assert!(cols.contains(&format!("{t}{c}")), "{c}: {cols:?}");
        }
    }

    #[test]
    fn a_label_printers_text_odometer_gives_its_length_and_unit() {
        let text = |t: &str| Value::OctetString(t.as_bytes().to_vec());
        let v = values(&[
            (
                "1.3.6.1.2.1.1.2.0",
                Value::ObjectId("1.3.6.1.4.1.10642.1".parse().unwrap()),
            ),
            ("1.3.6.1.4.1.10642.200.17.1.0", Value::Integer(12)),
            ("1.3.6.1.4.1.10642.200.17.2.0", text("48,210")),
            (
                "1.3.6.1.4.1.10642.200.17.3.0",
                text("89667 INCHES, 227775 CENTIMETERS"),
            ),
            ("1.3.6.1.4.1.10642.200.17.7.0", text("n/a")),
        ]);
        let lib = library::builtin();
        assert_eq!(
            walked(&lib, "1.3.6.1.4.1.10642.1"),
            ["1.3.6.1.4.1.10642.200.17"],
            "the odometer, in one walk"
        );
        let r = read(&v, &lib);
        let got: Vec<(&str, i64, Option<Unit>, Option<&str>)> = r
            .meters
            .iter()
            .map(|m| (m.oid.as_str(), m.value, m.unit, m.rule.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "1.3.6.1.4.1.10642.200.17.1.0",
                    12,
                    Some(Unit::Other),
                    Some("zebra.userLabelCount")
                ),
                (
                    "1.3.6.1.4.1.10642.200.17.2.0",
                    48210,
                    Some(Unit::Other),
                    Some("zebra.totalLabelCount")
                ),
                (
                    "1.3.6.1.4.1.10642.200.17.3.0",
                    89667,
                    Some(Unit::Inches),
                    Some("zebra.totalPrintLength")
                ),
            ],
            "a text that is no count is not a meter"
        );
        // Lengths and labels are no sides: the seed's counters stay empty.
        assert_eq!(r.counters.total_side_count, None);
        assert_eq!(r.counters.print_side_count, None);
    }

    #[test]
    fn samsung_rows_are_listed_with_their_unit_and_no_meaning_is_guessed() {
        let t = "1.3.6.1.4.1.236.11.5.11.53.11.2.1";
        let v = values(&[
            (
                "1.3.6.1.2.1.1.2.0",
                Value::ObjectId("1.3.6.1.4.1.236.11.5.1".parse().unwrap()),
            ),
            // Two rows as the MIB indexes them (hrDeviceIndex, row), print and copy.
            (&format!("{t}.2.1.1"), Value::Integer(1)),
            (&format!("{t}.4.1.1"), Value::Integer(8)),
            (&format!("{t}.7.1.1"), Value::Counter32(4143)),
            (&format!("{t}.2.1.2"), Value::Integer(2)),
            (&format!("{t}.4.1.2"), Value::Integer(7)),
            (&format!("{t}.7.1.2"), Value::Counter32(50)),
        ]);
        let lib = library::builtin();
        let cols = walked(&lib, "1.3.6.1.4.1.236.11.5.1");
        assert!(cols.contains(&format!("{t}.7")), "{cols:?}");
        assert!(cols.contains(&format!("{t}.4")), "{cols:?}");
        let r = read(&v, &lib);
        // (oid, value, unit, nothing claimed: no function, colour or rule)
        let got: Vec<(&str, i64, Option<Unit>, bool)> = r
            .meters
            .iter()
            .map(|m| {
                let bare = m.function.is_none() && m.colour.is_none() && m.rule.is_none();
                (m.oid.as_str(), m.value, m.unit, bare)
            })
            .collect();
        let oid1 = format!("{t}.7.1.1");
        let oid2 = format!("{t}.7.1.2");
        assert_eq!(
            got,
            [
                (oid1.as_str(), 4143, Some(Unit::Sheets), true),
                (oid2.as_str(), 50, Some(Unit::Impressions), true),
            ]
        );
        assert_eq!(r.counters.print_side_count, None);
        assert_eq!(r.counters.copy_side_count, None);
    }

    #[test]
    fn a_printer_serving_thousands_of_counters_keeps_a_bounded_list() {
        let mut pairs = vec![(
            "1.3.6.1.2.1.1.2.0".to_string(),
            Value::ObjectId("1.3.6.1.4.1.1347.41".parse().unwrap()),
        )];
        for i in 0..3000u32 {
            pairs.push((
                format!("1.3.6.1.4.1.1347.42.3.1.9.{i}"),
                Value::Counter32(i),
            ));
        }
        let v = values(&pairs);
        let r = read(&v, &library::builtin());
        assert_eq!(r.meters.len(), MAX_METERS);
        assert_eq!(
            r.device.cuts,
            ["meters: 3000 counters, the first 1024 kept"]
        );
    }
}
