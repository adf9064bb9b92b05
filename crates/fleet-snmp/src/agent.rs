//! Agent side of SNMP: answering GET/GETNEXT/GETBULK/SET from a MIB store (RFC 3416
//! semantics, v1 error mapping) and the authoritative USM engine for v3 requests.
//! Used by the printer simulator and by the in-memory fake client.

use super::ber::Writer;
use super::message::{
    self, MsgData, Pdu, PduType, ScopedPdu, UsmParams, V3Out, Version, error_status, flags,
    parse_v3,
};
use super::usm::{self, LocalizedKeys};
use super::{Oid, UsmUser, Value, VarBind};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use tokio::time::Instant;

/// What an agent serves: ordered OIDs with values, and optionally writable objects.
pub trait MibStore {
    /// Returns the value of exactly `oid`.
    fn get(&self, oid: &Oid) -> Option<Value>;
    /// Returns the first OID strictly after `oid` with its value.
    fn next(&self, oid: &Oid) -> Option<(Oid, Value)>;
    /// Checks whether `value` may be written to `oid`; returns a v2 error-status if not.
    fn check_set(&self, _oid: &Oid, _value: &Value) -> Result<(), i32> {
        Err(error_status::NOT_WRITABLE)
    }
    /// Writes a value that [`MibStore::check_set`] accepted.
    fn set(&mut self, _oid: &Oid, _value: Value) {}
}

/// An immutable, sorted OID→value table (one recording).
#[derive(Clone, Debug, Default)]
pub struct MibView {
    entries: Vec<(Oid, Value)>,
}

impl MibView {
    /// Builds a view; on duplicate OIDs the first occurrence wins (as snmpsim serves them).
    pub fn new(mut pairs: Vec<(Oid, Value)>) -> Self {
        // Stable sort keeps file order among duplicates, so dedup keeps the first.
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|b, a| a.0 == b.0);
        MibView { entries: pairs }
    }

    /// Returns the number of objects.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Tells whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Iterates the objects in OID order.
    pub fn iter(&self) -> impl Iterator<Item = &(Oid, Value)> {
        self.entries.iter()
    }

    /// Looks up exactly `oid`.
    pub fn lookup(&self, oid: &Oid) -> Option<&Value> {
        self.entries
            .binary_search_by(|e| e.0.cmp(oid))
            .ok()
            .map(|i| &self.entries[i].1)
    }

    /// Returns the first entry strictly after `oid`.
    pub fn after(&self, oid: &Oid) -> Option<&(Oid, Value)> {
        let i = self.entries.partition_point(|e| e.0 <= *oid);
        self.entries.get(i)
    }
}

impl MibStore for MibView {
    fn get(&self, oid: &Oid) -> Option<Value> {
        self.lookup(oid).cloned()
    }
    fn next(&self, oid: &Oid) -> Option<(Oid, Value)> {
        self.after(oid).cloned()
    }
}

/// A view with writes layered on top: writable OIDs are the ones listed in `writable`
/// prefixes; written values shadow the base and are kept for later reads.
#[derive(Clone, Debug)]
pub struct WritableView {
    base: Arc<MibView>,
    overlay: BTreeMap<Oid, Value>,
    writable: Vec<Oid>,
}

impl WritableView {
    /// Wraps `base`; objects under any of `writable` accept SET of the same type.
    pub fn new(base: Arc<MibView>, writable: Vec<Oid>) -> Self {
        WritableView {
            base,
            overlay: BTreeMap::new(),
            writable,
        }
    }
}

