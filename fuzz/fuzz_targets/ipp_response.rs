//! Fuzz target: `fleet_agent_fuzz::ipp_response` (see fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fleet_agent_fuzz::ipp_response(data));
