//! Metering one response as it passes: status, usage (JSON or SSE), and how the request ended.
//!
//! The filter feeds every response chunk to a [`ResponseMeter`] and forwards the chunk at once;
//! the meter keeps only bounded state (an SSE line in progress, or the first
//! [`MAX_JSON_BYTES`] of a JSON body and then its last [`TAIL_BYTES`]). When the stream ends —
//! normally or not — [`ResponseMeter::finish`] gives the usage to price and a terminal status.
//! Upstream errors are recorded at zero usage; a stream cut short is recorded with the usage
//! seen so far or, failing that, an estimate marked as such.

use crate::core::admission::request::Endpoint;
use crate::core::metering::sse::{last_usage_object, SseUsageReader, TAIL_BYTES};
use crate::core::metering::usage::{merge_usage_object, usage_from_json, Usage};

/// Largest JSON response body kept whole for usage parsing; beyond it only the tail is kept.
pub const MAX_JSON_BYTES: usize = 1024 * 1024;

/// How a metered request ended (the `status` of its spend event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndStatus {
    /// The upstream answered in full with a success status.
    Ok,
    /// The client went away before the response was complete.
    ClientDisconnect,
    /// The upstream answered with an error status, reset, or never answered.
    UpstreamError,
}

impl EndStatus {
    /// The name used in spend events.
    pub fn name(self) -> &'static str {
        match self {
            EndStatus::Ok => "ok",
            EndStatus::ClientDisconnect => "client_disconnect",
            EndStatus::UpstreamError => "upstream_error",
        }
    }
}

/// The meter's verdict on a finished request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metered {
    /// Usage to price.
    pub usage: Usage,
    /// True when some counts are estimates (no usage was reported).
    pub estimated: bool,
    /// How the request ended.
    pub status: EndStatus,
    /// The upstream's HTTP status (0 when no response arrived).
    pub http_status: u16,
    /// Why the request is charged what was reserved for it (its worst case) rather than what
    /// was seen, if it is: the answer could not be read, or the request ended before its answer
    /// while the provider may well finish (and bill) the generation.
    pub charge_reserved: Option<ReservedCharge>,
}

/// Why a finished request is charged its reservation (the worst case), flagged estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservedCharge {
    /// A successful answer in an encoding the filter does not read (still compressed).
    Unreadable,
    /// The client went away before a non-streamed answer (or any answer) had arrived.
    ClientLeft,
    /// Envoy gave up waiting for the upstream (route or per-try timeout, stream duration).
    UpstreamTimeout,
}

impl ReservedCharge {
    /// The name used in metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            ReservedCharge::Unreadable => "unreadable",
            ReservedCharge::ClientLeft => "client_left",
            ReservedCharge::UpstreamTimeout => "upstream_timeout",
        }
    }
}

/// Who ended a stream early, as the adapter could tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyEnd {
    /// The downstream (client) connection went away.
    Client,
    /// The upstream failed or reset.
    Upstream,
    /// Envoy stopped waiting for the upstream (its answer may still be generated and billed).
    UpstreamTimeout,
}

impl EarlyEnd {
    /// Who ended the stream, from Envoy's `response.code_details` (e.g.
    /// `downstream_remote_disconnect`, `response_timeout` (the route timeout), `via_upstream`).
    pub fn from_code_details(details: &str) -> EarlyEnd {
        // Envoy's names (ResponseCodeDetails): the route timeout, the last try's timeouts, and
        // the route's max stream duration.
        // Also the connection manager's idle and duration timeouts, which fire while Envoy
        // waits for a long non-streamed answer.
        const TIMEOUTS: [&str; 6] = [
            "response_timeout",
            "upstream_per_try_timeout",
            "upstream_per_try_idle_timeout",
            "upstream_max_stream_duration_reached",
            "stream_idle_timeout",
            "max_duration_timeout",
        ];
        if TIMEOUTS.iter().any(|t| details.starts_with(t)) {
            EarlyEnd::UpstreamTimeout
        } else if details == "via_upstream" || details.contains("upstream") {
            // The upstream answered, reset or could not be reached.
            EarlyEnd::Upstream
        } else {
            // Anything else that ends a stream early is the client's side: a TCP close
            // (`downstream_remote_disconnect`), an HTTP/2 reset (`http2.remote_reset`), a codec
            // error. Unknown means the client, so a request it abandons is never free.
            EarlyEnd::Client
        }
    }
}

