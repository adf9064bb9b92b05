//! The `.snmprec` recording format (snmpsim's): one `OID|TAG|VALUE` per line. Tags:
//! 2 INTEGER, 4 OCTET STRING, 4x hex OCTET STRING, 5 NULL, 6 OID, 64 IpAddress,
//! 64x hex IpAddress, 65 Counter32, 66 Gauge32, 67 TimeTicks, 68 Opaque, 70 Counter64,
//! 128/129/130 exceptions; any tag with `x` takes hex. Reading never fails on a bad
//! line: it is skipped with a warning naming `file:line`.

use crate::{Oid, Value};
use std::fmt;
use std::path::Path;

/// A line that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// File the line came from.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub reason: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

/// The objects of one recording, in file order (duplicates kept).
pub type Records = Vec<(Oid, Value)>;

/// Parses recording text. `file` names the source in warnings.
pub fn parse(file: &str, text: &str) -> (Records, Vec<Warning>) {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Ok(pair) => out.push(pair),
            Err(reason) => warnings.push(Warning {
                file: file.to_string(),
                line: i + 1,
                reason,
            }),
        }
    }
    (out, warnings)
}

/// Reads and parses a recording file (bytes that are not UTF-8 are read as Latin-1).
///
/// # Errors
/// Only when the file cannot be read.
pub fn read(path: &Path) -> std::io::Result<(Records, Vec<Warning>)> {
    let bytes = std::fs::read(path)?;
    let text = match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => e.into_bytes().iter().map(|&b| char::from(b)).collect(),
    };
    Ok(parse(&path.display().to_string(), &text))
}

fn parse_line(line: &str) -> Result<(Oid, Value), String> {
    let mut parts = line.splitn(3, '|');
    let oid_text = parts.next().unwrap_or_default();
    let tag = parts.next().ok_or("missing '|' after the OID")?;
    let value = parts.next().ok_or("missing '|' after the tag")?;
    let oid: Oid = oid_text.parse().map_err(|e| format!("bad OID: {e}"))?;
    if tag.contains(':') {
        return Err(format!(
            "tag {tag:?} uses a snmpsim variation module, which is not supported"
        ));
    }
    let (num, hex) = match tag.strip_suffix('x') {
        Some(n) => (n, true),
        None => (tag, false),
    };
    let num: u8 = num
        .trim()
        .parse()
        .map_err(|_| format!("unknown tag {tag:?}"))?;
    let bytes = if hex {
        Some(decode_hex(value).ok_or_else(|| format!("tag {tag}: value is not hex: {value:?}"))?)
    } else {
        None
    };
    let text = || value.to_string();
    let int = |t: &str| -> Result<i64, String> {
        t.trim()
            .parse::<i64>()
            .map_err(|_| format!("tag {tag}: not an integer: {value:?}"))
    };
    let uint = |t: &str, max: u64| -> Result<u64, String> {
        t.trim()
            .parse::<u64>()
            .ok()
            .filter(|v| *v <= max)
            .ok_or_else(|| format!("tag {tag}: not an unsigned value in range: {value:?}"))
    };
    let v = match num {
        2 => Value::Integer(int(value)?),
        4 => Value::OctetString(bytes.unwrap_or_else(|| text().into_bytes())),
        5 => Value::Null,
        6 => Value::ObjectId(value.parse().map_err(|e| format!("tag 6: {e}"))?),
        64 => {
            let b = match bytes {
                Some(b) => b,
                None => value
                    .trim()
                    .parse::<std::net::Ipv4Addr>()
                    .map_err(|_| format!("tag 64: not an IPv4 address: {value:?}"))?
                    .octets()
                    .to_vec(),
            };
            let a: [u8; 4] = b
                .try_into()
                .map_err(|_| "tag 64: IpAddress must be 4 octets".to_string())?;
            Value::IpAddress(a)
        }
        65 => Value::Counter32(uint(value, u64::from(u32::MAX))? as u32),
        66 => Value::Gauge32(uint(value, u64::from(u32::MAX))? as u32),
        67 => Value::TimeTicks(uint(value, u64::from(u32::MAX))? as u32),
        68 => Value::Opaque(bytes.unwrap_or_else(|| text().into_bytes())),
        70 => Value::Counter64(uint(value, u64::MAX)?),
        128 => Value::NoSuchObject,
        129 => Value::NoSuchInstance,
        130 => Value::EndOfMibView,
        _ => return Err(format!("unknown tag {tag:?}")),
    };
    Ok((oid, v))
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    // Work on bytes: any non-ASCII character simply is not a hex digit.
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    hex::decode(digits).ok()
}

fn printable(b: &[u8]) -> bool {
    match std::str::from_utf8(b) {
        Ok(s) => {
            !s.chars().any(|c| c.is_control() || c == '|')
                && !s.starts_with(' ')
                && !s.ends_with(' ')
        }
        Err(_) => false,
    }
}

