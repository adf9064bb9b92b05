//! Reading printers: a [`Reader`] runs the printer module's poll plan through an
//! [`SnmpClient`] and decodes the result with the support library in use, stamped by the
//! agent's clock. One printer's failure is its own: [`Reader::read_many`] polls many
//! concurrently, each with its own result. The scheduled component (intervals, health,
//! backoff, integrity events) is [`scheduler::Poller`]; what it hands the uploader is a
//! [`Reading`].

pub mod integrity;
pub mod scheduler;

use crate::clock::Clock;
use crate::printer::{self, PrinterReport, library};
use fleet_snmp::quirks::Quirks;
use fleet_snmp::{Oid, SnmpClient, SnmpError, Target, walk};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// One task at a time per printer. A job's command holds its printer for its whole run
/// (the seed warns that a configuration change can make a printer stop answering), and
/// the poller's polls and status checks of that printer are put off until it is done:
/// not run beside the write, and not failed for it, so its health does not degrade. A
/// poll holds the printer too, so a command starts after the poll in flight.
#[derive(Clone, Default)]
pub struct PrinterLocks(Arc<parking_lot::Mutex<HashMap<SocketAddr, Arc<tokio::sync::Mutex<()>>>>>);

/// A printer held by [`PrinterLocks`] until dropped.
pub type Held = tokio::sync::OwnedMutexGuard<()>;

impl PrinterLocks {
    fn lock_of(&self, addr: SocketAddr) -> Arc<tokio::sync::Mutex<()>> {
        self.0.lock().entry(addr).or_default().clone()
    }

    /// Holds `addr`, waiting for whatever holds it now.
    pub async fn hold(&self, addr: SocketAddr) -> Held {
        self.lock_of(addr).lock_owned().await
    }

    /// Holds `addr` unless something else does.
    pub fn try_hold(&self, addr: SocketAddr) -> Option<Held> {
        self.lock_of(addr).try_lock_owned().ok()
    }
}

/// The SNMP client the poller and the printer commands share: one UDP socket in the
/// product. With the feature `test-util` (integration tests), the in-memory fake, so a
/// test can run the whole agent on paused time without a socket.
#[derive(Clone)]
pub enum Snmp {
    /// The shared UDP client.
    Udp(fleet_snmp::UdpClient),
    /// In-memory printers (tests).
    #[cfg(feature = "test-util")]
    Fake(fleet_snmp::fake::FakeSnmp),
}

impl Snmp {
    /// The SNMPv3 authoritative engine ID learned for `addr` (what stored credentials
    /// are pinned to).
    pub fn engine_id(&self, addr: std::net::SocketAddr) -> Option<Vec<u8>> {
        match self {
            Snmp::Udp(c) => c.engine_id(addr),
            #[cfg(feature = "test-util")]
            Snmp::Fake(_) => None,
        }
    }
}

impl SnmpClient for Snmp {
    async fn request(
        &self,
        target: &Target,
        request: fleet_snmp::Request,
    ) -> Result<fleet_snmp::Pdu, SnmpError> {
        match self {
            Snmp::Udp(c) => c.request(target, request).await,
            #[cfg(feature = "test-util")]
            Snmp::Fake(c) => c.request(target, request).await,
        }
    }
}

/// Why a printer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// SNMP failed (timeout, credentials, agent error).
    #[error("printer {source}")]
    Snmp {
        /// Printer address.
        addr: std::net::SocketAddr,
        /// The SNMP error (boxed: SnmpError is large and this travels in results).
        #[source]
        source: Box<SnmpError>,
    },
    /// The read did not finish within [`Reader::deadline`].
    #[error("printer {addr}: no complete answer within the {} s deadline", after.as_secs())]
    Deadline {
        /// Printer address.
        addr: std::net::SocketAddr,
        /// The deadline.
        after: std::time::Duration,
    },
    /// The agent answered but served no system group: not something we can report on.
    #[error("printer {addr}: the agent answered but serves neither sysDescr nor sysObjectID")]
    Empty {
        /// Printer address.
        addr: std::net::SocketAddr,
    },
}

impl PollError {
    /// Returns the underlying SNMP error, when there is one.
    pub fn snmp(&self) -> Option<&SnmpError> {
        match self {
            PollError::Snmp { source, .. } => Some(source.as_ref()),
            PollError::Empty { .. } | PollError::Deadline { .. } => None,
        }
    }
}

/// One successful poll, as the poller hands it to the uploader.
#[derive(Clone, Debug)]
pub struct Reading {
    /// Store id of the printer.
    pub printer_id: i64,
    /// The report.
    pub report: PrinterReport,
    /// Force a snapshot (the seed's on-demand refresh).
    pub on_demand: bool,
}

