//! The `envoy_dynamic_module_on_*` exports Envoy looks up, with their exact C signatures.
//!
//! This is the only file that turns module pointers into Rust objects: `config_new` boxes a
//! [`ConfigBox`] and `config_destroy` frees it; `filter_new` boxes a [`FilterCell`] and
//! `filter_destroy` frees it. Envoy calls each destroy exactly once per pointer (it nulls its copy
//! after the call). Every hook body runs under [`catch`] or [`FilterCell::run`] (see `guard`).
//! Exported but unused by Tollgate: the streamed-callout hooks and the watermark hooks (Envoy
//! refuses a module without them). Not exported: per-route config and config-level streamed
//! callouts (optional; Tollgate uses neither).
#![allow(clippy::missing_safety_doc)] // The safety contract of every export is Envoy's ABI, stated on each.

use std::ffi::{c_char, CStr};
use std::ptr::null;

use super::abi::{
    CalloutResult, ConfigEnvoyPtr, ConfigModulePtr, EnvoyBuffer, EnvoyHttpHeader, FilterEnvoyPtr,
    FilterModulePtr,
};
use super::buffers::envoy_bytes;
use super::config::{CalloutOutcome, ConfigHandle};
use super::envoy::StreamHandle;
use super::guard::{catch, install_panic_hook, FilterCell, HookRun};
use super::module::{self, Filter, FilterConfig};

/// The ABI version of Envoy 1.40.0 (`Dynamic module ABI version v0.2.0 matched.`).
static ABI_VERSION: &CStr = c"v0.2.0";

/// The module's object behind a config pointer.
struct ConfigBox {
    config: Box<dyn FilterConfig>,
}

/// Loaded once per process (main thread). Returns the ABI version string; null refuses the module.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    install_panic_hook();
    ABI_VERSION.as_ptr()
}

/// A filter config arrived (main thread); null rejects it.
/// Safety: `config_envoy` lives until `config_destroy`; `name`/`config` until this returns.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: ConfigEnvoyPtr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> ConfigModulePtr {
    catch("config_new", null, || {
        // SAFETY: Envoy's pointer and buffers for this hook.
        let (handle, name, config) = unsafe {
            (
                ConfigHandle::from_raw(config_envoy),
                envoy_bytes(name),
                envoy_bytes(config),
            )
        };
        let Some(mut handle) = handle else {
            return null();
        };
        match module::new_config(&mut handle, name, config) {
            Some(config) => Box::into_raw(Box::new(ConfigBox { config })) as ConfigModulePtr,
            None => null(),
        }
    })
}

/// The config is gone from Envoy (after its last stream): free our object, exactly once.
/// Safety: `config_module` is a pointer `config_new` returned, not yet destroyed.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    config_module: ConfigModulePtr,
) {
    catch(
        "config_destroy",
        || (),
        || {
            if !config_module.is_null() {
                // SAFETY: made by `Box::into_raw` in `config_new`; Envoy destroys it once.
                drop(unsafe { Box::from_raw(config_module as *mut ConfigBox) });
            }
        },
    )
}

/// # Safety
/// `config_module` must come from `config_new` and be alive (it is, from any Envoy hook).
unsafe fn config_of<'a>(config_module: ConfigModulePtr) -> Option<&'a dyn FilterConfig> {
    // SAFETY: made by `config_new`, shared read-only across threads (`FilterConfig: Sync`).
    unsafe { (config_module as *const ConfigBox).as_ref() }.map(|boxed| boxed.config.as_ref())
}

/// A stream starts (worker thread); null leaves the stream without a filter (its hooks then fail closed).
/// Safety: `config_module` is alive; `filter_envoy` lives until `filter_destroy`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config_module: ConfigModulePtr,
    filter_envoy: FilterEnvoyPtr,
) -> FilterModulePtr {
    catch("filter_new", null, || {
        // SAFETY: pointers Envoy passed to this hook.
        let (config, envoy) = unsafe {
            (
                config_of(config_module),
                StreamHandle::from_raw(filter_envoy),
            )
        };
        let (Some(config), Some(mut envoy)) = (config, envoy) else {
            return null();
        };
        match config.new_filter(&mut envoy) {
            Some(filter) => Box::into_raw(Box::new(FilterCell::new(filter))) as FilterModulePtr,
            None => null(),
        }
    })
}

/// The stream's filter is gone: free it, exactly once.
/// Safety: `filter_module` is a pointer `filter_new` returned, not yet destroyed.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(
    filter_module: FilterModulePtr,
) {
    catch(
        "filter_destroy",
        || (),
        || {
            if !filter_module.is_null() {
                // SAFETY: made by `Box::into_raw` in `filter_new`; Envoy destroys it once, never during a hook.
                drop(unsafe { Box::from_raw(filter_module as *mut FilterCell) });
            }
        },
    )
}

/// What a filter hook answers when the filter cannot: re-entered, poisoned, or panicking now.
/// A stream without a filter (`filter_new` answered null; the HTTP filter in Envoy's sources still runs
/// the hooks, with a null module pointer) is answered like a panic: fail closed.
struct Fallbacks<R> {
    reentered: R,
    poisoned: R,
    panicked: fn(&mut StreamHandle) -> R,
}