impl MibStore for WritableView {
    fn get(&self, oid: &Oid) -> Option<Value> {
        self.overlay
            .get(oid)
            .cloned()
            .or_else(|| self.base.get(oid))
    }
    fn next(&self, oid: &Oid) -> Option<(Oid, Value)> {
        let b = self.base.after(oid).cloned();
        let o = self
            .overlay
            .range((
                std::ops::Bound::Excluded(oid.clone()),
                std::ops::Bound::Unbounded,
            ))
            .next()
            .map(|(k, v)| (k.clone(), v.clone()));
        match (b, o) {
            (Some(b), Some(o)) => {
                if o.0 <= b.0 {
                    Some(o)
                } else {
                    Some((b.0.clone(), self.overlay.get(&b.0).cloned().unwrap_or(b.1)))
                }
            }
            (Some(b), None) => Some(b),
            (None, o) => o,
        }
    }
    fn check_set(&self, oid: &Oid, value: &Value) -> Result<(), i32> {
        if !self.writable.iter().any(|w| oid.starts_with(w)) {
            return Err(error_status::NOT_WRITABLE);
        }
        match self.get(oid) {
            Some(cur) if std::mem::discriminant(&cur) != std::mem::discriminant(value) => {
                Err(error_status::WRONG_TYPE)
            }
            Some(_) => Ok(()),
            None => Err(11), // noCreation
        }
    }
    fn set(&mut self, oid: &Oid, value: Value) {
        self.overlay.insert(oid.clone(), value);
    }
}

fn encoded_len(vb: &VarBind) -> usize {
    let mut w = Writer::with_capacity(64);
    let s = w.begin(super::ber::tag::SEQUENCE);
    w.oid(&vb.oid);
    vb.value.encode(&mut w);
    w.end(s);
    w.buf.len()
}

/// Overhead reserved for message headers when limiting response size.
const HEADER_ALLOWANCE: usize = 200;

fn error_pdu(req: &Pdu, status: i32, index: i32, varbinds: Vec<VarBind>) -> Pdu {
    Pdu {
        kind: PduType::Response,
        request_id: req.request_id,
        error_status: status,
        error_index: index,
        varbinds,
    }
}

/// The SNMPv1 answer for a missing object at varbind `i` (0-based).
fn no_such_name(req: &Pdu, i: usize) -> Pdu {
    error_pdu(
        req,
        error_status::NO_SUCH_NAME,
        i as i32 + 1,
        req.varbinds.clone(),
    )
}

/// Maps a v2 error-status to the v1 one (RFC 3584 §4.4).
fn v1_status(s: i32) -> i32 {
    match s {
        0..=5 => s,
        6 | 17 | 11 | 12 | 18 => error_status::NO_SUCH_NAME,
        7..=10 => error_status::BAD_VALUE,
        _ => error_status::GEN_ERR,
    }
}

