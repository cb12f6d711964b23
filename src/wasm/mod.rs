//! The proxy-wasm adapter: gathers facts from Envoy, calls [`crate::core`], applies the answer.
//!
//! `root` owns one config version (an `Rc<Policy>`) per root context; `http` handles one stream
//! on the version it started with; `spend_sink` is the VM's spend outbox, shared by its roots;
//! `host` is the only place hostcalls are made.

mod heap;
mod host;
mod http;
mod ledgers;
mod metrics;
mod root;
mod spend_sink;

#[global_allocator]
static ALLOCATOR: heap::CountingAllocator = heap::CountingAllocator;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Trace);
    proxy_wasm::set_root_context(|id| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::TollgateRoot::new(id))
    });
}}
