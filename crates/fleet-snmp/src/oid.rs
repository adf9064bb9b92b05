//! Object identifiers: parsing, ordering and BER sub-identifier encoding.

use std::fmt;
use std::str::FromStr;

/// The most sub-identifiers an OID may have (RFC 2578 §3.5); a reply with a longer one
/// is malformed, so a device cannot grow OIDs without end.
pub const MAX_ARCS: usize = 128;

/// An SNMP object identifier, ordered arc by arc as SNMP lexicographic order requires.
///
/// The arcs live inline up to 16 (Printer-MIB and vendor instances are 12 to 16 arcs), so
/// decoding a reply allocates nothing per OID: one allocation per OID was about 5 % of the
/// agent's CPU under `perf`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Oid(Arcs);

type Arcs = smallvec::SmallVec<[u32; 16]>;

/// Why a dotted OID string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidParseError {
    /// The text was empty (or only a dot).
    #[error("empty OID")]
    Empty,
    /// One arc was not a decimal number that fits in 32 bits.
    #[error("invalid arc {arc:?} in OID {text:?}")]
    BadArc {
        /// The offending arc text.
        arc: String,
        /// The whole input.
        text: String,
    },
}

impl Oid {
    /// Builds an OID from its arcs.
    pub fn new(arcs: impl Into<Vec<u32>>) -> Self {
        Oid(Arcs::from_vec(arcs.into()))
    }

    /// Builds an OID from a static arc slice (used by the compiled-in OID tables).
    pub fn from_slice(arcs: &[u32]) -> Self {
        Oid(Arcs::from_slice(arcs))
    }

    /// Returns the arcs.
    pub fn arcs(&self) -> &[u32] {
        &self.0
    }

    /// Returns the number of arcs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Tells whether the OID has no arcs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Tells whether `self` lies in the subtree rooted at `prefix` (or equals it).
    pub fn starts_with(&self, prefix: &Oid) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// Returns the arcs after `prefix`, or `None` when `self` is outside that subtree.
    pub fn suffix(&self, prefix: &Oid) -> Option<&[u32]> {
        self.0.strip_prefix(prefix.0.as_slice())
    }

    /// Returns a new OID with `arcs` appended.
    pub fn child(&self, arcs: &[u32]) -> Oid {
        let mut v = Arcs::with_capacity(self.0.len() + arcs.len());
        v.extend_from_slice(&self.0);
        v.extend_from_slice(arcs);
        Oid(v)
    }

    /// Returns the OID without its last arc (the column or object of an instance).
    pub fn parent(&self) -> Oid {
        let n = self.0.len().saturating_sub(1);
        Oid(Arcs::from_slice(&self.0[..n]))
    }

    /// Appends the BER content octets of this OID to `out`.
    ///
    /// A one-arc OID (which BER cannot express) is written as if its second arc were 0,
    /// as net-snmp does, so a recording holding `0` still answers.
    pub fn encode_content(&self, out: &mut Vec<u8>) {
        let arcs = &self.0;
        match arcs.len() {
            0 => {}
            1 => push_subid(out, u64::from(arcs[0].min(2)) * 40),
            _ => {
                let first = u64::from(arcs[0].min(2)) * 40 + u64::from(arcs[1]);
                push_subid(out, first);
                for &a in &arcs[2..] {
                    push_subid(out, u64::from(a));
                }
            }
        }
    }

    /// Decodes BER content octets into an OID.
    ///
    /// # Errors
    /// Returns a message when a sub-identifier is truncated or overflows 32 bits, or
    /// when there are more than [`MAX_ARCS`].
    pub fn decode_content(bytes: &[u8]) -> Result<Oid, &'static str> {
        if bytes.len() > MAX_ARCS * 5 {
            // Even at 5 octets per arc, that is more than MAX_ARCS.
            return Err("OID longer than 128 sub-identifiers");
        }
        let mut arcs = Arcs::new();
        let mut acc: u64 = 0;
        let mut in_progress = false;
        for &b in bytes {
            if !in_progress && b == 0x80 {
                return Err("OID sub-identifier with a leading 0x80 octet");
            }
            acc = (acc << 7) | u64::from(b & 0x7f);
            if acc > u64::from(u32::MAX) + 80 {
                return Err("OID sub-identifier overflows 32 bits");
            }
            if b & 0x80 != 0 {
                in_progress = true;
                continue;
            }
            in_progress = false;
            if arcs.is_empty() {
                let (a, b) = match acc {
                    0..=39 => (0, acc),
                    40..=79 => (1, acc - 40),
                    _ => (2, acc - 80),
                };
                arcs.push(a as u32);
                arcs.push(u32::try_from(b).map_err(|_| "OID sub-identifier overflows 32 bits")?);
            } else {
                arcs.push(u32::try_from(acc).map_err(|_| "OID sub-identifier overflows 32 bits")?);
            }
            acc = 0;
        }
        if in_progress {
            return Err("truncated OID sub-identifier");
        }
        if arcs.len() > MAX_ARCS {
            return Err("OID longer than 128 sub-identifiers");
        }
        Ok(Oid(arcs))
    }
}