/// Answers one request PDU from `store`, limiting the response to `max_size` octets.
/// Returns `None` for PDU types an agent does not answer.
pub fn respond(
    store: &mut dyn MibStore,
    version: Version,
    req: &Pdu,
    max_size: usize,
) -> Option<Pdu> {
    let v1 = version == Version::V1;
    let budget = max_size.saturating_sub(HEADER_ALLOWANCE);
    let ok = |varbinds| error_pdu(req, 0, 0, varbinds);
    match req.kind {
        PduType::Get => {
            let mut out = Vec::with_capacity(req.varbinds.len());
            for (i, vb) in req.varbinds.iter().enumerate() {
                let v = store
                    .get(&vb.oid)
                    .filter(|v| !(v1 && matches!(v, Value::Counter64(_))));
                match v {
                    Some(v) => out.push(VarBind::new(vb.oid.clone(), v)),
                    None if v1 => return Some(no_such_name(req, i)),
                    None => out.push(VarBind::new(vb.oid.clone(), Value::NoSuchInstance)),
                }
            }
            Some(size_checked(req, out, budget))
        }
        PduType::GetNext => {
            let mut out = Vec::with_capacity(req.varbinds.len());
            for (i, vb) in req.varbinds.iter().enumerate() {
                match next_for(store, &vb.oid, v1) {
                    Some((o, v)) => out.push(VarBind::new(o, v)),
                    None if v1 => return Some(no_such_name(req, i)),
                    None => out.push(VarBind::new(vb.oid.clone(), Value::EndOfMibView)),
                }
            }
            Some(size_checked(req, out, budget))
        }
        PduType::GetBulk => {
            if v1 {
                return Some(error_pdu(
                    req,
                    error_status::GEN_ERR,
                    0,
                    req.varbinds.clone(),
                ));
            }
            let n = req.varbinds.len();
            let nr = usize::try_from(req.error_status.max(0)).unwrap_or(0).min(n);
            let mr = usize::try_from(req.error_index.max(0)).unwrap_or(0);
            let mut out = Vec::new();
            let mut size = 0usize;
            for vb in &req.varbinds[..nr] {
                let item = match next_for(store, &vb.oid, false) {
                    Some((o, v)) => VarBind::new(o, v),
                    None => VarBind::new(vb.oid.clone(), Value::EndOfMibView),
                };
                size += encoded_len(&item);
                out.push(item);
            }
            if size > budget {
                return Some(error_pdu(req, error_status::TOO_BIG, 0, Vec::new()));
            }
            let mut cursors: Vec<Oid> = req.varbinds[nr..].iter().map(|v| v.oid.clone()).collect();
            'reps: for _ in 0..mr {
                if cursors.is_empty() {
                    break;
                }
                let mut all_end = true;
                let mut row = Vec::with_capacity(cursors.len());
                let mut row_size = 0;
                for c in cursors.iter_mut() {
                    let item = match next_for(store, c, false) {
                        Some((o, v)) => {
                            all_end = false;
                            *c = o.clone();
                            VarBind::new(o, v)
                        }
                        None => VarBind::new(c.clone(), Value::EndOfMibView),
                    };
                    row_size += encoded_len(&item);
                    row.push(item);
                }
                if size + row_size > budget {
                    // RFC 3416 §4.2.3: return fewer repetitions rather than tooBig.
                    for item in row {
                        let l = encoded_len(&item);
                        if size + l > budget {
                            break 'reps;
                        }
                        size += l;
                        out.push(item);
                    }
                    break;
                }
                size += row_size;
                out.extend(row);
                if all_end {
                    break;
                }
            }
            Some(ok(out))
        }
        PduType::Set => {
            for (i, vb) in req.varbinds.iter().enumerate() {
                if let Err(s) = store.check_set(&vb.oid, &vb.value) {
                    let s = if v1 { v1_status(s) } else { s };
                    return Some(error_pdu(req, s, i as i32 + 1, req.varbinds.clone()));
                }
            }
            for vb in &req.varbinds {
                store.set(&vb.oid, vb.value.clone());
            }
            Some(ok(req.varbinds.clone()))
        }
        _ => None,
    }
}

/// How a misbehaving agent fails GETBULK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BulkFault {
    /// No answer at all.
    Drop,
    /// genErr.
    GenErr,
    /// One repetition only, whatever max-repetitions asks.
    OneRepetition,
}

/// The ways real printers' SNMP agents misbehave (issue 17), applied around [`respond`]
/// by the simulator (`simulate --quirk`) and the fake, so the poller's adaptation can be
/// tested without the hardware.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// A request naming an OID under one of these gets no answer (the agent hangs on
    /// that object and drops the whole request).
    pub drop: Vec<Oid>,
    /// A varbind naming or answering an OID under one of these gets genErr at its index.
    pub gen_err: Vec<Oid>,
    /// As `gen_err`, with noSuchName (an error status some v2c agents still send
    /// instead of the v2 exceptions).
    pub no_such_name: Vec<Oid>,
    /// GETBULK is broken this way.
    pub bulk: Option<BulkFault>,
    /// A request with more varbinds than this gets tooBig.
    pub too_big_above: Option<usize>,
    /// A response of more varbinds than this is answered tooBig instead (an agent with a
    /// small buffer that does not shorten GETBULK answers as RFC 3416 asks).
    pub too_big_response_above: Option<usize>,
    /// Only SNMPv1 is answered (v2c and v3 requests get no answer).
    pub v1_only: bool,
    /// Inside a column under one of these, a walk gets the asked OID back (non-increasing:
    /// a looping agent).
    pub backwards: Vec<Oid>,
    /// Values under one of these come with the wrong type (text for numbers, and back).
    pub wrong_type: Vec<Oid>,
}

