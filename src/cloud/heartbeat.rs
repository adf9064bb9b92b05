//! The `heartbeat` component: tells the cloud every minute (or as often as it asks) that
//! the agent is alive, with its version, uptime, outbox figures and printers by health, so
//! a silent agent can be told apart from a site with nothing to report; and each printer's
//! communication status when it changes ([`StatusMemo`]).

use super::Connection;
use super::client::CloudError;
use crate::store::{AgentState, Store};
use fleet_protocol::heartbeat::AgentState::{Disabled, Running};
use fleet_protocol::heartbeat::{
    AgentUpdate, Communication, Heartbeat, HeartbeatAnswer, MAX_PRINTER_STATUS, OutboxFigures,
    PrinterCounts, PrinterStatus,
};
use std::collections::HashMap;
use tokio::time::Duration;

/// Shortest time between two heartbeats sent because printer statuses changed.
pub const STATUS_SPACING: Duration = Duration::from_secs(10);

/// Default period, until the cloud says otherwise.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(60);

/// What the heartbeat reports besides the store: the support library in use and a staged
/// update (handles of the components that own them).
#[derive(Clone)]
pub struct Sources {
    /// The support library in use.
    pub library: crate::printer::library::Handle,
    /// The staged agent update, while there is one.
    pub update: std::sync::Arc<dyn Fn() -> Option<AgentUpdate> + Send + Sync>,
}

/// A printer's status as the cloud should hold it.
fn status(p: &crate::store::PrinterRow) -> PrinterStatus {
    use crate::store::Health;
    let quirks = p
        .quirks
        .as_deref()
        .and_then(|q| crate::store::read_quirks(q).ok())
        .filter(|q| !q.is_empty())
        .map(|q| q.to_string());
    PrinterStatus {
        address: p.address.clone(),
        serial_number: p.serial.clone(),
        communication: match p.health {
            Health::Unknown => Communication::Unknown,
            Health::Ok => Communication::Ok,
            Health::Suspect => Communication::Suspect,
            Health::NotCommunicating => Communication::NotCommunicating,
            Health::NeedsCredentials => Communication::NeedsCredentials,
        },
        reason: p.health_reason.clone(),
        since: p.health_since_ms,
        last_seen: p.last_seen_ms,
        quirks,
    }
}

/// What the cloud has acknowledged of each printer's status, so a heartbeat carries only
/// changes. Kept in memory: after a restart the agent sends every printer once, which also
/// repairs a cloud that lost them.
#[derive(Debug, Default)]
pub struct StatusMemo {
    sent: HashMap<String, PrinterStatus>,
}

impl StatusMemo {
    /// The statuses that differ from what the cloud holds, at most [`MAX_PRINTER_STATUS`]
    /// (the rest follow in the next beats). A new `lastSeen` alone is not a change: it
    /// moves at every poll and the uploads already say it.
    /// `unenrolled(serial)` tells a printer unenrolled by the cloud: nothing more about it
    /// may reach the cloud.
    fn pending(
        &mut self,
        printers: &[crate::store::PrinterRow],
        unenrolled: impl Fn(&str) -> bool,
    ) -> Vec<PrinterStatus> {
        // Removed printers are forgotten, so one coming back is sent again.
        if self.sent.len() > printers.len() {
            let live: std::collections::HashSet<&str> =
                printers.iter().map(|p| p.address.as_str()).collect();
            self.sent.retain(|a, _| live.contains(a.as_str()));
        }
        printers
            .iter()
            .map(status)
            .filter(|s| {
                self.sent.get(&s.address).is_none_or(|old| {
                    let mut old = old.clone();
                    old.last_seen = s.last_seen;
                    old != *s
                })
            })
            .filter(|s| !s.serial_number.as_deref().is_some_and(&unenrolled))
            .take(MAX_PRINTER_STATUS)
            .collect()
    }

