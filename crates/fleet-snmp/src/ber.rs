//! Minimal BER (X.690) reader and writer for the subset SNMP uses: definite lengths,
//! INTEGER, OCTET STRING, NULL, OBJECT IDENTIFIER, SEQUENCE and the SNMP application tags.

use super::Oid;

/// Universal and SNMP application tags.
pub mod tag {
    /// INTEGER
    pub const INTEGER: u8 = 0x02;
    /// OCTET STRING
    pub const OCTET_STRING: u8 = 0x04;
    /// NULL
    pub const NULL: u8 = 0x05;
    /// OBJECT IDENTIFIER
    pub const OID: u8 = 0x06;
    /// SEQUENCE
    pub const SEQUENCE: u8 = 0x30;
    /// IpAddress
    pub const IP_ADDRESS: u8 = 0x40;
    /// Counter32
    pub const COUNTER32: u8 = 0x41;
    /// Gauge32 / Unsigned32
    pub const GAUGE32: u8 = 0x42;
    /// TimeTicks
    pub const TIMETICKS: u8 = 0x43;
    /// Opaque
    pub const OPAQUE: u8 = 0x44;
    /// Counter64
    pub const COUNTER64: u8 = 0x46;
    /// noSuchObject exception
    pub const NO_SUCH_OBJECT: u8 = 0x80;
    /// noSuchInstance exception
    pub const NO_SUCH_INSTANCE: u8 = 0x81;
    /// endOfMibView exception
    pub const END_OF_MIB_VIEW: u8 = 0x82;
}

/// A malformed BER encoding, with the byte offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed BER at byte {offset}: {reason}")]
pub struct BerError {
    /// Offset into the buffer being decoded.
    pub offset: usize,
    /// What was wrong.
    pub reason: &'static str,
}

/// A forward BER reader over a borrowed buffer; offsets stay absolute to the outer message.
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

/// One decoded TLV: tag, content and the absolute offset of the content.
#[derive(Debug, Clone, Copy)]
pub struct Tlv<'a> {
    /// The identifier octet.
    pub tag: u8,
    /// The content octets.
    pub content: &'a [u8],
    /// Absolute offset of `content` in the buffer the top-level reader was made from.
    pub offset: usize,
}

