//! The pure core: config in, decisions out. It names no Envoy, proxy-wasm or dynamic-module
//! type, does no I/O and reads no clock (time, spend and randomness are inputs), so it runs
//! the same under both adapters and is tested natively and on wasm32.
//!
//! The map, by concern (each folder's `mod.rs` maps its files):
//! - [`config`]: one plugin-config document → an immutable, indexed [`Policy`] ([`compile`]).
//! - [`admission`]: request headers and body → authenticate → aliases → access → budgets →
//!   route, ending in an [`Admission`] or a [`Denial`] (every refusal lives in `denial`).
//! - [`metering`]: usage read from JSON and SSE responses as they pass.
//! - [`limits`]: rate limits (requests, tokens, requests in flight) counted per window.
//! - [`money`]: prices, reservations, budget ledgers and the settlement of a finished request.
//! - [`spend`]: spend events, the outbox and the accounting protocol, the access-log line.
//! - [`affinity`]: Responses-API origin marks, written on answers and read on follow-ups.
//! - [`exchange`]: one HTTP exchange driven callback by callback, and the spend sender, over
//!   host traits that each adapter implements (`src/wasm/`, `src/native/`).

pub mod admission;
pub mod affinity;
pub mod config;
pub mod exchange;
pub mod limits;
pub mod metering;
pub mod money;
pub mod spend;

pub use admission::decide::{decide_body, decide_head, Admission, HeadOutcome, Trace, Verdict};
pub use admission::denial::Denial;
pub use admission::request::{Endpoint, RequestHead};
pub use config::compile::{compile, ConfigError, ConfigErrors};
pub use config::index::Policy;
