//! `FakeSnmp`: an in-memory [`SnmpClient`] answering from MIB stores by address, with the
//! same agent semantics as the simulator, and a log of the requests it received.

use super::agent::{self, Faults, MibStore, MibView};
use super::message::Pdu;
use super::{Request, Security, SnmpClient, SnmpError, Target};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

type Store = Box<dyn MibStore + Send>;

/// An in-memory SNMP client for tests: unknown addresses time out.
#[derive(Clone, Default)]
pub struct FakeSnmp {
    agents: Arc<Mutex<HashMap<SocketAddr, Store>>>,
    faults: Arc<Mutex<HashMap<SocketAddr, Faults>>>,
    log: Arc<Mutex<Vec<(SocketAddr, Request)>>>,
    /// No request log (benchmarks: millions of requests would be kept).
    unlogged: bool,
}

impl FakeSnmp {
    /// Creates an empty fake.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates an empty fake that keeps no log of requests ([`FakeSnmp::requests`] is
    /// then empty): for long benchmarks, where the log would grow without end.
    pub fn unlogged() -> Self {
        FakeSnmp {
            unlogged: true,
            ..Self::default()
        }
    }

    /// Serves `view` at `addr` (any community).
    pub fn add(&self, addr: SocketAddr, view: MibView) {
        self.add_store(addr, Box::new(view));
    }

    /// Serves a custom store at `addr`.
    pub fn add_store(&self, addr: SocketAddr, store: Store) {
        self.agents.lock().insert(addr, store);
    }

    /// Makes the agent at `addr` misbehave as `faults` say (none: behave again).
    pub fn set_faults(&self, addr: SocketAddr, faults: Faults) {
        self.faults.lock().insert(addr, faults);
    }

    /// Stops answering at `addr` (requests then time out).
    pub fn remove(&self, addr: SocketAddr) -> Option<Store> {
        self.agents.lock().remove(&addr)
    }

    /// Returns the requests received so far.
    pub fn requests(&self) -> Vec<(SocketAddr, Request)> {
        self.log.lock().clone()
    }
}

impl SnmpClient for FakeSnmp {
    async fn request(&self, target: &Target, request: Request) -> Result<Pdu, SnmpError> {
        if !self.unlogged {
            self.log.lock().push((target.addr, request.clone()));
        }
        let pdu = Pdu {
            kind: request.kind,
            request_id: 1,
            error_status: request.non_repeaters as i32,
            error_index: request.max_repetitions as i32,
            varbinds: request.varbinds,
        };
        let version = match &target.security {
            Security::Community { version, .. } => *version,
            Security::Usm(_) => super::Version::V3,
        };
        let faults = self.faults.lock().get(&target.addr).cloned();
        let answer = {
            let mut agents = self.agents.lock();
            agents.get_mut(&target.addr).and_then(|store| {
                agent::respond_with_faults(
                    store.as_mut(),
                    version,
                    &pdu,
                    65_507,
                    &faults.unwrap_or_default(),
                )
            })
        };
        match answer {
            Some(p) => Ok(p),
            None => {
                // Behave like a silent address: the caller's timeout elapses (paused in tests).
                let attempts = target.retries + 1;
                tokio::time::sleep(target.timeout * attempts).await;
                Err(SnmpError::Timeout {
                    target: target.addr,
                    attempts,
                    timeout: target.timeout,
                    hint: "",
                })
            }
        }
    }
}
