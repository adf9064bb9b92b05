//! The SNMP layer's integration tests, one binary: the shared-socket client over real UDP,
//! interop with the snmp2 crate, and every decoder under mutated input.

mod fuzz_smoke;
mod snmp2_interop;
mod udp_client;
