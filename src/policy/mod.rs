//! The pure policy core: config in, decisions out. No proxy-wasm, no I/O, no clock reads.
//!
//! Data flow: [`compile`] turns one plugin-config document into a [`Policy`]; per request,
//! [`decide`] runs authenticate → resolve aliases → check access → route, and returns either
//! an [`Admission`] (what to change before forwarding) or a [`Denial`] (the OpenAI-style error).
//! On the way back, [`usage`] and [`sse`] read token usage from JSON and streamed responses.

pub mod access;
pub mod access_log;
pub mod accounting_api;
pub mod affinity_mark;
pub mod affinity_request;
pub mod affinity_stream;
pub mod alias;
pub mod auth;
pub mod budget;
pub mod charge;
pub mod client_headers;
pub mod compile;
pub mod config;
pub mod cost;
pub mod cost_fields;
pub mod cost_map;
pub mod decide;
pub mod denial;
pub mod index;
pub mod key_hash;
pub mod ledger_slots;
pub mod listing;
pub mod metering;
pub mod outbox;
pub mod pattern;
pub mod request;
pub mod reservation;
pub mod routing;
pub mod settlement;
pub mod spend;
pub mod sse;
pub mod stream_usage;
pub mod time;
pub mod usage;

pub use compile::{compile, ConfigError, ConfigErrors};
pub use decide::{decide_body, decide_head, Admission, HeadOutcome, Trace, Verdict};
pub use denial::Denial;
pub use index::Policy;
pub use request::{Endpoint, RequestHead};
