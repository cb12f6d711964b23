//! The do-nothing dynamic module of `./scripts/bench` (`libtollgate_bench_native_floor.so`):
//! request headers are held (`StopIteration`) and the body buffered (`StopIterationAndBuffer`)
//! until the request ends, then everything continues; responses pass untouched. No Envoy
//! callback is made. Every hook Envoy 1.40 requires is exported with its C shape; pointers are
//! opaque and never dereferenced (the config and filter "objects" are a static byte's address).

use std::ffi::{c_char, c_void, CStr};

/// Envoy's borrowed buffer (`{ptr, len}`), passed by value to `config_new`.
#[repr(C)]
pub struct EnvoyBuffer {
    ptr: *const c_char,
    len: usize,
}

static ABI_VERSION: &CStr = c"v0.2.0";
static OBJECT: u8 = 0;

fn object() -> *const c_void {
    std::ptr::addr_of!(OBJECT).cast()
}

const CONTINUE: u32 = 0;
const STOP_ITERATION: u32 = 1;
const STOP_ITERATION_AND_BUFFER: u32 = 1;

/// The module's ABI version (null would refuse the module).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    ABI_VERSION.as_ptr()
}

/// Any config is accepted.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    _config_envoy: *mut c_void,
    _name: EnvoyBuffer,
    _config: EnvoyBuffer,
) -> *const c_void {
    object()
}

/// Nothing to free.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(_config: *const c_void) {}

/// One filter per stream (the same static object: it holds no state).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    _config: *const c_void,
    _filter_envoy: *mut c_void,
) -> *const c_void {
    object()
}

/// Nothing to free.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(_filter: *const c_void) {}

/// Holds the headers until the body has ended (headers-only requests go at once).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    _filter_envoy: *mut c_void,
    _filter: *const c_void,
    end_of_stream: bool,
) -> u32 {
    if end_of_stream {
        CONTINUE
    } else {
        STOP_ITERATION
    }
}

/// Buffers the body until its end, then lets headers and body go.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _filter_envoy: *mut c_void,
    _filter: *const c_void,
    end_of_stream: bool,
) -> u32 {
    if end_of_stream {
        CONTINUE
    } else {
        STOP_ITERATION_AND_BUFFER
    }
}

/// The other stream hooks continue.
macro_rules! continue_hooks {
    ($($name:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {$(
        #[no_mangle]
        pub extern "C" fn $name($($arg: $ty),*) -> u32 {
            CONTINUE
        }
    )*};
}

continue_hooks! {
    envoy_dynamic_module_on_http_filter_request_trailers(_e: *mut c_void, _f: *const c_void),
    envoy_dynamic_module_on_http_filter_response_headers(_e: *mut c_void, _f: *const c_void, _end: bool),
    envoy_dynamic_module_on_http_filter_response_body(_e: *mut c_void, _f: *const c_void, _end: bool),
    envoy_dynamic_module_on_http_filter_response_trailers(_e: *mut c_void, _f: *const c_void),
}

/// Hooks that do nothing here (Envoy requires them to exist).
macro_rules! empty_hooks {
    ($($name:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {$(
        #[no_mangle]
        pub extern "C" fn $name($($arg: $ty),*) {}
    )*};
}

empty_hooks! {
    envoy_dynamic_module_on_http_filter_stream_complete(_e: *mut c_void, _f: *const c_void),
    envoy_dynamic_module_on_http_filter_http_callout_done(_e: *mut c_void, _f: *const c_void, _id: u64, _r: u32, _h: *mut c_void, _hs: usize, _b: *mut c_void, _bs: usize),
    envoy_dynamic_module_on_http_filter_http_stream_headers(_e: *mut c_void, _f: *const c_void, _id: u64, _h: *mut c_void, _hs: usize, _end: bool),
    envoy_dynamic_module_on_http_filter_http_stream_data(_e: *mut c_void, _f: *const c_void, _id: u64, _d: *const c_void, _n: usize, _end: bool),
    envoy_dynamic_module_on_http_filter_http_stream_trailers(_e: *mut c_void, _f: *const c_void, _id: u64, _t: *mut c_void, _n: usize),
    envoy_dynamic_module_on_http_filter_http_stream_complete(_e: *mut c_void, _f: *const c_void, _id: u64),
    envoy_dynamic_module_on_http_filter_http_stream_reset(_e: *mut c_void, _f: *const c_void, _id: u64, _reason: u32),
    envoy_dynamic_module_on_http_filter_scheduled(_e: *mut c_void, _f: *const c_void, _id: u64),
    envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(_e: *mut c_void, _f: *const c_void),
    envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(_e: *mut c_void, _f: *const c_void),
}