impl Faults {
    /// Tells whether no fault is set.
    pub fn is_empty(&self) -> bool {
        *self == Faults::default()
    }

    fn hit(prefixes: &[Oid], oid: &Oid) -> bool {
        prefixes.iter().any(|p| oid.starts_with(p))
    }
}

/// [`respond`] as an agent with `faults` would: `None` where it would not answer.
pub fn respond_with_faults(
    store: &mut dyn MibStore,
    version: Version,
    req: &Pdu,
    max_size: usize,
    faults: &Faults,
) -> Option<Pdu> {
    if faults.is_empty() {
        return respond(store, version, req, max_size);
    }
    if faults.v1_only && version != Version::V1 {
        return None;
    }
    let bulk = req.kind == PduType::GetBulk && version != Version::V1;
    let mut req = std::borrow::Cow::Borrowed(req);
    if bulk {
        match faults.bulk {
            Some(BulkFault::Drop) => return None,
            Some(BulkFault::GenErr) => {
                return Some(error_pdu(
                    &req,
                    error_status::GEN_ERR,
                    1,
                    req.varbinds.clone(),
                ));
            }
            Some(BulkFault::OneRepetition) => req.to_mut().error_index = req.error_index.min(1),
            None => {}
        }
    }
    if faults.too_big_above.is_some_and(|n| req.varbinds.len() > n) {
        return Some(error_pdu(&req, error_status::TOO_BIG, 0, Vec::new()));
    }
    if req
        .varbinds
        .iter()
        .any(|v| Faults::hit(&faults.drop, &v.oid))
    {
        return None;
    }
    for (list, status) in [
        (&faults.gen_err, error_status::GEN_ERR),
        (&faults.no_such_name, error_status::NO_SUCH_NAME),
    ] {
        if let Some(i) = req.varbinds.iter().position(|v| Faults::hit(list, &v.oid)) {
            return Some(error_pdu(&req, status, i as i32 + 1, req.varbinds.clone()));
        }
    }
    let mut resp = respond(store, version, &req, max_size)?;
    if resp.error_status != 0 {
        return Some(resp);
    }
    if faults
        .too_big_response_above
        .is_some_and(|n| resp.varbinds.len() > n)
    {
        return Some(error_pdu(&req, error_status::TOO_BIG, 0, Vec::new()));
    }
    let n = req.varbinds.len();
    let nr = if bulk {
        usize::try_from(req.error_status.max(0)).unwrap_or(0).min(n)
    } else {
        n
    };
    // The request varbind each answer belongs to (GETBULK rows repeat the repeaters).
    let asked = |i: usize| {
        if i < nr || n == nr {
            i.min(n - 1)
        } else {
            nr + (i - nr) % (n - nr)
        }
    };
    for (i, vb) in resp.varbinds.iter_mut().enumerate() {
        if n == 0 {
            break;
        }
        let q = &req.varbinds[asked(i)].oid;
        if faults
            .backwards
            .iter()
            .any(|p| vb.oid.starts_with(p) && q.starts_with(p) && q.len() > p.len())
        {
            vb.oid = q.clone();
        }
        if Faults::hit(&faults.wrong_type, &vb.oid) {
            vb.value = match &vb.value {
                Value::OctetString(_) => Value::Integer(7),
                _ => Value::OctetString(b"wrong type".to_vec()),
            };
        }
    }
    for (list, status) in [
        (&faults.gen_err, error_status::GEN_ERR),
        (&faults.no_such_name, error_status::NO_SUCH_NAME),
    ] {
        if let Some(i) = resp.varbinds.iter().position(|v| Faults::hit(list, &v.oid)) {
            let i = asked(i);
            let s = if version == Version::V1 {
                v1_status(status)
            } else {
                status
            };
            return Some(error_pdu(&req, s, i as i32 + 1, req.varbinds.clone()));
        }
    }
    Some(resp)
}

