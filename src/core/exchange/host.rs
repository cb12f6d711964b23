//! What one stream may ask of Envoy, in Tollgate's words. Each adapter implements
//! [`StreamHost`] over its own ABI (proxy-wasm hostcalls, dynamic-module callbacks); every
//! method reports a refusal as `false`/`None`, never by panicking.

use std::ops::Range;

use crate::core::config::index::Accounting;
use crate::core::money::reservation::LedgerStore;
use crate::core::money::settlement::Finished;

use super::telemetry::Telemetry;

/// Which header map of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderMap {
    /// The request headers (pseudo-headers included).
    Request,
    /// The request trailers.
    RequestTrailers,
    /// The response headers.
    Response,
}

/// Log severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Per-request detail, only formatted when debug logging is on.
    Debug,
    /// Normal operation.
    Info,
    /// Something the operator should look at.
    Warn,
    /// Something failed.
    Error,
}

/// What a callback tells Envoy to do with the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Go on with the next filter.
    Continue,
    /// Hold the stream (headers held while the body is buffered, or answered locally).
    Pause,
}

/// Every header of a map: one buffer and where each (name, value) pair is in it.
#[derive(Debug, Default, Clone)]
pub struct HeaderBlock {
    bytes: Vec<u8>,
    spans: Vec<(Range<usize>, Range<usize>)>,
}

impl HeaderBlock {
    /// A block over `bytes` whose pairs are at `spans` (a span outside `bytes` reads empty).
    pub fn from_spans(bytes: Vec<u8>, spans: Vec<(Range<usize>, Range<usize>)>) -> Self {
        HeaderBlock { bytes, spans }
    }

    /// An empty block with room for `pairs` pairs of `bytes` bytes in all (no regrowth while
    /// an adapter copies a header map it has measured).
    pub fn with_capacity(pairs: usize, bytes: usize) -> Self {
        HeaderBlock {
            bytes: Vec::with_capacity(bytes),
            spans: Vec::with_capacity(pairs),
        }
    }

    /// Appends one pair (copied).
    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        let name_at = self.bytes.len()..self.bytes.len() + name.len();
        self.bytes.extend_from_slice(name);
        let value_at = self.bytes.len()..self.bytes.len() + value.len();
        self.bytes.extend_from_slice(value);
        self.spans.push((name_at, value_at));
    }

    /// (name, value) pairs in order; names as Envoy keeps them (lower case).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans.iter().map(|(name, value)| {
            (
                self.bytes.get(name.clone()).unwrap_or_default(),
                self.bytes.get(value.clone()).unwrap_or_default(),
            )
        })
    }

    /// The first value of `name`, if any.
    pub fn first(&self, name: &[u8]) -> Option<&[u8]> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// The next number of a xorshift64* generator whose state is `state` (never 0): what adapters
/// use for [`StreamHost::random`]; weighted routing only needs a fair spread.
pub fn xorshift64star(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// What one stream may ask of Envoy. Sizes are what the current callback reported.
pub trait StreamHost {
    /// Every header of `map` (empty if the host refuses).
    fn headers(&mut self, map: HeaderMap) -> HeaderBlock;
    /// Sets (replaces) a header; false if the host refused.
    fn set_header(&mut self, map: HeaderMap, name: &str, value: &str) -> bool;
    /// Removes every value of a header; false if the host refused.
    fn remove_header(&mut self, map: HeaderMap, name: &[u8]) -> bool;
    /// The whole request body buffered so far (`size` bytes as the callback reported).
    fn request_body(&mut self, size: usize) -> Option<Vec<u8>>;
    /// Replaces the buffered request body (of `size` bytes) with `data`.
    fn replace_request_body(&mut self, size: usize, data: &[u8]) -> bool;
    /// The response body chunk of this callback (`size` bytes).
    fn response_chunk(&mut self, size: usize) -> Option<Vec<u8>>;
    /// Replaces this callback's response chunk (of `size` bytes) with `data`.
    fn replace_response_chunk(&mut self, size: usize, data: &[u8]) -> bool;
    /// Answers locally; `details` shows as `%RESPONSE_CODE_DETAILS%`.
    fn send_response(
        &mut self,
        status: u16,
        details: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> bool;
    /// Makes Envoy pick the route again (after the routing header changed).
    fn clear_route_cache(&mut self) -> bool;
    /// Envoy's response code details (how the stream ended), empty if unknown.
    fn response_code_details(&mut self) -> String;
    /// Leaves the access-log summary in filter state.
    fn set_access_log_line(&mut self, line: &str);
    /// Writes a log line.
    fn log(&self, level: LogLevel, message: &str);
    /// The wall clock in Unix seconds, `None` if it failed (decisions then fail closed).
    fn clock_seconds(&self) -> Option<i64>;
    /// The wall clock in Unix milliseconds (0 if it failed).
    fn now_ms(&self) -> u64;
    /// A fresh pseudo-random number (weighted routing only needs a fair spread).
    fn random(&mut self) -> u64;
    /// The budget ledgers of this process (or VM).
    fn ledgers(&self) -> &dyn LedgerStore;
    /// The counters.
    fn telemetry(&self) -> &dyn Telemetry;
    /// Queues a finished request's spend event for the accounting cluster of the version that
    /// served it (`accounting`: that version's settings; `None`: it reports nothing).
    fn record_spend(&mut self, finished: Finished, accounting: Option<&Accounting>);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_block_keeps_order_and_finds_first_value() {
        let mut block = HeaderBlock::default();
        block.push(b":path", b"/v1/chat/completions");
        block.push(b"x-api-key", b"a");
        block.push(b"x-api-key", b"b");
        let names: Vec<&[u8]> = block.iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec![&b":path"[..], b"x-api-key", b"x-api-key"]);
        assert_eq!(block.first(b"x-api-key"), Some(&b"a"[..]));
        assert_eq!(block.first(b"missing"), None);
    }

    #[test]
    fn header_block_reads_out_of_range_spans_as_empty() {
        let block = HeaderBlock::from_spans(b"ab".to_vec(), vec![(0..1, 5..9)]);
        assert_eq!(block.iter().next(), Some((&b"a"[..], &b""[..])));
    }
}
