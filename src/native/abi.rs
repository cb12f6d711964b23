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
/// The module's config object (a `Box` made in `hooks`); owned by the module.
pub type ConfigModulePtr = *const c_void;
/// Envoy's `DynamicModuleHttpFilter` of one stream: valid from `filter_new` until `filter_destroy`.
pub type FilterEnvoyPtr = *mut c_void;
/// The module's per-stream object (a `Box` made in `hooks`); owned by the module.
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

mod config_callbacks;
mod filter_callbacks;
pub use config_callbacks::*;
pub use filter_callbacks::*;