/// Statistics of one poll.
#[derive(Debug, Clone, Copy, Default)]
pub struct PollStats {
    /// SNMP round trips (requests answered).
    pub requests: u32,
    /// Requests sent to find out how a misbehaving agent must be asked (answered or not).
    pub probes: u32,
    /// Values collected.
    pub values: usize,
    /// This read learned how the agent must be asked (`device.quirks`, to remember).
    pub learned: bool,
}

/// What reading a printer needs besides SNMP: the support library to decode with (the one
/// in use when a read starts, kept to its end), the clock that stamps the reading, and
/// the bounds of one read.
#[derive(Clone, Debug)]
pub struct Reader {
    /// The support library in use.
    pub library: library::Handle,
    /// The agent's clock.
    pub clock: Clock,
    /// The longest one read may take (a device answering one value at a time, just
    /// within the timeout, must not hold a poll slot or a discovery probe for hours).
    pub deadline: std::time::Duration,
}

impl Default for Reader {
    fn default() -> Self {
        Reader::new(library::Handle::default(), Clock::default())
    }
}

/// [`Reader::deadline`] unless the caller sets another.
pub const DEFAULT_READ_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

impl Reader {
    /// A reader with [`DEFAULT_READ_DEADLINE`].
    pub fn new(library: library::Handle, clock: Clock) -> Reader {
        Reader {
            library,
            clock,
            deadline: DEFAULT_READ_DEADLINE,
        }
    }

    /// Reads one printer fully: identity, counters, supplies, alerts, trays, asking its
    /// agent the way `known` says. An agent that drops a request, fails GETBULK or
    /// refuses an object is worked around ([`walk::collect_adaptive`]): the report holds
    /// what could be read, names the rest in `device.unavailable`, and carries the
    /// quirks in use in `device.quirks` ([`PollStats::learned`] when this read learned
    /// something the caller should remember). `known` is updated in place as the read
    /// learns, so a read that then fails or misses its deadline keeps what its probes
    /// found for the next try.
    ///
    /// # Errors
    /// [`PollError::Snmp`] when the agent cannot be read, [`PollError::Empty`] when it
    /// serves nothing we recognise.
    pub async fn read<C: SnmpClient>(
        &self,
        client: &C,
        target: &Target,
        known: &mut Quirks,
    ) -> Result<(PrinterReport, PollStats), PollError> {
        self.read_hinted(client, target, known, None).await
    }

