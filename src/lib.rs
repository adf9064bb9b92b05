//! Fleet Agent: an on-premises printer fleet agent (the `fleet-agent` binary and what it
//! runs). The SNMP wire layer, the agent <-> cloud documents and the secrets are crates of
//! their own (`fleet_snmp`, `fleet_protocol`, `fleet_secret`).
//!
//! # Layout
//! Modules from the bottom up; each uses only those above it in this list: the order of
//! the `mod` lines below, which `tests/it/layers.rs` checks against every `crate::`
//! path in `src/` (an import that goes up fails it, naming the file and line).
//! - [`clock`]: the agent's wall clock as a handle (tests run on one they control).
//! - [`retry`]: the one retry policy (capped exponential backoff with jitter).
//! - [`platform`]: host differences: the state directory's lock, stop signals, systemd
//!   notify, the Windows service.
//! - [`telemetry`]: the agent's Prometheus metrics and its log (recent lines kept, level
//!   changed at run time, a size-rotated file).
//! - [`targets`]: what to search: addresses, subnets, ranges, host names, import files.
//! - [`config`]: `fleet-agent.toml`, parsed strictly and validated whole into `Config`.
//! - [`store`]: the SQLite store (the only SQL): printers, readings, events, outbox, jobs,
//!   settings behind typed methods.
//! - [`printer`]: the printer data model (asset, counters, supplies, alerts) and the pure
//!   decoding of SNMP values into it, driven by one table of OIDs and the printer support
//!   library (vendor knowledge as signed, versioned data, swapped in at run time).
//! - [`poller`]: reading printers into reports, the scheduled poller, integrity events.
//! - [`discovery`]: polite SNMP sweeps, mDNS, stable identity, the per-IP report.
//! - [`cloud`]: the cloud link (the only HTTP client to the cloud): activation, tokens,
//!   the upload rule, the durable outbox sender, heartbeat, settings from the cloud.
//! - [`update`]: self-update: staging, the launcher that starts a verified staged
//!   version, health check and rollback.
//! - [`jobs`]: jobs from the cloud: long-poll, recorded before they run, results kept
//!   until delivered; agent and printer commands, file deployment, library updates.
//! - [`web`]: the local page (activation, status, printers, discovery, outbox, settings;
//!   files from `web-ui/`), its JSON API, sessions, password and CSRF, `/metrics`.
//! - [`app`]: the supervisor: given its dependencies as handles ([`app::Deps`]), starts
//!   the components in order, stops them in reverse within a deadline, restarts them when
//!   settings change (cloud, SIGHUP, the page).
//! - [`cli`]: command-line definitions and their handlers, by command group; exit codes.

pub mod clock;
pub mod retry;

pub mod platform;
pub mod telemetry;

pub mod targets;

pub mod config;

pub mod store;

pub mod printer;

pub mod poller;

pub mod discovery;

pub mod cloud;

pub mod update;

pub mod jobs;

pub mod web;

pub mod app;

pub mod cli;
