//! The reference cloud's integration tests, one binary: the `fleet-cloud` command line,
//! recurring jobs on the cloud's clock, and docs/protocol.md against the routes served.

mod activation;
mod cli;
mod expiry;
mod protocol_doc;
mod schedules;
