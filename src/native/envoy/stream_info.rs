//! [`StreamHandle`] readers of stream facts (attributes, worker) and writers of filter state and
//! metrics.

use super::super::abi::{self, AttributeId, MetricsResult};
use super::super::buffers::{empty_envoy_buffer, envoy_bytes, module_buffer};
use super::super::config::{CounterId, GaugeId, HistogramId};
use super::StreamHandle;

impl StreamHandle {
    /// Stores `value` as the stream's filter state `key` (read by access logs).
    pub fn set_filter_state(&mut self, key: &str, value: &[u8]) -> bool {
        // SAFETY: both buffers are lent for the call; Envoy copies them.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_filter_state_bytes(
                self.raw,
                module_buffer(key.as_bytes()),
                module_buffer(value),
            )
        }
    }

    /// A string attribute, borrowed from Envoy.
    pub fn attribute_string(&self, id: AttributeId) -> Option<&[u8]> {
        let mut value = empty_envoy_buffer();
        // SAFETY: the out-pointer is a valid local.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.raw, id, &mut value,
            )
        };
        // SAFETY: Envoy's bytes, valid while `&self` is borrowed (this hook).
        found.then(|| unsafe { envoy_bytes(value) })
    }

    /// An integer attribute.
    pub fn attribute_int(&self, id: AttributeId) -> Option<u64> {
        let mut value = 0u64;
        // SAFETY: the out-pointer is a valid local.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_int(
                self.raw, id, &mut value,
            )
        };
        found.then_some(value)
    }

    /// `response.code_details` (e.g. `via_upstream`, or the details of a local reply).
    pub fn response_code_details(&self) -> Option<String> {
        self.attribute_string(AttributeId::RESPONSE_CODE_DETAILS)
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
    }

    /// `request.protocol` (`HTTP/1.1`, `HTTP/2`, ...).
    pub fn protocol(&self) -> Option<&[u8]> {
        self.attribute_string(AttributeId::REQUEST_PROTOCOL)
    }

    /// The worker thread's index.
    pub fn worker_index(&self) -> u32 {
        // SAFETY: `self.raw` is live for this hook.
        unsafe { abi::envoy_dynamic_module_callback_http_filter_get_worker_index(self.raw) }
    }

    /// Adds `value` to a counter defined by this stream's config.
    pub fn increment_counter(&mut self, id: CounterId, value: u64) -> bool {
        // SAFETY: no labels (null, 0); `self.raw` is live.
        let result = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_increment_counter(
                self.raw,
                id.0,
                std::ptr::null_mut(),
                0,
                value,
            )
        };
        result == MetricsResult::SUCCESS
    }

    /// Adds `value` to a one-label counter defined by this stream's config.
    pub fn increment_labelled_counter(&mut self, id: CounterId, label: &str, value: u64) -> bool {
        let mut labels = [module_buffer(label.as_bytes())];
        // SAFETY: the one label value is lent for the call; `self.raw` is live.
        let result = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_increment_counter(
                self.raw,
                id.0,
                labels.as_mut_ptr(),
                labels.len(),
                value,
            )
        };
        result == MetricsResult::SUCCESS
    }

    /// Sets a gauge defined by this stream's config.
    pub fn set_gauge(&mut self, id: GaugeId, value: u64) -> bool {
        // SAFETY: no labels (null, 0); `self.raw` is live.
        let result = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_set_gauge(
                self.raw,
                id.0,
                std::ptr::null_mut(),
                0,
                value,
            )
        };
        result == MetricsResult::SUCCESS
    }

    /// Raises (`up`) or lowers a gauge defined by this stream's config by `value`.
    pub fn adjust_gauge(&mut self, id: GaugeId, up: bool, value: u64) -> bool {
        let adjust = if up {
            abi::envoy_dynamic_module_callback_http_filter_increment_gauge
        } else {
            abi::envoy_dynamic_module_callback_http_filter_decrement_gauge
        };
        // SAFETY: no labels (null, 0); `self.raw` is live.
        let result = unsafe { adjust(self.raw, id.0, std::ptr::null_mut(), 0, value) };
        result == MetricsResult::SUCCESS
    }

    /// Records `value` in a histogram defined by this stream's config.
    pub fn record_histogram(&mut self, id: HistogramId, value: u64) -> bool {
        // SAFETY: no labels (null, 0); `self.raw` is live.
        let result = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_record_histogram_value(
                self.raw,
                id.0,
                std::ptr::null_mut(),
                0,
                value,
            )
        };
        result == MetricsResult::SUCCESS
    }
}
