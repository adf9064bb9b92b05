//! What a misbehaving agent needs: how it must be asked ([`Quirks`], learned by
//! [`walk::collect_adaptive`](crate::walk::collect_adaptive) and remembered by the
//! caller), and the probes that find it out when a request goes unanswered.
//!
//! Real printers' agents drop a whole request when one object in it hangs them, break
//! GETBULK, answer tooBig above a few objects, or speak v1 only. A timeout alone cannot
//! tell these from a dead device, so the first unanswered request is followed by a
//! minimal GET (is the device there at all?), then by GETNEXT probes that bisect the
//! request until the objects it cannot answer are isolated. Probes make one attempt each,
//! with a timeout scaled to the device's measured round trip.

use super::{Oid, PduType, Request, Security, SnmpClient, SnmpError, Target, VarBind, Version};
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Objects a device is not asked for at most (a device that fails on everything is
/// not worth remembering object by object).
pub const MAX_SKIPS: usize = 64;

/// Probes one diagnosis may send at most.
const MAX_PROBES: u32 = 64;

/// Confirmation requests to one device in flight at once.
const MAX_CONFIRM: usize = 16;

/// sysUpTime.0: every agent answers it, and it is small.
const LIVENESS: [u32; 9] = [1, 3, 6, 1, 2, 1, 1, 3, 0];

/// How a device must be asked.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quirks {
    /// It answers SNMPv1 only (configured for v2c).
    #[serde(default)]
    pub v1: bool,
    /// GETBULK does not work: GETNEXT only.
    #[serde(default)]
    pub no_bulk: bool,
    /// GETBULK works up to this max-repetitions only.
    #[serde(default)]
    pub max_repetitions: Option<u32>,
    /// It answers requests of at most this many objects.
    #[serde(default)]
    pub max_objects: Option<u32>,
    /// It answers tooBig to a response of more values than this (GETBULK repetitions
    /// over all columns of one request).
    #[serde(default)]
    pub max_values: Option<u32>,
    /// Objects it is not asked for. An object strictly inside a column being walked
    /// means "stop the column there" (the device hangs past that row).
    #[serde(default)]
    pub skip: Vec<Skip>,
}

/// One object a device is not asked for, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Skip {
    /// The object (a first-instance object or a column), or where a column stops.
    pub oid: Oid,
    /// Why.
    pub reason: Reason,
}

/// Why an object is not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Reason {
    /// A request holding it gets no answer, while the device answers others.
    NoAnswer,
    /// The device answers genErr for it.
    GenErr,
    /// The device answers noSuchName (or another error) for it.
    Refused,
    /// The device returned a non-increasing OID while walking it (this poll only).
    NonIncreasing,
    /// The device answers tooBig even when it is asked alone.
    TooBig,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::NoAnswer => "no answer to a request holding it",
            Reason::GenErr => "genErr",
            Reason::Refused => "refused by the agent",
            Reason::NonIncreasing => "non-increasing OID in the walk",
            Reason::TooBig => "tooBig even asked alone",
        })
    }
}

impl Quirks {
    /// Tells whether the device needs nothing special.
    pub fn is_empty(&self) -> bool {
        *self == Quirks::default()
    }

    /// Tells whether `oid` (a first-instance object or a column) is skipped.
    pub fn skips(&self, oid: &Oid) -> Option<&Skip> {
        self.skip.iter().find(|s| s.oid == *oid)
    }

    /// Where the walk of `column` stops, if the device hangs past one of its rows.
    pub fn stop_in(&self, column: &Oid) -> Option<&Skip> {
        self.skip
            .iter()
            .filter(|s| s.oid.len() > column.len() && s.oid.starts_with(column))
            .min_by(|a, b| a.oid.cmp(&b.oid))
    }

    /// Adds a skipped object (at most [`MAX_SKIPS`]); returns false when full.
    pub fn add_skip(&mut self, oid: Oid, reason: Reason) -> bool {
        if self.skip.len() >= MAX_SKIPS {
            return false;
        }
        if self.skip.iter().all(|s| s.oid != oid) {
            self.skip.push(Skip { oid, reason });
        }
        true
    }

