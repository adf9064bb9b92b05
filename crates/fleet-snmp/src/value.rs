//! SNMP values and variable bindings (owned, so they outlive the datagram they came in).

use super::Oid;
use super::ber::{self, BerError, Reader, Writer, tag};
use std::fmt;

/// One SNMP value as carried in a variable binding.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// INTEGER (Integer32 and enumerations).
    Integer(i64),
    /// OCTET STRING (text or binary).
    OctetString(Vec<u8>),
    /// NULL (requests carry it as a placeholder).
    Null,
    /// OBJECT IDENTIFIER.
    ObjectId(Oid),
    /// IpAddress.
    IpAddress([u8; 4]),
    /// Counter32.
    Counter32(u32),
    /// Gauge32 / Unsigned32 (same tag).
    Gauge32(u32),
    /// TimeTicks, hundredths of a second.
    TimeTicks(u32),
    /// Opaque.
    Opaque(Vec<u8>),
    /// Counter64.
    Counter64(u64),
    /// The agent has no such object (v2c/v3 exception).
    NoSuchObject,
    /// The agent has no such instance (v2c/v3 exception).
    NoSuchInstance,
    /// The walk ran past the end of the agent's MIB view (v2c/v3 exception).
    EndOfMibView,
    /// A tag this crate does not interpret, kept raw.
    Other {
        /// The identifier octet.
        tag: u8,
        /// The content octets.
        data: Vec<u8>,
    },
}

impl Value {
    /// Tells whether this is one of the three v2 exception values.
    pub fn is_exception(&self) -> bool {
        matches!(
            self,
            Value::NoSuchObject | Value::NoSuchInstance | Value::EndOfMibView
        )
    }

