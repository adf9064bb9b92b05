//! Typed operations built on [`SnmpClient::request`]: GET with v1 noSuchName handling,
//! subtree walks, and multi-column collection that fetches many table columns and
//! first-instances in the same GETBULK (GETNEXT for v1) round trips.

use super::message::error_status;
use super::quirks::{self, Alive, Quirks, Reason, Skip};
use super::{Oid, Pdu, PduType, Request, SnmpClient, SnmpError, Target, Value, VarBind, Version};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

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
    /// Round trips made (requests answered).
    pub requests: u32,
    /// [`collect_adaptive`]: requests sent to find out how the device must be asked
    /// (answered or not).
    pub probes: u32,
    /// Bytes kept, as [`weight`] counts them.
    pub bytes: usize,
    /// Set when the budget stopped the collection early.
    pub cut: Option<Cut>,
    /// [`collect_adaptive`]: how the device must be asked (what the caller knew and what
    /// this collection learned).
    pub quirks: Quirks,
    /// [`collect_adaptive`]: set when this collection learned something about the device.
    pub learned: bool,
    /// [`collect_adaptive`]: objects and columns not read, or not to their end, and why.
    pub missing: Vec<Skip>,
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
    /// The row past which the device is not asked (it hangs there).
    stop: Option<Oid>,
}

/// Adaptations one collection may make (each costs a few probes).
const MAX_ROUNDS: u32 = 16;

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
    run(client, target, firsts, columns, limit, None).await
}

/// [`collect`] for a device that may misbehave: asks it the way `known` says, and when a
/// request goes unanswered while the device is there, or is refused with genErr, finds
/// out why ([`crate::quirks`]) and carries on without what it cannot answer. What was
/// learned is in [`Collection::quirks`] (with [`Collection::learned`] set), what could
/// not be read in [`Collection::missing`]; a column on which the device returns a
/// non-increasing OID ends there instead of failing the collection.
///
/// `known` is updated in place as probes find things out, so what a collection that then
/// fails, or is cancelled at a deadline, paid probes for is not lost: the caller keeps
/// it for the next try.
///
/// # Errors
/// As [`collect`] when the device does not answer at all (nor as SNMPv1), or keeps
/// failing after [`MAX_ROUNDS`] adaptations.
pub async fn collect_adaptive<C: SnmpClient>(
    client: &C,
    target: &Target,
    firsts: &[Oid],
    columns: &[Oid],
    limit: Budget,
    known: &mut Quirks,
) -> Result<Collection, SnmpError> {
    run(client, target, firsts, columns, limit, Some(known)).await
}

/// The objects and columns of one collection still to ask for.
struct Pending {
    firsts: Vec<Oid>,
    deferred: Vec<Oid>,
    cols: Vec<Column>,
}

impl Pending {
    /// The request for the first `nr` objects and `ncols` columns (GETBULK: `nr`
    /// non-repeaters and `reps` repetitions).
    fn request(&self, kind: PduType, nr: usize, ncols: usize, reps: usize) -> Request {
        let mut varbinds: Vec<VarBind> = Vec::with_capacity(nr + ncols);
        varbinds.extend(self.firsts[..nr].iter().cloned().map(VarBind::null));
        varbinds.extend(
            self.cols[..ncols]
                .iter()
                .map(|c| VarBind::null(c.cursor.clone())),
        );
        let bulk = kind == PduType::GetBulk;
        Request {
            kind,
            non_repeaters: if bulk { nr as u32 } else { 0 },
            max_repetitions: if bulk { reps as u32 } else { 0 },
            varbinds,
        }
    }

    /// Stops asking for varbind `i` of a request of `nr` firsts: a first is dropped; a
    /// column is skipped, or stopped at its cursor when rows were read (they are kept).
    fn give_up(
        &mut self,
        i: usize,
        nr: usize,
        reason: Reason,
        q: &mut Quirks,
        out: &mut Collection,
    ) {
        let (oid, learn) = if i < nr {
            (self.firsts.remove(i), true)
        } else if i - nr < self.cols.len() {
            let c = self.cols.remove(i - nr);
            (c.cursor, reason != Reason::NonIncreasing)
        } else {
            return;
        };
        if learn && q.add_skip(oid.clone(), reason) {
            out.learned = true;
        }
        out.missing.push(Skip { oid, reason });
    }
}