    /// `target` as requests outside a planned collection (a job's GET, SET or walk) must
    /// use it: SNMPv1 for a v2c agent that answers v1 only, GETNEXT for one whose
    /// GETBULK fails (`max_repetitions` 0), and no more GETBULK repetitions or values
    /// than the device bears. (Skipped objects are the collection's business.)
    pub fn target(&self, target: &Target) -> Target {
        let mut t = match self.v1.then(|| as_v1(target)).flatten() {
            Some(t) => t,
            None => target.clone(),
        };
        for n in [self.max_repetitions, self.max_values]
            .into_iter()
            .flatten()
        {
            t.max_repetitions = t.max_repetitions.min(n.max(1));
        }
        if self.no_bulk {
            t.max_repetitions = 0;
        }
        t
    }

    /// Makes the quirks fit [`MAX_SKIPS`] and sane bounds (they come from storage).
    pub fn bounded(mut self) -> Quirks {
        self.skip.truncate(MAX_SKIPS);
        self.max_objects = self.max_objects.map(|n| n.max(1));
        self.max_repetitions = self.max_repetitions.map(|n| n.max(1));
        self.max_values = self.max_values.map(|n| n.max(1));
        self
    }
}

/// One line for people: `v1 only; GETNEXT only; 1 object skipped (1.3.6.1.2.1.43.11.1.1.9: no answer ...)`.
impl fmt::Display for Quirks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if self.v1 {
            parts.push("SNMPv1 only".into());
        }
        if self.no_bulk {
            parts.push("GETNEXT only (GETBULK fails)".into());
        }
        if let Some(r) = self.max_repetitions {
            parts.push(format!("GETBULK of at most {r} repetition(s)"));
        }
        if let Some(n) = self.max_objects {
            parts.push(format!("at most {n} object(s) per request"));
        }
        if let Some(n) = self.max_values {
            parts.push(format!("at most {n} value(s) per response (tooBig above)"));
        }
        if !self.skip.is_empty() {
            let list: Vec<String> = self
                .skip
                .iter()
                .take(3)
                .map(|s| format!("{}: {}", s.oid, s.reason))
                .collect();
            let more = if self.skip.len() > 3 { ", ..." } else { "" };
            parts.push(format!(
                "{} object(s) skipped ({}{more})",
                self.skip.len(),
                list.join(", ")
            ));
        }
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}

/// The same target asked with SNMPv1 (a v2c community target only).
pub(crate) fn as_v1(target: &Target) -> Option<Target> {
    match &target.security {
        Security::Community {
            version: Version::V2c,
            community,
        } => Some(Target {
            security: Security::Community {
                version: Version::V1,
                community: community.clone(),
            },
            ..target.clone()
        }),
        _ => None,
    }
}

/// Sends `request` once with `timeout` (counted in `sent`); `None` when it goes unanswered.
async fn once<C: SnmpClient>(
    client: &C,
    target: &Target,
    request: Request,
    timeout: Duration,
    sent: &AtomicU32,
) -> Option<Result<super::Pdu, SnmpError>> {
    sent.fetch_add(1, Ordering::Relaxed);
    let t = Target {
        retries: 0,
        timeout,
        ..target.clone()
    };
    match client.request(&t, request).await {
        Err(SnmpError::Timeout { .. }) => None,
        r => Some(r),
    }
}

fn liveness() -> Request {
    Request {
        kind: PduType::Get,
        non_repeaters: 0,
        max_repetitions: 0,
        varbinds: vec![VarBind::null(Oid::from_slice(&LIVENESS))],
    }
}

/// Whether the device still answers a minimal request (before something is learned from
/// unanswered probes: a printer rebooting mid-poll must not get every object skipped).
pub(crate) async fn still_there<C: SnmpClient>(
    client: &C,
    target: &Target,
    sent: &AtomicU32,
) -> bool {
    matches!(
        once(client, target, liveness(), target.timeout, sent).await,
        Some(Ok(_))
    )
}

/// Whether the device answers at all after a request went unanswered.
pub(crate) enum Alive {
    /// It answers, in this round trip.
    Yes(Duration),
    /// It answers SNMPv1 only (this target), in this round trip.
    AsV1(Target, Duration),
    /// Nothing answers: the device is down or the credentials are wrong.
    No,
}

