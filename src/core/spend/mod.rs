//! Spend: what a finished request reports, and how it reaches the accounting cluster.
//!
//! `event` (one CloudEvents JSON object per request; `event_writer` writes it in one pass) → `outbox` (buffered events, one batch in
//! flight, retries, split and quarantine) ↔ `accounting_api` (the batch and budget-poll
//! protocol, read by the filter and written by the accounting server). `access_log` is the
//! per-request summary left in Envoy filter state.

pub mod access_log;
pub mod accounting_api;
pub mod attribution;
pub mod event;
pub mod event_writer;
pub mod outbox;
pub mod threshold;
