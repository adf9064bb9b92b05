//! Robust decoding of printer strings: UTF-8 with Latin-1 fallback, trailing NULs,
//! binary prefixes on identity strings, IEEE 1284 device IDs and MAC addresses.

/// Decodes an OCTET STRING as text: trailing NULs removed, UTF-8 when valid, otherwise
/// Latin-1 (every byte maps to the code point of the same value, never lossy).
pub fn decode(bytes: &[u8]) -> String {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    let b = &bytes[..end];
    match std::str::from_utf8(b) {
        Ok(s) => s.to_string(),
        Err(_) => b.iter().map(|&c| char::from(c)).collect(),
    }
}

/// Longest identity string (serial, model, firmware) accepted.
pub const MAX_IDENTITY_BYTES: usize = 128;

/// Decodes an identity string (serial, model, firmware): like [`decode`], then drops
/// control characters (HP prefixes serials with 0x01 0x15) and trims blanks.
/// Returns `None` when nothing useful remains.
pub fn identity(bytes: &[u8]) -> Option<String> {
    let s = decode(bytes);
    let cleaned: String = s.chars().skip_while(|c| c.is_control()).collect();
    let cleaned = match cleaned.find(|c: char| c.is_control()) {
        // Text after an embedded control character is capture noise, not part of the value.
        Some(i) => cleaned[..i].to_string(),
        None => cleaned,
    };
    let t = cleaned.trim();
    // No serial, model or firmware version is this long: such a value is noise (or a
    // hostile device), and it would become the printer's identity key.
    if t.is_empty() || t.len() > MAX_IDENTITY_BYTES || is_placeholder(t) {
        None
    } else {
        Some(t.to_string())
    }
}

fn is_placeholder(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    matches!(
        l.as_str(),
        "unknown" | "none" | "n/a" | "na" | "-" | "0" | "null" | "<private>"
    ) || s
        .chars()
        .all(|c| c == '0' || c == ' ' || c == 'x' || c == 'X')
}

/// Parses an IEEE 1284 device ID (`MFG:HP;MDL:LaserJet;SN:...;`) into upper-cased keys.
pub fn parse_1284(s: &str) -> Vec<(String, String)> {
    s.split(';')
        .filter_map(|part| {
            let (k, v) = part.split_once(':')?;
            let k = k.trim().to_ascii_uppercase();
            let v = v.trim().to_string();
            (!k.is_empty() && !v.is_empty()).then_some((k, v))
        })
        .collect()
}

/// Looks up one of `keys` in a parsed 1284 ID.
pub fn field_1284<'a>(fields: &'a [(String, String)], keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| {
        fields
            .iter()
            .find(|(fk, _)| fk == k)
            .map(|(_, v)| v.as_str())
    })
}

/// Formats a MAC address from 6 raw octets or from text such as `0:50:56:b6:2c:10`
/// (some recordings store it that way). Returns `None` for all-zero or malformed values.
pub fn mac(bytes: &[u8]) -> Option<String> {
    let octets: Vec<u8> = if bytes.len() == 6 {
        bytes.to_vec()
    } else {
        let s = std::str::from_utf8(bytes).ok()?;
        let parts: Vec<&str> = s.trim().split([':', '-']).collect();
        if parts.len() != 6 {
            return None;
        }
        parts
            .iter()
            .map(|p| u8::from_str_radix(p, 16).ok())
            .collect::<Option<Vec<u8>>>()?
    };
    if octets.iter().all(|&b| b == 0) {
        return None;
    }
    Some(
        octets
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// Capitalizes a colorant name (`black` → `Black`).
pub fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_utf8_latin1_and_trailing_nuls() {
        assert_eq!(decode(b"Black Toner\0\0"), "Black Toner");
        assert_eq!(decode("Tonerbehälter".as_bytes()), "Tonerbehälter");
        assert_eq!(decode(b"Toner Entf\xe4rbung"), "Toner Entfärbung");
        assert_eq!(decode(b""), "");
    }

    #[test]
    fn identity_strips_binary_prefixes_and_placeholders() {
        assert_eq!(
            identity(b"\x01\x15VNCRC48198").as_deref(),
            Some("VNCRC48198")
        );
        assert_eq!(
            identity(b"\x01\x15U64969H9N19924\n32").as_deref(),
            Some("U64969H9N19924")
        );
        assert_eq!(identity(b"  MKRA012345 \0").as_deref(), Some("MKRA012345"));
        assert_eq!(identity(b"0000000000"), None);
        assert_eq!(identity(b"<private>"), None);
        assert_eq!(identity(b""), None);
    }

    #[test]
    fn parses_1284_ids() {
        let f =
            parse_1284("MFG:Hewlett-Packard;CMD:PJL,PCL;MDL:HP Color LaserJet M452nw;CLS:PRINTER;");
        assert_eq!(
            field_1284(&f, &["MFG", "MANUFACTURER"]),
            Some("Hewlett-Packard")
        );
        assert_eq!(
            field_1284(&f, &["MDL", "MODEL"]),
            Some("HP Color LaserJet M452nw")
        );
        assert_eq!(field_1284(&f, &["SN"]), None);
        let f = parse_1284("COMMAND SET:;MODEL:Dell S5830dn");
        assert_eq!(field_1284(&f, &["MDL", "MODEL"]), Some("Dell S5830dn"));
    }

    #[test]
    fn macs_from_octets_and_text() {
        assert_eq!(
            mac(&[0, 0x1b, 0xa9, 0x0b, 0xa7, 0x52]).as_deref(),
            Some("00:1b:a9:0b:a7:52")
        );
        assert_eq!(
            mac(b"0:50:56:b6:2c:10").as_deref(),
            Some("00:50:56:b6:2c:10")
        );
        assert_eq!(mac(&[0; 6]), None);
        assert_eq!(mac(b"garbage"), None);
    }
}