fn next_for(store: &dyn MibStore, oid: &Oid, v1: bool) -> Option<(Oid, Value)> {
    let mut cur = oid.clone();
    loop {
        let (o, v) = store.next(&cur)?;
        // SNMPv1 cannot carry Counter64: skip such objects as net-snmp does.
        if v1 && matches!(v, Value::Counter64(_)) {
            cur = o;
            continue;
        }
        return Some((o, v));
    }
}

fn size_checked(req: &Pdu, out: Vec<VarBind>, budget: usize) -> Pdu {
    let size: usize = out.iter().map(encoded_len).sum();
    if size > budget {
        error_pdu(req, error_status::TOO_BIG, 0, Vec::new())
    } else {
        error_pdu(req, 0, 0, out)
    }
}

/// A user the agent accepts, with keys localized to the agent's engine.
pub struct AgentUser {
    user: Arc<UsmUser>,
    keys: LocalizedKeys,
}

/// Counters of the usmStats objects the agent reports.
#[derive(Default)]
struct UsmStats {
    unknown_engine_ids: AtomicU32,
    unknown_user_names: AtomicU32,
    wrong_digests: AtomicU32,
    not_in_time_windows: AtomicU32,
    decryption_errors: AtomicU32,
    unsupported_sec_levels: AtomicU32,
}

/// The authoritative SNMPv3 engine of a simulated agent.
pub struct UsmAgent {
    engine_id: Vec<u8>,
    boots: u32,
    started: Instant,
    users: HashMap<Vec<u8>, AgentUser>,
    stats: UsmStats,
    salt: AtomicU64,
}

/// A decoded, authenticated v3 request ready to be answered.
pub struct V3Request {
    /// Context name (snmpsim uses it as the recording name).
    pub context_name: Vec<u8>,
    /// The request PDU.
    pub pdu: Pdu,
    /// The user it came from.
    pub user: Vec<u8>,
    level: (bool, bool),
    max_size: usize,
    msg_id: i32,
}

impl V3Request {
    /// Largest response the requester accepts.
    pub fn max_size(&self) -> usize {
        self.max_size
    }
}

/// What to do with an incoming v3 datagram.
pub enum V3Incoming {
    /// Answer this request with [`UsmAgent::encode_response`].
    Request(V3Request),
    /// Send these bytes back (a Report).
    Reply(Vec<u8>),
    /// Drop silently (malformed, or not reportable).
    Drop,
}

impl UsmAgent {
    /// Creates an engine with `engine_id` and the given users.
    pub fn new(engine_id: Vec<u8>, boots: u32, users: Vec<Arc<UsmUser>>) -> Self {
        let users = users
            .into_iter()
            .map(|u| {
                let keys = u.master_keys().localize(&engine_id);
                (u.name.as_bytes().to_vec(), AgentUser { user: u, keys })
            })
            .collect();
        UsmAgent {
            engine_id,
            boots,
            started: Instant::now(),
            users,
            stats: UsmStats::default(),
            salt: AtomicU64::new(fastrand::u64(..)),
        }
    }

    /// Returns this engine's ID.
    pub fn engine_id(&self) -> &[u8] {
        &self.engine_id
    }

    fn time(&self) -> u32 {
        self.started.elapsed().as_secs().min(i32::MAX as u64) as u32 + 1
    }

