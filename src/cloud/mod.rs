//! The cloud link. So far: what to send and when — the seed's upload rule evaluated after
//! each poll, snapshots, and JSON Merge Patch deltas over a keyed view of the report
//! (DATA-MODEL.md §4.2–§4.3). The HTTPS transport, activation, outbox and the reference
//! cloud are the cloud-link issue's remaining work.

pub mod report;
