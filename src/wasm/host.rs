//! The only file that calls proxy-wasm hostcalls, declared here with raw `u32` statuses.
//!
//! The SDK's hostcall wrappers `panic!` on any status they do not expect (for example a header
//! write after headers were forwarded), and a panic kills the worker's VM. Every function here
//! returns a plain value or `bool` instead, so no host answer can crash the filter.

use std::ops::Range;
use std::ptr::null_mut;

use crate::core::exchange::host::{HeaderBlock, HeaderMap, LogLevel};

const STATUS_OK: u32 = 0;

/// Header maps.
#[derive(Clone, Copy)]
#[repr(u32)]
pub enum Map {
    /// Request headers.
    Request = 0,
    /// Request trailers.
    RequestTrailers = 1,
    /// Response headers.
    Response = 2,
    /// Headers of a `dispatch_http_call` response.
    HttpCallResponse = 6,
}

impl From<HeaderMap> for Map {
    fn from(map: HeaderMap) -> Map {
        match map {
            HeaderMap::Request => Map::Request,
            HeaderMap::RequestTrailers => Map::RequestTrailers,
            HeaderMap::Response => Map::Response,
        }
    }
}

/// Buffers.
#[derive(Clone, Copy)]
#[repr(u32)]
pub enum Buffer {
    /// The request body (as buffered so far).
    RequestBody = 0,
    /// The response body chunk being processed.
    ResponseBody = 1,
    /// The body of a `dispatch_http_call` response.
    HttpCallResponseBody = 4,
    /// The plugin configuration.
    PluginConfiguration = 7,
}

/// Log levels.
#[derive(Clone, Copy)]
#[repr(u32)]
pub enum Level {
    /// Debug.
    Debug = 1,
    /// Info.
    Info = 2,
    /// Warn.
    Warn = 3,
    /// Error.
    Error = 4,
}

impl From<LogLevel> for Level {
    fn from(level: LogLevel) -> Level {
        match level {
            LogLevel::Debug => Level::Debug,
            LogLevel::Info => Level::Info,
            LogLevel::Warn => Level::Warn,
            LogLevel::Error => Level::Error,
        }
    }
}

#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, data: *const u8, size: usize) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        out: *mut *mut u8,
        out_size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_size: usize,
        out: *mut *mut u8,
        out_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path: *const u8,
        path_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_done() -> u32;
    fn proxy_get_current_time_nanoseconds(out: *mut u64) -> u32;
    fn proxy_get_log_level(out: *mut u32) -> u32;
    fn proxy_get_header_map_pairs(map: u32, out: *mut *mut u8, out_size: *mut usize) -> u32;
    fn proxy_replace_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_get_buffer_bytes(
        buffer: u32,
        start: usize,
        max_size: usize,
        out: *mut *mut u8,
        out_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer: u32,
        start: usize,
        size: usize,
        data: *const u8,
        data_size: usize,
    ) -> u32;
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_call_foreign_function(
        name: *const u8,
        name_size: usize,
        args: *const u8,
        args_size: usize,
        out: *mut *mut u8,
        out_size: *mut usize,
    ) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, out_id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
}

/// Takes ownership of a buffer the host allocated through `proxy_on_memory_allocate`.
///
/// # Safety
/// `data` must be null or a host-returned allocation of exactly `size` bytes.
unsafe fn take_host_bytes(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        Vec::new()
    } else {
        // SAFETY: the SDK's allocator hands the host a boxed slice of `size` bytes.
        unsafe { Vec::from_raw_parts(data, size, size) }
    }
}

/// Status of a host call that found nothing.
const STATUS_NOT_FOUND: u32 = 1;
/// Status of a shared-data write with a stale compare-and-swap token.
const STATUS_CAS_MISMATCH: u32 = 8;

/// Outcome of a compare-and-swap write to shared data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedWrite {
    /// Written.
    Written,
    /// Someone wrote in between: read again and retry.
    Conflict,
    /// The host refused.
    Failed,
}

/// Reads a shared-data value and its CAS token (`(empty, 0)` when absent; `None` on failure).
pub fn shared_data(key: &str) -> Option<(Vec<u8>, u32)> {
    let mut data = null_mut();
    let mut size = 0usize;
    let mut cas = 0u32;
    // SAFETY: pointer and length describe a live &str; the out slots are valid.
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match status {
        STATUS_OK => {
            // SAFETY: on success the host hands over an allocation of `size` bytes (or null).
            Some((unsafe { take_host_bytes(data, size) }, cas))
        }
        STATUS_NOT_FOUND => Some((Vec::new(), 0)),
        _ => None,
    }
}

