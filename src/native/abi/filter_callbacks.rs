//! Callbacks for logging and for one stream: headers, bodies, local replies, attributes.

use super::*;

extern "C" {
    /// Logs `message` at `level` under Envoy's `dynamic_modules` logger. Envoy copies the message.
    pub fn envoy_dynamic_module_callback_log(level: LogLevel, message: ModuleBuffer);

    /// Whether `level` is enabled for the `dynamic_modules` logger (cheap; call before formatting).
    pub fn envoy_dynamic_module_callback_log_enabled(level: LogLevel) -> bool;

    /// The `index`th value of header `key` in map `header_type`; stores the value count in
    /// `optional_size` (may be null). `result` is set to a null buffer when absent. The value is
    /// Envoy's and valid until the hook returns or a setter touches the map. Returns false when
    /// the map is not available in this phase.
    pub fn envoy_dynamic_module_callback_http_get_header(
        filter: FilterEnvoyPtr,
        header_type: HeaderType,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
        index: usize,
        optional_size: *mut usize,
    ) -> bool;

    /// Number of entries in the map (0 when the map is not available).
    pub fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: FilterEnvoyPtr,
        header_type: HeaderType,
    ) -> usize;

    /// Fills `result` (room for `get_headers_size` entries, supplied by the module) with the map's
    /// entries, which point into Envoy's map (valid until the hook returns or a setter is called).
    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter: FilterEnvoyPtr,
        header_type: HeaderType,
        result: *mut EnvoyHttpHeader,
    ) -> bool;

    /// Replaces every value of `key` with `value`; a null `value.ptr` removes the header. Envoy
    /// copies both buffers. False when the map is not available.
    pub fn envoy_dynamic_module_callback_http_set_header(
        filter: FilterEnvoyPtr,
        header_type: HeaderType,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    /// Adds one more value for `key` (existing values stay). Envoy copies both buffers.
    pub fn envoy_dynamic_module_callback_http_add_header(
        filter: FilterEnvoyPtr,
        header_type: HeaderType,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    /// Sends a local reply (`sendLocalReply`) with `status_code`, the extra `headers`, `body` and
    /// the response-code `details` (may be empty). Envoy copies everything before returning. The
    /// reply runs through the encoder filters, this module's response hooks included.
    pub fn envoy_dynamic_module_callback_http_send_response(
        filter: FilterEnvoyPtr,
        status_code: u32,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );

    /// Total bytes of the chosen body buffer (0 when absent).
    pub fn envoy_dynamic_module_callback_http_get_body_size(
        filter: FilterEnvoyPtr,
        body_type: BodyType,
    ) -> usize;

    /// Number of slices of the chosen body buffer (0 when absent).
    pub fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter: FilterEnvoyPtr,
        body_type: BodyType,
    ) -> usize;

    /// Fills `result` (room for `get_body_chunks_size` entries) with the buffer's slices, which
    /// are Envoy's (valid until the hook returns or the body is changed). False when absent.
    pub fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter: FilterEnvoyPtr,
        body_type: BodyType,
        result: *mut EnvoyBuffer,
    ) -> bool;

    /// Appends a copy of `data` to the chosen body buffer. False when the buffer is absent.
    pub fn envoy_dynamic_module_callback_http_append_body(
        filter: FilterEnvoyPtr,
        body_type: BodyType,
        data: ModuleBuffer,
    ) -> bool;

    /// Drains up to `number_of_bytes` from the front of the chosen body buffer.
    pub fn envoy_dynamic_module_callback_http_drain_body(
        filter: FilterEnvoyPtr,
        body_type: BodyType,
        number_of_bytes: usize,
    ) -> bool;

    /// True when the current request chunk *is* the buffer an earlier filter held (then the
    /// received and the buffered body are the same bytes and must not be added twice).
    pub fn envoy_dynamic_module_callback_http_received_buffered_request_body(
        filter: FilterEnvoyPtr,
    ) -> bool;

    /// As `received_buffered_request_body`, for the response.
    pub fn envoy_dynamic_module_callback_http_received_buffered_response_body(
        filter: FilterEnvoyPtr,
    ) -> bool;

    /// Clears the route cache so the route is chosen again (no-op in the wrong phase).
    pub fn envoy_dynamic_module_callback_http_clear_route_cache(filter: FilterEnvoyPtr);

    /// Resumes a request held by `StopIteration` (from a later event, e.g. a callout answer).
    pub fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: FilterEnvoyPtr);

    /// Resumes a response held by `StopIteration`.
    pub fn envoy_dynamic_module_callback_http_filter_continue_encoding(filter: FilterEnvoyPtr);

    /// Stores `value` as the stream's filter state `key` (a string accessor, readable by access
    /// logs as `%FILTER_STATE(key)%`). Envoy copies both. False if `key` exists read-only.
    pub fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
        filter: FilterEnvoyPtr,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    /// A string attribute; `result` points into Envoy memory valid until the hook returns.
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: FilterEnvoyPtr,
        attribute_id: AttributeId,
        result: *mut EnvoyBuffer,
    ) -> bool;

    /// An integer attribute, written to `result`.
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_int(
        filter: FilterEnvoyPtr,
        attribute_id: AttributeId,
        result: *mut u64,
    ) -> bool;

    /// The index of the worker thread running this stream (0-based).
    pub fn envoy_dynamic_module_callback_http_filter_get_worker_index(
        filter: FilterEnvoyPtr,
    ) -> u32;

}
