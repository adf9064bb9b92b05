//! IPP messages (RFC 8010 §3): a request encoder and a bounded response decoder.
//!
//! A response is read from a byte slice already capped by the client; the decoder then
//! bounds what that slice can make it build: attributes, values per attribute, collection
//! depth. A value's length is a 16-bit field, so no single value exceeds 64 KiB.

use std::fmt;

/// The most attributes a response may carry in all its groups (a full printer answers
/// a few hundred).
pub const MAX_ATTRIBUTES: usize = 4096;
/// The most values one attribute (or one collection member) may carry.
pub const MAX_VALUES: usize = 1024;
/// The deepest nesting of collections accepted.
pub const MAX_DEPTH: usize = 8;

/// Delimiter tags (RFC 8010 §3.5.1).
pub mod delimiter {
    /// operation-attributes-tag
    pub const OPERATION: u8 = 0x01;
    /// job-attributes-tag
    pub const JOB: u8 = 0x02;
    /// end-of-attributes-tag
    pub const END: u8 = 0x03;
    /// printer-attributes-tag
    pub const PRINTER: u8 = 0x04;
    /// unsupported-attributes-tag
    pub const UNSUPPORTED: u8 = 0x05;
}

/// Value tags (RFC 8010 §3.5.2) used here.
pub mod tag {
    /// integer
    pub const INTEGER: u8 = 0x21;
    /// boolean
    pub const BOOLEAN: u8 = 0x22;
    /// enum
    pub const ENUM: u8 = 0x23;
    /// octetString
    pub const OCTET_STRING: u8 = 0x30;
    /// dateTime
    pub const DATE_TIME: u8 = 0x31;
    /// resolution
    pub const RESOLUTION: u8 = 0x32;
    /// rangeOfInteger
    pub const RANGE: u8 = 0x33;
    /// begCollection
    pub const BEG_COLLECTION: u8 = 0x34;
    /// textWithLanguage
    pub const TEXT_WITH_LANGUAGE: u8 = 0x35;
    /// nameWithLanguage
    pub const NAME_WITH_LANGUAGE: u8 = 0x36;
    /// endCollection
    pub const END_COLLECTION: u8 = 0x37;
    /// textWithoutLanguage
    pub const TEXT: u8 = 0x41;
    /// nameWithoutLanguage
    pub const NAME: u8 = 0x42;
    /// keyword
    pub const KEYWORD: u8 = 0x44;
    /// uri
    pub const URI: u8 = 0x45;
    /// charset
    pub const CHARSET: u8 = 0x47;
    /// naturalLanguage
    pub const NATURAL_LANGUAGE: u8 = 0x48;
    /// memberAttrName
    pub const MEMBER_NAME: u8 = 0x4A;
    /// The extension tag: the real tag follows in four octets.
    pub const EXTENSION: u8 = 0x7F;
}

/// Get-Printer-Attributes (RFC 8011 §4.2.5).
pub const GET_PRINTER_ATTRIBUTES: u16 = 0x000B;

/// One attribute value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// integer
    Integer(i32),
    /// enum
    Enum(i32),
    /// boolean
    Boolean(bool),
    /// Any character-string syntax (text, name, keyword, uri, charset, language, MIME
    /// type, memberAttrName...), with its tag; invalid UTF-8 is replaced.
    String(u8, String),
    /// octetString (printer-supply, printer-alert and printer-input-tray are octet
    /// strings holding `key=value;` text).
    Octets(Vec<u8>),
    /// A collection: its members in order.
    Collection(Vec<Attribute>),
    /// An out-of-band value (unsupported 0x10, unknown 0x12, no-value 0x13...).
    OutOfBand(u8),
    /// Any other syntax (dateTime, resolution, rangeOfInteger...), kept raw.
    Other(u8, Vec<u8>),
}