/// Asks for sysUpTime.0 once (and, for a v2c target, as v1 at the same time, so a dead
/// device costs one timeout, not two).
pub(crate) async fn alive<C: SnmpClient>(client: &C, target: &Target, sent: &AtomicU32) -> Alive {
    let start = tokio::time::Instant::now();
    let v2 = once(client, target, liveness(), target.timeout, sent);
    let Some(t1) = as_v1(target) else {
        return match v2.await {
            Some(Ok(_)) => Alive::Yes(start.elapsed()),
            _ => Alive::No,
        };
    };
    let v1 = async {
        let r = once(client, &t1, liveness(), target.timeout, sent).await;
        (r, start.elapsed(), t1)
    };
    tokio::pin!(v2, v1);
    let mut v1_answer = None;
    let mut v2_done = false;
    loop {
        tokio::select! {
            biased;
            r = &mut v2, if !v2_done => {
                if matches!(r, Some(Ok(_))) {
                    return Alive::Yes(start.elapsed());
                }
                v2_done = true;
            }
            r = &mut v1, if v1_answer.is_none() => v1_answer = Some(r),
        }
        if v2_done && let Some((r, rtt, t1)) = v1_answer.take() {
            if !matches!(r, Some(Ok(_))) {
                return Alive::No;
            }
            // v1 answered, v2c did not: v2c once more before switching the printer to v1
            // for a day (a lost datagram must not do that).
            return match once(client, target, liveness(), target.timeout, sent).await {
                Some(Ok(_)) => Alive::Yes(rtt),
                _ => Alive::AsV1(t1, rtt),
            };
        }
    }
}

/// What the probes found out about a request that went unanswered.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Diagnosis {
    /// GETBULK is the problem: `Some(r)` works up to r repetitions, `None` not at all.
    pub bulk: Option<Option<u32>>,
    /// The device answers requests of at most this many objects.
    pub max_objects: Option<u32>,
    /// Indices (in the request) of objects no request holding them gets answered.
    pub bad: Vec<usize>,
}

impl Diagnosis {
    pub(crate) fn is_empty(&self) -> bool {
        *self == Diagnosis::default()
    }
}

