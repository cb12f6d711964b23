//! Safe wrappers over the filter-config callbacks: metrics, config callouts, the main-thread
//! scheduler, and Envoy's logger.
//!
//! A [`ConfigHandle`] is lent only to the config hooks that run on Envoy's main thread
//! (`config_new`, `config_scheduled`, `config_http_callout_done`): config callouts use the calling
//! thread's cluster view and a callout table that is not thread-safe. Workers reach the main
//! thread through a [`ConfigScheduler`], which is `Send + Sync`.

use super::abi::{
    self, CalloutInitResult, CalloutResult, ConfigEnvoyPtr, ConfigSchedulerPtr, LogLevel,
    MetricsResult,
};
use super::buffers::{envoy_bytes, envoy_header, module_buffer, module_header};

/// A counter defined by one config (ids are only meaningful for that config's streams).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterId(pub(crate) usize);
/// A gauge defined by one config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GaugeId(pub(crate) usize);
/// A histogram defined by one config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistogramId(pub(crate) usize);

type DefineMetric = unsafe extern "C" fn(
    ConfigEnvoyPtr,
    abi::ModuleBuffer,
    *mut abi::ModuleBuffer,
    usize,
    *mut usize,
) -> MetricsResult;

type UpdateMetric = unsafe extern "C" fn(
    ConfigEnvoyPtr,
    usize,
    *mut abi::ModuleBuffer,
    usize,
    u64,
) -> MetricsResult;

/// The Envoy side of one filter config, lent to a main-thread config hook.
pub struct ConfigHandle {
    raw: ConfigEnvoyPtr,
}

impl ConfigHandle {
    /// Wraps the config pointer of the current config hook (`None` when null).
    ///
    /// # Safety
    /// `raw` must be the `DynamicModuleHttpFilterConfig` pointer Envoy passed to the running
    /// main-thread hook, and the handle must not outlive that hook.
    pub(crate) unsafe fn from_raw(raw: ConfigEnvoyPtr) -> Option<Self> {
        (!raw.is_null()).then_some(ConfigHandle { raw })
    }

    /// Defines a metric with `labels` (Envoy tags; may be empty).
    fn define(&mut self, define: DefineMetric, name: &str, labels: &[&str]) -> Option<usize> {
        let mut id = 0usize;
        let mut labels: Vec<_> = labels.iter().map(|l| module_buffer(l.as_bytes())).collect();
        // SAFETY: the name and label names are lent for the call; `id` is a valid local.
        let result = unsafe {
            define(
                self.raw,
                module_buffer(name.as_bytes()),
                labels.as_mut_ptr(),
                labels.len(),
                &mut id,
            )
        };
        (result == MetricsResult::SUCCESS).then_some(id)
    }

    /// Changes metric `id` (with these label values, as many as it was defined with) by `value`.
    fn update(&mut self, update: UpdateMetric, id: usize, labels: &[&str], value: u64) -> bool {
        let mut labels: Vec<_> = labels.iter().map(|l| module_buffer(l.as_bytes())).collect();
        // SAFETY: the label values are lent for the call; `self.raw` is live for this hook.
        let result = unsafe { update(self.raw, id, labels.as_mut_ptr(), labels.len(), value) };
        result == MetricsResult::SUCCESS
    }

    /// Defines a counter. Works only inside `config_new` (Envoy freezes definitions afterwards).
    pub fn define_counter(&mut self, name: &str) -> Option<CounterId> {
        let define = abi::envoy_dynamic_module_callback_http_filter_config_define_counter;
        self.define(define, name, &[]).map(CounterId)
    }

    /// Defines a counter with one label (an Envoy tag); inside `config_new` only.
    pub fn define_labelled_counter(&mut self, name: &str, label: &str) -> Option<CounterId> {
        let define = abi::envoy_dynamic_module_callback_http_filter_config_define_counter;
        self.define(define, name, &[label]).map(CounterId)
    }

    /// Defines a gauge with one label; inside `config_new` only.
    pub fn define_labelled_gauge(&mut self, name: &str, label: &str) -> Option<GaugeId> {
        let define = abi::envoy_dynamic_module_callback_http_filter_config_define_gauge;
        self.define(define, name, &[label]).map(GaugeId)
    }