impl Value {
    /// The value as text: character strings as they are, octet strings read as UTF-8
    /// (lossy).
    pub fn text(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            Value::String(_, s) => Some(std::borrow::Cow::Borrowed(s)),
            Value::Octets(b) => Some(String::from_utf8_lossy(b)),
            _ => None,
        }
    }

    /// The value as an integer (integer or enum).
    pub fn int(&self) -> Option<i32> {
        match self {
            Value::Integer(i) | Value::Enum(i) => Some(*i),
            _ => None,
        }
    }
}

/// A named attribute and its values (1setOf has more than one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    /// The attribute's name.
    pub name: String,
    /// Its values, in order.
    pub values: Vec<Value>,
}

/// An attribute group (operation, printer, unsupported...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// Its delimiter tag ([`delimiter`]).
    pub tag: u8,
    /// Its attributes in order.
    pub attributes: Vec<Attribute>,
}

/// A decoded response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// IPP version (major, minor).
    pub version: (u8, u8),
    /// Status code (0x0000..=0x00FF successful).
    pub status: u16,
    /// The request id it answers.
    pub request_id: u32,
    /// Attribute groups in order.
    pub groups: Vec<Group>,
}

impl Response {
    /// The first attribute of that name in the groups with that delimiter tag.
    pub fn attribute(&self, group: u8, name: &str) -> Option<&Attribute> {
        self.groups
            .iter()
            .filter(|g| g.tag == group)
            .flat_map(|g| g.attributes.iter())
            .find(|a| a.name == name)
    }

    /// The values of a printer attribute (empty when absent).
    pub fn printer(&self, name: &str) -> &[Value] {
        self.attribute(delimiter::PRINTER, name)
            .map_or(&[], |a| a.values.as_slice())
    }

    /// Whether the status code says success (RFC 8011 §4.1.6: 0x0000..=0x00FF).
    pub fn is_success(&self) -> bool {
        self.status <= 0x00FF
    }
}

/// Why a response could not be decoded, with the byte offset: where the fault is, or for a
/// bad value, just past it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("IPP response malformed at byte {offset}: {reason}")]
pub struct DecodeError {
    /// Offset in the message.
    pub offset: usize,
    /// What was wrong.
    pub reason: &'static str,
}

/// Encodes a Get-Printer-Attributes request for `printer_uri` asking for `requested`
/// (all attributes when empty).
pub fn get_printer_attributes_request(
    request_id: u32,
    printer_uri: &str,
    requested: &[&str],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + requested.iter().map(|r| r.len() + 3).sum::<usize>());
    out.extend_from_slice(&[2, 0]);
    out.extend_from_slice(&GET_PRINTER_ATTRIBUTES.to_be_bytes());
    out.extend_from_slice(&request_id.to_be_bytes());
    out.push(delimiter::OPERATION);
    attr(&mut out, tag::CHARSET, "attributes-charset", b"utf-8");
    attr(
        &mut out,
        tag::NATURAL_LANGUAGE,
        "attributes-natural-language",
        b"en",
    );
    attr(&mut out, tag::URI, "printer-uri", printer_uri.as_bytes());
    attr(&mut out, tag::NAME, "requesting-user-name", b"fleet-agent");
    for (i, r) in requested.iter().enumerate() {
        // Further values of a 1setOf have an empty name (RFC 8010 §3.1.5).
        let name = if i == 0 { "requested-attributes" } else { "" };
        attr(&mut out, tag::KEYWORD, name, r.as_bytes());
    }
    out.push(delimiter::END);
    out
}

fn attr(out: &mut Vec<u8>, tag: u8, name: &str, value: &[u8]) {
    out.push(tag);
    put_short(out, name.as_bytes());
    put_short(out, value);
}