/// Finds why `request` went unanswered from a device that answers a minimal request in
/// `rtt`: GETBULK itself, the number of objects, or objects it hangs on (bisected).
pub(crate) async fn diagnose<C: SnmpClient>(
    client: &C,
    target: &Target,
    request: &Request,
    rtt: Duration,
    sent: &AtomicU32,
) -> Diagnosis {
    let timeout = rtt.saturating_mul(10).clamp(
        Duration::from_millis(300),
        target.timeout.max(Duration::from_millis(300)),
    );
    let names: Vec<Oid> = request.varbinds.iter().map(|v| v.oid.clone()).collect();
    let getnext = |idx: &[usize]| Request {
        kind: PduType::GetNext,
        non_repeaters: 0,
        max_repetitions: 0,
        varbinds: idx
            .iter()
            .map(|&i| VarBind::null(names[i].clone()))
            .collect(),
    };
    let answers =
        |r: Request| async move { once(client, target, r, timeout, sent).await.is_some() };
    let all: Vec<usize> = (0..names.len()).collect();
    let mut d = Diagnosis::default();
    if request.kind == PduType::GetBulk && answers(getnext(&all)).await {
        // The same GETBULK once more with the target's own timeout: answered now, it was
        // a passing loss, not a broken GETBULK.
        if once(client, target, request.clone(), target.timeout, sent)
            .await
            .is_some()
        {
            return d;
        }
        let mut r = request.max_repetitions / 2;
        while r >= 1 {
            let bulk = Request {
                max_repetitions: r,
                ..request.clone()
            };
            if answers(bulk).await {
                d.bulk = Some(Some(r));
                return d;
            }
            r /= 2;
        }
        d.bulk = Some(None);
        return d;
    }
    // Every set on the stack is known to go unanswered.
    let mut stack = vec![all];
    let mut probes = 0u32;
    while let Some(set) = stack.pop() {
        if set.len() == 1 {
            d.bad.push(set[0]);
            continue;
        }
        if probes >= MAX_PROBES {
            break;
        }
        let (a, b) = set.split_at(set.len().div_ceil(2));
        let ok_a = answers(getnext(a)).await;
        let ok_b = answers(getnext(b)).await;
        probes += 2;
        if ok_a && ok_b {
            // Each half is answered, the whole is not: too many objects at once.
            let n = u32::try_from(a.len()).unwrap_or(u32::MAX);
            d.max_objects = Some(d.max_objects.map_or(n, |m| m.min(n)));
        }
        if !ok_b {
            stack.push(b.to_vec());
        }
        if !ok_a {
            stack.push(a.to_vec());
        }
    }
    // A probe lost on a busy network must not get an object skipped for a day: each
    // object found bad is asked for again, alone, with the target's own timeout (all at
    // once: one timeout however many, at most MAX_CONFIRM in flight), and a size limit is
    // checked against the request without the bad objects.
    let confirm = |r: Request| async move {
        once(client, target, r, target.timeout, sent)
            .await
            .is_some()
    };
    d.bad.sort_unstable();
    let mut bad = Vec::with_capacity(d.bad.len());
    for chunk in d.bad.chunks(MAX_CONFIRM) {
        let answered =
            futures_util::future::join_all(chunk.iter().map(|&i| confirm(getnext(&[i])))).await;
        bad.extend(
            chunk
                .iter()
                .zip(answered)
                .filter(|(_, a)| !a)
                .map(|(&i, _)| i),
        );
    }
    d.bad = bad;
    if d.max_objects.is_some() {
        let rest: Vec<usize> = (0..names.len()).filter(|i| !d.bad.contains(i)).collect();
        if rest.is_empty() || confirm(getnext(&rest)).await {
            d.max_objects = None;
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_targets_follow_the_quirks_and_keep_v3_as_it_is() {
        let addr = "127.0.0.1:161".parse().unwrap();
        let t = Target::new(addr, Security::v2c("public"));
        assert_eq!(
            Quirks::default().target(&t).security.version(),
            Version::V2c
        );
        let q = Quirks {
            v1: true,
            max_repetitions: Some(5),
            ..Quirks::default()
        };
        let j = q.target(&t);
        assert_eq!(j.security.version(), Version::V1);
        assert_eq!(j.max_repetitions, 5);
        assert_eq!(
            (j.addr, j.timeout, j.retries),
            (t.addr, t.timeout, t.retries)
        );
        // GETBULK broken: GETNEXT (max-repetitions 0); too big a response: fewer values.
        let q2 = Quirks {
            max_values: Some(7),
            ..Quirks::default()
        };
        assert_eq!(q2.target(&t).max_repetitions, 7);
        let q2 = Quirks {
            no_bulk: true,
            ..q2
        };
        assert_eq!(q2.target(&t).max_repetitions, 0);
        // A v3 target is never turned into a community one.
        let v3 = Target::new(
            addr,
            Security::Usm(std::sync::Arc::new(crate::UsmUser::new("u", None, None))),
        );
        assert_eq!(q.target(&v3).security.version(), Version::V3);
    }

    #[test]
    fn quirks_read_back_and_say_what_they_are() {
        let mut q = Quirks {
            no_bulk: true,
            max_objects: Some(8),
            ..Quirks::default()
        };
        assert!(q.add_skip("1.3.6.1.2.1.43.11.1.1.9".parse().unwrap(), Reason::NoAnswer));
        let json = serde_json::to_string(&q).unwrap();
        let back: Quirks = serde_json::from_str(&json).unwrap();
        assert_eq!(back, q);
        assert_eq!(
            q.to_string(),
            "GETNEXT only (GETBULK fails); at most 8 object(s) per request; 1 object(s) \
             skipped (1.3.6.1.2.1.43.11.1.1.9: no answer to a request holding it)"
        );
        assert_eq!(Quirks::default().to_string(), "none");
        // A stop inside a column, not the column itself.
        let col: Oid = "1.3.6.1.2.1.43.11.1.1.6".parse().unwrap();
        q.add_skip(
            "1.3.6.1.2.1.43.11.1.1.6.1.3".parse().unwrap(),
            Reason::NoAnswer,
        );
        assert!(q.skips(&col).is_none());
        assert_eq!(
            q.stop_in(&col).unwrap().oid.to_string(),
            "1.3.6.1.2.1.43.11.1.1.6.1.3"
        );
        // Bounded.
        for i in 0..200u32 {
            q.add_skip(Oid::from_slice(&[1, 3, 6, 1, 4, 1, i]), Reason::GenErr);
        }
        assert_eq!(q.skip.len(), MAX_SKIPS);
        let stored: Quirks =
            serde_json::from_str(r#"{"maxObjects":0,"future":1}"#).expect("unknown keys ignored");
        assert_eq!(stored.bounded().max_objects, Some(1));
    }
}