#[derive(Debug)]
enum Body {
    /// Not metered (error status or endpoint without usage).
    Ignored,
    /// A JSON document, kept whole up to the limit, then its tail.
    Json { bytes: Vec<u8>, overflowed: bool },
    /// A server-sent-events stream.
    Sse(SseUsageReader),
    /// A successful answer in an encoding the filter does not read (it asked for `identity`).
    Unreadable,
}

/// Meters one response.
#[derive(Debug)]
pub struct ResponseMeter {
    endpoint: Endpoint,
    http_status: u16,
    body: Body,
    body_bytes: u64,
    complete: bool,
}

impl ResponseMeter {
    /// A meter for a response of `endpoint` with this status and `content-type`.
    pub fn new(endpoint: Endpoint, http_status: u16, content_type: Option<&str>) -> Self {
        let is_sse = content_type.is_some_and(|t| {
            t.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        });
        let body = if !(200..300).contains(&http_status) {
            Body::Ignored
        } else if is_sse {
            Body::Sse(SseUsageReader::new(endpoint))
        } else {
            Body::Json {
                bytes: Vec::new(),
                overflowed: false,
            }
        };
        ResponseMeter {
            endpoint,
            http_status,
            body,
            body_bytes: 0,
            complete: false,
        }
    }

    /// A meter for a response whose body is still encoded (`content-encoding` other than
    /// `identity`, although the filter asked for `identity`): it is forwarded untouched, and a
    /// successful one is charged as the request's worst case, flagged estimated.
    pub fn unreadable(endpoint: Endpoint, http_status: u16) -> Self {
        let mut meter = ResponseMeter::new(endpoint, http_status, None);
        if (200..300).contains(&http_status) {
            meter.body = Body::Unreadable;
        }
        meter
    }

    /// Whether the response is a server-sent-events stream being metered.
    pub fn is_stream(&self) -> bool {
        matches!(self.body, Body::Sse(_))
    }

    /// Feeds one response chunk; `end` marks the last one.
    pub fn feed(&mut self, chunk: &[u8], end: bool) {
        self.body_bytes = self.body_bytes.saturating_add(chunk.len() as u64);
        match &mut self.body {
            Body::Ignored | Body::Unreadable => {}
            Body::Sse(reader) => {
                reader.feed(chunk);
                if end {
                    reader.finish();
                }
            }
            Body::Json { bytes, overflowed } => {
                bytes.extend_from_slice(chunk);
                if bytes.len() > MAX_JSON_BYTES {
                    *overflowed = true;
                }
                if *overflowed && bytes.len() > TAIL_BYTES {
                    let excess = bytes.len() - TAIL_BYTES;
                    bytes.drain(..excess);
                }
            }
        }
        if end {
            self.complete = true;
        }
    }

    /// Marks a response that ended with its headers (no body).
    pub fn end_without_body(&mut self) {
        self.complete = true;
    }

    /// Whether the response ended normally (its last chunk, or headers only, was seen).
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Bytes currently held by the meter.
    pub fn held_bytes(&self) -> usize {
        match &self.body {
            Body::Ignored | Body::Unreadable => 0,
            Body::Sse(reader) => reader.buffered_bytes(),
            Body::Json { bytes, .. } => bytes.len(),
        }
    }

