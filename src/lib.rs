//! Fleet Agent: an on-premises printer fleet agent.
//!
//! # Layout
//! - [`printer`]: the printer data model (asset, counters, supplies, alerts) and the pure
//!   decoding of SNMP values into it, driven by one table of OIDs and the printer support
//!   library (vendor knowledge as signed, versioned data, swapped in at run time).
//! - [`discovery`]: targets, polite SNMP sweeps, mDNS, stable identity, per-IP report.
//! - [`poller`]: reading one printer over SNMP into a report (the collection plan run
//!   through an [`fleet_snmp::SnmpClient`]).
//! - [`simulator`]: simulated printers served over real UDP: `.snmprec` recordings
//!   (snmpsim's format), one port with community = file stem, a fleet on loopback
//!   addresses, and synthetic printers whose counters advance and toners fall.
//! - [`app`]: the agent's supervisor: store and web listener, then the reloadable
//!   components (poller, discovery, uploader, sender, heartbeat, jobs), stopped in
//!   reverse within a deadline; restarts them when settings change (cloud, SIGHUP).
//! - [`web`]: the local page (activation, status, printers, discovery, outbox, settings;
//!   files from `web-ui/`), its JSON API, sessions, password and CSRF, `/metrics`.
//! - [`bench`]: the `bench` subcommand's measurements (printers/s, CPU, RSS).
//! - [`config`]: `fleet-agent.toml`, parsed strictly and validated whole into `Config`.
//! - [`cloud`]: the cloud link (the only HTTP client): activation, tokens, the upload
//!   rule, snapshot/delta payloads, the durable outbox sender, heartbeat, cloud settings.
//! - [`jobs`]: jobs from the cloud: long-poll, recorded before they run, results kept
//!   until delivered; agent and printer commands, file deployment, library updates.
//! - [`cli`]: command-line definitions and their handlers.
//! - [`demo`]: the built-in default run (simulated fleet polled on a schedule).
//! - [`store`]: SQLite store (the only SQL): printers, latest state, events.
//! - [`telemetry`]: the agent's own Prometheus metrics and log setup (size-rotated file).

//! - [`update`]: self-update: signed manifest, staging, the launcher that starts a
//!   verified staged version, health check and rollback.
//! - [`platform`]: host differences: owner-only files, stop signals, systemd notify, the
//!   Windows service.

pub mod app;
pub mod cli;
pub mod cloud;
pub mod config;
pub mod discovery;
pub mod jobs;
pub mod platform;
pub mod poller;
pub mod printer;

pub mod store;
pub mod telemetry;
pub mod update;
pub mod web;
