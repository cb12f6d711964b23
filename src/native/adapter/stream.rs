//! One exchange in the native module: the core's [`Exchange`] driven from a stream's hooks,
//! with [`NativeStream`] (the stream's Envoy handle plus the process state) as its host.
//! Statuses: the core's `Pause` holds headers (`StopIteration`) and buffers the body
//! (`StopIterationAndBuffer`); `Continue` releases what is held.

use std::cell::Cell;
use std::sync::Arc;

use super::callouts::{level_of, NoCallouts};
use super::counters::{Collected, StatIds};
use super::process::{now_ms, process};
use crate::core::config::index::Accounting;
use crate::core::exchange::host::{self, xorshift64star, HeaderBlock, LogLevel, Step, StreamHost};
use crate::core::exchange::stream::Exchange;
use crate::core::exchange::telemetry::Telemetry;
use crate::core::exchange::version::Version;
use crate::core::money::reservation::LedgerStore;
use crate::core::money::settlement::Finished;
use crate::native::config::{log, Level};
use crate::native::envoy::{HeaderMap, StreamHandle};
use crate::native::module::{BodyStatus, Filter, HeadersStatus, TrailersStatus};

/// The filter-state key of the access-log line: the Wasm filter's (Envoy prefixes its
/// properties with `wasm.`), so one access-log format serves both forms.
pub const FILTER_STATE_KEY: &str = "wasm.tollgate";

/// What every stream of one config version shares.
pub struct VersionShared {
    /// The compiled version.
    pub version: Arc<Version>,
    /// The stats this version's config defined.
    pub stats: StatIds,
}

thread_local! {
    /// This worker's random generator (weighted routing only needs a fair spread).
    static RANDOM: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(now_ms());
    hasher.finish() | 1
}

/// A stream's host for the length of one hook.
pub struct NativeStream<'a> {
    envoy: &'a mut StreamHandle,
    counts: &'a Collected,
}

fn map_of(map: host::HeaderMap) -> HeaderMap {
    match map {
        host::HeaderMap::Request => HeaderMap::RequestHeaders,
        host::HeaderMap::RequestTrailers => HeaderMap::RequestTrailers,
        host::HeaderMap::Response => HeaderMap::ResponseHeaders,
    }
}

impl StreamHost for NativeStream<'_> {
    fn headers(&mut self, map: host::HeaderMap) -> HeaderBlock {
        let pairs = self.envoy.headers(map_of(map));
        let bytes = pairs.iter().map(|(n, v)| n.len() + v.len()).sum();
        let mut block = HeaderBlock::with_capacity(pairs.len(), bytes);
        for (name, value) in pairs {
            block.push(name, value);
        }
        block
    }

    fn set_header(&mut self, map: host::HeaderMap, name: &str, value: &str) -> bool {
        self.envoy.set_header(map_of(map), name, value.as_bytes())
    }

    fn remove_header(&mut self, map: host::HeaderMap, name: &[u8]) -> bool {
        match std::str::from_utf8(name) {
            Ok(name) => self.envoy.remove_header(map_of(map), name),
            Err(_) => false,
        }
    }

    fn request_body(&mut self, size: usize) -> Option<Vec<u8>> {
        // A request that ended with its headers has no body buffer at all.
        self.envoy
            .request_body()
            .or_else(|| (size == 0).then(Vec::new))
    }

    fn replace_request_body(&mut self, _size: usize, data: &[u8]) -> bool {
        self.envoy.replace_request_body(data)
    }

    fn response_chunk(&mut self, _size: usize) -> Option<Vec<u8>> {
        self.envoy.response_chunk()
    }

    fn replace_response_chunk(&mut self, _size: usize, data: &[u8]) -> bool {
        self.envoy.replace_response_chunk(data)
    }

    fn send_response(
        &mut self,
        status: u16,
        details: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> bool {
        let headers: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(name, value)| (*name, value.as_bytes()))
            .collect();
        self.envoy
            .send_response(u32::from(status), &headers, body, details);
        true
    }

    fn clear_route_cache(&mut self) -> bool {
        self.envoy.clear_route_cache();
        true
    }

    fn response_code_details(&mut self) -> String {
        self.envoy.response_code_details().unwrap_or_default()
    }

    fn set_access_log_line(&mut self, line: &str) {
        self.envoy
            .set_filter_state(FILTER_STATE_KEY, line.as_bytes());
    }

    fn log(&self, level: LogLevel, message: &str) {
        log(level_of(level), || message.to_string());
    }

    fn clock_seconds(&self) -> Option<i64> {
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        i64::try_from(seconds).ok().filter(|s| *s > 0)
    }

    fn now_ms(&self) -> u64 {
        now_ms()
    }

    fn random(&mut self) -> u64 {
        RANDOM.with(|cell| {
            let mut state = cell.get();
            let out = xorshift64star(&mut state);
            cell.set(state);
            out
        })
    }

    fn ledgers(&self) -> &dyn LedgerStore {
        &process().ledgers
    }

    fn telemetry(&self) -> &dyn Telemetry {
        self.counts
    }

    fn record_spend(&mut self, finished: Finished, accounting: Option<&Accounting>) {
        let now = now_ms();
        match process().sender() {
            Some(mut sender) => {
                sender.record(&mut NoCallouts(self.counts), accounting, finished, now)
            }
            None => log(Level::Error, || {
                "tollgate: the spend sender is unavailable; this request's spend is counted \
                 only in the local ledgers"
                    .to_string()
            }),
        }
    }
}