fn push_subid(out: &mut Vec<u8>, v: u64) {
    let mut tmp = [0u8; 10];
    let mut i = tmp.len();
    let mut v = v;
    i -= 1;
    tmp[i] = (v & 0x7f) as u8;
    v >>= 7;
    while v > 0 {
        i -= 1;
        tmp[i] = 0x80 | (v & 0x7f) as u8;
        v >>= 7;
    }
    out.extend_from_slice(&tmp[i..]);
}

impl FromStr for Oid {
    type Err = OidParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let t = t.strip_prefix('.').unwrap_or(t);
        if t.is_empty() {
            return Err(OidParseError::Empty);
        }
        let mut arcs = Arcs::new();
        for part in t.split('.') {
            let arc = part
                .parse::<u32>()
                .ok()
                .filter(|_| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| OidParseError::BadArc {
                    arc: part.to_string(),
                    text: s.to_string(),
                })?;
            arcs.push(arc);
        }
        Ok(Oid(arcs))
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for a in &self.0 {
            if !first {
                f.write_str(".")?;
            }
            first = false;
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Oid({self})")
    }
}

impl serde::Serialize for Oid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Oid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Builds an [`Oid`] from a dotted literal known to be valid; panics on a typo at first use.
#[macro_export]
macro_rules! oid {
    ($($arc:expr),+ $(,)?) => { $crate::Oid::from_slice(&[$($arc),+]) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_leading_dot() {
        let a: Oid = "1.3.6.1.2.1.1.1.0".parse().unwrap();
        let b: Oid = ".1.3.6.1.2.1.1.1.0".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "1.3.6.1.2.1.1.1.0");
    }

    #[test]
    fn rejects_bad_text() {
        for bad in ["", ".", "1..3", "1.a.3", "1.3.", "1.-3", "1.99999999999"] {
            assert!(bad.parse::<Oid>().is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn orders_arc_by_arc() {
        let a: Oid = "1.3.6.1.2".parse().unwrap();
        let b: Oid = "1.3.6.1.10".parse().unwrap();
        let c: Oid = "1.3.6.1.2.1".parse().unwrap();
        assert!(a < c && c < b);
    }

    #[test]
    fn ber_round_trip() {
        for s in [
            "1.3.6.1.4.1.641.2.1.2.1.6.1",
            "2.999.3",
            "0.0",
            "1.3.6.1.4.1.4294967295",
        ] {
            let o: Oid = s.parse().unwrap();
            let mut buf = Vec::new();
            o.encode_content(&mut buf);
            assert_eq!(Oid::decode_content(&buf).unwrap(), o, "{s}");
        }
        let mut buf = Vec::new();
        "1.3.6.1".parse::<Oid>().unwrap().encode_content(&mut buf);
        assert_eq!(buf, [0x2b, 6, 1]);
    }

    #[test]
    fn single_arc_encodes_like_net_snmp() {
        let mut buf = Vec::new();
        Oid::new(vec![0]).encode_content(&mut buf);
        assert_eq!(buf, [0]);
    }

    #[test]
    fn decode_rejects_truncation() {
        assert!(Oid::decode_content(&[0x2b, 0x86]).is_err());
    }

    #[test]
    fn oids_longer_than_128_arcs_are_malformed() {
        // Issue 18: a device growing its OIDs by one arc per answer.
        let ok = Oid::new(vec![1u32; MAX_ARCS]);
        let mut buf = Vec::new();
        ok.encode_content(&mut buf);
        assert_eq!(Oid::decode_content(&buf).unwrap().len(), MAX_ARCS);
        let big = Oid::new(vec![u32::MAX; MAX_ARCS]);
        let mut buf = Vec::new();
        big.encode_content(&mut buf);
        assert!(Oid::decode_content(&buf).is_ok());
        for n in [MAX_ARCS + 1, 10_000] {
            let mut buf = Vec::new();
            Oid::new(vec![1u32; n]).encode_content(&mut buf);
            let e = Oid::decode_content(&buf).unwrap_err();
            assert!(e.contains("128"), "{e}");
        }
    }
}