    /// The cloud accepted the heartbeat that carried `sent`.
    fn acknowledged(&mut self, sent: Vec<PrinterStatus>) {
        for s in sent {
            self.sent.insert(s.address.clone(), s);
        }
    }
}

/// Builds the heartbeat body from the store and `sources`, at `now`, with the printer
/// statuses `memo` says the cloud does not hold yet.
///
/// # Errors
/// On store failure.
pub fn body(
    store: &Store,
    sources: &Sources,
    memo: &mut StatusMemo,
    started_ms: i64,
    now: i64,
) -> Result<Heartbeat, crate::store::StoreError> {
    let outbox = store.outbox_stats()?;
    let printers = store.printers_seen()?;
    let mut by_health = std::collections::BTreeMap::new();
    for p in &printers {
        *by_health.entry(p.health.as_str().to_string()).or_insert(0) += 1;
    }
    let printer_status = memo.pending(&printers, |sn| {
        // A store failure here counts as unenrolled: better late than leaked.
        store
            .unenrolled_at(&format!("sn:{sn}"))
            .map_or(true, |at| at.is_some())
    });
    Ok(Heartbeat {
        agent_version: env!("CARGO_PKG_VERSION").into(),
        library_version: sources.library.current().version,
        protocol: fleet_protocol::VERSION,
        state: match store.agent_state()? {
            AgentState::Active => Running,
            AgentState::Disabled | AgentState::Deleted => Disabled,
        },
        sent_at: now,
        uptime_secs: (now - started_ms).max(0) / 1000,
        outbox: OutboxFigures {
            messages: outbox.messages,
            bytes: outbox.bytes,
            dropped: outbox.dropped,
            rejected: outbox.rejected,
        },
        printers: PrinterCounts {
            total: printers.len() as u64,
            by_health,
        },
        config: super::settings::status(store)?,
        agent_update: (sources.update)(),
        printer_status,
    })
}

/// What the heartbeat needs to pull settings when the cloud's `configEtag` is new.
#[derive(Clone)]
pub struct SettingsLink {
    /// The local configuration the settings are laid over.
    pub source: crate::config::Source,
    /// Seals the stored document.
    pub key: crate::store::secrets::SealKey,
    /// Where an accepted configuration goes (the supervisor applies it).
    pub apply: tokio::sync::mpsc::Sender<Box<crate::config::Config>>,
}

async fn maybe_pull(
    conn: &Connection,
    store: &Store,
    link: &SettingsLink,
    answer: &HeartbeatAnswer,
) -> bool {
    let Some(tag) = answer.config_etag.as_deref() else {
        return false;
    };
    let s = store.clone();
    let known = tokio::task::spawn_blocking(move || super::settings::status(&s))
        .await
        .ok()
        .and_then(Result::ok)
        .is_some_and(|st| st.knows(tag));
    if known {
        return false;
    }
    match super::settings::pull(conn, store, &link.key, &link.source).await {
        Ok(super::settings::Outcome::Applied(c)) => {
            link.apply.send(c).await.ok();
            true
        }
        Ok(super::settings::Outcome::Rejected(_)) => true,
        Ok(super::settings::Outcome::Unchanged) => false,
        Err(e) => {
            tracing::debug!(error = %e, "Settings not pulled; next heartbeat retries.");
            false
        }
    }
}

