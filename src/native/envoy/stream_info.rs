//! [`StreamHandle`] readers of stream facts (attributes) and the writer of filter state. Stats
//! are not written per stream: the adapter sums them and hands them over through the config.

use super::super::abi::{self, AttributeId};
use super::super::buffers::{empty_envoy_buffer, envoy_bytes, module_buffer};
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

    /// `response.code_details` (e.g. `via_upstream`, or the details of a local reply).
    pub fn response_code_details(&self) -> Option<String> {
        self.attribute_string(AttributeId::RESPONSE_CODE_DETAILS)
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
    }
}