    fn report(
        &self,
        msg_id: i32,
        request_id: i32,
        user: &[u8],
        stat: &[u32],
        count: u32,
        keys: Option<&LocalizedKeys>,
    ) -> Vec<u8> {
        let scoped = ScopedPdu {
            context_engine_id: self.engine_id.clone(),
            context_name: Vec::new(),
            pdu: Pdu {
                kind: PduType::Report,
                request_id,
                error_status: 0,
                error_index: 0,
                varbinds: vec![VarBind::new(Oid::from_slice(stat), Value::Counter32(count))],
            },
        };
        let usm = UsmParams {
            engine_id: self.engine_id.clone(),
            boots: self.boots,
            time: self.time(),
            user: user.to_vec(),
        };
        message::encode_v3(&V3Out {
            msg_id,
            max_size: 65507,
            reportable: false,
            usm: &usm,
            keys,
            auth: keys.is_some(),
            privacy: false,
            salt: 0,
            scoped: &scoped,
        })
    }

    /// Authenticates and decrypts an incoming v3 message (RFC 3414 §3.2), or produces the
    /// Report the requester needs (unknown engine/user, wrong digest, time window...).
    pub fn incoming(&self, bytes: &[u8]) -> V3Incoming {
        let Ok(p) = parse_v3(bytes) else {
            return V3Incoming::Drop;
        };
        let reportable = p.flags & flags::REPORTABLE != 0;
        let want_auth = p.flags & flags::AUTH != 0;
        let want_priv = p.flags & flags::PRIV != 0;
        // The request-id is inside the (possibly encrypted) scoped PDU; reports for
        // undecryptable requests carry 0, which net-snmp also does.
        let plain_req_id = match p.data {
            MsgData::Plain(b) => ScopedPdu::decode(b).map(|s| s.pdu.request_id).unwrap_or(0),
            MsgData::Encrypted(_) => 0,
        };
        let bump = |c: &AtomicU32| c.fetch_add(1, Ordering::Relaxed) + 1;
        if p.usm.engine_id != self.engine_id {
            if !reportable {
                return V3Incoming::Drop;
            }
            let n = bump(&self.stats.unknown_engine_ids);
            return V3Incoming::Reply(self.report(
                p.msg_id,
                plain_req_id,
                &p.usm.user,
                usm::stats::UNKNOWN_ENGINE_IDS,
                n,
                None,
            ));
        }
        let Some(au) = self.users.get(&p.usm.user) else {
            let n = bump(&self.stats.unknown_user_names);
            return if reportable {
                V3Incoming::Reply(self.report(
                    p.msg_id,
                    plain_req_id,
                    &p.usm.user,
                    usm::stats::UNKNOWN_USER_NAMES,
                    n,
                    None,
                ))
            } else {
                V3Incoming::Drop
            };
        };
        let has_auth = au.keys.auth.is_some();
        let has_priv = au.keys.privacy.is_some();
        if (want_auth && !has_auth)
            || (want_priv && !has_priv)
            || (want_priv && !want_auth)
            || (has_auth && !want_auth)
            || (has_priv && !want_priv)
        {
            let n = bump(&self.stats.unsupported_sec_levels);
            return V3Incoming::Reply(self.report(
                p.msg_id,
                plain_req_id,
                &p.usm.user,
                usm::stats::UNSUPPORTED_SEC_LEVELS,
                n,
                None,
            ));
        }
        if want_auth {
            let (proto, key) = au.keys.auth.as_ref().expect("checked above");
            if !message::verify_auth(bytes, &p, *proto, key) {
                let n = bump(&self.stats.wrong_digests);
                return V3Incoming::Reply(self.report(
                    p.msg_id,
                    plain_req_id,
                    &p.usm.user,
                    usm::stats::WRONG_DIGESTS,
                    n,
                    None,
                ));
            }
            let now = self.time();
            if p.usm.boots != self.boots || now.abs_diff(p.usm.time) > 150 {
                let n = bump(&self.stats.not_in_time_windows);
                return V3Incoming::Reply(self.report(
                    p.msg_id,
                    plain_req_id,
                    &p.usm.user,
                    usm::stats::NOT_IN_TIME_WINDOWS,
                    n,
                    Some(&au.keys),
                ));
            }
        }
        let scoped = match p.data {
            MsgData::Plain(b) => ScopedPdu::decode(b).ok(),
            MsgData::Encrypted(c) => {
                let (proto, key) = au.keys.privacy.as_ref().expect("checked above");
                usm::decrypt(*proto, key, p.usm.boots, p.usm.time, p.priv_params, c)
                    .ok()
                    .and_then(|plain| ScopedPdu::decode(&plain).ok())
            }
        };
        let Some(scoped) = scoped else {
            let n = bump(&self.stats.decryption_errors);
            return V3Incoming::Reply(self.report(
                p.msg_id,
                0,
                &p.usm.user,
                usm::stats::DECRYPTION_ERRORS,
                n,
                Some(&au.keys),
            ));
        };
        let _ = &au.user;
        V3Incoming::Request(V3Request {
            context_name: scoped.context_name,
            pdu: scoped.pdu,
            user: p.usm.user.clone(),
            level: (want_auth, want_priv),
            max_size: usize::try_from(p.max_size.max(484))
                .unwrap_or(65507)
                .min(65507),
            msg_id: p.msg_id,
        })
    }

