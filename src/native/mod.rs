//! Tollgate as an Envoy dynamic module (a host `cdylib` loaded by the HTTP filter
//! `envoy.extensions.filters.http.dynamic_modules`), called through Envoy's C ABI with no VM.
//!
//! Built only with the `native` feature on a non-wasm target
//! (`cargo build --lib --profile native --features native` → `target/native/libtollgate.so`;
//! the `native` profile keeps `panic = "unwind"`, so `guard` can catch a panic); the
//! callbacks it declares stay undefined in the `.so` and resolve against the Envoy binary at
//! `dlopen`, so no other artifact may contain this module.
//!
//! Map, from Envoy inward:
//! - `abi`: `#[repr(C)]` types; `abi/filter_callbacks.rs` and `abi/config_callbacks.rs` hold the
//!   `extern "C"` callbacks (Envoy 1.40, ABI v0.2.0).
//! - `hooks`: the `envoy_dynamic_module_on_*` exports (config, lifecycle, config-level events;
//!   `hooks/stream.rs` the per-stream events); the only place module pointers are boxed and freed.
//! - `guard`: panic hook, `catch_unwind` fallbacks, and the re-entry-safe cell around a filter.
//! - `buffers`: checked pointer/length conversions.
//! - `envoy` (`StreamHandle`: headers, bodies, replies; `envoy/stream_info.rs`: attributes,
//!   filter state, metrics) and `config` (`ConfigHandle`, `ConfigScheduler`, `log`): safe
//!   wrappers; no method panics.
//! - `module`: the `FilterConfig` / `Filter` traits and `new_config`.
//! - `adapter`: Tollgate itself: one compiled version per config (`adapter/version_config.rs`),
//!   the core's exchange per stream (`adapter/stream.rs`), process-wide ledgers and spend senders
//!   (`adapter/process.rs`), the spend senders' main-thread callouts (`adapter/callouts.rs`),
//!   the core's counters as Envoy stats (`adapter/counters.rs`).

pub mod abi;
mod adapter;
mod buffers;
mod config;
mod envoy;
mod guard;
mod hooks;
mod module;

pub use abi::{AttributeId, CalloutInitResult, CalloutResult};
pub use config::{
    log, CalloutOutcome, ConfigHandle, ConfigScheduler, CounterId, GaugeId, HistogramId, Level,
};
pub use envoy::{Body, HeaderMap, StreamHandle};
pub use module::{
    new_config, BodyStatus, Filter, FilterConfig, HeadersStatus, LocalReplyStatus, TrailersStatus,
};