/// Runs until `shutdown` completes. Failures are logged at DEBUG (the sender already
/// reports an unreachable cloud) and the next beat comes on schedule. With `settings`,
/// a `configEtag` the agent does not know yet makes it pull the settings.
pub async fn run(
    conn: Connection,
    store: Store,
    sources: Sources,
    settings: Option<SettingsLink>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let Connection {
        client,
        creds,
        link,
        clock,
    } = conn.clone();
    let started = clock.now_ms();
    let mut period = DEFAULT_PERIOD;
    let mut memo = StatusMemo::default();
    loop {
        // Set when the settings status changed, so the cloud hears of it at once.
        let mut again = false;
        // Set when more printer statuses wait than one beat carries.
        let mut more = false;
        let (s, src, now) = (store.clone(), sources.clone(), clock.now_ms());
        // The memo goes to the blocking task and comes back (a failed task loses it:
        // every printer is then sent again, which is harmless).
        let mut m = std::mem::take(&mut memo);
        let built = tokio::task::spawn_blocking(move || {
            let b = body(&s, &src, &mut m, started, now);
            (b, m)
        })
        .await
        .map(|(b, m)| {
            memo = m;
            b
        });
        match built {
            Ok(Ok(b)) => match client.heartbeat(&creds, &b).await {
                Ok(answer) => {
                    link.contact();
                    more = b.printer_status.len() == MAX_PRINTER_STATUS;
                    memo.acknowledged(b.printer_status);
                    if let Some(link) = &settings {
                        again = maybe_pull(&conn, &store, link, &answer).await;
                    }
                    if let Some(secs) = answer.next_heartbeat_secs {
                        // Bounded so a confused cloud cannot make the agent chatty or mute.
                        period = Duration::from_secs(secs.clamp(10, 3600));
                    }
                }
                Err(CloudError::Unauthorized(r)) => {
                    link.error(&format!("the cloud refused the agent's token: {r}"));
                    client.invalidate_token();
                }
                Err(e) => {
                    link.error(&e.to_string());
                    tracing::debug!(error = %e, "Heartbeat not delivered.");
                }
            },
            Ok(Err(e)) => tracing::warn!(error = %e, "Heartbeat: store unavailable."),
            Err(e) => tracing::warn!(error = %e, "Heartbeat task failed."),
        }
        // A large fleet's statuses go out in a few quick beats, not one per minute.
        let wait = if again {
            Duration::ZERO
        } else if more {
            Duration::from_secs(1).min(period)
        } else {
            period
        };
        let beat_at = tokio::time::Instant::now();
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(wait) => {}
            _ = store.status_changed() => {
                // A printer's status changed: tell the cloud soon, but no more often than
                // every STATUS_SPACING however many printers change.
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep_until((beat_at + STATUS_SPACING).min(beat_at + wait)) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Event, Health, PollRecord, Success};

    fn poll(s: &Store, id: i64, at_ms: i64, health: Health, reason: Option<&str>) {
        let ok = health == Health::Ok;
        s.save_polls(&[PollRecord {
            printer_id: id,
            at_ms,
            health,
            reason: reason.map(str::to_string),
            failures: u32::from(!ok),
            success: ok.then(|| Success {
                serial: Some(format!("SN{id}")),
                manufacturer: None,
                model: None,
                report: None,
                quirks: None,
                point: None,
            }),
            events: vec![Event {
                kind: "healthChanged",
                detail: serde_json::Value::Null,
            }],
        }])
        .unwrap();
    }

    #[test]
    fn statuses_are_sent_once_then_only_when_they_change() {
        let s = Store::open_in_memory().unwrap();
        let a = s.printer_id("127.0.0.1:1161").unwrap();
        let b = s.printer_id("127.0.0.1:1162").unwrap();
        poll(&s, a, 1_000, Health::Ok, None);
        poll(&s, b, 1_000, Health::Ok, None);
        let mut memo = StatusMemo::default();

        // First beat: every printer.
        let first = memo.pending(&s.printers().unwrap(), |_| false);
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].communication, Communication::Ok);
        assert_eq!(first[0].serial_number.as_deref(), Some("SN1"));
        assert_eq!(first[0].since, Some(1_000));
        // Not acknowledged (the beat failed): the next beat carries them again.
        assert_eq!(memo.pending(&s.printers().unwrap(), |_| false), first);
        memo.acknowledged(first);
        // A new poll of the same health moves lastSeen only: nothing to send.
        poll(&s, a, 2_000, Health::Ok, None);
        assert!(memo.pending(&s.printers().unwrap(), |_| false).is_empty());

        // b refuses the credentials: b alone, with the reason and since when.
        poll(
            &s,
            b,
            3_000,
            Health::NeedsCredentials,
            Some("SNMPv3 unknown user name"),
        );
        let changed = memo.pending(&s.printers().unwrap(), |_| false);
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert_eq!(changed[0].address, "127.0.0.1:1162");
        assert_eq!(changed[0].communication, Communication::NeedsCredentials);
        assert_eq!(
            changed[0].reason.as_deref(),
            Some("SNMPv3 unknown user name")
        );
        assert_eq!(changed[0].since, Some(3_000));
        assert_eq!(changed[0].last_seen, Some(1_000));
        memo.acknowledged(changed);
        // Still refusing later: the status keeps its first since-when and is not resent.
        poll(
            &s,
            b,
            4_000,
            Health::NeedsCredentials,
            Some("SNMPv3 unknown user name"),
        );
        assert!(memo.pending(&s.printers().unwrap(), |_| false).is_empty());
        assert_eq!(s.printers().unwrap()[1].health_since_ms, Some(3_000));
    }

    #[test]
    fn learned_quirks_are_a_status_change_and_say_what_they_are() {
        let s = Store::open_in_memory().unwrap();
        let a = s.printer_id("127.0.0.1:1161").unwrap();
        poll(&s, a, 1_000, Health::Ok, None);
        let mut memo = StatusMemo::default();
        let first = memo.pending(&s.printers().unwrap(), |_| false);
        assert_eq!(first[0].quirks, None);
        memo.acknowledged(first);
        let q = fleet_snmp::quirks::Quirks {
            v1: true,
            ..Default::default()
        };
        s.save_polls(&[PollRecord {
            printer_id: a,
            at_ms: 2_000,
            health: Health::Ok,
            reason: None,
            failures: 0,
            success: Some(Success {
                serial: Some("SN1".into()),
                manufacturer: None,
                model: None,
                report: None,
                quirks: Some(Some(serde_json::to_string(&q).unwrap())),
                point: None,
            }),
            events: vec![],
        }])
        .unwrap();
        let changed = memo.pending(&s.printers().unwrap(), |_| false);
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].quirks.as_deref(), Some(q.to_string().as_str()));
        assert!(changed[0].quirks.as_deref().unwrap().contains("v1"));
    }

    #[test]
    fn an_unenrolled_printer_is_never_reported() {
        let s = Store::open_in_memory().unwrap();
        let a = s.printer_id("127.0.0.1:1161").unwrap();
        let b = s.printer_id("127.0.0.1:1162").unwrap();
        poll(&s, a, 1_000, Health::Ok, None);
        poll(&s, b, 1_000, Health::Ok, None);
        s.set_unenrolled("sn:SN2", 1_500).unwrap();
        let src = Sources {
            library: crate::printer::library::Handle::default(),
            update: std::sync::Arc::new(|| None),
        };
        let hb = body(&s, &src, &mut StatusMemo::default(), 0, 2_000).unwrap();
        let sent: Vec<&str> = hb
            .printer_status
            .iter()
            .map(|p| p.address.as_str())
            .collect();
        assert_eq!(sent, ["127.0.0.1:1161"]);
    }

    #[test]
    fn a_large_fleet_goes_out_in_bounded_beats() {
        let s = Store::open_in_memory().unwrap();
        for i in 0..(MAX_PRINTER_STATUS + 20) {
            s.printer_id(&format!("10.0.{}.{}:161", i / 250, i % 250))
                .unwrap();
        }
        let mut memo = StatusMemo::default();
        let one = memo.pending(&s.printers().unwrap(), |_| false);
        assert_eq!(one.len(), MAX_PRINTER_STATUS);
        assert!(
            one.iter()
                .all(|p| p.communication == Communication::Unknown)
        );
        memo.acknowledged(one);
        assert_eq!(memo.pending(&s.printers().unwrap(), |_| false).len(), 20);
    }
}