    /// Encodes the response to a request accepted by [`UsmAgent::incoming`].
    pub fn encode_response(&self, req: &V3Request, response: &Pdu) -> Vec<u8> {
        let au = self
            .users
            .get(&req.user)
            .expect("request came from a known user");
        let scoped = ScopedPdu {
            context_engine_id: self.engine_id.clone(),
            context_name: req.context_name.clone(),
            pdu: response.clone(),
        };
        let usm = UsmParams {
            engine_id: self.engine_id.clone(),
            boots: self.boots,
            time: self.time(),
            user: req.user.clone(),
        };
        message::encode_v3(&V3Out {
            msg_id: req.msg_id,
            max_size: 65507,
            reportable: false,
            usm: &usm,
            keys: Some(&au.keys),
            auth: req.level.0,
            privacy: req.level.1,
            salt: self.salt.fetch_add(1, Ordering::Relaxed),
            scoped: &scoped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> MibView {
        let o = |s: &str| s.parse::<Oid>().unwrap();
        MibView::new(vec![
            (
                o("1.3.6.1.2.1.1.1.0"),
                Value::OctetString(b"printer".to_vec()),
            ),
            (o("1.3.6.1.2.1.1.3.0"), Value::TimeTicks(100)),
            (o("1.3.6.1.2.1.43.11.1.1.9.1.1"), Value::Integer(40)),
            (o("1.3.6.1.2.1.43.11.1.1.9.1.2"), Value::Integer(-3)),
            (o("1.3.6.1.2.1.43.11.1.1.9.1.1"), Value::Integer(99)), // duplicate: first wins
            (o("1.3.6.1.4.1.1.1"), Value::Counter64(5)),
        ])
    }

    fn req(kind: PduType, nr: i32, mr: i32, oids: &[&str]) -> Pdu {
        Pdu {
            kind,
            request_id: 9,
            error_status: nr,
            error_index: mr,
            varbinds: oids
                .iter()
                .map(|s| VarBind::null(s.parse().unwrap()))
                .collect(),
        }
    }

    #[test]
    fn get_and_getnext_follow_rfc3416() {
        let mut v = view();
        let r = respond(
            &mut v,
            Version::V2c,
            &req(
                PduType::Get,
                0,
                0,
                &["1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.2.0"],
            ),
            65507,
        )
        .unwrap();
        assert_eq!(r.varbinds[0].value, Value::OctetString(b"printer".to_vec()));
        assert_eq!(r.varbinds[1].value, Value::NoSuchInstance);
        let r = respond(
            &mut v,
            Version::V2c,
            &req(PduType::GetNext, 0, 0, &["1.3.6.1.2.1.43"]),
            65507,
        )
        .unwrap();
        assert_eq!(r.varbinds[0].value, Value::Integer(40));
        let r = respond(
            &mut v,
            Version::V2c,
            &req(PduType::GetNext, 0, 0, &["1.3.6.1.4.1.1.1"]),
            65507,
        )
        .unwrap();
        assert_eq!(r.varbinds[0].value, Value::EndOfMibView);
    }

    #[test]
    fn v1_maps_missing_to_no_such_name_and_hides_counter64() {
        let mut v = view();
        let r = respond(
            &mut v,
            Version::V1,
            &req(
                PduType::Get,
                0,
                0,
                &["1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.2.0"],
            ),
            65507,
        )
        .unwrap();
        assert_eq!(
            (r.error_status, r.error_index),
            (error_status::NO_SUCH_NAME, 2)
        );
        let r = respond(
            &mut v,
            Version::V1,
            &req(PduType::GetNext, 0, 0, &["1.3.6.1.2.1.43.11.1.1.9.1.2"]),
            65507,
        )
        .unwrap();
        assert_eq!(r.error_status, error_status::NO_SUCH_NAME);
    }

    #[test]
    fn getbulk_repeats_and_truncates_to_fit() {
        let mut v = view();
        let r = respond(
            &mut v,
            Version::V2c,
            &req(
                PduType::GetBulk,
                1,
                10,
                &["1.3.6.1.2.1.1", "1.3.6.1.2.1.43"],
            ),
            65507,
        )
        .unwrap();
        // 1 non-repeater + repetitions until every repeater reached the end of the view.
        assert_eq!(r.varbinds[0].oid.to_string(), "1.3.6.1.2.1.1.1.0");
        let rest: Vec<_> = r.varbinds[1..].iter().map(|v| v.oid.to_string()).collect();
        assert_eq!(
            rest,
            [
                "1.3.6.1.2.1.43.11.1.1.9.1.1",
                "1.3.6.1.2.1.43.11.1.1.9.1.2",
                "1.3.6.1.4.1.1.1",
                "1.3.6.1.4.1.1.1"
            ]
        );
        assert_eq!(r.varbinds.last().unwrap().value, Value::EndOfMibView);
        let small = respond(
            &mut v,
            Version::V2c,
            &req(PduType::GetBulk, 0, 10, &["1.3.6.1"]),
            HEADER_ALLOWANCE + 40,
        )
        .unwrap();
        assert_eq!(small.error_status, 0);
        assert!(!small.varbinds.is_empty() && small.varbinds.len() < 4);
    }

    #[test]
    fn writable_view_keeps_written_values() {
        let base = Arc::new(view());
        let mut w = WritableView::new(base, vec!["1.3.6.1.2.1.1".parse().unwrap()]);
        let set = Pdu {
            kind: PduType::Set,
            request_id: 1,
            error_status: 0,
            error_index: 0,
            varbinds: vec![VarBind::new(
                "1.3.6.1.2.1.1.1.0".parse().unwrap(),
                Value::OctetString(b"new".to_vec()),
            )],
        };
        assert_eq!(
            respond(&mut w, Version::V2c, &set, 65507)
                .unwrap()
                .error_status,
            0
        );
        assert_eq!(
            w.get(&"1.3.6.1.2.1.1.1.0".parse().unwrap()),
            Some(Value::OctetString(b"new".to_vec()))
        );
        let mut bad = set.clone();
        bad.varbinds[0].oid = "1.3.6.1.2.1.43.11.1.1.9.1.1".parse().unwrap();
        assert_eq!(
            respond(&mut w, Version::V2c, &bad, 65507)
                .unwrap()
                .error_status,
            error_status::NOT_WRITABLE
        );
    }
}
