//! The protocol crate's integration tests: docs/protocol.md's JSON examples read back
//! through the typed documents.

mod examples;
