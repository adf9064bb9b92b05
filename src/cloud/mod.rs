//! The cloud link. So far: what to send and when — the seed's upload rule evaluated after
//! each poll (the `uploader` component), snapshots and JSON Merge Patch deltas over a keyed
//! view of the report (DATA-MODEL.md §4.2–§4.3), queued in the store's durable outbox. The
//! HTTPS transport that drains the outbox, activation and the reference cloud are the
//! cloud-link issue's remaining work (docs/protocol.md).

pub mod report;
pub mod uploader;