    /// Defines a histogram (inside `config_new` only).
    pub fn define_histogram(&mut self, name: &str) -> Option<HistogramId> {
        let define = abi::envoy_dynamic_module_callback_http_filter_config_define_histogram;
        self.define(define, name, &[]).map(HistogramId)
    }

    /// Defines a histogram with these labels (Envoy tags); inside `config_new` only.
    pub fn define_tagged_histogram(&mut self, name: &str, labels: &[&str]) -> Option<HistogramId> {
        let define = abi::envoy_dynamic_module_callback_http_filter_config_define_histogram;
        self.define(define, name, labels).map(HistogramId)
    }

    /// Defines a counter with these labels (Envoy tags); inside `config_new` only.
    pub fn define_tagged_counter(&mut self, name: &str, labels: &[&str]) -> Option<CounterId> {
        let define = abi::envoy_dynamic_module_callback_http_filter_config_define_counter;
        self.define(define, name, labels).map(CounterId)
    }

    /// Records a value of a tagged histogram (label values in its labels' order).
    pub fn record_tagged_histogram(
        &mut self,
        id: HistogramId,
        values: &[&str],
        value: u64,
    ) -> bool {
        let update = abi::envoy_dynamic_module_callback_http_filter_config_record_histogram_value;
        self.update(update, id.0, values, value)
    }

    /// Adds to a tagged counter (label values in its labels' order).
    pub fn increment_tagged_counter(&mut self, id: CounterId, values: &[&str], by: u64) -> bool {
        let update = abi::envoy_dynamic_module_callback_http_filter_config_increment_counter;
        self.update(update, id.0, values, by)
    }

    /// Adds to a counter without a stream.
    pub fn increment_counter(&mut self, id: CounterId, value: u64) -> bool {
        let update = abi::envoy_dynamic_module_callback_http_filter_config_increment_counter;
        self.update(update, id.0, &[], value)
    }

    /// Adds to a one-label counter without a stream.
    pub fn increment_labelled_counter(&mut self, id: CounterId, label: &str, value: u64) -> bool {
        let update = abi::envoy_dynamic_module_callback_http_filter_config_increment_counter;
        self.update(update, id.0, &[label], value)
    }

    /// Sets a one-label gauge without a stream.
    pub fn set_labelled_gauge(&mut self, id: GaugeId, label: &str, value: u64) -> bool {
        let update = abi::envoy_dynamic_module_callback_http_filter_config_set_gauge;
        self.update(update, id.0, &[label], value)
    }

    /// Records a histogram value without a stream.
    pub fn record_histogram(&mut self, id: HistogramId, value: u64) -> bool {
        let update = abi::envoy_dynamic_module_callback_http_filter_config_record_histogram_value;
        self.update(update, id.0, &[], value)
    }

    /// Sends a one-shot callout to `cluster` (`headers` must include `:method`, `:path`, `host`).
    /// The answer arrives in [`super::module::FilterConfig::on_http_callout_done`] with the
    /// returned id. Envoy copies headers and body.
    pub fn http_callout(
        &mut self,
        cluster: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, CalloutInitResult> {
        let mut raw: Vec<_> = headers
            .iter()
            .map(|(name, value)| module_header(name.as_bytes(), value))
            .collect();
        let mut id = 0u64;
        // SAFETY: everything is lent for the call; `id` is a valid local; main thread (see type doc).
        let result = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_http_callout(
                self.raw,
                &mut id,
                module_buffer(cluster.as_bytes()),
                raw.as_mut_ptr(),
                raw.len(),
                module_buffer(body),
                timeout_ms,
            )
        };
        if result == CalloutInitResult::SUCCESS {
            Ok(id)
        } else {
            Err(result)
        }
    }

    /// A scheduler that posts events from any thread to this config's main-thread hook.
    pub fn new_scheduler(&mut self) -> Option<ConfigScheduler> {
        // SAFETY: `self.raw` is live for this hook; the result is owned by the `ConfigScheduler`.
        let raw = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.raw)
        };
        (!raw.is_null()).then_some(ConfigScheduler { raw })
    }
}

/// Posts events to [`super::module::FilterConfig::on_scheduled`] on the main thread. Deleted
/// (exactly once) when dropped; keep it inside the config object so it dies with the config.
pub struct ConfigScheduler {
    raw: ConfigSchedulerPtr,
}

