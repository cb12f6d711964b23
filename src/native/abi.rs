//! The C ABI of Envoy's dynamic modules (HTTP filter part), declared by hand for Envoy 1.40.
//!
//! Declarations follow `source/extensions/dynamic_modules/abi/abi.h` (the version that still says
//! `v0.1.0`; Envoy 1.40.0 itself reports `v0.2.0` and guarantees v0.1 callers keep working). Every
//! name below was checked against the symbol list of the project's Envoy binary. C enums are
//! `int`-sized: values Envoy hands to the module are read as plain `u32` newtypes (never as Rust
//! enums, whose unknown discriminants would be undefined behaviour).
//!
//! Ownership, as the header states it: a `ModuleBuffer` is memory of the module that Envoy reads
//! (or copies) before the callback returns; an `EnvoyBuffer` is memory of Envoy that the module may
//! read until the current event hook returns, or until it calls a setter on the same map or body.

use std::ffi::c_void;

/// Envoy's `DynamicModuleHttpFilterConfig`: valid from `config_new` until `config_destroy` returns.
pub type ConfigEnvoyPtr = *mut c_void;
/// The module's config object (a `Box` of [`super::hooks`]); owned by the module.
pub type ConfigModulePtr = *const c_void;
/// Envoy's `DynamicModuleHttpFilter` of one stream: valid from `filter_new` until `filter_destroy`.
pub type FilterEnvoyPtr = *mut c_void;
/// The module's per-stream object (a `Box` of [`super::hooks`]); owned by the module.
pub type FilterModulePtr = *const c_void;
/// A config scheduler: allocated by Envoy, deleted by the module (`config_scheduler_delete`).
pub type ConfigSchedulerPtr = *mut c_void;

/// Bytes owned by Envoy (`envoy_dynamic_module_type_envoy_buffer`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EnvoyBuffer {
    /// Start of the bytes; may be null (then `length` is meaningless and treated as 0).
    pub ptr: *const u8,
    /// Number of bytes.
    pub length: usize,
}

/// Bytes owned by the module (`envoy_dynamic_module_type_module_buffer`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ModuleBuffer {
    /// Start of the bytes; null means "no value" where a callback allows it (e.g. header removal).
    pub ptr: *const u8,
    /// Number of bytes.
    pub length: usize,
}

/// A header owned by the module (`envoy_dynamic_module_type_module_http_header`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ModuleHttpHeader {
    /// Header name bytes.
    pub key_ptr: *const u8,
    /// Header name length.
    pub key_length: usize,
    /// Header value bytes.
    pub value_ptr: *const u8,
    /// Header value length.
    pub value_length: usize,
}

/// A header owned by Envoy's header map (`envoy_dynamic_module_type_envoy_http_header`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EnvoyHttpHeader {
    /// Header name bytes.
    pub key_ptr: *const u8,
    /// Header name length.
    pub key_length: usize,
    /// Header value bytes.
    pub value_ptr: *const u8,
    /// Header value length.
    pub value_length: usize,
}