    /// The usage and status of the finished request. `prompt_estimate` (tokens) stands in for
    /// an unreported prompt; `early` says who cut the stream short if it did not complete.
    pub fn finish(&self, prompt_estimate: u64, early: EarlyEnd) -> Metered {
        let reported = match &self.body {
            Body::Ignored | Body::Unreadable => None,
            Body::Sse(reader) => reader.usage(),
            Body::Json { bytes, overflowed } => {
                if *overflowed {
                    let mut usage = Usage::default();
                    last_usage_object(bytes)
                        .filter(|object| merge_usage_object(self.endpoint, object, &mut usage))
                        .map(|_| usage)
                } else {
                    usage_from_json(self.endpoint, bytes)
                }
            }
        };
        let success = (200..300).contains(&self.http_status);
        let status = match (self.complete, success) {
            (true, true) => EndStatus::Ok,
            (true, false) => EndStatus::UpstreamError,
            (false, _) => match early {
                EarlyEnd::Client => EndStatus::ClientDisconnect,
                EarlyEnd::Upstream | EarlyEnd::UpstreamTimeout => EndStatus::UpstreamError,
            },
        };
        if self.complete && !success && early != EarlyEnd::UpstreamTimeout {
            // An upstream error costs nothing and never waits for usage.
            return Metered {
                usage: Usage::default(),
                estimated: false,
                status,
                http_status: self.http_status,
                charge_reserved: None,
            };
        }
        let done = match &self.body {
            Body::Sse(reader) => reader.saw_done(),
            _ => self.complete,
        };
        match reported {
            Some(usage) if done => Metered {
                usage,
                estimated: false,
                status,
                http_status: self.http_status,
                charge_reserved: None,
            },
            partial => {
                // No final usage: estimate what the upstream may still charge for.
                let mut usage = partial.unwrap_or_default();
                if usage.prompt_tokens == 0 {
                    usage.prompt_tokens = prompt_estimate;
                }
                let seen_output = match &self.body {
                    Body::Sse(reader) => reader.data_events(),
                    _ => self.body_bytes / 4,
                };
                usage.completion_tokens = usage.completion_tokens.max(seen_output);
                Metered {
                    usage,
                    estimated: true,
                    status,
                    http_status: self.http_status,
                    charge_reserved: self.reserved_charge(early),
                }
            }
        }
    }
}

impl ResponseMeter {
    /// Whether a request without its final usage is charged its reservation: an unreadable
    /// answer always; a request that ended before its answer when the client left or Envoy
    /// timed out, unless it is a stream already under way (a provider stops generating when
    /// the stream's connection goes, and what was seen is charged).
    fn reserved_charge(&self, early: EarlyEnd) -> Option<ReservedCharge> {
        let awaiting_answer = match &self.body {
            Body::Unreadable => return Some(ReservedCharge::Unreadable),
            Body::Sse(_) => false,
            // A non-streamed answer is generated whole before it is sent.
            Body::Json { .. } => !self.complete,
            // No answer at all yet, or Envoy's own timeout reply.
            Body::Ignored => {
                self.http_status == 0 || (self.complete && early == EarlyEnd::UpstreamTimeout)
            }
        };
        match early {
            _ if !awaiting_answer => None,
            EarlyEnd::Client => Some(ReservedCharge::ClientLeft),
            EarlyEnd::UpstreamTimeout => Some(ReservedCharge::UpstreamTimeout),
            EarlyEnd::Upstream => None,
        }
    }
}

