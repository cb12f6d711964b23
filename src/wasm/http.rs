//! One HTTP stream: the core's [`Exchange`] driven from proxy-wasm callbacks, with
//! [`VmStream`] as its host.
//!
//! Headers are held (`allow_on_headers_stop_iteration: true`) while the body is buffered, so
//! routing, credential and body edits all happen before anything is forwarded.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::core::config::index::Accounting;
use crate::core::exchange::host::{
    xorshift64star, HeaderBlock, HeaderMap, LogLevel, Step, StreamHost,
};
use crate::core::exchange::spend_senders::SpendSenders;
use crate::core::exchange::stream::Exchange;
use crate::core::exchange::telemetry::Telemetry;
use crate::core::exchange::version::Version;
use crate::core::money::reservation::LedgerStore;
use crate::core::money::settlement::Finished;
use crate::core::spend::access_log::FILTER_STATE_NAME;
use crate::wasm::host::{self, Buffer};
use crate::wasm::ledgers::SharedLedgers;
use crate::wasm::metrics::VmTelemetry;
use crate::wasm::spend_sink::RootCallouts;
use crate::wasm::timing::time;

/// What a stream reaches of its VM besides Envoy: the random generator and the spend sender.
pub struct VmStream {
    /// State of the per-VM random generator used for weighted routing.
    random: Rc<Cell<u64>>,
    /// The VM's spend sender.
    sink: Rc<RefCell<SpendSenders>>,
}

impl VmStream {
    /// A stream host over the VM's generator and sender.
    pub fn new(random: Rc<Cell<u64>>, sink: Rc<RefCell<SpendSenders>>) -> Self {
        VmStream { random, sink }
    }
}

impl StreamHost for VmStream {
    fn headers(&mut self, map: HeaderMap) -> HeaderBlock {
        time("host.headers", || host::headers(map.into()))
    }

    fn set_header(&mut self, map: HeaderMap, name: &str, value: &str) -> bool {
        time("host.set_header", || {
            host::set_header(map.into(), name, value)
        })
    }

    fn remove_header(&mut self, map: HeaderMap, name: &[u8]) -> bool {
        time("host.remove_header", || {
            host::remove_header_bytes(map.into(), name)
        })
    }

    fn request_body(&mut self, size: usize) -> Option<Vec<u8>> {
        time("host.request_body", || {
            host::buffer(Buffer::RequestBody, size)
        })
    }

    fn replace_request_body(&mut self, size: usize, data: &[u8]) -> bool {
        time("host.replace_request_body", || {
            host::replace_buffer(Buffer::RequestBody, size, data)
        })
    }

    fn response_chunk(&mut self, size: usize) -> Option<Vec<u8>> {
        time("host.response_chunk", || {
            host::buffer(Buffer::ResponseBody, size)
        })
    }

    fn replace_response_chunk(&mut self, size: usize, data: &[u8]) -> bool {
        time("host.replace_response_chunk", || {
            host::replace_buffer(Buffer::ResponseBody, size, data)
        })
    }

    fn send_response(
        &mut self,
        status: u16,
        details: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> bool {
        time("host.send_response", || {
            host::send_response(status, details, headers, body)
        })
    }

    fn clear_route_cache(&mut self) -> bool {
        time("host.clear_route_cache", host::clear_route_cache)
    }

    fn response_code_details(&mut self) -> String {
        let details = time("host.code_details", || {
            host::property(&["response", "code_details"])
        })
        .unwrap_or_default();
        String::from_utf8_lossy(&details).into_owned()
    }

    fn set_access_log_line(&mut self, line: &str) {
        time("host.set_filter_state", || {
            host::set_property(FILTER_STATE_NAME, line.as_bytes())
        });
    }

    fn log(&self, level: LogLevel, message: &str) {
        host::log(level.into(), message);
    }

    fn clock_seconds(&self) -> Option<i64> {
        time("host.clock", host::clock_nanos).and_then(|n| i64::try_from(n / 1_000_000_000).ok())
    }

    fn now_ms(&self) -> u64 {
        host::now_nanos() / 1_000_000
    }

    fn random(&mut self) -> u64 {
        let mut state = self.random.get();
        let out = xorshift64star(&mut state);
        self.random.set(state);
        out
    }

    fn ledgers(&self) -> &dyn LedgerStore {
        &SharedLedgers
    }

    fn telemetry(&self) -> &dyn Telemetry {
        &VmTelemetry
    }

    fn record_spend(&mut self, finished: Finished, accounting: Option<&Accounting>) {
        let now_ms = self.now_ms();
        let sink = &self.sink;
        time("spend.record", || {
            sink.borrow_mut()
                .record(&mut RootCallouts(None), accounting, finished, now_ms)
        });
    }
}

/// Per-stream state: the exchange and its host.
pub struct TollgateHttp {
    exchange: Exchange,
    host: VmStream,
}

impl TollgateHttp {
    /// A stream on `version`.
    pub fn new(version: Arc<Version>, host: VmStream) -> Self {
        TollgateHttp {
            exchange: Exchange::new(version),
            host,
        }
    }
}

fn action(step: Step) -> Action {
    match step {
        Step::Continue => Action::Continue,
        Step::Pause => Action::Pause,
    }
}

impl Context for TollgateHttp {}

impl HttpContext for TollgateHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let (exchange, host) = (&mut self.exchange, &mut self.host);
        time("cb.request_headers", || {
            action(exchange.on_request_headers(host, end_of_stream))
        })
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let (exchange, host) = (&mut self.exchange, &mut self.host);
        time("cb.request_body", || {
            action(exchange.on_request_body(host, body_size, end_of_stream))
        })
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        let (exchange, host) = (&mut self.exchange, &mut self.host);
        time("cb.request_trailers", || {
            action(exchange.on_request_trailers(host))
        })
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let (exchange, host) = (&mut self.exchange, &mut self.host);
        time("cb.response_headers", || {
            action(exchange.on_response_headers(host, end_of_stream))
        })
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let (exchange, host) = (&mut self.exchange, &mut self.host);
        time("cb.response_body", || {
            action(exchange.on_response_body(host, body_size, end_of_stream))
        })
    }

    fn on_log(&mut self) {
        let (exchange, host) = (&mut self.exchange, &mut self.host);
        time("cb.on_log", || exchange.on_complete(host));
    }
}