macro_rules! c_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $value:expr,)* }) => {
        $(#[$doc])*
        #[repr(transparent)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name(pub u32);
        impl $name {
            $($(#[$vdoc])* pub const $variant: Self = Self($value);)*
        }
    };
}

c_enum!(
    /// Which header map (`envoy_dynamic_module_type_http_header_type`).
    HeaderType {
        /// Request headers (available from `request_headers` on).
        REQUEST_HEADER = 0,
        /// Request trailers (only once `request_trailers` ran).
        REQUEST_TRAILER = 1,
        /// Response headers (available from `response_headers` on).
        RESPONSE_HEADER = 2,
        /// Response trailers (only once `response_trailers` ran).
        RESPONSE_TRAILER = 3,
    }
);

c_enum!(
    /// Which body buffer (`envoy_dynamic_module_type_http_body_type`).
    BodyType {
        /// The request chunk of the current `request_body` hook (only inside that hook).
        RECEIVED_REQUEST = 0,
        /// The request body buffered so far (`decodingBuffer()`), without the current chunk.
        BUFFERED_REQUEST = 1,
        /// The response chunk of the current `response_body` hook (only inside that hook).
        RECEIVED_RESPONSE = 2,
        /// The response body buffered so far (`encodingBuffer()`), without the current chunk.
        BUFFERED_RESPONSE = 3,
    }
);

c_enum!(
    /// Log levels (`envoy_dynamic_module_type_log_level`), logged under Envoy's `dynamic_modules` id.
    LogLevel {
        /// trace
        TRACE = 0,
        /// debug
        DEBUG = 1,
        /// info
        INFO = 2,
        /// warn
        WARN = 3,
        /// error
        ERROR = 4,
        /// critical
        CRITICAL = 5,
    }
);

c_enum!(
    /// Result of starting a callout (`envoy_dynamic_module_type_http_callout_init_result`).
    CalloutInitResult {
        /// Sent; the answer arrives in a `*_http_callout_done` hook.
        SUCCESS = 0,
        /// `:method`, `:path` or `host` is missing.
        MISSING_REQUIRED_HEADERS = 1,
        /// No such cluster (in this thread's cluster manager view).
        CLUSTER_NOT_FOUND = 2,
        /// The callout id is taken.
        DUPLICATE_CALLOUT_ID = 3,
        /// The request could not be created (e.g. no healthy host).
        CANNOT_CREATE_REQUEST = 4,
    }
);

c_enum!(
    /// Outcome of a finished callout (`envoy_dynamic_module_type_http_callout_result`).
    CalloutResult {
        /// An answer arrived (any HTTP status, including Envoy's own 503/504).
        SUCCESS = 0,
        /// The stream was reset; no headers or body.
        RESET = 1,
        /// The answer exceeded the buffer limit; no headers or body.
        EXCEED_RESPONSE_BUFFER_LIMIT = 2,
    }
);

c_enum!(
    /// Result of a metric call (`envoy_dynamic_module_type_metrics_result`).
    MetricsResult {
        /// Done.
        SUCCESS = 0,
        /// Unknown metric id.
        METRIC_NOT_FOUND = 1,
        /// Label count or values do not match the definition.
        INVALID_LABELS = 2,
        /// Definitions are frozen (only `config_new` may define metrics).
        FROZEN = 3,
    }
);

c_enum!(
    /// Attribute ids (`envoy_dynamic_module_type_attribute_id`), numbered as in the header; only
    /// the ones the adapter reads are named.
    AttributeId {
        /// `request.id` (string).
        REQUEST_ID = 9,
        /// `request.protocol` (string: `HTTP/1.1`, `HTTP/2`, ...).
        REQUEST_PROTOCOL = 10,
        /// `response.code` (int).
        RESPONSE_CODE = 15,
        /// `response.code_details` (string).
        RESPONSE_CODE_DETAILS = 16,
    }
);

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

    /// Defines a counter (only during `config_new`: definitions freeze afterwards). Envoy copies
    /// `name` and the label names; the id is written to `id_out`.
    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        id_out: *mut usize,
    ) -> MetricsResult;

    /// Defines a gauge (only during `config_new`).
    pub fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        id_out: *mut usize,
    ) -> MetricsResult;

    /// Defines a histogram (only during `config_new`).
    pub fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        id_out: *mut usize,
    ) -> MetricsResult;

    /// Adds `value` to a counter of the stream's config; label values must match the definition.
    pub fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: FilterEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;

    /// Sets a gauge of the stream's config.
    pub fn envoy_dynamic_module_callback_http_filter_set_gauge(
        filter: FilterEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;

    /// Raises a gauge of the stream's config.
    pub fn envoy_dynamic_module_callback_http_filter_increment_gauge(
        filter: FilterEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;

    /// Lowers a gauge of the stream's config.
    pub fn envoy_dynamic_module_callback_http_filter_decrement_gauge(
        filter: FilterEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;

    /// Records a histogram value of the stream's config.
    pub fn envoy_dynamic_module_callback_http_filter_record_histogram_value(
        filter: FilterEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;

    /// Adds to a counter from config context (no stream needed, e.g. in `config_scheduled`).
    pub fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: ConfigEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;

    /// Sets a gauge from config context.
    pub fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        config: ConfigEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;

    /// Records a histogram value from config context.
    pub fn envoy_dynamic_module_callback_http_filter_config_record_histogram_value(
        config: ConfigEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;

    /// Starts a one-shot HTTP callout owned by the config (not by a stream). Uses the calling
    /// thread's cluster view and async client, and the config's non-thread-safe callout table:
    /// call it on the main thread only (`config_new`, `config_scheduled`, `config_http_callout_done`).
    /// `headers` must hold `:method`, `:path` and `host`; Envoy copies headers and body. The id is
    /// written to `callout_id_out`; the answer comes to `on_http_filter_config_http_callout_done`.
    pub fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        config: ConfigEnvoyPtr,
        callout_id_out: *mut u64,
        cluster_name: ModuleBuffer,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_milliseconds: u64,
    ) -> CalloutInitResult;

    /// Creates a scheduler that posts events to the main thread for this config. The module owns
    /// the result and must pass it to `config_scheduler_delete` exactly once.
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: ConfigEnvoyPtr,
    ) -> ConfigSchedulerPtr;

    /// Posts `event_id` to the main thread, where `on_http_filter_config_scheduled` receives it.
    /// Safe from any thread (it is a dispatcher post).
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: ConfigSchedulerPtr,
        event_id: u64,
    );

    /// Frees a scheduler made by `config_scheduler_new`.
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
        scheduler: ConfigSchedulerPtr,
    );
}