async fn run<C: SnmpClient>(
    client: &C,
    target: &Target,
    firsts: &[Oid],
    columns: &[Oid],
    limit: Budget,
    adapt: Option<&mut Quirks>,
) -> Result<Collection, SnmpError> {
    let mut out = Collection::default();
    let adaptive = adapt.is_some();
    let mut own = Quirks::default();
    let q: &mut Quirks = match adapt {
        Some(q) => {
            *q = std::mem::take(q).bounded();
            q
        }
        None => &mut own,
    };
    let mut target = std::borrow::Cow::Borrowed(target);
    if q.v1
        && let Some(t) = quirks::as_v1(&target)
    {
        target = std::borrow::Cow::Owned(t);
    }
    let mut p = Pending {
        firsts: Vec::with_capacity(firsts.len()),
        deferred: Vec::new(),
        cols: Vec::with_capacity(columns.len()),
    };
    for f in firsts {
        match q.skips(f) {
            Some(s) => out.missing.push(s.clone()),
            None => p.firsts.push(f.clone()),
        }
    }
    for c in columns {
        match q.skips(c) {
            Some(s) => out.missing.push(s.clone()),
            None => p.cols.push(Column {
                root: c.clone(),
                cursor: c.clone(),
                stop: q.stop_in(c).map(|s| s.oid.clone()),
            }),
        }
    }
    let mut budget = (target.max_repetitions.max(1) as usize)
        .min(q.max_values.map_or(usize::MAX, |n| n.max(1) as usize));
    // tooBig: a request too big, or its response? The same objects asked with one
    // repetition tell: answered, the response was (the values per response are halved);
    // refused, the request (the objects per request are). What is answered below what
    // is refused is remembered, so the next poll asks within both limits at once.
    let mut size_check = false;
    let mut obj_cap = usize::MAX;
    let mut budget_cut = false;
    let mut refused_objects: Option<usize> = None;
    let mut answered_objects = std::collections::BTreeSet::new();
    let sent = AtomicU32::new(0);
    // A round trip of the device, once measured by a probe.
    let mut rtt: Option<std::time::Duration> = None;
    let mut answered = false;
    let mut rounds = 0u32;
    let mut losses = 0u32;
    // The last error-status answer, asked again once before it is learned from.
    let mut last_refusal: Option<(i32, usize, PduType, usize, usize)> = None;
    // After a confirmed refusal, GETBULK asks one row per column for the rest of this
    // collection before blaming a column: a multi-row answer refused as a whole (a column
    // stepping into a refused neighbour) would otherwise take the rows before the step
    // with it. (Not at a first refusal: a busy agent's one genErr must not slow the poll.)
    let mut careful = false;
    loop {
        if p.firsts.is_empty() {
            p.firsts.append(&mut p.deferred);
        }
        // Columns that reached the row past which the device hangs.
        p.cols.retain(|c| {
            let stopped = c.stop.as_ref().is_some_and(|s| c.cursor >= *s);
            if stopped {
                out.missing.push(Skip {
                    oid: c.cursor.clone(),
                    reason: Reason::NoAnswer,
                });
            }
            !stopped
        });
        if (p.firsts.is_empty() && p.cols.is_empty()) || out.cut.is_some() {
            break;
        }
        let v1 = target.security.version() == Version::V1;
        let bulk = !v1 && !q.no_bulk && target.max_repetitions > 0;
        // A size check is a GETBULK question: moot once GETBULK is off.
        size_check &= bulk;
        let max_obj = q
            .max_objects
            .map_or(usize::MAX, |n| n.max(1) as usize)
            .min(obj_cap);
        if p.firsts.len() > max_obj {
            let rest = p.firsts.split_off(max_obj);
            p.deferred.splice(0..0, rest);
        }
        let nr = p.firsts.len();
        let ncols = p.cols.len().min(max_obj - nr);
        let reps = if bulk && (careful || size_check) {
            1
        } else if bulk {
            // The non-repeaters' values count against the budget too.
            budget
                .saturating_sub(nr)
                .checked_div(ncols)
                .map_or(0, |r| r.max(1))
                .min(q.max_repetitions.map_or(usize::MAX, |r| r as usize))
        } else {
            0
        };
        let kind = if bulk {
            PduType::GetBulk
        } else {
            PduType::GetNext
        };
        let sent_at = tokio::time::Instant::now();
        let pdu = match client
            .request(&target, p.request(kind, nr, ncols, reps))
            .await
        {
            Ok(pdu) => {
                // The slowest answer so far sets the probes' patience.
                let took = sent_at.elapsed();
                rtt = Some(rtt.map_or(took, |r| r.max(took)));
                pdu
            }
            Err(e @ (SnmpError::Timeout { .. } | SnmpError::Malformed { .. })) if adaptive => {
                // The same request again (nothing moved since it was sent), to diagnose.
                let req = p.request(kind, nr, ncols, reps);
                rounds += 1;
                if rounds > MAX_ROUNDS {
                    return Err(e);
                }
                if !answered && rtt.is_none() {
                    match quirks::alive(client, &target, &sent).await {
                        Alive::Yes(t) => rtt = Some(t),
                        Alive::AsV1(t, r) => {
                            // v2c goes unanswered, v1 is: ask again as v1.
                            q.v1 = true;
                            out.learned = true;
                            target = std::borrow::Cow::Owned(t);
                            rtt = Some(r);
                            continue;
                        }
                        Alive::No => return Err(e),
                    }
                }
                let d =
                    quirks::diagnose(client, &target, &req, rtt.unwrap_or_default(), &sent).await;
                if d.is_empty() {
                    // Everything answered when asked again: a passing loss. Ask again,
                    // twice at most (a device that keeps losing requests fails the poll).
                    losses += 1;
                    if losses > 2 {
                        return Err(e);
                    }
                    continue;
                }
                if (!d.bad.is_empty() || d.max_objects.is_some())
                    && !quirks::still_there(client, &target, &sent).await
                {
                    // Gone mid-poll (a reboot): what the probes saw says nothing.
                    return Err(e);
                }
                out.learned = true;
                match d.bulk {
                    Some(None) => q.no_bulk = true,
                    Some(Some(r)) => q.max_repetitions = Some(r),
                    None => {}
                }
                if let Some(n) = d.max_objects {
                    q.max_objects = Some(q.max_objects.map_or(n, |m| m.min(n)));
                }
                for &i in d.bad.iter().rev() {
                    p.give_up(i, nr, Reason::NoAnswer, q, &mut out);
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        answered = true;
        out.requests += 1;
        let index = usize::try_from(pdu.error_index).unwrap_or(0);
        match pdu.error_status {
            0 => {
                if size_check {
                    // One repetition answered: the response was too big.
                    size_check = false;
                    budget = (budget / 2).max(1);
                    budget_cut = true;
                }
                let n = nr + ncols;
                answered_objects.insert(n);
                // Bisects towards the limit between what was answered and refused.
                if let Some(hi) = refused_objects
                    && n == obj_cap
                    && hi > n + 1
                {
                    obj_cap = (n + hi) / 2;
                }
            }
            error_status::TOO_BIG => {
                if bulk && reps > 1 {
                    size_check = true;
                    continue;
                }
                // Refused with one repetition (or none): too many objects at once.
                size_check = false;
                let n = nr + ncols;
                if n == 1 && adaptive {
                    // One object too big even alone: left out (rows before it kept).
                    p.give_up(0, nr, Reason::TooBig, q, &mut out);
                    continue;
                }
                if n <= 1 {
                    return Err(SnmpError::TooBig {
                        target: target.addr,
                    });
                }
                refused_objects = Some(refused_objects.map_or(n, |r| r.min(n)));
                let lo = answered_objects
                    .range(..n)
                    .next_back()
                    .copied()
                    .unwrap_or(0);
                obj_cap = ((lo + n) / 2).max(1);
                continue;
            }
            error_status::NO_SUCH_NAME if v1 && index >= 1 => {
                // v1: past the end of the MIB (or a missing object); not a quirk.
                let i = index - 1;
                if i < nr {
                    p.firsts.remove(i);
                } else if i - nr < ncols {
                    p.cols.remove(i - nr);
                } else {
                    return Err(agent_error(&target, &pdu));
                }
                continue;
            }
            status if adaptive && rounds < MAX_ROUNDS => {
                rounds += 1;
                // A busy or waking agent may answer genErr once: the same request again
                // before anything is learned from it.
                let refusal = (status, index, kind, nr, ncols);
                if last_refusal != Some(refusal) {
                    last_refusal = Some(refusal);
                    continue;
                }
                if bulk && reps > 1 && !careful {
                    // One row per column; refused again, it is learned from at once.
                    careful = true;
                    continue;
                }
                last_refusal = None;
                if bulk
                    && status == error_status::GEN_ERR
                    && getnext_answers(client, &target, &p, nr, ncols, &sent).await
                {
                    // genErr to GETBULK, the same objects answered by GETNEXT.
                    q.no_bulk = true;
                    out.learned = true;
                    continue;
                }
                if !(1..=nr + ncols).contains(&index) {
                    return Err(agent_error(&target, &pdu));
                }
                let reason = if status == error_status::GEN_ERR {
                    Reason::GenErr
                } else {
                    Reason::Refused
                };
                p.give_up(index - 1, nr, reason, q, &mut out);
                continue;
            }
            _ => return Err(agent_error(&target, &pdu)),
        }
        let mut vbs = pdu.varbinds.into_iter();
        for (i, vb) in vbs.by_ref().take(nr).enumerate() {
            if !vb.value.is_exception() && vb.oid.starts_with(&p.firsts[i]) {
                out.keep(vb.oid, vb.value, limit);
            }
        }
        p.firsts.clear();
        p.firsts.append(&mut p.deferred);
        let rest: Vec<VarBind> = vbs.collect();
        let mut done = vec![false; ncols];
        // Columns on which the device went backwards (adaptive: ended, not fatal).
        let mut backwards: Vec<usize> = Vec::new();
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
                    let col = &mut p.cols[j];
                    if vb.value == Value::EndOfMibView
                        || !vb.oid.starts_with(&col.root)
                        || vb.oid == col.root
                    {
                        done[j] = true;
                        continue;
                    }
                    if vb.oid <= col.cursor {
                        if !adaptive {
                            return Err(SnmpError::NonIncreasing {
                                target: target.addr,
                                root: Box::new(col.root.clone()),
                                previous: Box::new(col.cursor.clone()),
                                oid: Box::new(vb.oid.clone()),
                            });
                        }
                        done[j] = true;
                        backwards.push(j);
                        continue;
                    }
                    col.cursor = vb.oid.clone();
                    if col.stop.as_ref().is_some_and(|s| col.cursor >= *s) {
                        // Read this row; the device hangs past it.
                        done[j] = true;
                        out.missing.push(Skip {
                            oid: col.cursor.clone(),
                            reason: Reason::NoAnswer,
                        });
                    }
                    if !vb.value.is_exception()
                        && !out.keep(vb.oid.clone(), vb.value.clone(), limit)
                    {
                        break;
                    }
                }
            }
        }
        for &j in &backwards {
            out.missing.push(Skip {
                oid: p.cols[j].root.clone(),
                reason: Reason::NonIncreasing,
            });
        }
        let mut j = 0;
        p.cols.retain(|_| {
            let keep = j >= ncols || !done[j];
            j += 1;
            keep
        });
    }
    if adaptive {
        // The largest request answered below the smallest refused for its size.
        if let Some(n) = refused_objects
            .and_then(|r| answered_objects.range(..r).next_back().copied())
            .and_then(|n| u32::try_from(n).ok())
            && q.max_objects.is_none_or(|m| n < m)
        {
            q.max_objects = Some(n);
            out.learned = true;
        }
        if let Ok(n) = u32::try_from(budget)
            && budget_cut
            && q.max_values.is_none_or(|m| n < m)
        {
            q.max_values = Some(n);
            out.learned = true;
        }
        out.quirks = q.clone();
    }
    out.probes = sent.load(Ordering::Relaxed);
    Ok(out)
}