// SAFETY: `scheduler_commit` is a dispatcher post, documented as callable from any thread; the
// pointer itself is never dereferenced by the module; `delete` runs once, from `Drop`.
unsafe impl Send for ConfigScheduler {}
// SAFETY: see `Send`: `commit` only reads the pointer and Envoy's post is thread-safe.
unsafe impl Sync for ConfigScheduler {}

impl ConfigScheduler {
    /// Posts `event_id` to the main thread.
    pub fn commit(&self, event_id: u64) {
        // SAFETY: `self.raw` came from `scheduler_new` and is not yet deleted (we own it).
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
                self.raw, event_id,
            )
        }
    }
}

impl Drop for ConfigScheduler {
    fn drop(&mut self) {
        // SAFETY: deleted exactly once, here; nothing uses `raw` afterwards.
        unsafe { abi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.raw) }
    }
}

/// How a config callout ended, with the answer borrowed from Envoy for the hook's duration.
pub enum CalloutOutcome<'a> {
    /// An answer arrived (any status; Envoy's own 503/504 included).
    Answered {
        /// Response headers, `:status` among them.
        headers: Vec<(&'a [u8], &'a [u8])>,
        /// Body slices.
        body: Vec<&'a [u8]>,
    },
    /// Reset, or over the buffer limit: no answer.
    Failed(CalloutResult),
}

impl<'a> CalloutOutcome<'a> {
    /// Reads the hook's arguments.
    ///
    /// # Safety
    /// The arrays must be the ones Envoy passed to the running callout-done hook.
    pub(crate) unsafe fn from_raw(
        result: CalloutResult,
        headers: *const abi::EnvoyHttpHeader,
        headers_size: usize,
        body: *const abi::EnvoyBuffer,
        body_size: usize,
    ) -> Self {
        if result != CalloutResult::SUCCESS {
            return CalloutOutcome::Failed(result);
        }
        // SAFETY: Envoy's arrays and the bytes they point to live until the hook returns.
        unsafe {
            let headers = super::buffers::envoy_array(headers, headers_size);
            let body = super::buffers::envoy_array(body, body_size);
            CalloutOutcome::Answered {
                headers: headers.iter().map(|h| envoy_header(*h)).collect(),
                body: body.iter().map(|b| envoy_bytes(*b)).collect(),
            }
        }
    }

    /// The answer's `:status`, when it has one.
    pub fn status(&self) -> Option<u16> {
        match self {
            CalloutOutcome::Answered { headers, .. } => headers
                .iter()
                .find(|(name, _)| *name == b":status")
                .and_then(|(_, value)| std::str::from_utf8(value).ok()?.parse().ok()),
            CalloutOutcome::Failed(_) => None,
        }
    }

    /// The answer's body, copied (empty for a failure).
    pub fn body(&self) -> Vec<u8> {
        match self {
            CalloutOutcome::Answered { body, .. } => body.concat(),
            CalloutOutcome::Failed(_) => Vec::new(),
        }
    }
}

/// Envoy log levels for [`log`].
#[derive(Clone, Copy, Debug)]
pub enum Level {
    /// debug
    Debug,
    /// info
    Info,
    /// warn
    Warn,
    /// error
    Error,
    /// critical
    Critical,
}

impl Level {
    fn raw(self) -> LogLevel {
        match self {
            Level::Debug => LogLevel::DEBUG,
            Level::Info => LogLevel::INFO,
            Level::Warn => LogLevel::WARN,
            Level::Error => LogLevel::ERROR,
            Level::Critical => LogLevel::CRITICAL,
        }
    }
}

/// Whether Envoy's `dynamic_modules` logger prints `level` (asked once per config version).
pub fn log_enabled(level: Level) -> bool {
    // SAFETY: plain value call.
    unsafe { abi::envoy_dynamic_module_callback_log_enabled(level.raw()) }
}

/// Logs under Envoy's `dynamic_modules` logger; `message` is only built when the level is on.
/// Callable from any thread.
pub fn log(level: Level, message: impl FnOnce() -> String) {
    // SAFETY: plain value call.
    if !unsafe { abi::envoy_dynamic_module_callback_log_enabled(level.raw()) } {
        return;
    }
    let text = message();
    // SAFETY: the message is lent for the call; Envoy copies it.
    unsafe { abi::envoy_dynamic_module_callback_log(level.raw(), module_buffer(text.as_bytes())) }
}
