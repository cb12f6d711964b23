//! The root context: compiles each plugin-config version once and hands it to streams.
//!
//! Envoy creates a new root context for every accepted config version; streams hold an `Arc` of
//! the version they started with, so an in-flight request finishes on its own version and
//! nothing it uses is freed before it ends.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::core::compile;
use crate::core::exchange::spend_senders::SpendSenders;
use crate::core::exchange::version::{
    accounting_token, rejection_message, Version, EMPTY_CONFIG_MESSAGE, NO_ACCOUNTING_MESSAGE,
};
use crate::wasm::heap;
use crate::wasm::host::{self, Buffer, Level, Map};
use crate::wasm::http::{TollgateHttp, VmStream};
use crate::wasm::metrics;
use crate::wasm::spend_sink::{vm_sink, RootCallouts};

/// One root context (one config version on one VM).
pub struct TollgateRoot {
    /// Envoy's context id of this root.
    id: u32,
    version: Arc<Version>,
    /// State of the VM's random generator used for weighted routing.
    random: Rc<Cell<u64>>,
    /// The VM's spend senders.
    sink: Rc<RefCell<SpendSenders>>,
    /// `on_done` returned false: call `done()` once this root's last call is answered.
    done_pending: bool,
}

impl TollgateRoot {
    /// A root with no policy yet.
    pub fn new(id: u32) -> Self {
        TollgateRoot {
            id,
            version: Arc::new(Version::default()),
            random: Rc::new(Cell::new(host::now_nanos() | 1)),
            sink: vm_sink(),
            done_pending: false,
        }
    }
}

fn now_ms() -> u64 {
    host::now_nanos() / 1_000_000
}

fn vm_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Context for TollgateRoot {
    fn on_done(&mut self) -> bool {
        metrics::flush();
        if let Some(version) = self.version.label() {
            metrics::config_retired(version);
        }
        let finished = self.sink.borrow_mut().retire(
            &mut RootCallouts(self.version.policy.as_deref()),
            self.id,
            now_ms(),
        );
        self.done_pending = !finished;
        finished
    }

    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let status = if num_headers == 0 {
            0
        } else {
            host::headers(Map::HttpCallResponse)
                .first(b":status")
                .and_then(|value| std::str::from_utf8(value).ok()?.parse::<u16>().ok())
                .unwrap_or(0)
        };
        let body = host::buffer(Buffer::HttpCallResponseBody, body_size).unwrap_or_default();
        let finished = self.sink.borrow_mut().on_response(
            &mut RootCallouts(self.version.policy.as_deref()),
            u64::from(token_id),
            status,
            &body,
            now_ms(),
        );
        if finished && self.done_pending {
            self.done_pending = false;
            host::done();
        }
    }
}

impl RootContext for TollgateRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        host::log(
            Level::Info,
            &format!("tollgate {} starting", crate::BUILD_INFO),
        );
        true
    }

    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let Some(document) = host::buffer(Buffer::PluginConfiguration, plugin_configuration_size)
        else {
            host::log(
                Level::Error,
                "tollgate: could not read the plugin configuration",
            );
            metrics::config_rejected();
            return false;
        };
        if document.iter().all(u8::is_ascii_whitespace) {
            host::log(Level::Warn, EMPTY_CONFIG_MESSAGE);
            self.sink.borrow_mut().adopt(
                &mut RootCallouts(self.version.policy.as_deref()),
                self.id,
                None,
                None,
                now_ms(),
            );
            return true;
        }
        let started = host::now_nanos();
        let heap_before = heap::live_bytes();
        let policy = match compile(&document) {
            Ok(policy) => policy,
            Err(errors) => {
                host::log(Level::Error, &rejection_message(&errors));
                metrics::config_rejected();
                return false;
            }
        };
        let micros = host::now_nanos().saturating_sub(started) / 1_000;
        let policy_bytes = heap::live_bytes().saturating_sub(heap_before);
        host::log(
            Level::Info,
            &format!(
                "tollgate: accepted {} ({} config bytes compiled in {}.{:03} ms; \
                 policy {} MiB, heap in use {} MiB, VM linear memory {} MiB)",
                policy.summary(),
                document.len(),
                micros / 1_000,
                micros % 1_000,
                heap::mib(policy_bytes),
                heap::mib(heap::live_bytes()),
                heap::mib(heap::linear_memory_bytes()),
            ),
        );
        metrics::config_accepted(&policy.version);
        let token = accounting_token(policy.accounting.as_ref(), &vm_env).unwrap_or_else(|line| {
            host::log(Level::Error, &line);
            None
        });
        {
            let mut sink = self.sink.borrow_mut();
            let accounting = policy.accounting.as_ref();
            sink.adopt(
                &mut RootCallouts(self.version.policy.as_deref()),
                self.id,
                accounting,
                token,
                now_ms(),
            );
        }
        // The tick also hands summed metrics to Envoy.
        let period = match self.sink.borrow().tick_period_ms() {
            0 => 1000,
            ms => ms,
        };
        if policy.accounting.is_none() {
            host::log(Level::Info, NO_ACCOUNTING_MESSAGE);
        }
        let (version, warnings) = Version::new(policy, &vm_env, host::debug_enabled());
        for line in warnings {
            host::log(Level::Warn, &line);
        }
        self.version = Arc::new(version);
        if !host::set_tick_period(period) {
            host::log(Level::Error, "tollgate: the host refused a tick period");
        }
        true
    }

    fn on_tick(&mut self) {
        self.sink.borrow_mut().tick(
            &mut RootCallouts(self.version.policy.as_deref()),
            now_ms(),
            self.id,
        );
        metrics::flush();
        crate::wasm::timing::report();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let host = VmStream::new(Rc::clone(&self.random), Rc::clone(&self.sink));
        Some(Box::new(TollgateHttp::new(Arc::clone(&self.version), host)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
