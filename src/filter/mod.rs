//! The proxy-wasm adapter: gathers facts from Envoy, calls [`crate::policy`], applies the answer.
//!
//! `root` owns one config version (an `Rc<Policy>`) per root context; `http` handles one stream
//! on the version it started with; `host` is the only place hostcalls are made.

mod host;
mod http;
mod ledgers;
mod metrics;
mod root;
mod spend_sink;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::TollgateRoot::new())
    });
}}