/// Writes a shared-data value if its CAS token is still `cas` (0 writes unconditionally).
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> SharedWrite {
    // SAFETY: pointers and lengths describe live slices.
    let status =
        unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) };
    match status {
        STATUS_OK => SharedWrite::Written,
        STATUS_CAS_MISMATCH => SharedWrite::Conflict,
        _ => SharedWrite::Failed,
    }
}

/// Reads an Envoy attribute such as `["response", "code_details"]`.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    let encoded = path.join("\0");
    let mut data = null_mut();
    let mut size = 0usize;
    // SAFETY: pointer and length describe a live String; the out slots are valid.
    let status =
        unsafe { proxy_get_property(encoded.as_ptr(), encoded.len(), &mut data, &mut size) };
    // SAFETY: on success the host hands over an allocation of `size` bytes (or null).
    (status == STATUS_OK).then(|| unsafe { take_host_bytes(data, size) })
}

/// Stores filter state for access logs (`%FILTER_STATE(wasm.<name>:PLAIN)%`).
pub fn set_property(name: &str, value: &[u8]) -> bool {
    // SAFETY: pointers and lengths describe live slices.
    let status =
        unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) };
    status == STATUS_OK
}

/// Asks for `on_tick` every `millis` milliseconds (0 stops it).
pub fn set_tick_period(millis: u32) -> bool {
    // SAFETY: plain value call.
    unsafe { proxy_set_tick_period_milliseconds(millis) == STATUS_OK }
}

/// Tells the host a root context that returned false from `on_done` has finished.
pub fn done() -> bool {
    // SAFETY: plain call.
    unsafe { proxy_done() == STATUS_OK }
}

/// Sends an HTTP request to an Envoy cluster; the answer arrives in the root context's
/// `on_http_call_response` with the returned token.
pub fn dispatch(
    cluster: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout_ms: u64,
) -> Option<u32> {
    // The SDK's wrapper registers the token so that the response reaches this root context.
    proxy_wasm::hostcalls::dispatch_http_call(
        cluster,
        headers.to_vec(),
        Some(body),
        vec![],
        std::time::Duration::from_millis(timeout_ms),
    )
    .ok()
}

/// Writes a log line at `level`.
pub fn log(level: Level, message: &str) {
    // SAFETY: pointer and length describe a live &str.
    unsafe {
        proxy_log(level as u32, message.as_ptr(), message.len());
    }
}

/// Whether the host would print `Debug` lines (asked once per config version, not per request).
pub fn debug_enabled() -> bool {
    let mut level = 0u32;
    // SAFETY: `level` is a valid u32 slot.
    let status = unsafe { proxy_get_log_level(&mut level) };
    status == STATUS_OK && level <= Level::Debug as u32
}

/// Current wall-clock time in Unix nanoseconds (0 if the host refuses).
pub fn now_nanos() -> u64 {
    clock_nanos().unwrap_or(0)
}

/// Current wall-clock time in Unix nanoseconds, or `None` if the host refuses.
pub fn clock_nanos() -> Option<u64> {
    let mut out = 0u64;
    // SAFETY: `out` is a valid u64 slot.
    let status = unsafe { proxy_get_current_time_nanoseconds(&mut out) };
    (status == STATUS_OK && out > 0).then_some(out)
}

/// Every header of a map in one hostcall (none if the host refuses).
pub fn headers(map: Map) -> HeaderBlock {
    let mut data = null_mut();
    let mut size = 0usize;
    // SAFETY: out-params are valid slots.
    let status = unsafe { proxy_get_header_map_pairs(map as u32, &mut data, &mut size) };
    // SAFETY: on success the host returned an allocation of `size` bytes (or null).
    let bytes = unsafe { take_host_bytes(data, size) };
    if status != STATUS_OK {
        return HeaderBlock::default();
    }
    let spans = header_pair_spans(&bytes).unwrap_or_default();
    HeaderBlock::from_spans(bytes, spans)
}

/// Decodes the proxy-wasm header-map wire format (see [`serialize_headers`]) into the byte
/// ranges of each name and value; no copies.
fn header_pair_spans(bytes: &[u8]) -> Option<Vec<(Range<usize>, Range<usize>)>> {
    let u32_at = |at: usize| -> Option<usize> {
        let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(raw)).ok()
    };
    let count = u32_at(0)?;
    let mut at = count.checked_mul(8)?.checked_add(4)?;
    let mut out = Vec::with_capacity(count.min(1024));
    for i in 0..count {
        let size_at = i.checked_mul(8)?.checked_add(4)?;
        let (name_len, value_len) = (u32_at(size_at)?, u32_at(size_at.checked_add(4)?)?);
        let name_end = at.checked_add(name_len)?;
        let value_start = name_end.checked_add(1)?;
        let value_end = value_start.checked_add(value_len)?;
        bytes.get(at..value_end)?;
        out.push((at..name_end, value_start..value_end));
        at = value_end.checked_add(1)?;
    }
    Some(out)
}