impl<'a> Reader<'a> {
    /// Creates a reader over the whole buffer.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            end: buf.len(),
        }
    }

    /// Creates a reader over the content of `tlv`, keeping absolute offsets.
    pub fn inside(parent: &Reader<'a>, tlv: &Tlv<'a>) -> Self {
        Reader {
            buf: parent.buf,
            pos: tlv.offset,
            end: tlv.offset + tlv.content.len(),
        }
    }

    fn err(&self, reason: &'static str) -> BerError {
        BerError {
            offset: self.pos,
            reason,
        }
    }

    /// Returns the absolute offset of the next unread byte.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Tells whether every byte has been consumed.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.end
    }

    /// Returns the next tag without consuming it.
    pub fn peek_tag(&self) -> Option<u8> {
        (self.pos < self.end).then(|| self.buf[self.pos])
    }

    /// Reads one TLV.
    ///
    /// # Errors
    /// Fails on truncation, indefinite or over-long lengths and multi-byte tags.
    pub fn read(&mut self) -> Result<Tlv<'a>, BerError> {
        if self.pos >= self.end {
            return Err(self.err("unexpected end of data"));
        }
        let tag = self.buf[self.pos];
        if tag & 0x1f == 0x1f {
            return Err(self.err("multi-byte tags are not used by SNMP"));
        }
        let mut p = self.pos + 1;
        if p >= self.end {
            return Err(self.err("missing length"));
        }
        let first = self.buf[p];
        p += 1;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 {
                return Err(self.err("indefinite length is not allowed"));
            }
            if n > 4 {
                return Err(self.err("length field too long"));
            }
            if p + n > self.end {
                return Err(self.err("truncated length"));
            }
            let mut l = 0usize;
            for &b in &self.buf[p..p + n] {
                l = (l << 8) | usize::from(b);
            }
            p += n;
            l
        };
        if len > self.end - p {
            return Err(self.err("content runs past the end of its container"));
        }
        let tlv = Tlv {
            tag,
            content: &self.buf[p..p + len],
            offset: p,
        };
        self.pos = p + len;
        Ok(tlv)
    }

    /// Reads a TLV and checks its tag.
    ///
    /// # Errors
    /// Fails when the tag differs or the TLV is malformed.
    pub fn expect(&mut self, tag: u8, what: &'static str) -> Result<Tlv<'a>, BerError> {
        let start = self.pos;
        let tlv = self.read()?;
        if tlv.tag != tag {
            return Err(BerError {
                offset: start,
                reason: what,
            });
        }
        Ok(tlv)
    }

    /// Reads a SEQUENCE (or other constructed tag) and returns a reader over its content.
    ///
    /// # Errors
    /// Fails when the tag differs or the TLV is malformed.
    pub fn enter(&mut self, tag: u8, what: &'static str) -> Result<Reader<'a>, BerError> {
        let tlv = self.expect(tag, what)?;
        Ok(Reader::inside(self, &tlv))
    }

    /// Reads an INTEGER as i64.
    ///
    /// # Errors
    /// Fails on a wrong tag or an integer wider than 64 bits.
    pub fn integer(&mut self, what: &'static str) -> Result<i64, BerError> {
        let tlv = self.expect(tag::INTEGER, what)?;
        decode_i64(tlv.content).ok_or(BerError {
            offset: tlv.offset,
            reason: "INTEGER too long",
        })
    }

    /// Reads an OCTET STRING.
    ///
    /// # Errors
    /// Fails on a wrong tag.
    pub fn octets(&mut self, what: &'static str) -> Result<&'a [u8], BerError> {
        Ok(self.expect(tag::OCTET_STRING, what)?.content)
    }

    /// Reads an OBJECT IDENTIFIER.
    ///
    /// # Errors
    /// Fails on a wrong tag or a malformed sub-identifier.
    pub fn oid(&mut self, what: &'static str) -> Result<Oid, BerError> {
        let tlv = self.expect(tag::OID, what)?;
        Oid::decode_content(tlv.content).map_err(|reason| BerError {
            offset: tlv.offset,
            reason,
        })
    }
}

/// Decodes a two's-complement integer of at most 8 significant bytes.
pub fn decode_i64(b: &[u8]) -> Option<i64> {
    if b.is_empty() {
        return Some(0);
    }
    let b = if b.len() > 8 && b[0] == 0 && b[1..].len() <= 8 && b[1] & 0x80 != 0 {
        // Unsigned 64-bit value with a sign-padding zero: caller wants it as i64 bits.
        &b[1..]
    } else {
        b
    };
    if b.len() > 8 {
        return None;
    }
    let mut v: i64 = if b[0] & 0x80 != 0 { -1 } else { 0 };
    for &x in b {
        v = (v << 8) | i64::from(x);
    }
    Some(v)
}

/// Decodes an unsigned integer (Counter/Gauge/TimeTicks/Counter64), tolerating agents that
/// encode large values without the padding zero (they would otherwise read as negative).
pub fn decode_u64(b: &[u8]) -> Option<u64> {
    let b = match b {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => b,
    };
    if b.len() > 8 {
        return None;
    }
    let mut v: u64 = 0;
    for &x in b {
        v = (v << 8) | u64::from(x);
    }
    Some(v)
}

/// A forward BER writer that patches lengths when a constructed value is closed.
#[derive(Default)]
pub struct Writer {
    /// The encoded bytes so far.
    pub buf: Vec<u8>,
}

/// A constructed value opened with [`Writer::begin`], to be closed with [`Writer::end`].
#[must_use]
pub struct Open(usize);

impl Writer {
    /// Creates an empty writer with room for `cap` bytes.
    pub fn with_capacity(cap: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(cap),
        }
    }

    /// Opens a constructed value (SEQUENCE, PDU) whose length is written at [`Writer::end`].
    pub fn begin(&mut self, tag: u8) -> Open {
        self.buf.push(tag);
        self.buf.push(0);
        Open(self.buf.len())
    }

    /// Closes a constructed value, writing its length (moving the content if needed).
    pub fn end(&mut self, open: Open) {
        let start = open.0;
        let len = self.buf.len() - start;
        if len < 0x80 {
            self.buf[start - 1] = len as u8;
            return;
        }
        let mut lenbytes = [0u8; 4];
        let n = length_bytes(len, &mut lenbytes);
        self.buf[start - 1] = 0x80 | n as u8;
        // Make room for n extra length octets after the first one.
        let old_len = self.buf.len();
        self.buf.resize(old_len + n, 0);
        self.buf.copy_within(start..old_len, start + n);
        self.buf[start..start + n].copy_from_slice(&lenbytes[4 - n..]);
    }

    /// Writes a primitive TLV.
    pub fn primitive(&mut self, tag: u8, content: &[u8]) {
        self.buf.push(tag);
        self.write_len(content.len());
        self.buf.extend_from_slice(content);
    }

    fn write_len(&mut self, len: usize) {
        if len < 0x80 {
            self.buf.push(len as u8);
        } else {
            let mut lenbytes = [0u8; 4];
            let n = length_bytes(len, &mut lenbytes);
            self.buf.push(0x80 | n as u8);
            self.buf.extend_from_slice(&lenbytes[4 - n..]);
        }
    }

    /// Writes a signed INTEGER (or another tag with signed content).
    pub fn integer_tagged(&mut self, tag: u8, v: i64) {
        let bytes = v.to_be_bytes();
        let mut i = 0;
        while i < 7 {
            let b = bytes[i];
            let next = bytes[i + 1];
            if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
                i += 1;
            } else {
                break;
            }
        }
        self.primitive(tag, &bytes[i..]);
    }

    /// Writes an INTEGER.
    pub fn integer(&mut self, v: i64) {
        self.integer_tagged(tag::INTEGER, v);
    }

    /// Writes an unsigned value (Counter32, Gauge32, TimeTicks, Counter64) with minimal octets.
    pub fn unsigned(&mut self, tag: u8, v: u64) {
        let bytes = v.to_be_bytes();
        let mut i = 0;
        while i < 7 && bytes[i] == 0 {
            i += 1;
        }
        if bytes[i] & 0x80 != 0 {
            let mut tmp = [0u8; 9];
            tmp[1..].copy_from_slice(&bytes);
            self.primitive(tag, &tmp[i..]);
        } else {
            self.primitive(tag, &bytes[i..]);
        }
    }

    /// Writes an OCTET STRING.
    pub fn octets(&mut self, v: &[u8]) {
        self.primitive(tag::OCTET_STRING, v);
    }

    /// Writes an OBJECT IDENTIFIER.
    pub fn oid(&mut self, oid: &Oid) {
        let mut content = Vec::with_capacity(oid.len() + 4);
        oid.encode_content(&mut content);
        self.primitive(tag::OID, &content);
    }

    /// Writes NULL.
    pub fn null(&mut self) {
        self.primitive(tag::NULL, &[]);
    }
}