fn put_short(out: &mut Vec<u8>, b: &[u8]) {
    // Names and values written here are ours and short; a longer one is cut rather
    // than written with a wrong length.
    let n = b.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&(n as u16).to_be_bytes());
    out.extend_from_slice(&b[..n]);
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn err(&self, reason: &'static str) -> DecodeError {
        DecodeError {
            offset: self.at,
            reason,
        }
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.b.len());
        match end {
            Some(e) => {
                let s = &self.b[self.at..e];
                self.at = e;
                Ok(s)
            }
            None => Err(self.err(what)),
        }
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let s = self.take(2, what)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let s = self.take(4, what)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn peek(&self) -> Option<u8> {
        self.b.get(self.at).copied()
    }
}

/// One attribute-with-one-value as it sits on the wire.
struct Raw<'a> {
    tag: u8,
    name: &'a [u8],
    value: &'a [u8],
}

fn raw<'a>(r: &mut Reader<'a>) -> Result<Raw<'a>, DecodeError> {
    let tag = r.u8("value tag")?;
    let n = r.u16("name length")?;
    let name = r.take(usize::from(n), "name")?;
    let v = r.u16("value length")?;
    let value = r.take(usize::from(v), "value")?;
    Ok(Raw { tag, name, value })
}

fn value(
    r: &mut Reader<'_>,
    raw: &Raw<'_>,
    depth: usize,
    budget: &mut usize,
) -> Result<Value, DecodeError> {
    let v = raw.value;
    let four = |what| -> Result<i32, DecodeError> {
        <[u8; 4]>::try_from(v)
            .map(i32::from_be_bytes)
            .map_err(|_| r.err(what))
    };
    Ok(match raw.tag {
        0x10..=0x1F => Value::OutOfBand(raw.tag),
        tag::INTEGER => Value::Integer(four("integer not 4 octets")?),
        tag::ENUM => Value::Enum(four("enum not 4 octets")?),
        tag::BOOLEAN => match v {
            [b] => Value::Boolean(*b != 0),
            _ => return Err(r.err("boolean not 1 octet")),
        },
        tag::OCTET_STRING => Value::Octets(v.to_vec()),
        tag::TEXT_WITH_LANGUAGE | tag::NAME_WITH_LANGUAGE => {
            // language length, language, text length, text
            let mut inner = Reader { b: v, at: 0 };
            let n = inner
                .u16("language length")
                .map_err(|_| r.err("truncated text with language"))?;
            inner
                .take(usize::from(n), "language")
                .map_err(|_| r.err("truncated text with language"))?;
            let n = inner
                .u16("text length")
                .map_err(|_| r.err("truncated text with language"))?;
            let t = inner
                .take(usize::from(n), "text")
                .map_err(|_| r.err("truncated text with language"))?;
            Value::String(raw.tag, String::from_utf8_lossy(t).into_owned())
        }
        0x40..=0x5F => Value::String(raw.tag, String::from_utf8_lossy(v).into_owned()),
        tag::BEG_COLLECTION => Value::Collection(collection(r, depth + 1, budget)?),
        tag::END_COLLECTION => return Err(r.err("endCollection outside a collection")),
        tag::EXTENSION => {
            // RFC 8010 §3.5.2: the value starts with the real tag in four octets, whose
            // high bit must be clear. Kept raw: no syntax the agent reads uses one.
            match v.get(..4) {
                Some(t) if t[0] & 0x80 == 0 => Value::Other(tag::EXTENSION, v.to_vec()),
                _ => return Err(r.err("malformed extension tag")),
            }
        }
        t => Value::Other(t, v.to_vec()),
    })
}

