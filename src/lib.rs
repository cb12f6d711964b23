//! Tollgate: an LLM-gateway policy filter for Envoy, built on proxy-wasm.
//!
//! The crate has two halves with a hard boundary between them:
//! - [`policy`], the pure core. It compiles one plugin-config version into an immutable,
//!   indexed [`policy::Policy`] and answers every request with plain functions of
//!   `(policy, request facts, now)`. It never names a `proxy_wasm` type, does no I/O and reads
//!   no clock, so it is tested natively and on wasm32.
//! - `filter`, the proxy-wasm adapter (only on `wasm32-wasip1`). It gathers facts from Envoy,
//!   calls the core and applies the answer.
//!
//! The native `tollgate` command (validate, explain, hash-key) is built from the same core.

pub mod policy;

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod filter;

/// The Envoy dynamic-module adapter (host `cdylib`, feature `native`); see its module docs.
#[cfg(all(feature = "native", not(target_arch = "wasm32")))]
pub mod native;

/// The crate version and git revision baked in at build time, logged when a VM starts.
pub const BUILD_INFO: &str = concat!(env!("CARGO_PKG_VERSION"), "+", env!("TOLLGATE_GIT_REV"));