/// One stream's filter: the exchange, on the version it started with.
pub struct TollgateFilter {
    exchange: Exchange,
    counts: Collected,
}

impl TollgateFilter {
    /// A filter for a new stream of `shared`'s version.
    pub fn new(shared: &VersionShared) -> Self {
        let exchange = Exchange::new(Arc::clone(&shared.version));
        TollgateFilter {
            exchange,
            counts: Collected::default(),
        }
    }

    /// Runs one step of the exchange with this hook's host, then hands its counts to Envoy.
    fn run<T>(
        &mut self,
        envoy: &mut StreamHandle,
        step: impl FnOnce(&mut Exchange, &mut NativeStream<'_>) -> T,
    ) -> T {
        let out = {
            let mut host = NativeStream {
                envoy,
                counts: &self.counts,
            };
            step(&mut self.exchange, &mut host)
        };
        process().totals.absorb(self.counts.take());
        out
    }
}

fn headers_status(step: Step) -> HeadersStatus {
    match step {
        Step::Continue => HeadersStatus::Continue,
        Step::Pause => HeadersStatus::StopIteration,
    }
}

/// The test-only probe (feature `panic-probe`): panics in the hook of `side` when the request
/// asks for it with `x-panic-probe: <side>`.
#[cfg(feature = "panic-probe")]
#[allow(clippy::panic)]
fn panic_probe(envoy: &StreamHandle, side: &str) {
    let asked = envoy.header(HeaderMap::RequestHeaders, "x-panic-probe");
    if asked == Some(side.as_bytes()) {
        panic!("tollgate panic probe: the {side} side was asked to panic");
    }
}

#[cfg(not(feature = "panic-probe"))]
fn panic_probe(_envoy: &StreamHandle, _side: &str) {}

impl Filter for TollgateFilter {
    fn on_request_headers(&mut self, envoy: &mut StreamHandle, end: bool) -> HeadersStatus {
        panic_probe(envoy, "request");
        headers_status(self.run(envoy, |x, host| x.on_request_headers(host, end)))
    }

    fn on_request_body(&mut self, envoy: &mut StreamHandle, end: bool) -> BodyStatus {
        let size = envoy.request_body_size();
        match self.run(envoy, |x, host| x.on_request_body(host, size, end)) {
            Step::Continue => BodyStatus::Continue,
            Step::Pause if self.exchange.is_answered() => BodyStatus::StopIterationNoBuffer,
            Step::Pause => BodyStatus::StopIterationAndBuffer,
        }
    }

    fn on_request_trailers(&mut self, envoy: &mut StreamHandle) -> TrailersStatus {
        match self.run(envoy, |x, host| x.on_request_trailers(host)) {
            Step::Continue => TrailersStatus::Continue,
            Step::Pause => TrailersStatus::StopIteration,
        }
    }

    fn on_response_headers(&mut self, envoy: &mut StreamHandle, end: bool) -> HeadersStatus {
        panic_probe(envoy, "response");
        headers_status(self.run(envoy, |x, host| x.on_response_headers(host, end)))
    }

    fn on_response_body(&mut self, envoy: &mut StreamHandle, end: bool) -> BodyStatus {
        let size = envoy.response_chunk_size();
        match self.run(envoy, |x, host| x.on_response_body(host, size, end)) {
            Step::Continue => BodyStatus::Continue,
            Step::Pause => BodyStatus::StopIterationNoBuffer,
        }
    }

    fn on_stream_complete(&mut self, envoy: &mut StreamHandle) {
        self.run(envoy, |x, host| x.on_complete(host));
    }
}