/// Request path: a panic answers 500 and holds the stream (fail closed); once poisoned, or
/// re-entered while the filter is still deciding, hold: never `Continue` without a decision.
/// Status 1 is `StopIteration` for headers and trailers, `StopIterationAndBuffer` for bodies.
fn request_fallbacks() -> Fallbacks<u32> {
    Fallbacks {
        reentered: 1,
        poisoned: 1,
        panicked: fail_closed_stop,
    }
}

fn fail_closed_stop(envoy: &mut StreamHandle) -> u32 {
    let body = br#"{"error":{"message":"tollgate native module: internal error","type":"server_error","param":null,"code":"internal_error"}}"#;
    envoy.send_response(
        500,
        &[("content-type", b"application/json")],
        body,
        "tollgate_internal_error",
    );
    1
}

/// Response path: nothing safe to hold; pass on (the panic is in Envoy's log).
fn response_fallbacks() -> Fallbacks<u32> {
    Fallbacks {
        reentered: 0,
        poisoned: 0,
        panicked: |_| 0,
    }
}

/// Runs one filter hook on the stream's [`FilterCell`].
///
/// # Safety
/// `filter_envoy` and `filter_module` must be the pointers Envoy passed to the running hook.
unsafe fn on_filter<R>(
    hook: &'static str,
    filter_envoy: FilterEnvoyPtr,
    filter_module: FilterModulePtr,
    fallbacks: Fallbacks<R>,
    call: impl FnOnce(&mut dyn Filter, &mut StreamHandle) -> R,
) -> R {
    // SAFETY: `filter_envoy` is this hook's stream pointer.
    let Some(mut envoy) = (unsafe { StreamHandle::from_raw(filter_envoy) }) else {
        return fallbacks.reentered;
    };
    // SAFETY: made by `filter_new`, used only on this stream's worker, alive until `filter_destroy`;
    // only a shared reference is formed, so re-entered hooks alias nothing mutable.
    let Some(cell) = (unsafe { (filter_module as *const FilterCell).as_ref() }) else {
        return (fallbacks.panicked)(&mut envoy);
    };
    match cell.run(hook, |filter| call(filter, &mut envoy)) {
        HookRun::Ran(value) => value,
        HookRun::Reentered => fallbacks.reentered,
        HookRun::Poisoned => fallbacks.poisoned,
        HookRun::Panicked => (fallbacks.panicked)(&mut envoy),
    }
}

/// An event posted to the config (main thread). Safety: Envoy's pointers for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    config_envoy: ConfigEnvoyPtr,
    config_module: ConfigModulePtr,
    event_id: u64,
) {
    catch(
        "config_scheduled",
        || (),
        || {
            // SAFETY: pointers Envoy passed to this main-thread hook.
            let (config, handle) = unsafe {
                (
                    config_of(config_module),
                    ConfigHandle::from_raw(config_envoy),
                )
            };
            if let (Some(config), Some(mut handle)) = (config, handle) {
                config.on_scheduled(&mut handle, event_id);
            }
        },
    )
}

/// A config callout ended (main thread). Safety: Envoy's pointers and arrays for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    config_envoy: ConfigEnvoyPtr,
    config_module: ConfigModulePtr,
    callout_id: u64,
    result: CalloutResult,
    headers: *mut EnvoyHttpHeader,
    headers_size: usize,
    body: *mut EnvoyBuffer,
    body_size: usize,
) {
    catch(
        "config_http_callout_done",
        || (),
        || {
            // SAFETY: pointers and arrays Envoy passed to this main-thread hook.
            let (config, handle, outcome) = unsafe {
                (
                    config_of(config_module),
                    ConfigHandle::from_raw(config_envoy),
                    CalloutOutcome::from_raw(result, headers, headers_size, body, body_size),
                )
            };
            if let (Some(config), Some(mut handle)) = (config, handle) {
                config.on_http_callout_done(&mut handle, callout_id, outcome);
            }
        },
    )
}

/// Streamed callouts (unused: Tollgate starts none). Required by Envoy.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter_envoy: FilterEnvoyPtr,
    _filter_module: FilterModulePtr,
    _stream_id: u64,
    _headers: *mut EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

/// Streamed callouts (unused). Required by Envoy.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter_envoy: FilterEnvoyPtr,
    _filter_module: FilterModulePtr,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

/// Streamed callouts (unused). Required by Envoy.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter_envoy: FilterEnvoyPtr,
    _filter_module: FilterModulePtr,
    _stream_id: u64,
    _trailers: *mut EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

/// Streamed callouts (unused). Required by Envoy.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter_envoy: FilterEnvoyPtr,
    _filter_module: FilterModulePtr,
    _stream_id: u64,
) {
}

/// Streamed callouts (unused). Required by Envoy. `reason` is a C enum, read as `u32`.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter_envoy: FilterEnvoyPtr,
    _filter_module: FilterModulePtr,
    _stream_id: u64,
    _reason: u32,
) {
}

/// Downstream write buffer over its high watermark (terminal filters only). Required by Envoy.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter_envoy: FilterEnvoyPtr,
    _filter_module: FilterModulePtr,
) {
}

/// Downstream write buffer back under its low watermark. Required by Envoy.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter_envoy: FilterEnvoyPtr,
    _filter_module: FilterModulePtr,
) {
}

mod stream;