/// Reads a collection's members up to its endCollection (RFC 8010 §3.1.6).
fn collection(
    r: &mut Reader<'_>,
    depth: usize,
    budget: &mut usize,
) -> Result<Vec<Attribute>, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(r.err("collections nested deeper than 8"));
    }
    let mut members: Vec<Attribute> = Vec::new();
    loop {
        let item = raw(r)?;
        match item.tag {
            tag::END_COLLECTION => return Ok(members),
            tag::MEMBER_NAME => {
                let name = String::from_utf8_lossy(item.value).into_owned();
                count(r, budget)?;
                let first = raw(r)?;
                if first.tag == tag::END_COLLECTION || first.tag == tag::MEMBER_NAME {
                    return Err(r.err("collection member without a value"));
                }
                let v = value(r, &first, depth, budget)?;
                members.push(Attribute {
                    name,
                    values: vec![v],
                });
            }
            _ => {
                // An additional value of the last member (empty name).
                let Some(last) = members.last_mut() else {
                    return Err(r.err("collection value before any member name"));
                };
                if last.values.len() >= MAX_VALUES {
                    return Err(r.err("more than 1024 values in one attribute"));
                }
                let v = value(r, &item, depth, budget)?;
                last.values.push(v);
            }
        }
    }
}

fn count(r: &Reader<'_>, budget: &mut usize) -> Result<(), DecodeError> {
    *budget = budget
        .checked_sub(1)
        .ok_or_else(|| r.err("more than 4096 attributes"))?;
    Ok(())
}

