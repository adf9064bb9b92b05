//! What one reading keeps from a device, whatever the device sends: long texts are cut,
//! tables keep their first rows, and every cut is written into the report
//! (`device.cuts`), so a hostile or broken agent costs bounded memory, store and upload
//! bytes, and the admin sees that something was left out.

use fleet_snmp::{Oid, Value};
use std::collections::BTreeMap;

/// Longest OCTET STRING kept (front-panel lines, descriptions, device IDs are far
/// shorter; a 60 KB "serial number" is not one).
pub const MAX_TEXT_BYTES: usize = 1024;
/// Rows kept per table column (real printers have at most a few dozen supplies,
/// trays or alerts).
pub const MAX_ROWS: usize = 256;
/// Cuts listed in a report at most (the count of the rest is given).
const MAX_NOTES: usize = 8;

/// Cuts texts longer than [`MAX_TEXT_BYTES`] and the rows of each of `columns` past
/// [`MAX_ROWS`]; returns one line per cut.
pub fn trim(values: &mut BTreeMap<Oid, Value>, columns: &[Oid]) -> Vec<String> {
    let mut notes = trim_rows(values, columns, MAX_ROWS);
    for (oid, v) in values.iter_mut() {
        if let Value::OctetString(b) | Value::Opaque(b) = v
            && b.len() > MAX_TEXT_BYTES
        {
            notes.push(format!(
                "{oid}: {} bytes, the first {MAX_TEXT_BYTES} kept",
                b.len()
            ));
            b.truncate(MAX_TEXT_BYTES);
        }
    }
    if notes.len() > MAX_NOTES {
        let more = notes.len() - MAX_NOTES;
        notes.truncate(MAX_NOTES);
        notes.push(format!("and {more} more cuts"));
    }
    notes
}

/// Cuts the rows of each of `columns` past `max`; returns one line per cut.
pub fn trim_rows(values: &mut BTreeMap<Oid, Value>, columns: &[Oid], max: usize) -> Vec<String> {
    let mut notes = Vec::new();
    for col in columns {
        let extra: Vec<Oid> = values
            .range(col.clone()..)
            .take_while(|(k, _)| k.starts_with(col))
            .skip(max)
            .map(|(k, _)| k.clone())
            .collect();
        if !extra.is_empty() {
            notes.push(format!(
                "{col}: {} rows, the first {max} kept",
                max + extra.len()
            ));
            for k in extra {
                values.remove(&k);
            }
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(s: &str) -> Oid {
        s.parse().unwrap()
    }

    #[test]
    fn long_texts_and_long_tables_are_cut_and_said() {
        let col = oid("1.3.6.1.2.1.43.11.1.1.6");
        let mut values = BTreeMap::new();
        for i in 1..=1000u32 {
            values.insert(col.child(&[1, i]), Value::OctetString(b"toner".to_vec()));
        }
        values.insert(
            oid("1.3.6.1.2.1.43.5.1.1.17.1"),
            Value::OctetString(vec![b'9'; 60_000]),
        );
        let notes = trim(&mut values, std::slice::from_ref(&col));
        assert_eq!(values.len(), MAX_ROWS + 1);
        assert_eq!(
            values[&oid("1.3.6.1.2.1.43.5.1.1.17.1")]
                .as_bytes()
                .unwrap()
                .len(),
            MAX_TEXT_BYTES
        );
        assert_eq!(
            notes,
            [
                "1.3.6.1.2.1.43.11.1.1.6: 1000 rows, the first 256 kept",
                "1.3.6.1.2.1.43.5.1.1.17.1: 60000 bytes, the first 1024 kept"
            ]
        );
    }

    #[test]
    fn an_ordinary_reading_is_left_alone() {
        let mut values = BTreeMap::new();
        values.insert(oid("1.3.6.1.2.1.1.1.0"), Value::OctetString(b"HP".to_vec()));
        let before = values.clone();
        assert!(trim(&mut values, &[oid("1.3.6.1.2.1.43.11.1.1.6")]).is_empty());
        assert_eq!(values, before);
    }

    #[test]
    fn many_cuts_are_summarised() {
        let mut values = BTreeMap::new();
        for i in 1..=20u32 {
            values.insert(
                oid("1.3.6.1.4.1.11.1").child(&[i]),
                Value::OctetString(vec![0; 2000]),
            );
        }
        let notes = trim(&mut values, &[]);
        assert_eq!(notes.len(), MAX_NOTES + 1);
        assert_eq!(notes[MAX_NOTES], "and 12 more cuts");
    }
}