/// A rough prompt size in tokens for reservations and estimates: a quarter of the body bytes,
/// rounded up (about right for English JSON; generous for code and non-Latin text).
pub fn prompt_estimate(body_bytes: usize) -> u64 {
    (body_bytes as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    const CHAT_JSON: &str = r#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],
        "usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":2}}}"#;

    #[test]
    fn json_usage_is_read_across_chunks() {
        let mut meter =
            ResponseMeter::new(Endpoint::ChatCompletions, 200, Some("application/json"));
        let bytes = CHAT_JSON.as_bytes();
        meter.feed(&bytes[..40], false);
        meter.feed(&bytes[40..], true);
        let metered = meter.finish(99, EarlyEnd::Upstream);
        assert_eq!(metered.status, EndStatus::Ok);
        assert!(!metered.estimated);
        assert_eq!(metered.usage.prompt_tokens, 12);
        assert_eq!(metered.usage.cached_tokens, 2);
        assert_eq!(metered.usage.completion_tokens, 3);
    }

    #[test]
    fn a_huge_json_body_keeps_only_its_tail_and_still_finds_usage() {
        let content = "x".repeat(3 * MAX_JSON_BYTES);
        let body = format!(
            r#"{{"choices":[{{"message":{{"content":"{content}"}}}}],"usage":{{"prompt_tokens":5,"completion_tokens":7}}}}"#
        );
        let mut meter = ResponseMeter::new(Endpoint::ChatCompletions, 200, None);
        for chunk in body.as_bytes().chunks(64 * 1024) {
            meter.feed(chunk, false);
            assert!(meter.held_bytes() <= MAX_JSON_BYTES + 64 * 1024);
        }
        meter.feed(b"", true);
        let metered = meter.finish(1, EarlyEnd::Upstream);
        assert_eq!(metered.usage.completion_tokens, 7);
        assert!(!metered.estimated);
    }

    #[test]
    fn upstream_errors_cost_nothing() {
        let mut meter =
            ResponseMeter::new(Endpoint::ChatCompletions, 429, Some("application/json"));
        meter.feed(br#"{"error":{"message":"slow down"}}"#, true);
        let metered = meter.finish(500, EarlyEnd::Upstream);
        assert_eq!(metered.status, EndStatus::UpstreamError);
        assert_eq!(metered.usage, Usage::default());
        assert!(!metered.estimated);
        assert_eq!(metered.http_status, 429);
    }

    const ANTHROPIC_START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":20,\"output_tokens\":1}}}\n\n";

    #[test]
    fn a_stream_cut_by_the_client_keeps_what_was_seen_and_estimates_the_rest() {
        let mut meter = ResponseMeter::new(
            Endpoint::Messages,
            200,
            Some("text/event-stream; charset=utf-8"),
        );
        assert!(meter.is_stream());
        meter.feed(ANTHROPIC_START.as_bytes(), false);
        for _ in 0..5 {
            meter.feed(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"ab\"}}\n\n", false);
        }
        let metered = meter.finish(400, EarlyEnd::Client);
        assert_eq!(metered.status, EndStatus::ClientDisconnect);
        assert!(metered.estimated);
        assert_eq!(metered.usage.prompt_tokens, 20, "reported input is kept");
        assert!(metered.usage.completion_tokens >= 5);
    }

    #[test]
    fn an_openai_stream_reset_before_usage_is_estimated_as_upstream_error() {
        let mut meter =
            ResponseMeter::new(Endpoint::ChatCompletions, 200, Some("text/event-stream"));
        meter.feed(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n",
            false,
        );
        let metered = meter.finish(100, EarlyEnd::Upstream);
        assert_eq!(metered.status, EndStatus::UpstreamError);
        assert!(metered.estimated);
        assert_eq!(metered.usage.prompt_tokens, 100);
        assert_eq!(metered.usage.completion_tokens, 1);
    }

    #[test]
    fn an_incomplete_responses_stream_is_billed_by_its_usage_not_estimated() {
        let mut meter = ResponseMeter::new(Endpoint::Responses, 200, Some("text/event-stream"));
        meter.feed(
            concat!(
                "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"a\"}\n\n",
                "event: response.incomplete\ndata: {\"type\":\"response.incomplete\",\"response\":{\"status\":\"incomplete\",",
                "\"incomplete_details\":{\"reason\":\"max_output_tokens\"},\"usage\":{\"input_tokens\":30,\"output_tokens\":64}}}\n\n"
            )
            .as_bytes(),
            true,
        );
        let metered = meter.finish(999, EarlyEnd::Upstream);
        assert_eq!(metered.status, EndStatus::Ok);
        assert!(!metered.estimated);
        assert_eq!(
            (metered.usage.prompt_tokens, metered.usage.completion_tokens),
            (30, 64)
        );
    }

    #[test]
    fn a_client_leaving_before_any_answer_is_charged_the_reservation() {
        let meter = ResponseMeter::new(Endpoint::ChatCompletions, 0, None);
        let metered = meter.finish(30, EarlyEnd::Client);
        assert_eq!(metered.status, EndStatus::ClientDisconnect);
        assert!(metered.estimated);
        assert_eq!(metered.charge_reserved, Some(ReservedCharge::ClientLeft));
        assert_eq!(metered.usage.prompt_tokens, 30);
        assert_eq!(metered.usage.completion_tokens, 0);
        assert_eq!(prompt_estimate(9), 3);
    }

    #[test]
    fn an_upstream_that_never_answered_is_charged_the_prompt_estimate_only() {
        let meter = ResponseMeter::new(Endpoint::ChatCompletions, 0, None);
        let metered = meter.finish(30, EarlyEnd::Upstream);
        assert_eq!(metered.status, EndStatus::UpstreamError);
        assert_eq!(
            metered.charge_reserved, None,
            "a connect failure is not billed"
        );
        assert_eq!(metered.usage.prompt_tokens, 30);
    }

    #[test]
    fn a_client_leaving_mid_json_answer_is_charged_the_reservation() {
        let mut meter =
            ResponseMeter::new(Endpoint::ChatCompletions, 200, Some("application/json"));
        meter.feed(&CHAT_JSON.as_bytes()[..40], false);
        let metered = meter.finish(30, EarlyEnd::Client);
        assert_eq!(metered.status, EndStatus::ClientDisconnect);
        assert_eq!(metered.charge_reserved, Some(ReservedCharge::ClientLeft));
    }

    #[test]
    fn a_stream_cut_by_the_client_is_charged_what_was_seen_not_the_reservation() {
        let mut meter =
            ResponseMeter::new(Endpoint::ChatCompletions, 200, Some("text/event-stream"));
        meter.feed(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
            false,
        );
        let metered = meter.finish(30, EarlyEnd::Client);
        assert_eq!(metered.charge_reserved, None);
        assert!(metered.estimated);
    }

    #[test]
    fn envoys_timeout_reply_is_charged_the_reservation() {
        assert_eq!(
            EarlyEnd::from_code_details("response_timeout"),
            EarlyEnd::UpstreamTimeout
        );
        assert_eq!(
            EarlyEnd::from_code_details("upstream_per_try_idle_timeout"),
            EarlyEnd::UpstreamTimeout
        );
        assert_eq!(
            EarlyEnd::from_code_details("upstream_per_try_timeout"),
            EarlyEnd::UpstreamTimeout
        );
        assert_eq!(
            EarlyEnd::from_code_details("downstream_remote_disconnect"),
            EarlyEnd::Client
        );
        assert_eq!(
            EarlyEnd::from_code_details("via_upstream"),
            EarlyEnd::Upstream
        );
        // Review findings: an HTTP/2 client's reset and a codec error are the client's side; the
        // connection manager's idle and duration timeouts are Envoy giving up on the upstream.
        for client in [
            "http2.remote_reset",
            "http2.remote_refuse",
            "codec_error:x",
            "request_overall_timeout",
        ] {
            assert_eq!(
                EarlyEnd::from_code_details(client),
                EarlyEnd::Client,
                "{client}"
            );
        }
        for timeout in ["stream_idle_timeout", "max_duration_timeout"] {
            assert_eq!(
                EarlyEnd::from_code_details(timeout),
                EarlyEnd::UpstreamTimeout,
                "{timeout}"
            );
        }
        for upstream in [
            "upstream_reset_before_response_started{connection_failure}",
            "upstream_reset_after_response_started{remote_reset}",
            "no_healthy_upstream",
        ] {
            assert_eq!(
                EarlyEnd::from_code_details(upstream),
                EarlyEnd::Upstream,
                "{upstream}"
            );
        }
        let mut idle = ResponseMeter::new(Endpoint::ChatCompletions, 408, Some("text/plain"));
        idle.feed(b"stream timeout", true);
        let metered = idle.finish(30, EarlyEnd::from_code_details("stream_idle_timeout"));
        assert!(
            metered.charge_reserved.is_some(),
            "Envoy's idle-timeout 408 is charged"
        );
        let mut meter = ResponseMeter::new(Endpoint::Responses, 504, Some("text/plain"));
        meter.feed(b"upstream request timeout", true);
        let metered = meter.finish(30, EarlyEnd::UpstreamTimeout);
        assert_eq!(metered.status, EndStatus::UpstreamError);
        assert_eq!(metered.http_status, 504);
        assert!(metered.estimated);
        assert_eq!(
            metered.charge_reserved,
            Some(ReservedCharge::UpstreamTimeout)
        );
        // The provider's own 504 (via_upstream) costs nothing.
        let metered = meter.finish(30, EarlyEnd::Upstream);
        assert_eq!(
            (metered.charge_reserved, metered.usage),
            (None, Usage::default())
        );
    }

    #[test]
    fn a_still_compressed_answer_is_not_parsed_and_is_flagged_unreadable() {
        let mut meter = ResponseMeter::unreadable(Endpoint::ChatCompletions, 200);
        meter.feed(b"\x1f\x8b\x08\x00 gzip bytes", true);
        let metered = meter.finish(30, EarlyEnd::Upstream);
        assert_eq!(metered.status, EndStatus::Ok);
        assert!(metered.estimated);
        assert_eq!(metered.charge_reserved, Some(ReservedCharge::Unreadable));
        assert_eq!(metered.usage.prompt_tokens, 30);
        assert_eq!(meter.held_bytes(), 0, "nothing is kept");
        let mut error = ResponseMeter::unreadable(Endpoint::ChatCompletions, 500);
        error.feed(b"\x1f\x8b", true);
        let metered = error.finish(30, EarlyEnd::Upstream);
        assert_eq!(metered.status, EndStatus::UpstreamError);
        assert_eq!(
            metered.charge_reserved, None,
            "an error answer is not charged"
        );
    }
}
