//! The lab tools' integration tests: the demo end to end.

mod demo;
mod simulate;
mod web_browser;