/// Decodes a response (or any IPP message) from its bytes.
pub fn decode(b: &[u8]) -> Result<Response, DecodeError> {
    let mut r = Reader { b, at: 0 };
    let major = r.u8("version")?;
    let minor = r.u8("version")?;
    let status = r.u16("status code")?;
    let request_id = r.u32("request id")?;
    let mut groups: Vec<Group> = Vec::new();
    let mut budget = MAX_ATTRIBUTES;
    loop {
        let Some(t) = r.peek() else {
            return Err(r.err("no end-of-attributes tag"));
        };
        if t == delimiter::END {
            break;
        }
        if t <= 0x0F {
            r.at += 1;
            groups.push(Group {
                tag: t,
                attributes: Vec::new(),
            });
            continue;
        }
        let Some(group) = groups.last_mut() else {
            return Err(r.err("attribute before any group"));
        };
        let item = raw(&mut r)?;
        if item.name.is_empty() {
            // An additional value of the previous attribute.
            let Some(last) = group.attributes.last_mut() else {
                return Err(r.err("additional value before any attribute"));
            };
            if last.values.len() >= MAX_VALUES {
                return Err(r.err("more than 1024 values in one attribute"));
            }
            let v = value(&mut r, &item, 0, &mut budget)?;
            last.values.push(v);
        } else {
            count(&r, &mut budget)?;
            let name = String::from_utf8_lossy(item.name).into_owned();
            let v = value(&mut r, &item, 0, &mut budget)?;
            group.attributes.push(Attribute {
                name,
                values: vec![v],
            });
        }
    }
    Ok(Response {
        version: (major, minor),
        status,
        request_id,
        groups,
    })
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Integer(i) | Value::Enum(i) => write!(f, "{i}"),
            Value::Boolean(b) => write!(f, "{b}"),
            Value::String(_, s) => f.write_str(s),
            Value::Octets(b) => f.write_str(&String::from_utf8_lossy(b)),
            Value::Collection(m) => {
                f.write_str("{")?;
                for (i, a) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{}=", a.name)?;
                    for (j, v) in a.values.iter().enumerate() {
                        if j > 0 {
                            f.write_str(",")?;
                        }
                        write!(f, "{v}")?;
                    }
                }
                f.write_str("}")
            }
            Value::OutOfBand(t) => write!(f, "<out-of-band 0x{t:02x}>"),
            Value::Other(t, b) => write!(f, "<0x{t:02x}: {} octets>", b.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a response by hand, the way a printer writes one.
    fn response(body: &[u8]) -> Vec<u8> {
        let mut m = vec![2, 0, 0, 0, 0, 0, 0, 7];
        m.extend_from_slice(body);
        m
    }

    fn a(out: &mut Vec<u8>, t: u8, name: &str, v: &[u8]) {
        attr(out, t, name, v);
    }

    #[test]
    fn a_request_is_encoded_as_rfc_8010_says() {
        let m = get_printer_attributes_request(
            9,
            "ipp://p/ipp/print",
            &["printer-supply", "printer-uuid"],
        );
        assert_eq!(&m[..8], &[2, 0, 0, 0x0B, 0, 0, 0, 9]);
        assert_eq!(m[8], delimiter::OPERATION);
        assert_eq!(*m.last().unwrap(), delimiter::END);
        // It decodes back with our own decoder: the 1setOf's second value joined.
        let back = decode(&m).unwrap();
        let req = back
            .attribute(delimiter::OPERATION, "requested-attributes")
            .unwrap();
        assert_eq!(
            req.values,
            vec![
                Value::String(tag::KEYWORD, "printer-supply".into()),
                Value::String(tag::KEYWORD, "printer-uuid".into())
            ]
        );
        assert_eq!(
            back.attribute(delimiter::OPERATION, "printer-uri")
                .unwrap()
                .values[0]
                .text()
                .unwrap(),
            "ipp://p/ipp/print"
        );
    }

    #[test]
    fn a_printer_group_with_sets_collections_and_languages_decodes() {
        let mut b = vec![delimiter::OPERATION];
        a(&mut b, tag::CHARSET, "attributes-charset", b"utf-8");
        b.push(delimiter::PRINTER);
        a(&mut b, tag::ENUM, "printer-state", &3i32.to_be_bytes());
        a(
            &mut b,
            tag::KEYWORD,
            "printer-state-reasons",
            b"toner-low-warning",
        );
        a(&mut b, tag::KEYWORD, "", b"media-empty-error");
        a(
            &mut b,
            tag::OCTET_STRING,
            "printer-supply",
            b"index=1;level=40;",
        );
        let mut t = Vec::new();
        put_short(&mut t, b"fr");
        put_short(&mut t, "Étage 2".as_bytes());
        a(&mut b, tag::TEXT_WITH_LANGUAGE, "printer-location", &t);
        a(&mut b, tag::BEG_COLLECTION, "media-col-default", b"");
        a(&mut b, tag::MEMBER_NAME, "", b"media-size");
        a(&mut b, tag::BEG_COLLECTION, "", b"");
        a(&mut b, tag::MEMBER_NAME, "", b"x-dimension");
        a(&mut b, tag::INTEGER, "", &21000i32.to_be_bytes());
        a(&mut b, tag::END_COLLECTION, "", b"");
        a(&mut b, tag::MEMBER_NAME, "", b"media-source");
        a(&mut b, tag::KEYWORD, "", b"tray-1");
        a(&mut b, tag::END_COLLECTION, "", b"");
        a(&mut b, 0x13, "printer-alert", b"");
        b.push(delimiter::END);
        let r = decode(&response(&b)).unwrap();
        assert!(r.is_success());
        assert_eq!(r.request_id, 7);
        assert_eq!(r.printer("printer-state")[0].int(), Some(3));
        let reasons: Vec<_> = r
            .printer("printer-state-reasons")
            .iter()
            .map(|v| v.to_string())
            .collect();
        assert_eq!(reasons, ["toner-low-warning", "media-empty-error"]);
        assert_eq!(
            r.printer("printer-supply")[0].text().unwrap(),
            "index=1;level=40;"
        );
        assert_eq!(r.printer("printer-location")[0].text().unwrap(), "Étage 2");
        assert_eq!(
            r.printer("media-col-default")[0].to_string(),
            "{media-size={x-dimension=21000} media-source=tray-1}"
        );
        assert_eq!(r.printer("printer-alert"), &[Value::OutOfBand(0x13)]);
    }

    #[test]
    fn malformed_and_oversized_input_is_refused_with_its_offset() {
        // Truncated header.
        assert_eq!(decode(&[2, 0, 0]).unwrap_err().reason, "status code");
        // No end tag.
        assert_eq!(
            decode(&response(&[delimiter::PRINTER])).unwrap_err().reason,
            "no end-of-attributes tag"
        );
        // A value longer than what is left.
        let e = decode(&response(&[
            delimiter::PRINTER,
            tag::KEYWORD,
            0,
            1,
            b'x',
            0,
            9,
            b'y',
        ]))
        .unwrap_err();
        assert_eq!((e.offset, e.reason), (15, "value"));
        // Attribute before a group.
        let mut b = Vec::new();
        a(&mut b, tag::KEYWORD, "x", b"y");
        assert_eq!(
            decode(&response(&b)).unwrap_err().reason,
            "attribute before any group"
        );
        // Integer of the wrong size.
        let mut b = vec![delimiter::PRINTER];
        a(&mut b, tag::INTEGER, "x", b"abc");
        b.push(delimiter::END);
        assert_eq!(
            decode(&response(&b)).unwrap_err().reason,
            "integer not 4 octets"
        );
        // Too many attributes.
        let mut b = vec![delimiter::PRINTER];
        for _ in 0..=MAX_ATTRIBUTES {
            a(&mut b, tag::KEYWORD, "x", b"y");
        }
        b.push(delimiter::END);
        assert_eq!(
            decode(&response(&b)).unwrap_err().reason,
            "more than 4096 attributes"
        );
        // Too many values.
        let mut b = vec![delimiter::PRINTER];
        a(&mut b, tag::KEYWORD, "x", b"y");
        for _ in 0..MAX_VALUES {
            a(&mut b, tag::KEYWORD, "", b"y");
        }
        b.push(delimiter::END);
        assert_eq!(
            decode(&response(&b)).unwrap_err().reason,
            "more than 1024 values in one attribute"
        );
        // Nesting too deep.
        let mut b = vec![delimiter::PRINTER];
        a(&mut b, tag::BEG_COLLECTION, "c", b"");
        for _ in 0..MAX_DEPTH {
            a(&mut b, tag::MEMBER_NAME, "", b"m");
            a(&mut b, tag::BEG_COLLECTION, "", b"");
        }
        assert_eq!(
            decode(&response(&b)).unwrap_err().reason,
            "collections nested deeper than 8"
        );
        // A collection that never ends.
        let mut b = vec![delimiter::PRINTER];
        a(&mut b, tag::BEG_COLLECTION, "c", b"");
        a(&mut b, tag::MEMBER_NAME, "", b"m");
        a(&mut b, tag::INTEGER, "", &1i32.to_be_bytes());
        assert_eq!(decode(&response(&b)).unwrap_err().reason, "value tag");
    }

    #[test]
    fn an_extension_tag_carries_its_type_in_the_value() {
        let mut b = vec![delimiter::PRINTER];
        a(&mut b, tag::EXTENSION, "x-ext", &[0, 0, 0x40, 0x01, 9, 9]);
        a(&mut b, tag::KEYWORD, "after", b"ok");
        b.push(delimiter::END);
        let r = decode(&response(&b)).unwrap();
        assert_eq!(
            r.printer("x-ext"),
            &[Value::Other(tag::EXTENSION, vec![0, 0, 0x40, 0x01, 9, 9])]
        );
        assert_eq!(r.printer("after")[0].to_string(), "ok");
        for bad in [&[0x80, 0, 0, 1][..], &[0, 0][..]] {
            let mut b = vec![delimiter::PRINTER];
            a(&mut b, tag::EXTENSION, "x-ext", bad);
            b.push(delimiter::END);
            assert_eq!(
                decode(&response(&b)).unwrap_err().reason,
                "malformed extension tag"
            );
        }
    }

    #[test]
    fn an_error_status_is_not_success() {
        let m = [
            2,
            0,
            0x04,
            0x06,
            0,
            0,
            0,
            1,
            delimiter::OPERATION,
            delimiter::END,
        ];
        let r = decode(&m).unwrap();
        assert_eq!(r.status, 0x0406);
        assert!(!r.is_success());
    }
}