/// Whether the device answers, as GETNEXT, the objects of the request it refused as GETBULK.
async fn getnext_answers<C: SnmpClient>(
    client: &C,
    target: &Target,
    p: &Pending,
    nr: usize,
    ncols: usize,
    sent: &AtomicU32,
) -> bool {
    sent.fetch_add(1, Ordering::Relaxed);
    let req = p.request(PduType::GetNext, nr, ncols, 0);
    matches!(client.request(target, req).await, Ok(pdu) if pdu.error_status == 0)
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

    mod adaptive {
        use super::*;
        use crate::agent::{BulkFault, Faults};
        use crate::quirks::Reason;

        fn o(s: &str) -> Oid {
            s.parse().unwrap()
        }

        fn firsts() -> Vec<Oid> {
            vec![
                o("1.3.6.1.2.1.1.1"),
                o("1.3.6.1.2.1.1.2"),
                o("1.3.6.1.2.1.1.9"),
            ]
        }

        fn columns() -> Vec<Oid> {
            vec![
                o("1.3.6.1.2.1.43.11.1.1.6"),
                o("1.3.6.1.2.1.43.11.1.1.9"),
                o("1.3.6.1.2.1.43.12.1.1.4"),
            ]
        }

        /// Collects the test's objects from a device nothing is known about yet.
        async fn fresh<C: SnmpClient>(c: &C, t: &Target) -> Result<Collection, SnmpError> {
            collect_adaptive(
                c,
                t,
                &firsts(),
                &columns(),
                Budget::POLL,
                &mut Quirks::default(),
            )
            .await
        }

        /// Collects from the fake with `faults`, twice (the second time with what the
        /// first learned), and returns both with the healthy collection's round trips.
        async fn twice(
            faults: Faults,
            sec: Security,
        ) -> (Collection, Collection, u32, std::time::Duration) {
            let (f, addr) = fake();
            let t = Target::new(addr, sec);
            let healthy = fresh(&f, &t).await.unwrap();
            assert!(!healthy.learned && healthy.missing.is_empty());
            f.set_faults(addr, faults);
            let start = tokio::time::Instant::now();
            let first = fresh(&f, &t).await.unwrap();
            let took = start.elapsed();
            let second = collect_adaptive(
                &f,
                &t,
                &firsts(),
                &columns(),
                Budget::POLL,
                &mut first.quirks.clone(),
            )
            .await
            .unwrap();
            assert!(!second.learned, "{:?}", second.quirks);
            assert_eq!(second.quirks, first.quirks);
            (first, second, healthy.requests, took)
        }

        /// Checks `c` holds every value of the fake but the 30 rows of `column`.
        fn all_but(c: &Collection, column: Option<&str>) {
            let want = 1 + 1 + 60 + 1 - column.map_or(0, |_| 30);
            assert_eq!(
                c.values.len(),
                want,
                "{:?}",
                c.values.keys().collect::<Vec<_>>()
            );
        }

        #[tokio::test(start_paused = true)]
        async fn a_dropped_object_is_isolated_learned_and_skipped() {
            for sec in [Security::v2c("public"), Security::v1("public")] {
                let drop = "1.3.6.1.2.1.43.11.1.1.9";
                let (first, second, healthy, took) = twice(
                    Faults {
                        drop: vec![o(drop)],
                        ..Faults::default()
                    },
                    sec,
                )
                .await;
                all_but(&first, Some(drop));
                all_but(&second, Some(drop));
                assert_eq!(first.quirks.skip[0].oid, o(drop), "{:?}", first.quirks);
                assert_eq!(first.quirks.skip[0].reason, Reason::NoAnswer);
                assert_eq!(second.missing[0], first.quirks.skip[0]);
                // The failed request (2 s), the liveness probe, a few 300-ms probes.
                assert!(took < std::time::Duration::from_secs(5), "{took:?}");
                assert!(
                    second.requests <= healthy,
                    "{} > {healthy}",
                    second.requests
                );
            }
        }

        #[tokio::test(start_paused = true)]
        async fn a_first_object_that_hangs_the_agent_is_skipped() {
            let drop = "1.3.6.1.2.1.1.9";
            let (first, second, healthy, _) = twice(
                Faults {
                    drop: vec![o(drop)],
                    ..Faults::default()
                },
                Security::v2c("public"),
            )
            .await;
            // 1.3.6.1.2.1.1.9 is empty in the view: GETNEXT of it reaches the Printer-MIB,
            // which the fault does not cover; the object itself is named in the request.
            all_but(&first, None);
            assert_eq!(first.quirks.skip[0].oid, o(drop));
            assert!(second.requests <= healthy);
        }

        #[tokio::test(start_paused = true)]
        async fn broken_getbulk_falls_back_to_getnext() {
            for bulk in [BulkFault::Drop, BulkFault::GenErr] {
                let (first, second, _, _) = twice(
                    Faults {
                        bulk: Some(bulk),
                        ..Faults::default()
                    },
                    Security::v2c("public"),
                )
                .await;
                all_but(&first, None);
                all_but(&second, None);
                assert!(first.quirks.no_bulk, "{bulk:?}: {:?}", first.quirks);
                assert!(first.missing.is_empty());
            }
        }

        /// Counts the tooBig answers a client gets.
        struct CountTooBig(FakeSnmp, std::sync::atomic::AtomicU32);
        impl SnmpClient for CountTooBig {
            async fn request(&self, target: &Target, request: Request) -> Result<Pdu, SnmpError> {
                let pdu = self.0.request(target, request).await?;
                if pdu.error_status == error_status::TOO_BIG {
                    self.1.fetch_add(1, Ordering::Relaxed);
                }
                Ok(pdu)
            }
        }

        /// An object whose value does not fit in a response even alone (a 70-KB string):
        /// left out and named, everything else read; plain `collect` fails as before.
        #[tokio::test(start_paused = true)]
        async fn an_object_too_big_even_alone_is_left_out() {
            let (f, addr) = fake();
            let mut pairs = Vec::new();
            let view = crate::agent::MibView::new({
                let o = |s: &str| s.parse::<Oid>().unwrap();
                pairs.push((o("1.3.6.1.2.1.1.1.0"), Value::OctetString(b"d".to_vec())));
                pairs.push((
                    o("1.3.6.1.2.1.1.2.0"),
                    Value::ObjectId(o("1.3.6.1.4.1.641")),
                ));
                pairs.push((
                    o("1.3.6.1.2.1.1.9.1.3.1"),
                    Value::OctetString(vec![b'x'; 70_000]),
                ));
                for i in 1..=30u32 {
                    pairs.push((
                        o(&format!("1.3.6.1.2.1.43.11.1.1.9.1.{i}")),
                        Value::Integer(i64::from(i)),
                    ));
                }
                pairs
            });
            f.add(addr, view);
            let t = Target::new(addr, Security::v2c("public"));
            let c = fresh(&f, &t).await.unwrap();
            assert_eq!(
                c.values.len(),
                32,
                "{:?}",
                c.values.keys().collect::<Vec<_>>()
            );
            assert_eq!(c.missing.len(), 1, "{:?}", c.missing);
            assert_eq!(c.missing[0].oid, o("1.3.6.1.2.1.1.9"));
            assert_eq!(c.missing[0].reason, Reason::TooBig);
            assert!(
                collect(&f, &t, &firsts(), &columns(), Budget::POLL)
                    .await
                    .is_err()
            );
        }

        /// A job's walk of a device whose GETBULK goes unanswered: with the target the
        /// quirks make, GETNEXT, every row read.
        #[tokio::test(start_paused = true)]
        async fn a_walk_for_a_job_uses_getnext_where_getbulk_fails() {
            let (f, addr) = fake();
            f.set_faults(
                addr,
                Faults {
                    bulk: Some(BulkFault::Drop),
                    ..Faults::default()
                },
            );
            let t = Target::new(addr, Security::v2c("public"));
            let column = o("1.3.6.1.2.1.43.11.1.1.9");
            let q = Quirks {
                no_bulk: true,
                ..Quirks::default()
            };
            let c = walk_subtree(&f, &q.target(&t), &column).await.unwrap();
            assert_eq!(c.values.len(), 30);
            assert!(f.requests().iter().all(|(_, r)| r.kind == PduType::GetNext));
            // Without the quirks it is the GETBULK that goes unanswered.
            let e = walk_subtree(&f, &t, &column).await.unwrap_err();
            assert!(matches!(e, SnmpError::Timeout { .. }), "{e}");
        }

        #[tokio::test(start_paused = true)]
        async fn one_repetition_still_reads_everything_and_teaches_nothing() {
            let (f, addr) = fake();
            f.set_faults(
                addr,
                Faults {
                    bulk: Some(BulkFault::OneRepetition),
                    ..Faults::default()
                },
            );
            let t = Target::new(addr, Security::v2c("public"));
            let c = fresh(&f, &t).await.unwrap();
            all_but(&c, None);
            assert!(c.missing.is_empty() && !c.learned && c.probes == 0);
        }

        /// tooBig for too many objects in a request, or for too many values in a response
        /// (each told apart by asking the same objects with one repetition): everything is
        /// read, the limit is learned, and the next collection gets no tooBig at all.
        #[tokio::test(start_paused = true)]
        async fn a_too_big_limit_is_learned_once_and_kept_to() {
            for (faults, objects, values) in [
                (
                    Faults {
                        too_big_above: Some(2),
                        ..Faults::default()
                    },
                    Some(2),
                    None,
                ),
                (
                    Faults {
                        too_big_response_above: Some(7),
                        ..Faults::default()
                    },
                    None,
                    Some(5),
                ),
            ] {
                let (f, addr) = fake();
                f.set_faults(addr, faults.clone());
                let c = CountTooBig(f, Default::default());
                let t = Target::new(addr, Security::v2c("public"));
                let first = fresh(&c, &t).await.unwrap();
                all_but(&first, None);
                assert!(first.missing.is_empty(), "{faults:?}");
                assert!(first.learned, "{faults:?}");
                assert_eq!(first.quirks.max_objects, objects, "{faults:?}");
                assert_eq!(first.quirks.max_values, values, "{faults:?}");
                let refused = c.1.swap(0, Ordering::Relaxed);
                assert!(refused > 0);
                let second = collect_adaptive(
                    &c,
                    &t,
                    &firsts(),
                    &columns(),
                    Budget::POLL,
                    &mut first.quirks.clone(),
                )
                .await
                .unwrap();
                all_but(&second, None);
                assert_eq!(c.1.load(Ordering::Relaxed), 0, "{faults:?}: tooBig again");
                assert!(!second.learned && second.probes == 0, "{:?}", second.quirks);
                assert!(
                    second.requests < first.requests,
                    "{faults:?}: {} then {} round trips",
                    first.requests,
                    second.requests
                );
            }
        }

        #[tokio::test(start_paused = true)]
        async fn a_v1_only_agent_is_read_as_v1() {
            let (first, second, _, _) = twice(
                Faults {
                    v1_only: true,
                    ..Faults::default()
                },
                Security::v2c("public"),
            )
            .await;
            assert!(first.quirks.v1);
            all_but(&first, None);
            all_but(&second, None);
        }

        #[tokio::test(start_paused = true)]
        async fn a_column_answered_with_generr_is_skipped() {
            let bad = "1.3.6.1.2.1.43.12.1.1.4";
            let (first, _, _, _) = twice(
                Faults {
                    gen_err: vec![o(bad)],
                    ..Faults::default()
                },
                Security::v2c("public"),
            )
            .await;
            assert_eq!(first.values.len(), 1 + 1 + 60);
            assert_eq!(first.quirks.skip[0].oid, o(bad));
            assert_eq!(first.quirks.skip[0].reason, Reason::GenErr);
        }

        #[tokio::test(start_paused = true)]
        async fn a_device_that_hangs_inside_a_column_keeps_the_rows_before() {
            // v1 walks one row per request, so the agent is asked for what follows row
            // 15 of 43.11.1.1.9 by name, and hangs: rows 1-15 are kept and the walk
            // stops there next time without asking.
            let (first, second, healthy, _) = twice(
                Faults {
                    drop: vec![o("1.3.6.1.2.1.43.11.1.1.9.1.15")],
                    ..Faults::default()
                },
                Security::v1("public"),
            )
            .await;
            assert_eq!(
                first.values.len(),
                1 + 1 + 30 + 15 + 1,
                "{:?}",
                first.quirks
            );
            assert_eq!(second.values.len(), first.values.len());
            assert_eq!(first.quirks.skip[0].oid, o("1.3.6.1.2.1.43.11.1.1.9.1.15"));
            assert!(
                first
                    .quirks
                    .stop_in(&o("1.3.6.1.2.1.43.11.1.1.9"))
                    .is_some()
            );
            assert_eq!(second.missing, first.quirks.skip);
            assert!(
                second.requests <= healthy,
                "{} vs {healthy}",
                second.requests
            );
        }

        #[tokio::test(start_paused = true)]
        async fn a_passing_loss_is_not_learned() {
            // The first request lost (a busy network), and with it the liveness probe, or
            // the GETNEXT probe, or that and a bisection probe: the collection reads
            // everything and learns nothing. (Requests: 0 the GETBULK, 1 sysUpTime, 2
            // GETNEXT of the same objects, 3.. the bisection; a GETBULK lost twice in a
            // row, with its confirmation, does count as a GETBULK limit.)
            for lose in [vec![0], vec![0, 1], vec![0, 2], vec![0, 2, 3]] {
                let (f, addr) = fake();
                let c = Flaky {
                    lose_numbered: lose.clone(),
                    ..Flaky::new(f)
                };
                let t = Target::new(addr, Security::v2c("public"));
                let got = fresh(&c, &t).await.unwrap();
                all_but(&got, None);
                assert!(
                    !got.learned && got.quirks.is_empty(),
                    "{lose:?}: {:?}",
                    got.quirks
                );
            }
        }

        /// Answers as the fake, except: the requests numbered (0-based) in `lose_numbered`,
        /// and the first small request (a probe) naming `lose`, go unanswered; the first request gets genErr when `gen_err_once`; and from
        /// request `down_after` on, nothing answers.
        struct Flaky {
            inner: FakeSnmp,
            lose_numbered: Vec<usize>,
            lose: Option<Oid>,
            gen_err_once: bool,
            down_after: usize,
            seen: std::sync::atomic::AtomicUsize,
            lost: std::sync::atomic::AtomicBool,
        }
        impl Flaky {
            fn new(inner: FakeSnmp) -> Flaky {
                Flaky {
                    inner,
                    lose_numbered: Vec::new(),
                    lose: None,
                    gen_err_once: false,
                    down_after: usize::MAX,
                    seen: Default::default(),
                    lost: Default::default(),
                }
            }
        }
        impl SnmpClient for Flaky {
            async fn request(&self, target: &Target, request: Request) -> Result<Pdu, SnmpError> {
                use std::sync::atomic::Ordering::Relaxed;
                let n = self.seen.fetch_add(1, Relaxed);
                let probe_of_lost = self.lose.as_ref().is_some_and(|o| {
                    request.varbinds.len() <= 3 && request.varbinds.iter().any(|v| v.oid == *o)
                });
                if n >= self.down_after
                    || self.lose_numbered.contains(&n)
                    || (probe_of_lost && !self.lost.swap(true, Relaxed))
                {
                    let attempts = target.retries + 1;
                    tokio::time::sleep(target.timeout * attempts).await;
                    return Err(SnmpError::Timeout {
                        target: target.addr,
                        attempts,
                        timeout: target.timeout,
                        hint: "",
                    });
                }
                if n == 0 && self.gen_err_once {
                    return Ok(Pdu {
                        kind: PduType::Response,
                        request_id: 1,
                        error_status: error_status::GEN_ERR,
                        error_index: 1,
                        varbinds: request.varbinds,
                    });
                }
                self.inner.request(target, request).await
            }
        }

        #[tokio::test(start_paused = true)]
        async fn a_probe_lost_beside_a_bad_object_does_not_skip_a_good_one() {
            let (f, addr) = fake();
            f.set_faults(
                addr,
                Faults {
                    drop: vec![o("1.3.6.1.2.1.43.11.1.1.9")],
                    ..Faults::default()
                },
            );
            // The probe of the good column beside it is lost once.
            let c = Flaky {
                lose: Some(o("1.3.6.1.2.1.43.11.1.1.6")),
                ..Flaky::new(f)
            };
            let t = Target::new(addr, Security::v2c("public"));
            let got = fresh(&c, &t).await.unwrap();
            assert!(
                c.lost.load(std::sync::atomic::Ordering::Relaxed),
                "the probe was lost"
            );
            let skipped: Vec<String> = got.quirks.skip.iter().map(|s| s.oid.to_string()).collect();
            assert_eq!(skipped, ["1.3.6.1.2.1.43.11.1.1.9"], "{:?}", got.quirks);
            assert_eq!(got.quirks.max_objects, None);
            all_but(&got, Some("1.3.6.1.2.1.43.11.1.1.9"));
        }

        #[tokio::test(start_paused = true)]
        async fn one_generr_is_asked_again_not_learned() {
            let (f, addr) = fake();
            let c = Flaky {
                gen_err_once: true,
                ..Flaky::new(f)
            };
            let t = Target::new(addr, Security::v2c("public"));
            let got = fresh(&c, &t).await.unwrap();
            assert!(got.quirks.is_empty() && !got.learned, "{:?}", got.quirks);
            all_but(&got, None);
        }

        #[tokio::test(start_paused = true)]
        async fn a_device_gone_mid_poll_teaches_nothing() {
            let (f, addr) = fake();
            let c = Flaky {
                down_after: 1,
                ..Flaky::new(f)
            };
            let mut t = Target::new(addr, Security::v2c("public"));
            t.max_repetitions = 4;
            let e = fresh(&c, &t).await.unwrap_err();
            assert!(matches!(e, SnmpError::Timeout { .. }), "{e}");
        }

        /// A device that hangs on one column and then goes away at any point of the
        /// collection: what the caller keeps is what the probes really found (the column,
        /// once confirmed) or nothing, never a wrong skip; and once learned it is kept
        /// though the collection fails.
        #[tokio::test(start_paused = true)]
        async fn what_a_failed_collection_learned_is_kept_and_right() {
            let drop = o("1.3.6.1.2.1.43.11.1.1.9");
            let mut kept_after_failure = 0;
            for down_after in 1..40 {
                let (f, addr) = fake();
                f.set_faults(
                    addr,
                    Faults {
                        drop: vec![drop.clone()],
                        ..Faults::default()
                    },
                );
                let c = Flaky {
                    down_after,
                    ..Flaky::new(f)
                };
                let t = Target::new(addr, Security::v2c("public"));
                let mut known = Quirks::default();
                let r =
                    collect_adaptive(&c, &t, &firsts(), &columns(), Budget::POLL, &mut known).await;
                let skipped: Vec<&Oid> = known.skip.iter().map(|s| &s.oid).collect();
                assert!(
                    skipped.is_empty() || skipped == [&drop],
                    "down after {down_after}: {known:?}"
                );
                assert!(!known.v1 && !known.no_bulk && known.max_objects.is_none());
                if r.is_err() && !skipped.is_empty() {
                    kept_after_failure += 1;
                }
            }
            assert!(kept_after_failure > 0, "no failure came after the learning");
        }

        #[tokio::test(start_paused = true)]
        async fn a_dead_device_costs_one_probe_more() {
            let t = Target::new("127.0.0.9:161".parse().unwrap(), Security::v2c("public"));
            let start = tokio::time::Instant::now();
            let e = collect_adaptive(
                &FakeSnmp::new(),
                &t,
                &firsts(),
                &columns(),
                Budget::POLL,
                &mut Quirks::default(),
            )
            .await
            .unwrap_err();
            assert!(matches!(e, SnmpError::Timeout { attempts: 2, .. }), "{e}");
            assert_eq!(start.elapsed(), std::time::Duration::from_secs(3));
        }

        #[tokio::test]
        async fn a_backwards_column_ends_without_failing_the_rest() {
            use crate::agent::MibStore;
            // Serves the fake's view, but the supplies level column goes backwards.
            struct Back(MibView);
            impl MibStore for Back {
                fn get(&self, oid: &Oid) -> Option<Value> {
                    self.0.get(oid)
                }
                fn next(&self, oid: &Oid) -> Option<(Oid, Value)> {
                    let col: Oid = "1.3.6.1.2.1.43.11.1.1.9".parse().unwrap();
                    if oid.starts_with(&col) && oid.len() > col.len() {
                        return Some((col.child(&[1, 1]), Value::Integer(1)));
                    }
                    self.0.next(oid)
                }
            }
            let addr: SocketAddr = "127.0.0.4:161".parse().unwrap();
            let f = FakeSnmp::new();
            let mut pairs = Vec::new();
            for i in 1..=30u32 {
                pairs.push((
                    o(&format!("1.3.6.1.2.1.43.11.1.1.6.1.{i}")),
                    Value::Integer(1),
                ));
                pairs.push((
                    o(&format!("1.3.6.1.2.1.43.11.1.1.9.1.{i}")),
                    Value::Integer(1),
                ));
            }
            pairs.push((o("1.3.6.1.2.1.1.1.0"), Value::OctetString(b"d".to_vec())));
            f.add_store(addr, Box::new(Back(MibView::new(pairs))));
            let t = Target::new(addr, Security::v2c("public"));
            let c = fresh(&f, &t).await.unwrap();
            assert_eq!(c.missing.len(), 1);
            assert_eq!(c.missing[0].reason, Reason::NonIncreasing);
            assert!(c.quirks.skip.is_empty(), "not learned: it costs nothing");
            assert!(c.values.contains_key(&o("1.3.6.1.2.1.43.11.1.1.6.1.30")));
            assert!(
                collect(&f, &t, &firsts(), &columns(), Budget::POLL)
                    .await
                    .is_err()
            );
        }
    }
}