/// Sets (replaces) a header; false if the host refused (e.g. headers already sent).
pub fn set_header(map: Map, name: &str, value: &str) -> bool {
    // SAFETY: pointers/lengths from &str values.
    unsafe {
        proxy_replace_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        ) == STATUS_OK
    }
}

/// Removes every value of a header given by its raw name.
pub fn remove_header_bytes(map: Map, name: &[u8]) -> bool {
    // SAFETY: pointer/length from a byte slice.
    unsafe { proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()) == STATUS_OK }
}

/// Reads `size` bytes of a buffer from the start; `None` if the host refused.
pub fn buffer(buffer: Buffer, size: usize) -> Option<Vec<u8>> {
    let mut data = null_mut();
    let mut out_size = 0usize;
    // SAFETY: out-params are valid slots.
    let status =
        unsafe { proxy_get_buffer_bytes(buffer as u32, 0, size, &mut data, &mut out_size) };
    // SAFETY: on success the host returned an allocation of `out_size` bytes (or null).
    let bytes = unsafe { take_host_bytes(data, out_size) };
    match status {
        STATUS_OK => Some(bytes),
        // NotFound: an empty buffer.
        1 => Some(Vec::new()),
        _ => None,
    }
}

/// Replaces the first `size` bytes of a buffer with `data`; false if the host refused.
pub fn replace_buffer(buffer: Buffer, size: usize, data: &[u8]) -> bool {
    // SAFETY: pointer/length from a slice.
    unsafe {
        proxy_set_buffer_bytes(buffer as u32, 0, size, data.as_ptr(), data.len()) == STATUS_OK
    }
}

/// Sends a local reply; `details` appears as `%RESPONSE_CODE_DETAILS%` in access logs.
pub fn send_response(status: u16, details: &str, headers: &[(&str, &str)], body: &[u8]) -> bool {
    let map = serialize_headers(headers);
    // SAFETY: pointers/lengths from live slices.
    unsafe {
        proxy_send_local_response(
            u32::from(status),
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            map.as_ptr(),
            map.len(),
            -1,
        ) == STATUS_OK
    }
}

/// Asks Envoy to re-pick the route after the routing header changed.
pub fn clear_route_cache() -> bool {
    let name = "clear_route_cache";
    let mut data = null_mut();
    let mut size = 0usize;
    // SAFETY: name from a &str; no arguments; out-params are valid slots.
    let status = unsafe {
        proxy_call_foreign_function(
            name.as_ptr(),
            name.len(),
            std::ptr::null(),
            0,
            &mut data,
            &mut size,
        )
    };
    // SAFETY: any returned allocation is freed here.
    drop(unsafe { take_host_bytes(data, size) });
    status == STATUS_OK
}

/// Metric kinds.
#[derive(Clone, Copy)]
#[repr(u32)]
pub enum MetricKind {
    /// A counter.
    Counter = 0,
    /// A gauge.
    Gauge = 1,
    /// A histogram (each recorded value is one sample).
    Histogram = 2,
}

/// Defines a metric; `None` if the host refused.
pub fn define_metric(kind: MetricKind, name: &str) -> Option<u32> {
    let mut id = 0u32;
    // SAFETY: name from a &str; `id` is a valid slot.
    let status = unsafe { proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) };
    (status == STATUS_OK).then_some(id)
}

/// Adds to a counter (ignored if the host refuses).
pub fn increment_metric(id: u32, by: i64) {
    // SAFETY: plain values.
    unsafe {
        proxy_increment_metric(id, by);
    }
}

/// Sets a gauge or records a histogram sample (ignored if the host refuses).
pub fn record_metric(id: u32, value: u64) {
    // SAFETY: plain values.
    unsafe {
        proxy_record_metric(id, value);
    }
}

/// proxy-wasm header-map wire format: count, then (key len, value len) pairs, then
/// NUL-terminated keys and values.
fn serialize_headers(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut size = 4;
    for (k, v) in headers {
        size += 8 + k.len() + v.len() + 2;
    }
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(headers.len() as u32).to_le_bytes());
    for (k, v) in headers {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}