    /// [`Reader::read`] for a printer whose sysObjectID was `vendor` at the last poll: the
    /// subtrees the support library maps for that vendor (meters, supply tables) are asked
    /// with the rest of the poll, so a steady printer needs no second step; one whose
    /// sysObjectID changed gets it.
    ///
    /// # Errors
    /// As [`Reader::read`].
    pub async fn read_hinted<C: SnmpClient>(
        &self,
        client: &C,
        target: &Target,
        known: &mut Quirks,
        vendor: Option<&Oid>,
    ) -> Result<(PrinterReport, PollStats), PollError> {
        let library = self.library.current();
        let (firsts, columns) = printer::plan(&library);
        let hinted = printer::meters::plan(&library, vendor);
        let mut first_columns = columns.clone();
        first_columns.extend(hinted.iter().cloned());
        let started = tokio::time::Instant::now();
        let mut c = tokio::time::timeout(
            self.deadline,
            walk::collect_adaptive(
                client,
                target,
                &firsts,
                &first_columns,
                walk::Budget::POLL,
                known,
            ),
        )
        .await
        .map_err(|_| PollError::Deadline {
            addr: target.addr,
            after: self.deadline,
        })?
        .map_err(|source| PollError::Snmp {
            addr: target.addr,
            source: Box::new(source),
        })?;
        let soid_col = Oid::from_slice(printer::oids::SYS_OBJECT_ID);
        let soid = c
            .values
            .range(soid_col.clone()..)
            .next()
            .filter(|(k, _)| k.starts_with(&soid_col))
            .and_then(|(_, v)| v.as_oid())
            .cloned();
        // Vendor subtrees the last poll did not announce (a printer seen for the first
        // time, or another one at the address) are a second step, for the printers whose
        // vendor (and model family) the library maps: the rest pay nothing. It keeps
        // within the read's deadline (a little less, so the caller's own deadline on the
        // whole read does not fire first), and its failure keeps the reading.
        let vendor_columns = printer::meters::plan(&library, soid.as_ref());
        let second: Vec<Oid> = vendor_columns
            .iter()
            .filter(|m| !hinted.iter().any(|h| m.starts_with(h)))
            .cloned()
            .collect();
        let mut second_failed = None;
        if !second.is_empty() {
            let left = self
                .deadline
                .saturating_sub(started.elapsed())
                .saturating_sub(self.deadline / 20);
            let before = known.clone();
            let step = walk::collect_adaptive(
                client,
                target,
                &[],
                &second,
                printer::meters::BUDGET,
                known,
            );
            match (c.cut.is_some(), tokio::time::timeout(left, step).await) {
                (true, _) => second_failed = Some("the reading was cut before them".to_string()),
                (false, Ok(Ok(m))) => {
                    c.values.extend(m.values);
                    c.requests = c.requests.saturating_add(m.requests);
                    c.probes = c.probes.saturating_add(m.probes);
                    c.cut = c.cut.or(m.cut);
                    c.learned |= m.learned;
                    c.quirks = m.quirks;
                    c.missing.extend(m.missing);
                }
                (false, Ok(Err(e))) => second_failed = Some(e.to_string()),
                (false, Err(_)) => {
                    second_failed = Some(format!(
                        "no complete answer within the {} s deadline",
                        self.deadline.as_secs()
                    ))
                }
            }
            // What the step learned about the device is kept even when it failed.
            if second_failed.is_some() && *known != before {
                c.learned = true;
                c.quirks = known.clone();
            }
        }
        let mut cuts: Vec<String> = c.cut.iter().map(ToString::to_string).collect();
        cuts.extend(printer::limits::trim(&mut c.values, &columns));
        // A vendor subtree is one column holding many counters: it keeps as many rows as
        // a report keeps meters.
        let vendor_read: Vec<Oid> = hinted.iter().chain(&second).cloned().collect();
        cuts.extend(printer::limits::trim_rows(
            &mut c.values,
            &vendor_read,
            printer::meters::MAX_METERS,
        ));
        // The version actually used (a v2c target whose agent answers v1 only is read as v1).
        let version = match target.security.version() {
            fleet_snmp::Version::V2c if c.quirks.v1 => fleet_snmp::Version::V1,
            v => v,
        };
        let collected = printer::Collected {
            values: &c.values,
            ip: Some(target.addr.ip()),
            collected_at: self.clock.now_ms(),
            version: Some(version),
            library: &library,
        };
        let mut report = printer::decode(&collected);
        cuts.append(&mut report.device.cuts);
        report.device.cuts = cuts;
        // A vendor column not read is the meters' section, or the supplies' for a supply
        // table (their serial numbers).
        let supply_columns = printer::meters::supply_columns(&library, soid.as_ref());
        let section = |oid: &Oid| -> Option<&'static str> {
            if supply_columns.iter().any(|s| oid.starts_with(s)) {
                Some("supplies")
            } else if vendor_read.iter().any(|m| oid.starts_with(m)) {
                Some("meters")
            } else {
                None
            }
        };
        report.device.unavailable = c
            .missing
            .iter()
            .map(|skip| {
                let mut u = printer::Unavailable::of(skip);
                if let Some(s) = section(&skip.oid) {
                    u.section = s;
                }
                u
            })
            .collect();
        if let Some(reason) = second_failed {
            report
                .device
                .unavailable
                .extend(second.iter().map(|m| printer::Unavailable {
                    section: section(m).unwrap_or("meters"),
                    object: None,
                    oid: m.to_string(),
                    reason: reason.clone(),
                }));
        }
        let learned = c.learned;
        report.device.quirks = (!c.quirks.is_empty()).then_some(c.quirks);
        if report.device.sys_descr.is_none() && report.device.sys_object_id.is_none() {
            return Err(PollError::Empty { addr: target.addr });
        }
        Ok((
            report,
            PollStats {
                requests: c.requests,
                probes: c.probes,
                values: c.values.len(),
                learned,
            },
        ))
    }

    /// Polls every target with at most `concurrency` in flight; results keep target order.
    pub async fn read_many<C: SnmpClient + Clone>(
        &self,
        client: &C,
        targets: &[Target],
        concurrency: usize,
    ) -> Vec<Result<(PrinterReport, PollStats), PollError>> {
        let sem = Arc::new(Semaphore::new(concurrency.max(1)));
        let mut set = tokio::task::JoinSet::new();
        for (i, t) in targets.iter().cloned().enumerate() {
            let (client, sem, reader) = (client.clone(), sem.clone(), self.clone());
            set.spawn(async move {
                let _permit = sem.acquire_owned().await.expect("semaphore closed");
                (i, reader.read(&client, &t, &mut Quirks::default()).await)
            });
        }
        let mut out: Vec<Option<Result<(PrinterReport, PollStats), PollError>>> =
            (0..targets.len()).map(|_| None).collect();
        while let Some(r) = set.join_next().await {
            if let Ok((i, res)) = r {
                out[i] = Some(res);
            }
        }
        out.into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.unwrap_or_else(|| {
                    Err(PollError::Snmp {
                        addr: targets[i].addr,
                        source: Box::new(SnmpError::Io {
                            target: targets[i].addr,
                            source: std::io::Error::other("poll task panicked"),
                        }),
                    })
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_snmp::Value;
    use fleet_snmp::agent::MibView;
    use fleet_snmp::fake::FakeSnmp;

    /// An HP printer with engine counters, and the same address later holding a Sharp.
    fn view(sharp: bool) -> MibView {
        let o = |s: &str| s.parse::<Oid>().unwrap();
        let mut v = vec![
            (
                o("1.3.6.1.2.1.1.1.0"),
                Value::OctetString(b"printer".to_vec()),
            ),
            (o("1.3.6.1.2.1.43.10.2.1.4.1.1"), Value::Counter32(1000)),
        ];
        if sharp {
            v.push((
                o("1.3.6.1.2.1.1.2.0"),
                Value::ObjectId(o("1.3.6.1.4.1.2385.3.1")),
            ));
            v.push((
                o("1.3.6.1.4.1.2385.1.1.19.2.1.3.1.4.61"),
                Value::Counter32(600),
            ));
        } else {
            v.push((
                o("1.3.6.1.2.1.1.2.0"),
                Value::ObjectId(o("1.3.6.1.4.1.11.2.3.9.1")),
            ));
            v.push((
                o("1.3.6.1.4.1.11.2.3.9.4.2.1.4.1.2.6.0"),
                Value::Counter32(900),
            ));
        }
        MibView::new(v)
    }

    #[tokio::test]
    async fn a_known_vendor_is_read_in_one_step_and_a_new_one_in_two() {
        let addr: SocketAddr = "127.0.0.1:161".parse().unwrap();
        let fake = FakeSnmp::new();
        fake.add(addr, view(false));
        let target = Target::new(addr, fleet_snmp::Security::v2c("public"));
        let reader = Reader::default();
        let meters = |r: &PrinterReport| -> Vec<String> {
            r.meters
                .iter()
                .filter_map(|m| m.rule.clone())
                .collect::<Vec<_>>()
        };
        // First poll: the vendor is learnt from the reading, its subtrees come after.
        let (first, s1) = reader
            .read_hinted(&fake, &target, &mut Quirks::default(), None)
            .await
            .unwrap();
        assert!(meters(&first).contains(&"hp.totalMonoPageCount".to_string()));
        // Next poll, told the vendor: the same reading in fewer round trips.
        let hp: Oid = first.device.sys_object_id.clone().unwrap().parse().unwrap();
        let (second, s2) = reader
            .read_hinted(&fake, &target, &mut Quirks::default(), Some(&hp))
            .await
            .unwrap();
        assert_eq!(meters(&second), meters(&first));
        assert!(
            s2.requests < s1.requests,
            "{} requests with the vendor known, {} without",
            s2.requests,
            s1.requests
        );
        // The address now holds another vendor's printer: the stale hint costs nothing
        // in correctness, the new vendor's subtrees are read in the second step.
        fake.add(addr, view(true));
        let (third, _) = reader
            .read_hinted(&fake, &target, &mut Quirks::default(), Some(&hp))
            .await
            .unwrap();
        assert_eq!(
            meters(&third),
            [
                "printer-mib.prtMarkerLifeCount".to_string(),
                "sharp.print.mono".to_string()
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_vendor_subtree_the_printer_will_not_answer_keeps_the_reading() {
        let addr: SocketAddr = "127.0.0.2:161".parse().unwrap();
        let fake = FakeSnmp::new();
        fake.add(addr, view(true));
        fake.set_faults(
            addr,
            fleet_snmp::agent::Faults {
                drop: vec!["1.3.6.1.4.1.2385.1.1.19".parse().unwrap()],
                ..Default::default()
            },
        );
        let mut target = Target::new(addr, fleet_snmp::Security::v2c("public"));
        target.timeout = std::time::Duration::from_millis(200);
        target.retries = 0;
        let reader = Reader::default();
        let sharp: Oid = "1.3.6.1.4.1.2385.3.1".parse().unwrap();
        for hint in [None, Some(&sharp)] {
            let mut known = Quirks::default();
            let (r, _) = reader
                .read_hinted(&fake, &target, &mut known, hint)
                .await
                .unwrap_or_else(|e| panic!("hint {hint:?}: {e}"));
            assert_eq!(r.counters.lifetime_count, Some(1000), "hint {hint:?}");
            let sections: Vec<&str> = r.device.unavailable.iter().map(|u| u.section).collect();
            // The value and label columns of the table, both under the dropped subtree.
            assert_eq!(
                sections,
                ["meters", "meters"],
                "hint {hint:?}: {:?}",
                r.device.unavailable
            );
            assert!(
                r.meters
                    .iter()
                    .all(|m| !m.oid.starts_with("1.3.6.1.4.1.2385")),
                "{:?}",
                r.meters
            );
        }
    }
}
