//! The root context: compiles each plugin-config version once and hands it to streams.
//!
//! Envoy creates a new root context for every accepted config version; streams hold an `Rc` of
//! the policy they started with, so an in-flight request finishes on its own version and nothing
//! it uses is freed before it ends.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use hashbrown::HashMap;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::core::affinity::mark::MIN_AFFINITY_SECRET_BYTES;
use crate::core::config::index::Accounting;
use crate::core::{compile, Policy};
use crate::wasm::heap;
use crate::wasm::host::{self, Buffer, Level, Map};
use crate::wasm::http::TollgateHttp;
use crate::wasm::metrics;
use crate::wasm::spend_sink::{vm_sink, SpendSink};

/// What every stream of one config version shares.
pub struct Shared {
    /// The compiled policy; `None` when the configuration was empty (fail closed with 503).
    pub policy: Option<Rc<Policy>>,
    /// Upstream credentials read from the VM environment, by variable name.
    pub credentials: HashMap<String, String>,
    /// State of the per-VM random generator used for weighted routing.
    pub random: Cell<u64>,
    /// Whether per-request debug lines are wanted (formatting them is not free).
    pub debug: bool,
    /// The VM's spend events, on their way to the accounting cluster.
    pub sink: Rc<RefCell<SpendSink>>,
}

impl Shared {
    /// Next pseudo-random number (xorshift64*); routing only needs a fair spread.
    pub fn next_random(&self) -> u64 {
        let mut x = self.random.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.random.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// One root context (one config version on one VM).
pub struct TollgateRoot {
    /// Envoy's context id of this root.
    id: u32,
    shared: Rc<Shared>,
    /// `on_done` returned false: call `done()` once this root's last call is answered.
    done_pending: bool,
}

impl TollgateRoot {
    /// A root with no policy yet.
    pub fn new(id: u32) -> Self {
        TollgateRoot {
            id,
            shared: Rc::new(Shared {
                policy: None,
                credentials: HashMap::new(),
                random: Cell::new(host::now_nanos() | 1),
                debug: false,
                sink: vm_sink(),
            }),
            done_pending: false,
        }
    }
}

fn now_ms() -> u64 {
    host::now_nanos() / 1_000_000
}

impl Context for TollgateRoot {
    fn on_done(&mut self) -> bool {
        metrics::flush();
        if let Some(policy) = &self.shared.policy {
            metrics::config_retired(&policy.version);
        }
        let finished = self.shared.sink.borrow_mut().retire(self.id, now_ms());
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
                .iter()
                .find(|(name, _)| *name == b":status")
                .and_then(|(_, value)| std::str::from_utf8(value).ok()?.parse::<u16>().ok())
                .unwrap_or(0)
        };
        let body = host::buffer(Buffer::HttpCallResponseBody, body_size).unwrap_or_default();
        let finished = self
            .shared
            .sink
            .borrow_mut()
            .on_response(token_id, status, &body, now_ms());
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
            host::log(
                Level::Warn,
                "tollgate: empty configuration; every request is refused with 503 \
                 policy_unavailable until a policy version is delivered",
            );
            self.shared
                .sink
                .borrow_mut()
                .adopt(self.id, None, None, now_ms());
            return true;
        }
        let started = host::now_nanos();
        let heap_before = heap::live_bytes();
        match compile(&document) {
            Ok(policy) => {
                let micros = host::now_nanos().saturating_sub(started) / 1_000;
                let policy_bytes = heap::live_bytes().saturating_sub(heap_before);
                let credentials = read_credentials(&policy);
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
                let random = self.shared.random.get();
                let sink = vm_sink();
                let token = accounting_token(policy.accounting.as_ref());
                sink.borrow_mut()
                    .adopt(self.id, policy.accounting.as_ref(), token, now_ms());
                // The tick also hands summed metrics to Envoy.
                let period = match sink.borrow().tick_period_ms() {
                    0 => 1000,
                    ms => ms,
                };
                if policy.accounting.is_none() {
                    host::log(
                        Level::Info,
                        "tollgate: no accounting cluster configured; spend is counted only \
                         inside this Envoy process",
                    );
                }
                self.shared = Rc::new(Shared {
                    policy: Some(Rc::new(policy)),
                    credentials,
                    random: Cell::new(random),
                    debug: host::debug_enabled(),
                    sink,
                });
                if !host::set_tick_period(period) {
                    host::log(Level::Error, "tollgate: the host refused a tick period");
                }
                true
            }
            Err(errors) => {
                let mut message = format!(
                    "tollgate: rejected config version ({} error{}); the previous version keeps serving:",
                    errors.0.len(),
                    if errors.0.len() == 1 { "" } else { "s" }
                );
                for error in &errors.0 {
                    message.push_str("\n  ");
                    message.push_str(&error.to_string());
                }
                host::log(Level::Error, &message);
                metrics::config_rejected();
                false
            }
        }
    }

    fn on_tick(&mut self) {
        self.shared.sink.borrow_mut().tick(now_ms(), self.id);
        metrics::flush();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(TollgateHttp::new(Rc::clone(&self.shared))))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Reads `accounting.token_env` from the VM environment once per version.
fn accounting_token(accounting: Option<&Accounting>) -> Option<String> {
    let name = accounting?.token_env.as_ref()?;
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Some(value),
        _ => {
            host::log(
                Level::Error,
                &format!(
                    "tollgate: environment variable {name} (accounting.token_env) is not set in \
                     the VM; spend batches are sent without a token and will be refused"
                ),
            );
            None
        }
    }
}

/// Reads each deployment's `api_key_env`, and the affinity secret, from the VM environment once
/// per version.
fn read_credentials(policy: &Policy) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let secret = &policy.affinity_secret_env;
    match std::env::var(secret) {
        Ok(value) if value.len() >= MIN_AFFINITY_SECRET_BYTES => {
            out.insert(secret.clone(), value);
        }
        _ => host::log(
            Level::Warn,
            &format!(
                "tollgate: environment variable {secret} (settings.affinity_secret_env) is not set \
                 in the VM or shorter than {MIN_AFFINITY_SECRET_BYTES} bytes; Responses answers \
                 are not marked and follow-ups get 503 affinity_secret_unavailable"
            ),
        ),
    }
    for deployment in &policy.deployments {
        let Some(name) = &deployment.credential_env else {
            continue;
        };
        if out.contains_key(name) {
            continue;
        }
        match std::env::var(name) {
            Ok(value) if !value.is_empty() => {
                out.insert(name.clone(), value);
            }
            _ => host::log(
                Level::Warn,
                &format!(
                    "tollgate: environment variable {name} (deployment {}) is not set in the VM; \
                     requests routed only to it get 503",
                    deployment.id
                ),
            ),
        }
    }
    out
}
