//! Metering: usage read from an upstream answer as it passes, never buffered whole.
//!
//! `response_meter` (one response: status, body kind, how it ended) feeds `usage` (JSON bodies,
//! normalised as LiteLLM does) or `sse` (server-sent events, incrementally); `stream_usage`
//! makes OpenAI streams report usage without the client noticing.

pub mod response_meter;
pub mod sse;
pub mod stream_usage;
pub mod usage;
