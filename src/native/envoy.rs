//! Safe wrappers over the per-stream callbacks: [`StreamHandle`] is what a filter hook gets.
//!
//! A handle exists only for the duration of one hook (the hooks make it from the raw pointer and
//! lend it out by `&mut`), so nothing can keep it past the point where Envoy's pointer is valid.
//! Readers borrow Envoy's memory (`&self`); every setter takes `&mut self`, so the compiler
//! enforces the ABI rule that borrowed headers and body slices die before the next change.
//! No method can panic: absent maps and failed calls read as empty, `None` or `false`.

use super::abi::{self, BodyType, FilterEnvoyPtr, HeaderType};
use super::buffers::{
    empty_envoy_buffer, empty_envoy_header, envoy_bytes, envoy_header, module_buffer,
    module_header, null_module_buffer,
};

/// The header maps of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderMap {
    /// Request headers.
    RequestHeaders,
    /// Request trailers (only once the request-trailers hook ran).
    RequestTrailers,
    /// Response headers.
    ResponseHeaders,
    /// Response trailers (only once the response-trailers hook ran).
    ResponseTrailers,
}

impl HeaderMap {
    fn raw(self) -> HeaderType {
        match self {
            HeaderMap::RequestHeaders => HeaderType::REQUEST_HEADER,
            HeaderMap::RequestTrailers => HeaderType::REQUEST_TRAILER,
            HeaderMap::ResponseHeaders => HeaderType::RESPONSE_HEADER,
            HeaderMap::ResponseTrailers => HeaderType::RESPONSE_TRAILER,
        }
    }
}

/// The body buffers of a stream (see [`BodyType`] for what each one holds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// The request chunk of the current request-body hook.
    ReceivedRequest,
    /// The request body held so far by `StopIterationAndBuffer`, without the current chunk.
    BufferedRequest,
    /// The response chunk of the current response-body hook.
    ReceivedResponse,
    /// The response body held so far, without the current chunk.
    BufferedResponse,
}

impl Body {
    fn raw(self) -> BodyType {
        match self {
            Body::ReceivedRequest => BodyType::RECEIVED_REQUEST,
            Body::BufferedRequest => BodyType::BUFFERED_REQUEST,
            Body::ReceivedResponse => BodyType::RECEIVED_RESPONSE,
            Body::BufferedResponse => BodyType::BUFFERED_RESPONSE,
        }
    }
}

/// One stream's Envoy side, lent to a filter for the duration of a hook.
pub struct StreamHandle {
    raw: FilterEnvoyPtr,
}

impl StreamHandle {
    /// Wraps the pointer Envoy passed to the current hook (`None` when null).
    ///
    /// # Safety
    /// `raw` must be the `DynamicModuleHttpFilter` pointer of the hook being run, and the handle
    /// must not outlive that hook.
    pub(crate) unsafe fn from_raw(raw: FilterEnvoyPtr) -> Option<Self> {
        (!raw.is_null()).then_some(StreamHandle { raw })
    }

    /// Every entry of `map`, in order, borrowed from Envoy (empty when the map is not available).
    pub fn headers(&self, map: HeaderMap) -> Vec<(&[u8], &[u8])> {
        // SAFETY: `self.raw` is live for this hook (see `from_raw`).
        let count = unsafe {
            abi::envoy_dynamic_module_callback_http_get_headers_size(self.raw, map.raw())
        };
        if count == 0 {
            return Vec::new();
        }
        let mut entries = vec![empty_envoy_header(); count];
        // SAFETY: `entries` has room for `count` headers, the size Envoy just reported.
        let filled = unsafe {
            abi::envoy_dynamic_module_callback_http_get_headers(
                self.raw,
                map.raw(),
                entries.as_mut_ptr(),
            )
        };
        if !filled {
            return Vec::new();
        }
        // SAFETY: the entries point into Envoy's map, unchanged while `&self` is borrowed.
        entries
            .into_iter()
            .map(|entry| unsafe { envoy_header(entry) })
            .collect()
    }

