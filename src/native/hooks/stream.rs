//! The per-stream event hooks: each runs the stream's filter through [`super::on_filter`].
#![allow(clippy::missing_safety_doc)] // The safety contract of every export is Envoy's ABI, stated on each.

use super::super::abi::{
    CalloutResult, EnvoyBuffer, EnvoyHttpHeader, FilterEnvoyPtr, FilterModulePtr,
};
use super::super::buffers::envoy_bytes;
use super::super::config::CalloutOutcome;
use super::super::module::{BodyStatus, HeadersStatus, LocalReplyStatus, TrailersStatus};
use super::{on_filter, request_fallbacks, response_fallbacks, Fallbacks};

/// Request headers. Safety: Envoy's pointers for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy: FilterEnvoyPtr,
    filter_module: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: forwarded from Envoy.
    unsafe {
        on_filter(
            "request_headers",
            filter_envoy,
            filter_module,
            request_fallbacks(),
            |f, e| HeadersStatus::raw(f.on_request_headers(e, end_of_stream)),
        )
    }
}

/// A request chunk. Safety: Envoy's pointers for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    filter_envoy: FilterEnvoyPtr,
    filter_module: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: forwarded from Envoy.
    unsafe {
        on_filter(
            "request_body",
            filter_envoy,
            filter_module,
            request_fallbacks(),
            |f, e| BodyStatus::raw(f.on_request_body(e, end_of_stream)),
        )
    }
}

/// Request trailers. Safety: Envoy's pointers for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    filter_envoy: FilterEnvoyPtr,
    filter_module: FilterModulePtr,
) -> u32 {
    // SAFETY: forwarded from Envoy.
    unsafe {
        on_filter(
            "request_trailers",
            filter_envoy,
            filter_module,
            request_fallbacks(),
            |f, e| TrailersStatus::raw(f.on_request_trailers(e)),
        )
    }
}

/// Response headers. Safety: Envoy's pointers for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter_envoy: FilterEnvoyPtr,
    filter_module: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: forwarded from Envoy.
    unsafe {
        on_filter(
            "response_headers",
            filter_envoy,
            filter_module,
            response_fallbacks(),
            |f, e| HeadersStatus::raw(f.on_response_headers(e, end_of_stream)),
        )
    }
}

/// A response chunk. Safety: Envoy's pointers for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    filter_envoy: FilterEnvoyPtr,
    filter_module: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: forwarded from Envoy.
    unsafe {
        on_filter(
            "response_body",
            filter_envoy,
            filter_module,
            response_fallbacks(),
            |f, e| BodyStatus::raw(f.on_response_body(e, end_of_stream)),
        )
    }
}

/// Response trailers. Safety: Envoy's pointers for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    filter_envoy: FilterEnvoyPtr,
    filter_module: FilterModulePtr,
) -> u32 {
    // SAFETY: forwarded from Envoy.
    unsafe {
        on_filter(
            "response_trailers",
            filter_envoy,
            filter_module,
            response_fallbacks(),
            |f, e| TrailersStatus::raw(f.on_response_trailers(e)),
        )
    }
}

/// The stream ended (before access logs and `filter_destroy`). Safety: Envoy's pointers.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    filter_envoy: FilterEnvoyPtr,
    filter_module: FilterModulePtr,
) {
    let fallbacks = Fallbacks {
        reentered: (),
        poisoned: (),
        panicked: |_| (),
    };
    // SAFETY: forwarded from Envoy.
    unsafe {
        on_filter(
            "stream_complete",
            filter_envoy,
            filter_module,
            fallbacks,
            |f, e| f.on_stream_complete(e),
        )
    }
}

/// A local reply is being sent on this stream. Safety: Envoy's pointers; `details` for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
    filter_envoy: FilterEnvoyPtr,
    filter_module: FilterModulePtr,
    response_code: u32,
    details: EnvoyBuffer,
    reset_imminent: bool,
) -> u32 {
    // SAFETY: Envoy's buffer for this hook.
    let details = unsafe { envoy_bytes(details) };
    // SAFETY: forwarded from Envoy.
    unsafe {
        on_filter(
            "local_reply",
            filter_envoy,
            filter_module,
            response_fallbacks(),
            |f, e| {
                LocalReplyStatus::raw(f.on_local_reply(e, response_code, details, reset_imminent))
            },
        )
    }
}

/// A stream-level callout ended. Safety: Envoy's pointers and arrays for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    filter_envoy: FilterEnvoyPtr,
    filter_module: FilterModulePtr,
    callout_id: u64,
    result: CalloutResult,
    headers: *mut EnvoyHttpHeader,
    headers_size: usize,
    body: *mut EnvoyBuffer,
    body_size: usize,
) {
    // SAFETY: Envoy's arrays for this hook.
    let outcome =
        unsafe { CalloutOutcome::from_raw(result, headers, headers_size, body, body_size) };
    let fallbacks = Fallbacks {
        reentered: (),
        poisoned: (),
        panicked: |_| (),
    };
    // SAFETY: forwarded from Envoy.
    unsafe {
        on_filter(
            "http_callout_done",
            filter_envoy,
            filter_module,
            fallbacks,
            |f, e| f.on_http_callout_done(e, callout_id, outcome),
        )
    }
}

/// An event posted to this stream's worker. Safety: Envoy's pointers for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    filter_envoy: FilterEnvoyPtr,
    filter_module: FilterModulePtr,
    event_id: u64,
) {
    let fallbacks = Fallbacks {
        reentered: (),
        poisoned: (),
        panicked: |_| (),
    };
    // SAFETY: forwarded from Envoy.
    unsafe {
        on_filter(
            "scheduled",
            filter_envoy,
            filter_module,
            fallbacks,
            |f, e| f.on_scheduled(e, event_id),
        )
    }
}
