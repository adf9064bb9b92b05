//! IPP on the wire (RFC 8010 encoding, RFC 8011 Get-Printer-Attributes). Knows nothing
//! about printers' data model: the agent maps attributes into its report.
//!
//! # Modules
//! - [`codec`]: the message codec: requests encoded, responses decoded into groups of
//!   attributes, with bounds on every count, size and nesting depth.
//! - [`client`]: Get-Printer-Attributes over HTTP (`ipp://`), with a deadline and a cap
//!   on the bytes read.
//!
//! Why our own codec rather than the `ipp` crate (8.0): its parser has no bound on the
//! number of attributes or on collection nesting, and its client brings its own HTTP and
//! TLS stack; ours is ~400 lines, decodes from a byte slice (fuzzed), and uses the
//! agent's reqwest.

pub mod client;
pub mod codec;

pub use client::{Error, get_printer_attributes};
pub use codec::{Attribute, DecodeError, Group, Response, Value};