    /// The first value of header `name` (lower-case) in `map`.
    pub fn header(&self, map: HeaderMap, name: &str) -> Option<&[u8]> {
        self.header_at(map, name, 0).0
    }

    fn header_at(&self, map: HeaderMap, name: &str, index: usize) -> (Option<&[u8]>, usize) {
        let mut value = empty_envoy_buffer();
        let mut count = 0usize;
        // SAFETY: out-pointers are valid locals; the key is lent for the call.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_get_header(
                self.raw,
                map.raw(),
                module_buffer(name.as_bytes()),
                &mut value,
                index,
                &mut count,
            )
        };
        if !found || value.ptr.is_null() {
            return (None, count);
        }
        // SAFETY: Envoy's value, unchanged while `&self` is borrowed.
        (Some(unsafe { envoy_bytes(value) }), count)
    }

    /// Replaces every value of `name` in `map` with `value`; false when the map is not available.
    pub fn set_header(&mut self, map: HeaderMap, name: &str, value: &[u8]) -> bool {
        // SAFETY: both buffers are lent for the call; Envoy copies them.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                self.raw,
                map.raw(),
                module_buffer(name.as_bytes()),
                module_buffer(value),
            )
        }
    }

    /// Removes every value of `name` from `map` (a `set_header` with a null value).
    pub fn remove_header(&mut self, map: HeaderMap, name: &str) -> bool {
        // SAFETY: the key is lent for the call; the null value means "remove".
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                self.raw,
                map.raw(),
                module_buffer(name.as_bytes()),
                null_module_buffer(),
            )
        }
    }

    /// Total bytes in `body` (0 when absent).
    pub fn body_size(&self, body: Body) -> usize {
        // SAFETY: `self.raw` is live for this hook.
        unsafe { abi::envoy_dynamic_module_callback_http_get_body_size(self.raw, body.raw()) }
    }

    /// The slices of `body`, borrowed from Envoy; `None` when that buffer is not available now.
    pub fn body_chunks(&self, body: Body) -> Option<Vec<&[u8]>> {
        // SAFETY: `self.raw` is live for this hook.
        let count = unsafe {
            abi::envoy_dynamic_module_callback_http_get_body_chunks_size(self.raw, body.raw())
        };
        let mut slices = vec![empty_envoy_buffer(); count];
        // SAFETY: `slices` has room for the `count` slices Envoy just reported.
        let available = unsafe {
            abi::envoy_dynamic_module_callback_http_get_body_chunks(
                self.raw,
                body.raw(),
                slices.as_mut_ptr(),
            )
        };
        // SAFETY: the slices are Envoy's, unchanged while `&self` is borrowed.
        available.then(|| {
            slices
                .into_iter()
                .map(|slice| unsafe { envoy_bytes(slice) })
                .collect()
        })
    }

    /// The whole request body seen so far, copied: the held bytes plus the current chunk (unless
    /// the current chunk *is* the held buffer, handed on by an earlier filter). In the last
    /// request-body hook (`end_of_stream`) or in the request-trailers hook this is the complete
    /// body. `None` when neither buffer is available (e.g. in the request-headers hook).
    pub fn request_body(&self) -> Option<Vec<u8>> {
        let buffered = self.body_chunks(Body::BufferedRequest);
        // SAFETY: `self.raw` is live for this hook.
        let same = unsafe {
            abi::envoy_dynamic_module_callback_http_received_buffered_request_body(self.raw)
        };
        let received = if same {
            None
        } else {
            self.body_chunks(Body::ReceivedRequest)
        };
        if buffered.is_none() && received.is_none() {
            return None;
        }
        Some(
            buffered
                .into_iter()
                .chain(received)
                .flatten()
                .collect::<Vec<&[u8]>>()
                .concat(),
        )
    }

    /// Bytes of request body seen so far: the held bytes plus the current chunk (counted once
    /// when the chunk is the held buffer).
    pub fn request_body_size(&self) -> usize {
        let held = self.body_size(Body::BufferedRequest);
        // SAFETY: `self.raw` is live for this hook.
        let same = unsafe {
            abi::envoy_dynamic_module_callback_http_received_buffered_request_body(self.raw)
        };
        if same {
            held
        } else {
            held.saturating_add(self.body_size(Body::ReceivedRequest))
        }
    }

    /// Bytes of the current response chunk.
    pub fn response_chunk_size(&self) -> usize {
        self.body_size(Body::ReceivedResponse)
    }

    /// The response chunk of the current response-body hook, copied.
    pub fn response_chunk(&self) -> Option<Vec<u8>> {
        self.body_chunks(Body::ReceivedResponse)
            .map(|slices| slices.concat())
    }

    /// Drains up to `bytes` from the front of `body`.
    pub fn drain_body(&mut self, body: Body, bytes: usize) -> bool {
        // SAFETY: `self.raw` is live for this hook.
        unsafe { abi::envoy_dynamic_module_callback_http_drain_body(self.raw, body.raw(), bytes) }
    }

    /// Appends a copy of `data` to `body`.
    pub fn append_body(&mut self, body: Body, data: &[u8]) -> bool {
        // SAFETY: `data` is lent for the call; Envoy copies it.
        unsafe {
            abi::envoy_dynamic_module_callback_http_append_body(
                self.raw,
                body.raw(),
                module_buffer(data),
            )
        }
    }

    /// Makes `body` the whole request body: empties the held buffer and the current chunk, then
    /// puts `body` in the current chunk (or in the held buffer where no chunk is current, as in
    /// the trailers hook). Meant for the last request-body hook or the request-trailers hook.
    pub fn replace_request_body(&mut self, body: &[u8]) -> bool {
        let held = self.body_size(Body::BufferedRequest);
        let chunk = self.body_size(Body::ReceivedRequest);
        let held_ok = self.drain_body(Body::BufferedRequest, held);
        let chunk_ok = self.drain_body(Body::ReceivedRequest, chunk);
        if chunk_ok {
            self.append_body(Body::ReceivedRequest, body)
        } else {
            held_ok && self.append_body(Body::BufferedRequest, body)
        }
    }

    /// Replaces the current response chunk with `chunk` (inside the response-body hook).
    pub fn replace_response_chunk(&mut self, chunk: &[u8]) -> bool {
        let size = self.body_size(Body::ReceivedResponse);
        self.drain_body(Body::ReceivedResponse, size)
            && self.append_body(Body::ReceivedResponse, chunk)
    }

    /// Sends a local reply with `status`, extra `headers`, `body` and the response-code `details`
    /// (no whitespace). Envoy copies everything. Inside this call Envoy runs this filter's
    /// `local_reply` hook (answered `Continue` by the adapter); the filter's response hooks do
    /// not run for this reply.
    pub fn send_response(
        &mut self,
        status: u32,
        headers: &[(&str, &[u8])],
        body: &[u8],
        details: &str,
    ) {
        let mut raw: Vec<_> = headers
            .iter()
            .map(|(name, value)| module_header(name.as_bytes(), value))
            .collect();
        // SAFETY: headers, body and details are lent for the call; Envoy copies them.
        unsafe {
            abi::envoy_dynamic_module_callback_http_send_response(
                self.raw,
                status,
                raw.as_mut_ptr(),
                raw.len(),
                module_buffer(body),
                module_buffer(details.as_bytes()),
            )
        }
    }

    /// Clears the route cache (after changing a header the route matches on).
    pub fn clear_route_cache(&mut self) {
        // SAFETY: `self.raw` is live for this hook.
        unsafe { abi::envoy_dynamic_module_callback_http_clear_route_cache(self.raw) }
    }
}

mod stream_info;
