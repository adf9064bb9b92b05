//! Hostile printers for the agent's hardening campaign: a synthetic printer whose SNMP
//! agent misbehaves in one chosen way, each reproducing a device that once took an agent
//! down (issue 18). `fleet-lab simulate --synthetic N --hostile MODE` serves them.

use fleet_snmp::agent::MibStore;
use fleet_snmp::{Oid, Value};

/// How the printer misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Every text is 30,000 bytes, and past the end of its MIB the device keeps
    /// inventing 30,000-byte values without end.
    HugeValues,
    /// The system group answers normally; every other GETNEXT answers the asked OID
    /// plus one arc: always increasing, ever longer.
    GrowingOids,
    /// A normal printer whose supplies table has 200,000 rows.
    Flood,
    /// A normal printer whose serial number is 60,000 characters long.
    LongSerial,
}

const HUGE: usize = 30_000;
const FLOOD_ROWS: u32 = 200_000;
/// The first OID after the system group (interfaces).
const AFTER_SYSTEM: [u32; 7] = [1, 3, 6, 1, 2, 1, 2];
/// prtMarkerSuppliesDescription, hrDeviceIndex 1.
const SUPPLY_DESCR: [u32; 12] = [1, 3, 6, 1, 2, 1, 43, 11, 1, 1, 6, 1];
/// prtGeneralSerialNumber.1.
const SERIAL: [u32; 12] = [1, 3, 6, 1, 2, 1, 43, 5, 1, 1, 17, 1];
/// Where invented values live, after everything a printer serves.
const ENDLESS: [u32; 7] = [1, 3, 6, 1, 4, 1, 99_999];

/// The value of invented row `n`.
type RowValue = fn(u32) -> Value;

/// A printer's agent wrapped by one [`Mode`].
pub struct Hostile {
    inner: Box<dyn MibStore + Send>,
    mode: Mode,
}

impl Hostile {
    /// Wraps `inner`.
    pub fn new(inner: Box<dyn MibStore + Send>, mode: Mode) -> Self {
        Hostile { inner, mode }
    }

    fn bloat(&self, oid: &Oid, v: Value) -> Value {
        match (self.mode, v) {
            (Mode::HugeValues, Value::OctetString(_)) => Value::OctetString(vec![b'x'; HUGE]),
            (Mode::LongSerial, Value::OctetString(_)) if oid.arcs() == SERIAL => {
                Value::OctetString(vec![b'9'; 60_000])
            }
            (_, v) => v,
        }
    }

    /// The invented column of this mode: where, how many rows, what value.
    fn invented(&self) -> Option<(Oid, u32, RowValue)> {
        match self.mode {
            Mode::Flood => Some((Oid::from_slice(&SUPPLY_DESCR), FLOOD_ROWS, |n| {
                Value::OctetString(format!("Toner {n}").into_bytes())
            })),
            Mode::HugeValues => Some((Oid::from_slice(&ENDLESS), u32::MAX, |_| {
                Value::OctetString(vec![b'x'; HUGE])
            })),
            _ => None,
        }
    }

    /// The first invented OID after `oid`, with its value.
    fn invented_after(&self, oid: &Oid) -> Option<(Oid, Value)> {
        let (base, rows, value) = self.invented()?;
        let n = match oid.suffix(&base) {
            Some([]) => 1,
            Some([n, ..]) => n.checked_add(1)?,
            None if *oid < base => 1,
            None => return None,
        };
        (n <= rows).then(|| (base.child(&[n]), value(n)))
    }
}

impl MibStore for Hostile {
    fn get(&self, oid: &Oid) -> Option<Value> {
        if let Some((base, rows, value)) = self.invented()
            && let Some(&[n]) = oid.suffix(&base)
            && (1..=rows).contains(&n)
        {
            return Some(value(n));
        }
        self.inner.get(oid).map(|v| self.bloat(oid, v))
    }

    fn next(&self, oid: &Oid) -> Option<(Oid, Value)> {
        if self.mode == Mode::GrowingOids && *oid >= Oid::from_slice(&AFTER_SYSTEM) {
            return Some((oid.child(&[1]), Value::Integer(1)));
        }
        let real = self.inner.next(oid).map(|(o, v)| {
            let v = self.bloat(&o, v);
            (o, v)
        });
        match (real, self.invented_after(oid)) {
            (Some(r), Some(i)) => Some(if i.0 <= r.0 { i } else { r }),
            (r, i) => r.or(i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_snmp::agent::MibView;

    fn o(s: &str) -> Oid {
        s.parse().unwrap()
    }

    fn base() -> Box<dyn MibStore + Send> {
        Box::new(MibView::new(vec![
            (
                o("1.3.6.1.2.1.1.1.0"),
                Value::OctetString(b"printer".to_vec()),
            ),
            (
                o("1.3.6.1.2.1.43.5.1.1.17.1"),
                Value::OctetString(b"SN1".to_vec()),
            ),
            (o("1.3.6.1.2.1.43.11.1.1.9.1.1"), Value::Integer(50)),
        ]))
    }

    #[test]
    fn flood_interleaves_its_rows_with_the_real_mib() {
        let h = Hostile::new(base(), Mode::Flood);
        let (k, _) = h.next(&o("1.3.6.1.2.1.43.5.1.1.17.1")).unwrap();
        assert_eq!(k, o("1.3.6.1.2.1.43.11.1.1.6.1.1"));
        let (k, _) = h.next(&o("1.3.6.1.2.1.43.11.1.1.6.1.7")).unwrap();
        assert_eq!(k, o("1.3.6.1.2.1.43.11.1.1.6.1.8"));
        let (k, _) = h.next(&o("1.3.6.1.2.1.43.11.1.1.6.1.200000")).unwrap();
        assert_eq!(k, o("1.3.6.1.2.1.43.11.1.1.9.1.1"));
        assert!(h.get(&o("1.3.6.1.2.1.43.11.1.1.6.1.5")).is_some());
    }

    #[test]
    fn every_mode_does_what_it_says() {
        let h = Hostile::new(base(), Mode::LongSerial);
        assert_eq!(
            h.get(&o("1.3.6.1.2.1.43.5.1.1.17.1"))
                .unwrap()
                .as_bytes()
                .unwrap()
                .len(),
            60_000
        );
        let h = Hostile::new(base(), Mode::GrowingOids);
        let (k, _) = h.next(&o("1.3.6.1.2.1.43")).unwrap();
        assert_eq!(k, o("1.3.6.1.2.1.43.1"));
        assert_eq!(
            h.next(&o("1.3.6.1.2.1.1")).unwrap().0,
            o("1.3.6.1.2.1.1.1.0")
        );
        let h = Hostile::new(base(), Mode::HugeValues);
        let (k, v) = h.next(&o("1.3.6.1.2.1.43.11.1.1.9.1.1")).unwrap();
        assert_eq!(k, o("1.3.6.1.4.1.99999.1"));
        assert_eq!(v.as_bytes().unwrap().len(), HUGE);
        let (k, _) = h.next(&o("1.3.6.1.4.1.99999.41")).unwrap();
        assert_eq!(k, o("1.3.6.1.4.1.99999.42"));
    }
}
