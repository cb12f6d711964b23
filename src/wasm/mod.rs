//! The proxy-wasm adapter: gathers facts from Envoy, calls [`crate::core`], applies the answer.
//!
//! `root` owns one config version (an `Arc<Version>`) per root context; `http` drives the core's
//! exchange for one stream on the version it started with, over `VmStream`; `spend_sink` is the
//! VM's spend sender, shared by its roots; `ledgers` are shared-data CAS slots; `metrics` sums
//! counters between ticks; `timing` is the in-VM timing build; `host` is the only place
//! hostcalls are made.

mod heap;
mod host;
mod http;
mod ledgers;
mod metrics;
mod root;
mod spend_sink;
mod timing;

#[global_allocator]
static ALLOCATOR: heap::CountingAllocator = heap::CountingAllocator;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Trace);
    proxy_wasm::set_root_context(|id| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::TollgateRoot::new(id))
    });
}}
