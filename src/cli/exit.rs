//! Exit codes: the one table behind the README's and every command's exits.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | unexpected failure (socket error, bad OID argument, ...) |
//! | 2 | usage error (clap's own, and commands given nothing to do) |
//! | 3 | no response (timeout or port unreachable) |
//! | 4 | SNMP credentials rejected (v3 unknown user, wrong digest, ...) |
//! | 5 | the agent answered but the answer is unusable |
//! | 64 | invalid configuration (sysexits EX_USAGE) |
//! | 65 | bad input data: a target list or import entry, more addresses than the cap, an activation code refused (EX_DATAERR) |
//! | 66 | an input file or directory cannot be read: the configuration file, an import file, the store (EX_NOINPUT) |
//! | 75 | stopped to start again for an agent update (EX_TEMPFAIL) |

use crate::poller::PollError;
use fleet_snmp::SnmpError;

/// Exit code: unexpected failure.
pub const FAILURE: i32 = 1;
/// Exit code: usage error.
pub const USAGE: i32 = 2;
/// Exit code: no response from the agent.
pub const NO_RESPONSE: i32 = 3;
/// Exit code: SNMP credentials rejected.
pub const AUTH: i32 = 4;
/// Exit code: unusable answer.
pub const BAD_ANSWER: i32 = 5;
/// Exit code: invalid configuration (sysexits EX_USAGE).
pub const CONFIG: i32 = 64;
/// Exit code: bad input data (sysexits EX_DATAERR).
pub const DATA: i32 = 65;
/// Exit code: input file unreadable (sysexits EX_NOINPUT).
pub const NO_INPUT: i32 = 66;
/// Exit code: stopped to start again for an update (sysexits EX_TEMPFAIL).
pub const RESTART: i32 = crate::update::EXIT_RESTART;

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct Exit {
    /// Process exit code.
    pub code: i32,
    /// Message for standard error.
    pub message: String,
}

impl Exit {
    /// An exit with this code and message.
    pub fn new(code: i32, message: impl Into<String>) -> Exit {
        Exit {
            code,
            message: message.into(),
        }
    }
}

/// The exit code of an SNMP failure.
pub fn snmp(e: &SnmpError) -> i32 {
    match e {
        SnmpError::Timeout { .. } | SnmpError::Unreachable { .. } => NO_RESPONSE,
        SnmpError::UnknownUser { .. }
        | SnmpError::WrongDigest { .. }
        | SnmpError::NotInTimeWindow { .. }
        | SnmpError::DecryptionError { .. }
        | SnmpError::UnsupportedSecLevel { .. }
        | SnmpError::EngineChanged { .. }
        | SnmpError::BadResponse { .. } => AUTH,
        SnmpError::Io { .. } => FAILURE,
        _ => BAD_ANSWER,
    }
}

impl From<anyhow::Error> for Exit {
    fn from(e: anyhow::Error) -> Self {
        let code = e
            .downcast_ref::<PollError>()
            .map(|p| p.snmp().map_or(BAD_ANSWER, snmp))
            .or_else(|| e.downcast_ref::<SnmpError>().map(snmp))
            .unwrap_or(FAILURE);
        Exit {
            code,
            message: chain(&e),
        }
    }
}

/// The error and its causes, each cause once: most of our errors already print their
/// source in their own message, and `{:#}` would repeat it ("a: b: b").
pub fn chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

impl From<crate::config::ConfigErrors> for Exit {
    fn from(e: crate::config::ConfigErrors) -> Self {
        Exit {
            code: CONFIG,
            message: e.to_string().trim_end().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_chain_says_each_cause_once() {
        let e = SnmpError::Malformed {
            target: "192.0.2.1:161".parse().unwrap(),
            source: fleet_snmp::ber::BerError {
                offset: 5,
                reason: "OID longer than 128 sub-identifiers",
            },
        };
        let e = anyhow::Error::from(PollError::Snmp {
            addr: "192.0.2.1:161".parse().unwrap(),
            source: Box::new(e),
        });
        let exit = Exit::from(e);
        assert_eq!(exit.code, BAD_ANSWER);
        assert_eq!(
            exit.message.matches("128 sub-identifiers").count(),
            1,
            "{}",
            exit.message
        );
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(chain(&e), "outer: inner");
    }
}