/// Formats one binding as an snmprec line (no newline), choosing hex where text would
/// not survive a round trip.
pub fn format_line(oid: &Oid, v: &Value) -> String {
    match v {
        Value::Integer(i) => format!("{oid}|2|{i}"),
        Value::OctetString(b) if printable(b) => format!("{oid}|4|{}", String::from_utf8_lossy(b)),
        Value::OctetString(b) => format!("{oid}|4x|{}", hex::encode(b)),
        Value::Null => format!("{oid}|5|"),
        Value::ObjectId(o) => format!("{oid}|6|{o}"),
        Value::IpAddress(a) => format!("{oid}|64|{}.{}.{}.{}", a[0], a[1], a[2], a[3]),
        Value::Counter32(x) => format!("{oid}|65|{x}"),
        Value::Gauge32(x) => format!("{oid}|66|{x}"),
        Value::TimeTicks(x) => format!("{oid}|67|{x}"),
        Value::Opaque(b) => format!("{oid}|68x|{}", hex::encode(b)),
        Value::Counter64(x) => format!("{oid}|70|{x}"),
        Value::NoSuchObject => format!("{oid}|128|"),
        Value::NoSuchInstance => format!("{oid}|129|"),
        Value::EndOfMibView => format!("{oid}|130|"),
        Value::Other { tag, data } => format!("{oid}|{tag}x|{}", hex::encode(data)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_tag_and_quirk() {
        let text = "1.3.6.1.2.1.1.1.0|4|Printer | with pipe\r\n\
                    .1.3.6.1.2.1.1.2.0|6|.1.3.6.1.4.1.1129.1.2.1\n\
                    1.3.6.1.2.1.2.2.1.6.1|4|0:50:56:b6:2c:10\n\
                    1.3.6.1.2.1.25.3.5.1.2.1|4x|2000\n\
                    1.3.6.1.2.1.4.20.1.1.10.0.0.1|64|10.0.0.1\n\
                    1.3.6.1.2.1.4.20.1.1.10.0.0.2|64x|0a000002\n\
                    1.3.6.1.2.1.43.10.2.1.4.1.1|65|7792\n\
                    1.3.6.1.2.1.2.2.1.5.1|66|100000000\n\
                    1.3.6.1.2.1.1.3.0|67|217539735\n\
                    1.3.6.1.2.1.31.1.1.1.6.1|70|18446744073709551615\n\
                    1.3.6.1.2.1.43.11.1.1.9.1.1|2|-3\n\
                    1.3.6.1.2.1.1.9.0|5|\n\n";
        let (pairs, warnings) = parse("t.snmprec", text);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(pairs.len(), 12);
        assert_eq!(
            pairs[0].1,
            Value::OctetString(b"Printer | with pipe".to_vec())
        );
        assert_eq!(
            pairs[1].1,
            Value::ObjectId("1.3.6.1.4.1.1129.1.2.1".parse().unwrap())
        );
        assert_eq!(pairs[3].1, Value::OctetString(vec![0x20, 0x00]));
        assert_eq!(pairs[5].1, Value::IpAddress([10, 0, 0, 2]));
        assert_eq!(pairs[9].1, Value::Counter64(u64::MAX));
        assert_eq!(pairs[10].1, Value::Integer(-3));
    }

    #[test]
    fn bad_lines_are_reported_with_file_and_line() {
        let text = "1.3.6.1.2.1.1.1.0|4|ok\nnot a line\n1.3.x|2|1\n1.3.6|2|abc\n1.3.6|4x|abc\n1.3.6|99|1\n1.3.6|2:numeric|x\n1.3.6|65|-1\n";
        let (pairs, warnings) = parse("bad.snmprec", text);
        assert_eq!(pairs.len(), 1);
        let lines: Vec<usize> = warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6, 7, 8]);
        assert!(warnings[0].to_string().starts_with("bad.snmprec:2: "));
    }

    #[test]
    fn hex_values_with_non_ascii_characters_are_rejected_not_panicking() {
        // Found by cargo-fuzz: slicing "é0" at byte 2 split a character.
        let (pairs, warnings) = parse("f", "1.3.6|4x|\u{e9}0\n1.3.7|4x|0\u{e9}\n");
        assert!(pairs.is_empty());
        assert_eq!(warnings.len(), 2);
    }

    #[test]
    fn format_round_trips() {
        let vals = [
            Value::Integer(-2),
            Value::OctetString(b"Black Toner".to_vec()),
            Value::OctetString(b"Black Cartridge \n38 32\0".to_vec()),
            Value::OctetString(vec![0x01, 0x15, b'V']),
            Value::ObjectId("1.3.6.1.4.1.641".parse().unwrap()),
            Value::IpAddress([127, 0, 0, 1]),
            Value::Counter32(5),
            Value::Gauge32(6),
            Value::TimeTicks(7),
            Value::Counter64(8),
            Value::Opaque(vec![9, 9]),
        ];
        let oid: Oid = "1.3.6.1.2.1.1.1.0".parse().unwrap();
        for v in vals {
            let line = format_line(&oid, &v);
            let (p, w) = parse("x", &line);
            assert!(w.is_empty(), "{line}: {w:?}");
            assert_eq!(p[0].1, v, "{line}");
        }
    }
}
