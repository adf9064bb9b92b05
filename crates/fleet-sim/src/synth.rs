//! Synthetic printers: a few project-written model templates whose page counters advance
//! and supplies fall as simulated time passes, with alerts when a supply runs low and a
//! cartridge swap when it runs out. Each printer has its own serial, name and MAC.

use fleet_snmp::agent::{MibStore, MibView};
use fleet_snmp::message::error_status;
use fleet_snmp::{Oid, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::time::Instant;

/// One supply of a model.
struct SupplyDef {
    descr: &'static str,
    class: i64,
    kind: i64,
    unit: i64,
    max: i64,
    colorant: i64,
    /// Units used per printed page (in `unit`), times 1000.
    milli_per_page: i64,
}

/// A printer model template.
pub struct Model {
    /// Short name used in serials and sysName.
    pub code: &'static str,
    manufacturer: &'static str,
    model: &'static str,
    enterprise: u32,
    colorants: &'static [&'static str],
    supplies: &'static [SupplyDef],
    trays: &'static [(&'static str, i64)],
    /// Pages per simulated hour.
    pages_per_hour: i64,
}

/// The built-in models.
pub const MODELS: &[Model] = &[
    Model {
        code: "MLX",
        manufacturer: "Acme Imaging",
        model: "MonoLaser 4200dn",
        enterprise: 641,
        colorants: &["black"],
        supplies: &[
            SupplyDef {
                descr: "Black Toner Cartridge",
                class: 3,
                kind: 3,
                unit: 7,
                max: 15_000,
                colorant: 1,
                milli_per_page: 1000,
            },
            SupplyDef {
                descr: "Imaging Unit",
                class: 3,
                kind: 9,
                unit: 7,
                max: 60_000,
                colorant: 0,
                milli_per_page: 1000,
            },
            SupplyDef {
                descr: "Maintenance Kit",
                class: 3,
                kind: 1,
                unit: 7,
                max: 200_000,
                colorant: 0,
                milli_per_page: 1000,
            },
        ],
        trays: &[("Tray 1", 550), ("MP Feeder", 100)],
        pages_per_hour: 120,
    },
    Model {
        code: "CLX",
        manufacturer: "Acme Imaging",
        model: "ColorLaser 6500de",
        enterprise: 641,
        colorants: &["cyan", "magenta", "yellow", "black"],
        supplies: &[
            SupplyDef {
                descr: "Cyan Toner",
                class: 3,
                kind: 3,
                unit: 19,
                max: 100,
                colorant: 1,
                milli_per_page: 10,
            },
            SupplyDef {
                descr: "Magenta Toner",
                class: 3,
                kind: 3,
                unit: 19,
                max: 100,
                colorant: 2,
                milli_per_page: 12,
            },
            SupplyDef {
                descr: "Yellow Toner",
                class: 3,
                kind: 3,
                unit: 19,
                max: 100,
                colorant: 3,
                milli_per_page: 9,
            },
            SupplyDef {
                descr: "Black Toner",
                class: 3,
                kind: 3,
                unit: 19,
                max: 100,
                colorant: 4,
                milli_per_page: 15,
            },
            SupplyDef {
                descr: "Waste Toner Bottle",
                class: 4,
                kind: 4,
                unit: 7,
                max: 90_000,
                colorant: 0,
                milli_per_page: 1000,
            },
            SupplyDef {
                descr: "Fuser",
                class: 3,
                kind: 15,
                unit: 7,
                max: 150_000,
                colorant: 0,
                milli_per_page: 1000,
            },
        ],
        trays: &[("Tray 1", 550), ("Tray 2", 550), ("Bypass", 100)],
        pages_per_hour: 90,
    },
    Model {
        code: "INK",
        manufacturer: "Acme Imaging",
        model: "OfficeJet Pro 910",
        enterprise: 641,
        colorants: &["cyan", "magenta", "yellow", "black"],
        supplies: &[
            SupplyDef {
                descr: "Cyan Ink",
                class: 3,
                kind: 6,
                unit: 19,
                max: 100,
                colorant: 1,
                milli_per_page: 25,
            },
            SupplyDef {
                descr: "Magenta Ink",
                class: 3,
                kind: 6,
                unit: 19,
                max: 100,
                colorant: 2,
                milli_per_page: 25,
            },
            SupplyDef {
                descr: "Yellow Ink",
                class: 3,
                kind: 6,
                unit: 19,
                max: 100,
                colorant: 3,
                milli_per_page: 25,
            },
            SupplyDef {
                descr: "Black Ink",
                class: 3,
                kind: 6,
                unit: 19,
                max: 100,
                colorant: 4,
                milli_per_page: 40,
            },
        ],
        trays: &[("Main Tray", 250)],
        pages_per_hour: 40,
    },
];

