//! Building a job's result: the whole job's status and messages, and each printer's
//! outcome. Results are stamped with the time they finished when the runner stores them.

use fleet_protocol::jobs::{JobResult, Message, PrinterOutcome, Status};
use std::net::SocketAddr;

/// A result with this status and messages.
pub(super) fn done(status: Status, messages: Vec<Message>) -> JobResult {
    JobResult::new(status, messages, 0)
}

/// A job that failed as a whole, before or without any printer's outcome: one error.
pub(super) fn failed(text: impl Into<String>) -> JobResult {
    JobResult::failed(text, 0)
}

/// A result with the printers' outcomes.
pub(super) fn with_printers(
    status: Status,
    messages: Vec<Message>,
    printers: Vec<PrinterOutcome>,
) -> JobResult {
    JobResult {
        printers,
        ..done(status, messages)
    }
}

/// One printer's outcome.
pub(super) fn one(
    addr: SocketAddr,
    serial: Option<&str>,
    status: Status,
    message: Option<String>,
) -> PrinterOutcome {
    PrinterOutcome {
        address: addr.to_string(),
        serial_number: serial.map(str::to_string),
        status,
        message,
    }
}

/// The job's outcome is one printer's: `status` for both, and the reason both in the
/// job's messages (what the cloud's job list shows) and in the printer's entry.
pub(super) fn printer_outcome(
    addr: SocketAddr,
    serial: Option<&str>,
    status: Status,
    text: String,
) -> JobResult {
    with_printers(
        status,
        vec![Message::error(text.clone())],
        vec![one(addr, serial, status, Some(text))],
    )
}

/// A failure talking to a printer: whether it did not answer at all (not
/// communicating), and why.
pub(super) type Failure = (bool, String);

/// The result of sending something to one printer: what was done, and the failure that
/// stopped it.
pub(super) fn sent(
    addr: SocketAddr,
    serial: Option<&str>,
    done_lines: Vec<String>,
    failure: Option<Failure>,
) -> JobResult {
    let mut messages: Vec<Message> = done_lines.into_iter().map(Message::info).collect();
    match failure {
        None => with_printers(
            Status::Completed,
            messages,
            vec![one(addr, serial, Status::Completed, None)],
        ),
        Some((unreachable, e)) => {
            let status = if unreachable {
                Status::PrinterNotCommunicating
            } else {
                Status::Failed
            };
            messages.insert(0, Message::error(e.clone()));
            with_printers(status, messages, vec![one(addr, serial, status, Some(e))])
        }
    }
}
