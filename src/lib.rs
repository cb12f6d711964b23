//! Tollgate: an LLM-gateway policy filter for Envoy, one pure core and two adapters.
//!
//! - [`core`] (`src/core/`), the pure core. It compiles one plugin-config version into an
//!   immutable, indexed [`core::Policy`] and answers every request with plain functions of
//!   `(policy, request facts, spend, now)`. It never names an Envoy or proxy-wasm type, does no
//!   I/O and reads no clock, so it is tested natively and on wasm32.
//! - `wasm` (`src/wasm/`, only on `wasm32-wasip1`), the proxy-wasm adapter: the portable form
//!   (static config, ECDS, Istio).
//! - `native` (`src/native/`, host target with the `native` feature), the Envoy dynamic-module
//!   adapter: the same decisions as a native shared library, no VM in between.
//!
//! Each adapter only gathers facts from Envoy, calls the core and applies its answer. The native
//! `tollgate` command (validate, explain, import-litellm, accounting server) is built from the
//! same core.

pub mod core;

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod wasm;

/// The Envoy dynamic-module adapter (host `cdylib`, feature `native`); see its module docs.
#[cfg(all(feature = "native", not(target_arch = "wasm32")))]
pub mod native;

/// The crate version and git revision baked in at build time, logged when a VM starts.
pub const BUILD_INFO: &str = concat!(env!("CARGO_PKG_VERSION"), "+", env!("TOLLGATE_GIT_REV"));