#[derive(Clone, Copy)]
enum Dynamic {
    Uptime,
    Serial,
    SysName,
    Mac,
    LifeCount,
    PowerOnCount,
    SupplyLevel(usize),
    DeviceStatus,
    ErrorState,
    AlertSeverity,
    AlertDescr,
    AlertCode,
    AlertGroupIndex,
    AlertTime,
    /// A row of Lexmark's paperGeneralCountTable (LEXMARK-MPS-MIB): 0 printTotal,
    /// 1 printMono, 2 blankPrint.
    PaperCount(u8),
    /// The chip serial of supply `i` (Lexmark's currentSuppliesTable): a new one with each
    /// cartridge.
    SupplySerial(usize),
}

/// The shared, per-model part of a synthetic printer.
pub struct Template {
    model: &'static Model,
    view: MibView,
    dynamic: BTreeMap<Oid, Dynamic>,
}

fn o(s: &str) -> Oid {
    s.parse().expect("template OID")
}

impl Template {
    /// Builds the template of `model`.
    pub fn new(model: &'static Model) -> Arc<Template> {
        let mut v: Vec<(Oid, Value)> = Vec::new();
        let mut d = BTreeMap::new();
        let s = |t: &str| Value::OctetString(t.as_bytes().to_vec());
        let mut dynamic = |oid: &str, kind: Dynamic, v: &mut Vec<(Oid, Value)>| {
            d.insert(o(oid), kind);
            v.push((o(oid), Value::Null));
        };
        v.push((
            o("1.3.6.1.2.1.1.1.0"),
            s(&format!(
                "{} {} version FA.1.0.4 kernel 5.10",
                model.manufacturer, model.model
            )),
        ));
        v.push((
            o("1.3.6.1.2.1.1.2.0"),
            Value::ObjectId(o(&format!("1.3.6.1.4.1.{}.1.{}", model.enterprise, 4200))),
        ));
        dynamic("1.3.6.1.2.1.1.3.0", Dynamic::Uptime, &mut v);
        v.push((o("1.3.6.1.2.1.1.4.0"), s("helpdesk@example.test")));
        dynamic("1.3.6.1.2.1.1.5.0", Dynamic::SysName, &mut v);
        v.push((o("1.3.6.1.2.1.1.6.0"), s("Simulated floor")));
        v.push((o("1.3.6.1.2.1.2.2.1.3.1"), Value::Integer(6)));
        dynamic("1.3.6.1.2.1.2.2.1.6.1", Dynamic::Mac, &mut v);
        dynamic("1.3.6.1.2.1.25.1.1.0", Dynamic::Uptime, &mut v);
        v.push((
            o("1.3.6.1.2.1.25.3.2.1.2.1"),
            Value::ObjectId(o("1.3.6.1.2.1.25.3.1.5")),
        ));
        v.push((
            o("1.3.6.1.2.1.25.3.2.1.3.1"),
            s(&format!("{} {}", model.manufacturer, model.model)),
        ));
        dynamic("1.3.6.1.2.1.25.3.2.1.5.1", Dynamic::DeviceStatus, &mut v);
        v.push((o("1.3.6.1.2.1.25.3.5.1.1.1"), Value::Integer(3)));
        dynamic("1.3.6.1.2.1.25.3.5.1.2.1", Dynamic::ErrorState, &mut v);
        v.push((o("1.3.6.1.2.1.43.5.1.1.16.1"), s(model.model)));
        dynamic("1.3.6.1.2.1.43.5.1.1.17.1", Dynamic::Serial, &mut v);
        for (i, (name, max)) in model.trays.iter().enumerate() {
            let ix = i + 1;
            v.push((
                o(&format!("1.3.6.1.2.1.43.8.2.1.2.1.{ix}")),
                Value::Integer(if i == 0 { 4 } else { 5 }),
            ));
            v.push((
                o(&format!("1.3.6.1.2.1.43.8.2.1.8.1.{ix}")),
                Value::Integer(8),
            ));
            v.push((
                o(&format!("1.3.6.1.2.1.43.8.2.1.9.1.{ix}")),
                Value::Integer(*max),
            ));
            v.push((
                o(&format!("1.3.6.1.2.1.43.8.2.1.10.1.{ix}")),
                Value::Integer(if i == 0 { max / 2 } else { -3 }),
            ));
            v.push((
                o(&format!("1.3.6.1.2.1.43.8.2.1.11.1.{ix}")),
                Value::Integer(0),
            ));
            v.push((o(&format!("1.3.6.1.2.1.43.8.2.1.12.1.{ix}")), s("A4")));
            v.push((o(&format!("1.3.6.1.2.1.43.8.2.1.13.1.{ix}")), s(name)));
        }
        v.push((o("1.3.6.1.2.1.43.10.2.1.3.1.1"), Value::Integer(7)));
        dynamic("1.3.6.1.2.1.43.10.2.1.4.1.1", Dynamic::LifeCount, &mut v);
        dynamic("1.3.6.1.2.1.43.10.2.1.5.1.1", Dynamic::PowerOnCount, &mut v);
        v.push((
            o("1.3.6.1.2.1.43.10.2.1.6.1.1"),
            Value::Integer(model.colorants.len() as i64),
        ));
        for (i, sd) in model.supplies.iter().enumerate() {
            let ix = i + 1;
            v.push((
                o(&format!("1.3.6.1.2.1.43.11.1.1.3.1.{ix}")),
                Value::Integer(sd.colorant),
            ));
            v.push((
                o(&format!("1.3.6.1.2.1.43.11.1.1.4.1.{ix}")),
                Value::Integer(sd.class),
            ));
            v.push((
                o(&format!("1.3.6.1.2.1.43.11.1.1.5.1.{ix}")),
                Value::Integer(sd.kind),
            ));
            v.push((o(&format!("1.3.6.1.2.1.43.11.1.1.6.1.{ix}")), s(sd.descr)));
            v.push((
                o(&format!("1.3.6.1.2.1.43.11.1.1.7.1.{ix}")),
                Value::Integer(sd.unit),
            ));
            v.push((
                o(&format!("1.3.6.1.2.1.43.11.1.1.8.1.{ix}")),
                Value::Integer(sd.max),
            ));
            dynamic(
                &format!("1.3.6.1.2.1.43.11.1.1.9.1.{ix}"),
                Dynamic::SupplyLevel(i),
                &mut v,
            );
        }
        for (i, c) in model.colorants.iter().enumerate() {
            v.push((o(&format!("1.3.6.1.2.1.43.12.1.1.4.1.{}", i + 1)), s(c)));
        }
        v.push((o("1.3.6.1.2.1.43.16.5.1.2.1.1"), s("Ready")));
        v.push((
            o("1.3.6.1.4.1.2699.1.2.1.2.1.1.3.1"),
            s(&format!(
                "MFG:{};MDL:{};CLS:PRINTER;",
                model.manufacturer, model.model
            )),
        ));
        // One alert row that shows the lowest supply when it runs low (binary event).
        dynamic(
            "1.3.6.1.2.1.43.18.1.1.2.1.1",
            Dynamic::AlertSeverity,
            &mut v,
        );
        v.push((o("1.3.6.1.2.1.43.18.1.1.3.1.1"), Value::Integer(4)));
        v.push((o("1.3.6.1.2.1.43.18.1.1.4.1.1"), Value::Integer(11)));
        dynamic(
            "1.3.6.1.2.1.43.18.1.1.5.1.1",
            Dynamic::AlertGroupIndex,
            &mut v,
        );
        v.push((o("1.3.6.1.2.1.43.18.1.1.6.1.1"), Value::Integer(-1)));
        dynamic("1.3.6.1.2.1.43.18.1.1.7.1.1", Dynamic::AlertCode, &mut v);
        dynamic("1.3.6.1.2.1.43.18.1.1.8.1.1", Dynamic::AlertDescr, &mut v);
        dynamic("1.3.6.1.2.1.43.18.1.1.9.1.1", Dynamic::AlertTime, &mut v);
        if model.enterprise == 641 {
            // The vendor's own counters: print sides, of which blank ones apart (mono
            // models also count mono sides without the blank ones), in sides (4).
            let mono = model.colorants.len() == 1;
            let rows: &[(u8, i64)] = if mono {
                &[(0, 16), (1, 17), (2, 65)]
            } else {
                &[(0, 16), (2, 65)]
            };
            let t = "1.3.6.1.4.1.641.6.4.2.1.1";
            for (row, (kind, ty)) in rows.iter().enumerate() {
                let ix = row + 1;
                v.push((o(&format!("{t}.2.1.{ix}")), Value::Integer(*ty)));
                v.push((o(&format!("{t}.3.1.{ix}")), Value::Integer(4)));
                dynamic(&format!("{t}.4.1.{ix}"), Dynamic::PaperCount(*kind), &mut v);
            }
            // Its supply table: colorant, description, chip serial.
            let t = "1.3.6.1.4.1.641.6.4.4.1.1";
            for (i, sd) in model.supplies.iter().enumerate() {
                let ix = i + 1;
                let colorant = usize::try_from(sd.colorant)
                    .ok()
                    .and_then(|c| c.checked_sub(1))
                    .and_then(|c| model.colorants.get(c))
                    .copied()
                    .unwrap_or("none");
                v.push((o(&format!("{t}.4.1.{ix}")), s(colorant)));
                v.push((o(&format!("{t}.5.1.{ix}")), s(sd.descr)));
                dynamic(&format!("{t}.6.1.{ix}"), Dynamic::SupplySerial(i), &mut v);
            }
        }
        Arc::new(Template {
            model,
            view: MibView::new(v),
            dynamic: d,
        })
    }

