//! Typed operations built on [`SnmpClient::request`]: GET with v1 noSuchName handling,
//! subtree walks, and multi-column collection that fetches many table columns and
//! first-instances in the same GETBULK (GETNEXT for v1) round trips.

use super::message::error_status;
use super::{Oid, Pdu, PduType, Request, SnmpClient, SnmpError, Target, Value, VarBind, Version};
use std::collections::BTreeMap;

/// What one collection may gather from a device, so that an agent that keeps inventing
/// OIDs or serves endless large values costs bounded memory and round trips.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Values kept at most.
    pub values: usize,
    /// Bytes kept at most (OIDs and values, as [`weight`] counts them).
    pub bytes: usize,
}

impl Budget {
    /// A printer poll: the largest real recordings hold under 3,000 values in the
    /// columns a poll reads; a poll stops well before memory matters.
    pub const POLL: Budget = Budget {
        values: 10_000,
        bytes: 2 << 20,
    };
    /// A whole-subtree walk (`walk`, the `mibWalk` job): a large MFP's whole MIB is
    /// tens of thousands of values and a few MB.
    pub const WALK: Budget = Budget {
        values: 100_000,
        bytes: 8 << 20,
    };
}

/// The longest a whole-subtree walk may take (a full printer MIB takes seconds; a
/// device trickling values must not hold a job or the command line for hours).
pub const WALK_DEADLINE: std::time::Duration = std::time::Duration::from_secs(600);

/// Why a collection stopped before the device said it was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Cut {
    /// The value budget ran out.
    #[error("stopped after {0} values (the budget of one collection)")]
    Values(usize),
    /// The byte budget ran out.
    #[error("stopped after {0} bytes (the budget of one collection)")]
    Bytes(usize),
}

/// The bytes one value costs in a collection: its OID's arcs and its payload, plus a
/// fixed overhead (map node, enum).
pub fn weight(oid: &Oid, value: &Value) -> usize {
    let payload = match value {
        Value::OctetString(b) | Value::Opaque(b) => b.len(),
        Value::ObjectId(o) => o.len() * 4,
        _ => 8,
    };
    48 + oid.len() * 4 + payload
}

fn agent_error(target: &Target, pdu: &Pdu) -> SnmpError {
    SnmpError::Agent {
        target: target.addr,
        status: pdu.error_status,
        index: pdu.error_index,
    }
}

/// GETs `oids`; objects the agent lacks are left out of the result (v2 exceptions, and
/// v1 noSuchName handled by dropping the named varbind and asking again).
///
/// # Errors
/// Transport, security and agent errors other than "no such object".
pub async fn get<C: SnmpClient>(
    client: &C,
    target: &Target,
    oids: &[Oid],
) -> Result<Vec<VarBind>, SnmpError> {
    let mut ask: Vec<Oid> = oids.to_vec();
    loop {
        if ask.is_empty() {
            return Ok(Vec::new());
        }
        let pdu = client
            .request(
                target,
                Request {
                    kind: PduType::Get,
                    non_repeaters: 0,
                    max_repetitions: 0,
                    varbinds: ask.iter().cloned().map(VarBind::null).collect(),
                },
            )
            .await?;
        match pdu.error_status {
            0 => {
                return Ok(pdu
                    .varbinds
                    .into_iter()
                    .filter(|v| !v.value.is_exception())
                    .collect());
            }
            error_status::NO_SUCH_NAME
                if pdu.error_index >= 1 && (pdu.error_index as usize) <= ask.len() =>
            {
                ask.remove(pdu.error_index as usize - 1);
            }
            _ => return Err(agent_error(target, &pdu)),
        }
    }
}

/// SETs `varbinds` in one request.
///
/// # Errors
/// Transport and security errors, and the agent's refusal (`SnmpError::Agent` with its
/// error-status: notWritable, noAccess, wrongType, ...).
pub async fn set<C: SnmpClient>(
    client: &C,
    target: &Target,
    varbinds: Vec<VarBind>,
) -> Result<(), SnmpError> {
    let pdu = client
        .request(
            target,
            Request {
                kind: PduType::Set,
                non_repeaters: 0,
                max_repetitions: 0,
                varbinds,
            },
        )
        .await?;
    match pdu.error_status {
        0 => Ok(()),
        _ => Err(agent_error(target, &pdu)),
    }
}