    /// Returns the value as a signed integer when it is any integer-like type.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Integer(v) => Some(v),
            Value::Counter32(v) | Value::Gauge32(v) | Value::TimeTicks(v) => Some(i64::from(v)),
            Value::Counter64(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Returns the value as an unsigned integer when it is integer-like and not negative.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Integer(v) => u64::try_from(v).ok(),
            Value::Counter32(v) | Value::Gauge32(v) | Value::TimeTicks(v) => Some(u64::from(v)),
            Value::Counter64(v) => Some(v),
            _ => None,
        }
    }

    /// Returns the octets of an OCTET STRING or Opaque.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::OctetString(b) | Value::Opaque(b) => Some(b),
            _ => None,
        }
    }

    /// Returns the OID of an OBJECT IDENTIFIER value.
    pub fn as_oid(&self) -> Option<&Oid> {
        match self {
            Value::ObjectId(o) => Some(o),
            _ => None,
        }
    }

    /// Returns the snmprec tag number of this value (snmpsim's type codes).
    pub fn snmprec_tag(&self) -> u8 {
        match self {
            Value::Integer(_) => 2,
            Value::OctetString(_) => 4,
            Value::Null => 5,
            Value::ObjectId(_) => 6,
            Value::IpAddress(_) => 64,
            Value::Counter32(_) => 65,
            Value::Gauge32(_) => 66,
            Value::TimeTicks(_) => 67,
            Value::Opaque(_) => 68,
            Value::Counter64(_) => 70,
            Value::NoSuchObject => 128,
            Value::NoSuchInstance => 129,
            Value::EndOfMibView => 130,
            Value::Other { tag, .. } => *tag,
        }
    }

    /// Appends the BER encoding of this value.
    pub fn encode(&self, w: &mut Writer) {
        match self {
            Value::Integer(v) => w.integer(*v),
            Value::OctetString(b) => w.octets(b),
            Value::Null => w.null(),
            Value::ObjectId(o) => w.oid(o),
            Value::IpAddress(a) => w.primitive(tag::IP_ADDRESS, a),
            Value::Counter32(v) => w.unsigned(tag::COUNTER32, u64::from(*v)),
            Value::Gauge32(v) => w.unsigned(tag::GAUGE32, u64::from(*v)),
            Value::TimeTicks(v) => w.unsigned(tag::TIMETICKS, u64::from(*v)),
            Value::Opaque(b) => w.primitive(tag::OPAQUE, b),
            Value::Counter64(v) => w.unsigned(tag::COUNTER64, *v),
            Value::NoSuchObject => w.primitive(tag::NO_SUCH_OBJECT, &[]),
            Value::NoSuchInstance => w.primitive(tag::NO_SUCH_INSTANCE, &[]),
            Value::EndOfMibView => w.primitive(tag::END_OF_MIB_VIEW, &[]),
            Value::Other { tag, data } => w.primitive(*tag, data),
        }
    }

    /// Decodes one value.
    ///
    /// # Errors
    /// Fails on a malformed TLV or an integer too wide for its type.
    pub fn decode(r: &mut Reader<'_>) -> Result<Value, BerError> {
        let t = r.read()?;
        let bad = |reason| BerError {
            offset: t.offset,
            reason,
        };
        let u32_of = |c: &[u8]| -> Result<u32, BerError> {
            ber::decode_u64(c)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or(bad("unsigned 32-bit value too wide"))
        };
        Ok(match t.tag {
            tag::INTEGER => {
                Value::Integer(ber::decode_i64(t.content).ok_or(bad("INTEGER too long"))?)
            }
            tag::OCTET_STRING => Value::OctetString(t.content.to_vec()),
            tag::NULL => Value::Null,
            tag::OID => Value::ObjectId(Oid::decode_content(t.content).map_err(bad)?),
            tag::IP_ADDRESS => {
                let a: [u8; 4] = t
                    .content
                    .try_into()
                    .map_err(|_| bad("IpAddress is not 4 octets"))?;
                Value::IpAddress(a)
            }
            tag::COUNTER32 => Value::Counter32(u32_of(t.content)?),
            tag::GAUGE32 => Value::Gauge32(u32_of(t.content)?),
            tag::TIMETICKS => Value::TimeTicks(u32_of(t.content)?),
            tag::OPAQUE => Value::Opaque(t.content.to_vec()),
            tag::COUNTER64 => {
                Value::Counter64(ber::decode_u64(t.content).ok_or(bad("Counter64 too long"))?)
            }
            tag::NO_SUCH_OBJECT => Value::NoSuchObject,
            tag::NO_SUCH_INSTANCE => Value::NoSuchInstance,
            tag::END_OF_MIB_VIEW => Value::EndOfMibView,
            other => Value::Other {
                tag: other,
                data: t.content.to_vec(),
            },
        })
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Integer(v) => write!(f, "INTEGER: {v}"),
            Value::OctetString(b) => match std::str::from_utf8(b) {
                Ok(s)
                    if !s
                        .chars()
                        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t') =>
                {
                    write!(f, "STRING: {s:?}")
                }
                _ => write!(f, "Hex-STRING: {}", hex(b)),
            },
            Value::Null => write!(f, "NULL"),
            Value::ObjectId(o) => write!(f, "OID: {o}"),
            Value::IpAddress(a) => write!(f, "IpAddress: {}.{}.{}.{}", a[0], a[1], a[2], a[3]),
            Value::Counter32(v) => write!(f, "Counter32: {v}"),
            Value::Gauge32(v) => write!(f, "Gauge32: {v}"),
            Value::TimeTicks(v) => write!(f, "Timeticks: ({v})"),
            Value::Opaque(b) => write!(f, "OPAQUE: {}", hex(b)),
            Value::Counter64(v) => write!(f, "Counter64: {v}"),
            Value::NoSuchObject => write!(f, "No Such Object"),
            Value::NoSuchInstance => write!(f, "No Such Instance"),
            Value::EndOfMibView => write!(f, "End of MIB View"),
            Value::Other { tag, data } => write!(f, "tag 0x{tag:02x}: {}", hex(data)),
        }
    }
}

/// Formats bytes as upper-case hex pairs separated by spaces (net-snmp style).
pub fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 3);
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&format!("{x:02X}"));
    }
    s
}

/// An OID with its value.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VarBind {
    /// The instance OID.
    pub oid: Oid,
    /// Its value (or an exception).
    pub value: Value,
}

impl VarBind {
    /// Creates a binding.
    pub fn new(oid: Oid, value: Value) -> Self {
        VarBind { oid, value }
    }

    /// Creates a binding with a NULL value, as requests carry.
    pub fn null(oid: Oid) -> Self {
        VarBind {
            oid,
            value: Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_round_trips() {
        let values = vec![
            Value::Integer(-3),
            Value::OctetString(b"Black Toner\0".to_vec()),
            Value::Null,
            Value::ObjectId("1.3.6.1.4.1.641".parse().unwrap()),
            Value::IpAddress([127, 0, 0, 1]),
            Value::Counter32(u32::MAX),
            Value::Gauge32(42),
            Value::TimeTicks(217_539_735),
            Value::Opaque(vec![1, 2]),
            Value::Counter64(u64::MAX),
            Value::NoSuchObject,
            Value::NoSuchInstance,
            Value::EndOfMibView,
        ];
        for v in values {
            let mut w = Writer::default();
            v.encode(&mut w);
            let mut r = Reader::new(&w.buf);
            assert_eq!(Value::decode(&mut r).unwrap(), v);
            assert!(r.is_empty());
        }
    }
}