fn length_bytes(len: usize, out: &mut [u8; 4]) -> usize {
    let b = (len as u32).to_be_bytes();
    *out = b;
    let lz = b.iter().take_while(|&&x| x == 0).count();
    4 - lz
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_round_trip() {
        for v in [
            0i64,
            1,
            -1,
            127,
            128,
            -128,
            -129,
            255,
            256,
            i64::from(i32::MAX),
            i64::MIN,
            i64::MAX,
        ] {
            let mut w = Writer::default();
            w.integer(v);
            let mut r = Reader::new(&w.buf);
            assert_eq!(r.integer("int").unwrap(), v, "{v}");
        }
    }

    #[test]
    fn unsigned_round_trip() {
        for v in [0u64, 127, 128, 0xffff_ffff, u64::MAX] {
            let mut w = Writer::default();
            w.unsigned(tag::COUNTER64, v);
            let mut r = Reader::new(&w.buf);
            let t = r.read().unwrap();
            assert_eq!(decode_u64(t.content).unwrap(), v);
        }
        // An agent that forgot the padding zero still reads as the intended unsigned value.
        assert_eq!(decode_u64(&[0xff, 0xff, 0xff, 0xfe]), Some(0xffff_fffe));
    }

    #[test]
    fn long_lengths_are_patched() {
        let mut w = Writer::default();
        let s = w.begin(tag::SEQUENCE);
        w.octets(&[7u8; 300]);
        w.end(s);
        let mut r = Reader::new(&w.buf);
        let mut inner = r.enter(tag::SEQUENCE, "seq").unwrap();
        assert_eq!(inner.octets("s").unwrap().len(), 300);
        assert!(inner.is_empty() && r.is_empty());
    }

    #[test]
    fn rejects_overruns_and_indefinite_lengths() {
        assert!(Reader::new(&[0x04, 0x05, 1, 2]).read().is_err());
        assert!(Reader::new(&[0x30, 0x80, 0, 0]).read().is_err());
        assert!(Reader::new(&[0x04]).read().is_err());
        assert!(Reader::new(&[0x04, 0x85, 1, 1, 1, 1, 1]).read().is_err());
    }
}