    /// The model this template simulates.
    pub fn model(&self) -> &'static Model {
        self.model
    }
}

/// How fast simulated time runs and where each printer starts.
#[derive(Clone, Copy, Debug)]
pub struct SynthParams {
    /// Simulated seconds per real second (60 = one simulated minute per second).
    pub speed: f64,
    /// Seed mixed into every printer's starting state.
    pub seed: u64,
}

/// One synthetic printer (its template is shared).
pub struct SynthPrinter {
    template: Arc<Template>,
    index: u32,
    start: Instant,
    speed: f64,
    base_pages: i64,
    /// Pages already used from each supply at start.
    used_at_start: Vec<i64>,
    overlay: BTreeMap<Oid, Value>,
    writable: Vec<Oid>,
}

fn mix(a: u64) -> u64 {
    // splitmix64: a cheap deterministic per-printer scrambler.
    let mut z = a.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl SynthPrinter {
    /// Creates printer number `index` of `template`.
    pub fn new(template: Arc<Template>, index: u32, params: SynthParams) -> Self {
        let r = mix(params.seed ^ u64::from(index));
        let used_at_start = template
            .model
            .supplies
            .iter()
            .enumerate()
            .map(|(i, sd)| {
                let pages_capacity = (sd.max * 1000 / sd.milli_per_page.max(1)).max(1);
                (mix(r ^ i as u64) % (pages_capacity as u64 * 9 / 10).max(1)) as i64
            })
            .collect();
        SynthPrinter {
            template,
            index,
            start: Instant::now(),
            speed: params.speed,
            base_pages: (r % 400_000) as i64 + 1000,
            used_at_start,
            overlay: BTreeMap::new(),
            writable: vec![
                o("1.3.6.1.2.1.1.4.0"),
                o("1.3.6.1.2.1.1.5.0"),
                o("1.3.6.1.2.1.1.6.0"),
                o("1.3.6.1.2.1.43.16.5.1.2"),
            ],
        }
    }

    /// The printer's serial number.
    pub fn serial(&self) -> String {
        format!("FA{}{:07}", self.template.model.code, self.index)
    }

    fn sim_secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * self.speed
    }

    fn pages(&self) -> i64 {
        self.base_pages
            + (self.sim_secs() * self.template.model.pages_per_hour as f64 / 3600.0) as i64
    }

    fn printed_since_start(&self) -> i64 {
        self.pages() - self.base_pages
    }

    /// How many cartridges of supply `i` ran out since the start.
    fn cartridges(&self, i: usize) -> i64 {
        let sd = &self.template.model.supplies[i];
        let capacity_pages = (sd.max * 1000 / sd.milli_per_page.max(1)).max(1);
        (self.used_at_start[i] + self.printed_since_start()) / capacity_pages
    }

    /// Level of supply `i` in its unit; a cartridge that runs out is replaced by a full one.
    fn level(&self, i: usize) -> i64 {
        let sd = &self.template.model.supplies[i];
        let capacity_pages = (sd.max * 1000 / sd.milli_per_page.max(1)).max(1);
        let used = (self.used_at_start[i] + self.printed_since_start()) % capacity_pages;
        let remaining = sd.max - used * sd.milli_per_page / 1000;
        if sd.class == 4 {
            // A receptacle reports remaining space, which shrinks as it fills.
            remaining.max(0)
        } else {
            remaining.clamp(0, sd.max)
        }
    }

    /// The supply with the lowest remaining percentage, if it is below 10 %.
    fn low_supply(&self) -> Option<(usize, i64)> {
        let m = self.template.model;
        (0..m.supplies.len())
            .map(|i| (i, self.level(i) * 100 / m.supplies[i].max.max(1)))
            .filter(|(_, p)| *p < 10)
            .min_by_key(|(_, p)| *p)
    }

    fn dynamic_value(&self, kind: Dynamic) -> Option<Value> {
        let ticks = || (self.sim_secs() * 100.0) as u64 % (u64::from(u32::MAX) + 1);
        Some(match kind {
            Dynamic::Uptime => Value::TimeTicks(ticks() as u32),
            Dynamic::Serial => Value::OctetString(self.serial().into_bytes()),
            Dynamic::SysName => Value::OctetString(
                format!(
                    "sim-{}-{:05}",
                    self.template.model.code.to_lowercase(),
                    self.index
                )
                .into_bytes(),
            ),
            Dynamic::Mac => {
                let b = self.index.to_be_bytes();
                Value::OctetString(vec![0x02, 0xfa, b[0], b[1], b[2], b[3]])
            }
            Dynamic::LifeCount => {
                Value::Counter32((self.pages() as u64 % (u64::from(u32::MAX) + 1)) as u32)
            }
            Dynamic::PowerOnCount => Value::Counter32(self.printed_since_start() as u32),
            Dynamic::SupplyLevel(i) => Value::Integer(self.level(i)),
            Dynamic::DeviceStatus => {
                Value::Integer(if self.low_supply().is_some() { 3 } else { 2 })
            }
            Dynamic::ErrorState => Value::OctetString(if self.low_supply().is_some() {
                vec![0x20, 0x00]
            } else {
                vec![0x00, 0x00]
            }),
            Dynamic::AlertSeverity => {
                self.low_supply()?;
                Value::Integer(5)
            }
            Dynamic::AlertGroupIndex => Value::Integer(self.low_supply()?.0 as i64 + 1),
            Dynamic::AlertCode => {
                let (i, _) = self.low_supply()?;
                let sd = &self.template.model.supplies[i];
                Value::Integer(if sd.class == 4 {
                    1107
                } else if sd.kind == 6 {
                    1105
                } else {
                    1104
                })
            }
            Dynamic::AlertDescr => {
                let (i, _) = self.low_supply()?;
                let sd = &self.template.model.supplies[i];
                let what = if sd.class == 4 { "nearly full" } else { "low" };
                Value::OctetString(format!("{} {what}", sd.descr).into_bytes())
            }
            Dynamic::AlertTime => {
                self.low_supply()?;
                Value::TimeTicks(ticks().saturating_sub(6000) as u32)
            }
            Dynamic::PaperCount(kind) => {
                // One side in fifty is blank.
                let pages = self.pages();
                let blank = pages / 50;
                let n = match kind {
                    0 => pages,
                    1 => pages - blank,
                    _ => blank,
                };
                Value::Counter32((n as u64 % (u64::from(u32::MAX) + 1)) as u32)
            }
            Dynamic::SupplySerial(i) => Value::OctetString(
                format!("CHIP{:05}{i}{:03}", self.index, self.cartridges(i) % 1000).into_bytes(),
            ),
        })
    }

    fn resolve(&self, oid: &Oid, base: &Value) -> Option<Value> {
        if let Some(v) = self.overlay.get(oid) {
            return Some(v.clone());
        }
        match self.template.dynamic.get(oid) {
            Some(kind) => self.dynamic_value(*kind),
            None => Some(base.clone()),
        }
    }
}