/// Walks the subtree under `root` (GETBULK for v2c/v3, GETNEXT for v1), stopping at the
/// end of the subtree or of `budget` ([`Collection::cut`]), and failing on a
/// non-increasing OID.
///
/// # Errors
/// Transport, security and agent errors, and looping agents.
pub async fn walk<C: SnmpClient>(
    client: &C,
    target: &Target,
    root: &Oid,
    budget: Budget,
) -> Result<Collection, SnmpError> {
    collect(client, target, &[], std::slice::from_ref(root), budget).await
}

/// A whole subtree as the tools read it (the `walk` command, the `mibWalk` job): within
/// [`Budget::WALK`] and at most [`WALK_DEADLINE`].
///
/// # Errors
/// As [`walk`], and [`SnmpError::Deadline`] when the deadline passes.
pub async fn walk_subtree<C: SnmpClient>(
    client: &C,
    target: &Target,
    root: &Oid,
) -> Result<Collection, SnmpError> {
    tokio::time::timeout(WALK_DEADLINE, walk(client, target, root, Budget::WALK))
        .await
        .map_err(|_| SnmpError::Deadline {
            target: target.addr,
            secs: WALK_DEADLINE.as_secs(),
        })?
}

/// What [`collect`] gathered.
#[derive(Debug, Default)]
pub struct Collection {
    /// Every value returned inside a requested subtree, by instance OID.
    pub values: BTreeMap<Oid, Value>,
    /// Round trips made.
    pub requests: u32,
    /// Bytes kept, as [`weight`] counts them.
    pub bytes: usize,
    /// Set when the budget stopped the collection early.
    pub cut: Option<Cut>,
}

impl Collection {
    /// Keeps one value unless the budget is spent; returns false when it is.
    fn keep(&mut self, oid: Oid, value: Value, budget: Budget) -> bool {
        if self.cut.is_some() {
            return false;
        }
        let w = weight(&oid, &value);
        if self.values.len() >= budget.values {
            self.cut = Some(Cut::Values(self.values.len()));
            return false;
        }
        if self.bytes.saturating_add(w) > budget.bytes {
            self.cut = Some(Cut::Bytes(self.bytes));
            return false;
        }
        self.bytes += w;
        self.values.insert(oid, value);
        true
    }
}

struct Column {
    root: Oid,
    cursor: Oid,
}

