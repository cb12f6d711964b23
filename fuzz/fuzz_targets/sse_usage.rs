//! Any bytes as a response, split at an arbitrary point: the meters, the SSE reader and the usage
//! stripper never panic, and the stripper changes nothing in a stream without usage members.
#![no_main]

use tollgate::core::metering::response_meter::{EarlyEnd, ResponseMeter};
use tollgate::core::metering::stream_usage::UsageChunkStripper;
use tollgate::core::metering::usage::usage_from_json;
use tollgate::core::Endpoint;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    let (a, b) = data.split_at(split);
    for endpoint in [Endpoint::ChatCompletions, Endpoint::Responses, Endpoint::Messages] {
        for content_type in [Some("text/event-stream"), Some("application/json")] {
            let mut meter = ResponseMeter::new(endpoint, 200, content_type);
            meter.feed(a, false);
            meter.feed(b, true);
            let _ = meter.finish(10, EarlyEnd::Client);
        }
        let _ = usage_from_json(endpoint, data);
    }
    let mut stripper = UsageChunkStripper::new();
    let mut out = stripper.rewrite(a, false);
    out.extend(stripper.rewrite(b, true));
    if !data.windows(7).any(|w| w == b"\"usage\"") {
        assert_eq!(out, data, "the stripper altered a stream without usage");
    }
});