impl MibStore for SynthPrinter {
    fn get(&self, oid: &Oid) -> Option<Value> {
        let base = self.template.view.lookup(oid)?;
        self.resolve(oid, base)
    }

    fn next(&self, oid: &Oid) -> Option<(Oid, Value)> {
        let mut cur = oid.clone();
        loop {
            let (k, base) = self.template.view.after(&cur)?;
            // Dynamic rows that are currently absent (no alert) are skipped.
            if let Some(v) = self.resolve(k, base) {
                return Some((k.clone(), v));
            }
            cur = k.clone();
        }
    }

    fn check_set(&self, oid: &Oid, value: &Value) -> Result<(), i32> {
        if !self.writable.iter().any(|w| oid.starts_with(w)) {
            return Err(error_status::NOT_WRITABLE);
        }
        match self.get(oid) {
            Some(Value::OctetString(_)) if matches!(value, Value::OctetString(_)) => Ok(()),
            Some(_) => Err(error_status::WRONG_TYPE),
            None => Err(11),
        }
    }

    fn set(&mut self, oid: &Oid, value: Value) {
        self.overlay.insert(oid.clone(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn counters_advance_and_supplies_fall_with_time() {
        let t = Template::new(&MODELS[0]);
        let p = SynthPrinter::new(
            t,
            7,
            SynthParams {
                speed: 3600.0,
                seed: 1,
            },
        );
        let life = o("1.3.6.1.2.1.43.10.2.1.4.1.1");
        let toner = o("1.3.6.1.2.1.43.11.1.1.9.1.1");
        let c0 = p.get(&life).unwrap().as_u64().unwrap();
        let l0 = p.get(&toner).unwrap().as_i64().unwrap();
        tokio::time::advance(std::time::Duration::from_secs(10)).await;
        let c1 = p.get(&life).unwrap().as_u64().unwrap();
        let l1 = p.get(&toner).unwrap().as_i64().unwrap();
        // 10 real s at 3600x = 10 simulated hours = 1200 pages on this model.
        assert_eq!(c1 - c0, 1200);
        assert!(
            l1 < l0 || l1 > 14_000,
            "toner fell or was replaced: {l0} -> {l1}"
        );
        assert_eq!(p.get(&o("1.3.6.1.2.1.43.5.1.1.17.1.0")), None);
        assert_eq!(
            p.get(&o("1.3.6.1.2.1.43.5.1.1.17.1")),
            Some(Value::OctetString(b"FAMLX0000007".to_vec()))
        );
    }

    #[test]
    fn printers_differ_and_walks_are_ordered() {
        let t = Template::new(&MODELS[1]);
        let a = SynthPrinter::new(
            t.clone(),
            1,
            SynthParams {
                speed: 1.0,
                seed: 9,
            },
        );
        let b = SynthPrinter::new(
            t,
            2,
            SynthParams {
                speed: 1.0,
                seed: 9,
            },
        );
        let sys_name = o("1.3.6.1.2.1.1.5.0");
        assert_ne!(a.get(&sys_name), b.get(&sys_name));
        let mut cur = o("1.3");
        let mut n = 0;
        while let Some((k, _)) = a.next(&cur) {
            assert!(k > cur);
            cur = k;
            n += 1;
        }
        assert!(n > 50);
    }
}
