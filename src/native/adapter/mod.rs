//! Tollgate's native adapter: the core's [`crate::core::exchange`] driven from dynamic-module
//! hooks. `process` holds what all workers share (ledgers, the spend senders, counters waiting
//! for the main thread); `version_config` is one config version (a [`FilterConfig`]: compile once,
//! tick the spend senders from the main thread); `stream` is one exchange (a [`Filter`], with
//! `NativeStream` as its [`crate::core::exchange::host::StreamHost`]); `counters` maps the
//! core's counters onto the stats each config defines.
//!
//! [`FilterConfig`]: super::module::FilterConfig
//! [`Filter`]: super::module::Filter

mod callouts;
mod counters;
mod process;
mod stream;
mod version_config;

pub use version_config::VersionConfig;