/// Fetches, in as few round trips as possible, the first instance under each of `firsts`
/// (sent as GETBULK non-repeaters, i.e. GETNEXT of the object) and every instance under
/// each of `columns` (the repeaters). The budget of varbinds per response is
/// `target.max_repetitions`, spread over the columns still being walked; on tooBig the
/// budget is halved. The collection stops (with [`Collection::cut`] set) when `budget`
/// is spent.
///
/// # Errors
/// Transport, security and agent errors, non-increasing OIDs, and tooBig for a single
/// varbind.
pub async fn collect<C: SnmpClient>(
    client: &C,
    target: &Target,
    firsts: &[Oid],
    columns: &[Oid],
    limit: Budget,
) -> Result<Collection, SnmpError> {
    let mut out = Collection::default();
    let mut firsts: Vec<Oid> = firsts.to_vec();
    let mut cols: Vec<Column> = columns
        .iter()
        .map(|c| Column {
            root: c.clone(),
            cursor: c.clone(),
        })
        .collect();
    let v1 = target.security.version() == Version::V1;
    let mut budget = target.max_repetitions.max(1) as usize;
    // Columns per request; shrinks when an agent answers tooBig to one repetition.
    let mut max_cols = cols.len().max(1);
    // First-instance requests postponed after a tooBig, asked in a later round.
    let mut deferred: Vec<Oid> = Vec::new();
    while !(firsts.is_empty() && cols.is_empty() && deferred.is_empty()) {
        if firsts.is_empty() {
            firsts.append(&mut deferred);
        }
        if out.cut.is_some() {
            break;
        }
        let ncols = cols.len().min(max_cols);
        let nr = firsts.len();
        let reps = budget.checked_div(ncols).map_or(0, |r| r.max(1));
        let mut varbinds: Vec<VarBind> = firsts.iter().cloned().map(VarBind::null).collect();
        varbinds.extend(
            cols[..ncols]
                .iter()
                .map(|c| VarBind::null(c.cursor.clone())),
        );
        let req = if v1 {
            Request {
                kind: PduType::GetNext,
                non_repeaters: 0,
                max_repetitions: 0,
                varbinds,
            }
        } else {
            Request {
                kind: PduType::GetBulk,
                non_repeaters: nr as u32,
                max_repetitions: reps as u32,
                varbinds,
            }
        };
        let pdu = client.request(target, req).await?;
        out.requests += 1;
        match pdu.error_status {
            0 => {}
            error_status::TOO_BIG => {
                if !v1 && reps > 1 {
                    budget = (budget / 2).max(1);
                } else if ncols > 1 {
                    max_cols = (ncols / 2).max(1);
                } else if nr > 1 {
                    deferred.extend(firsts.split_off(nr / 2));
                } else {
                    return Err(SnmpError::TooBig {
                        target: target.addr,
                    });
                }
                continue;
            }
            error_status::NO_SUCH_NAME if v1 && pdu.error_index >= 1 => {
                let i = pdu.error_index as usize - 1;
                if i < nr {
                    firsts.remove(i);
                } else if i - nr < ncols {
                    cols.remove(i - nr);
                } else {
                    return Err(agent_error(target, &pdu));
                }
                continue;
            }
            _ => return Err(agent_error(target, &pdu)),
        }
        let mut vbs = pdu.varbinds.into_iter();
        for (i, vb) in vbs.by_ref().take(nr).enumerate() {
            if !vb.value.is_exception() && vb.oid.starts_with(&firsts[i]) {
                out.keep(vb.oid, vb.value, limit);
            }
        }
        firsts.clear();
        firsts.append(&mut deferred);
        let rest: Vec<VarBind> = vbs.collect();
        let mut done = vec![false; ncols];
        if ncols > 0 {
            if rest.is_empty() {
                // An agent that returns nothing for the repeaters: nothing more to learn.
                done.iter_mut().for_each(|d| *d = true);
            }
            for row in rest.chunks(ncols) {
                for (j, vb) in row.iter().enumerate() {
                    if done[j] {
                        continue;
                    }
                    let col = &mut cols[j];
                    if vb.value == Value::EndOfMibView
                        || !vb.oid.starts_with(&col.root)
                        || vb.oid == col.root
                    {
                        done[j] = true;
                        continue;
                    }
                    if vb.oid <= col.cursor {
                        return Err(SnmpError::NonIncreasing {
                            target: target.addr,
                            root: col.root.clone(),
                            previous: col.cursor.clone(),
                            oid: vb.oid.clone(),
                        });
                    }
                    col.cursor = vb.oid.clone();
                    if !vb.value.is_exception()
                        && !out.keep(vb.oid.clone(), vb.value.clone(), limit)
                    {
                        break;
                    }
                }
            }
        }
        let mut j = 0;
        cols.retain(|_| {
            let keep = j >= ncols || !done[j];
            j += 1;
            keep
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Security;
    use crate::agent::MibView;
    use crate::fake::FakeSnmp;
    use std::net::SocketAddr;

    fn fake() -> (FakeSnmp, SocketAddr) {
        let o = |s: &str| s.parse::<Oid>().unwrap();
        let mut pairs = vec![
            (o("1.3.6.1.2.1.1.1.0"), Value::OctetString(b"d".to_vec())),
            (
                o("1.3.6.1.2.1.1.2.0"),
                Value::ObjectId(o("1.3.6.1.4.1.641")),
            ),
        ];
        for i in 1..=30u32 {
            pairs.push((
                o(&format!("1.3.6.1.2.1.43.11.1.1.6.1.{i}")),
                Value::OctetString(format!("s{i}").into_bytes()),
            ));
            pairs.push((
                o(&format!("1.3.6.1.2.1.43.11.1.1.9.1.{i}")),
                Value::Integer(i64::from(i)),
            ));
        }
        pairs.push((
            o("1.3.6.1.2.1.43.12.1.1.4.1.1"),
            Value::OctetString(b"black".to_vec()),
        ));
        let addr: SocketAddr = "127.0.0.1:161".parse().unwrap();
        let f = FakeSnmp::new();
        f.add(addr, MibView::new(pairs));
        (f, addr)
    }

    #[tokio::test]
    async fn collect_walks_columns_and_firsts_together() {
        let (f, addr) = fake();
        for sec in [Security::v2c("public"), Security::v1("public")] {
            let mut t = Target::new(addr, sec);
            t.max_repetitions = 10;
            let c = collect(
                &f,
                &t,
                &[
                    "1.3.6.1.2.1.1.1".parse().unwrap(),
                    "1.3.6.1.2.1.1.9".parse().unwrap(),
                ],
                &[
                    "1.3.6.1.2.1.43.11.1.1.6".parse().unwrap(),
                    "1.3.6.1.2.1.43.11.1.1.9".parse().unwrap(),
                    "1.3.6.1.2.1.43.12.1.1.4".parse().unwrap(),
                ],
                Budget::POLL,
            )
            .await
            .unwrap();
            assert_eq!(c.values.len(), 1 + 60 + 1, "{t:?}");
            assert!(c.values.contains_key(&"1.3.6.1.2.1.1.1.0".parse().unwrap()));
            assert_eq!(
                c.values[&"1.3.6.1.2.1.43.11.1.1.9.1.30".parse().unwrap()],
                Value::Integer(30)
            );
        }
    }

    #[tokio::test]
    async fn v2c_collect_uses_few_round_trips() {
        let (f, addr) = fake();
        let mut t = Target::new(addr, Security::v2c("public"));
        t.max_repetitions = 64;
        let c = collect(
            &f,
            &t,
            &[],
            &[
                "1.3.6.1.2.1.43.11.1.1.6".parse().unwrap(),
                "1.3.6.1.2.1.43.11.1.1.9".parse().unwrap(),
            ],
            Budget::POLL,
        )
        .await
        .unwrap();
        assert_eq!(c.values.len(), 60);
        assert_eq!(c.cut, None);
        assert!(c.requests <= 2, "took {} requests", c.requests);
    }

    #[tokio::test]
    async fn get_drops_missing_objects_in_v1_and_v2c() {
        let (f, addr) = fake();
        for sec in [Security::v2c("public"), Security::v1("public")] {
            let t = Target::new(addr, sec);
            let got = get(
                &f,
                &t,
                &[
                    "1.3.6.1.2.1.1.9.0".parse().unwrap(),
                    "1.3.6.1.2.1.1.1.0".parse().unwrap(),
                ],
            )
            .await
            .unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].oid.to_string(), "1.3.6.1.2.1.1.1.0");
        }
    }

    #[tokio::test]
    async fn walk_detects_a_looping_agent() {
        use crate::agent::MibStore;
        // An agent whose GETNEXT always answers the same OID.
        struct Loop;
        impl MibStore for Loop {
            fn get(&self, _: &Oid) -> Option<Value> {
                None
            }
            fn next(&self, _: &Oid) -> Option<(Oid, Value)> {
                Some(("1.3.6.1.2.1.43.5".parse().unwrap(), Value::Integer(1)))
            }
        }
        let f = FakeSnmp::new();
        let addr: SocketAddr = "127.0.0.2:161".parse().unwrap();
        f.add_store(addr, Box::new(Loop));
        let t = Target::new(addr, Security::v2c("public"));
        let err = walk(&f, &t, &"1.3.6.1.2.1.43".parse().unwrap(), Budget::WALK)
            .await
            .unwrap_err();
        assert!(matches!(err, SnmpError::NonIncreasing { .. }), "{err}");
    }

    /// Serves an endless column under 1.3.6.1.4.1.99999.1: row `n` holds `size` bytes.
    struct Endless {
        size: usize,
    }
    impl crate::agent::MibStore for Endless {
        fn get(&self, _: &Oid) -> Option<Value> {
            None
        }
        fn next(&self, oid: &Oid) -> Option<(Oid, Value)> {
            let base = [1, 3, 6, 1, 4, 1, 99_999, 1];
            let n = match oid.suffix(&Oid::from_slice(&base)) {
                Some([n, ..]) => n + 1,
                _ => 1,
            };
            Some((
                Oid::new([&base[..], &[n]].concat()),
                Value::OctetString(vec![b'x'; self.size]),
            ))
        }
    }

    #[tokio::test]
    async fn an_endless_device_stops_at_the_budget_and_says_so() {
        // Issue 18: a walk of endless large values reached 5.6 GB.
        for (size, budget, want) in [
            (
                1,
                Budget {
                    values: 500,
                    bytes: 1 << 20,
                },
                Cut::Values(500),
            ),
            (
                4000,
                Budget {
                    values: 100_000,
                    bytes: 1 << 20,
                },
                Cut::Bytes(0),
            ),
        ] {
            let f = FakeSnmp::new();
            let addr: SocketAddr = "127.0.0.3:161".parse().unwrap();
            f.add_store(addr, Box::new(Endless { size }));
            let t = Target::new(addr, Security::v2c("public"));
            let w = walk(&f, &t, &"1.3.6.1.4.1.99999".parse().unwrap(), budget)
                .await
                .unwrap();
            let cut = w.cut.expect("the walk was cut");
            match (cut, want) {
                (Cut::Values(n), Cut::Values(m)) => assert_eq!(n, m),
                (Cut::Bytes(n), Cut::Bytes(_)) => {
                    assert!(n <= budget.bytes && n > budget.bytes - 5000, "{n}");
                }
                other => panic!("{other:?}"),
            }
            let kept: usize = w.values.iter().map(|(o, v)| weight(o, v)).sum();
            assert_eq!(kept, w.bytes);
            assert!(kept <= budget.bytes && w.values.len() <= budget.values);
            assert!(!w.values.is_empty());
        }
    }

    /// A device that answers every request, slowly and without end (each reply one step
    /// further): the walk stops at its deadline with an error that says so.
    #[tokio::test(start_paused = true)]
    async fn a_walk_that_never_ends_stops_at_its_deadline() {
        struct Slow(std::sync::atomic::AtomicU32);
        impl SnmpClient for Slow {
            async fn request(&self, _: &Target, _: Request) -> Result<Pdu, SnmpError> {
                tokio::time::sleep(std::time::Duration::from_secs(10)).await;
                let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(Pdu {
                    kind: PduType::Response,
                    request_id: 1,
                    error_status: 0,
                    error_index: 0,
                    varbinds: vec![VarBind {
                        oid: "1.3.6.1.4.1.99999".parse::<Oid>().unwrap().child(&[n + 1]),
                        value: Value::Integer(1),
                    }],
                })
            }
        }
        let t = Target::new("192.0.2.9:161".parse().unwrap(), Security::v2c("public"));
        let root: Oid = "1.3.6.1.4.1.99999".parse().unwrap();
        let start = tokio::time::Instant::now();
        let e = walk_subtree(&Slow(Default::default()), &t, &root)
            .await
            .unwrap_err();
        assert!(matches!(e, SnmpError::Deadline { secs: 600, .. }), "{e}");
        assert_eq!(
            e.to_string(),
            "192.0.2.9:161: the walk did not finish within 600 s"
        );
        assert_eq!(start.elapsed(), WALK_DEADLINE);
    }
}
