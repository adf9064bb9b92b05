//! The agent's integration tests: one binary (CI links one test binary per crate), one
//! module per area. `common` holds the harness (the binary, simulators in process, the
//! reference cloud, fixtures).

mod common;

mod chaos;
mod cli_poll;
mod cloud_e2e;
mod cloud_jobs;
mod cloud_settings;
mod deploy_job;
mod discovery;
mod fuzz_inputs;
mod hostile_cloud;
mod identity;
mod ipp_cups;
mod layers;
mod library_job;
mod librenms_conformance;
mod mdns_netns;
mod paused;
mod poller_fleet;
mod service;
mod snmpd_v3;
mod takeover;
mod update_job;
mod uploads;
mod web_api;
