//! Incremental server-sent-events reader for usage metering.
//!
//! Chunks are fed as they pass (the filter never holds them); an event may straddle any number
//! of chunks. Only a partial line is carried between chunks, and only `data:` lines that mention
//! `"usage"` are parsed. A line longer than [`MAX_LINE_BYTES`] (for example a `response.completed`
//! event carrying a very long answer) is not buffered whole: only its last [`TAIL_BYTES`] are kept,
//! and the last `"usage"` object in them is read. Memory per stream is therefore bounded.

use crate::core::admission::request::Endpoint;
use crate::core::metering::usage::{merge_stream_event, merge_usage_object, Usage};

/// Longest line buffered whole.
pub const MAX_LINE_BYTES: usize = 256 * 1024;
/// How much of an over-long line is kept (its end, where `usage` is written).
pub const TAIL_BYTES: usize = 16 * 1024;

/// Reads usage out of one streamed response.
#[derive(Debug)]
pub struct SseUsageReader {
    endpoint: Endpoint,
    line: Vec<u8>,
    overflowed: bool,
    usage: Usage,
    saw_usage: bool,
    saw_done: bool,
    data_events: u64,
    /// The over-long line being skipped is a `data:` line.
    overlong_data: bool,
    /// The over-long line being skipped began as a terminal event.
    overlong_terminal: bool,
}

impl SseUsageReader {
    /// A reader for a stream of `endpoint`.
    pub fn new(endpoint: Endpoint) -> Self {
        SseUsageReader {
            endpoint,
            line: Vec::new(),
            overflowed: false,
            usage: Usage::default(),
            saw_usage: false,
            saw_done: false,
            data_events: 0,
            overlong_data: false,
            overlong_terminal: false,
        }
    }

    /// Feeds the next chunk of the response body.
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while let Some(end) = memchr::memchr(b'\n', rest) {
            let (line, after) = rest.split_at(end);
            if self.line.is_empty() && !self.overflowed && line.len() <= MAX_LINE_BYTES {
                // The whole line is in this chunk: read it in place, without a copy.
                self.read_line(line);
            } else {
                self.push(line);
                self.end_line();
            }
            rest = after.get(1..).unwrap_or_default();
        }
        self.push(rest);
    }

    /// Call at the end of the body: a last line without a newline is still read.
    pub fn finish(&mut self) {
        if !self.line.is_empty() || self.overflowed {
            self.end_line();
        }
    }

    /// The usage seen so far, if any event carried usage.
    pub fn usage(&self) -> Option<Usage> {
        self.saw_usage.then_some(self.usage)
    }

    /// Whether the stream's terminal marker (`[DONE]`, `message_stop`, or one of the Responses
    /// API's three ends: `response.completed`, `response.incomplete`, `response.failed`) was
    /// seen.
    pub fn saw_done(&self) -> bool {
        self.saw_done
    }

    /// How many `data:` events (other than `[DONE]`) passed; a stand-in for output tokens when
    /// a stream ends before its usage.
    pub fn data_events(&self) -> u64 {
        self.data_events
    }

    /// Bytes currently held between chunks (bounded by [`MAX_LINE_BYTES`]).
    pub fn buffered_bytes(&self) -> usize {
        self.line.len()
    }

    fn push(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if !self.overflowed && self.line.len() + bytes.len() > MAX_LINE_BYTES {
            self.overflowed = true;
            // Only the line's tail is kept, but its event type is at its start.
            let mut head = self.line.get(..HEAD_BYTES).unwrap_or(&self.line).to_vec();
            let more = HEAD_BYTES.saturating_sub(head.len()).min(bytes.len());
            head.extend_from_slice(bytes.get(..more).unwrap_or_default());
            let data = head.strip_prefix(b"data:");
            self.overlong_data = data.is_some();
            self.overlong_terminal = data.is_some_and(|data| self.is_terminal(data));
        }
        self.line.extend_from_slice(bytes);
        if self.overflowed && self.line.len() > TAIL_BYTES {
            let excess = self.line.len() - TAIL_BYTES;
            self.line.drain(..excess);
        }
    }

    fn end_line(&mut self) {
        let mut line = std::mem::take(&mut self.line);
        if self.overflowed {
            self.overflowed = false;
            if std::mem::take(&mut self.overlong_data) {
                self.data_events += 1;
            }
            self.saw_done |= std::mem::take(&mut self.overlong_terminal);
            if let Some(object) = last_usage_object(&line) {
                self.saw_usage |= merge_usage_object(self.endpoint, object, &mut self.usage);
            }
        } else {
            self.read_line(&line);
        }
        line.clear();
        self.line = line;
    }

    /// Reads one whole line (without its `\n`).
    fn read_line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        let data = data.strip_prefix(b" ").unwrap_or(data);
        if data == b"[DONE]" {
            self.saw_done = true;
            return;
        }
        self.data_events += 1;
        if self.is_terminal(data) {
            self.saw_done = true;
        }
        if has_usage_object(data) && merge_stream_event(self.endpoint, data, &mut self.usage) {
            self.saw_usage = true;
        }
    }
}

impl SseUsageReader {
    /// Whether an event's data is its API's terminal event (each API has its own; only those
    /// are looked for). A Responses stream ends in `response.completed`, `response.incomplete`
    /// (an output cap or content filter) or `response.failed`; all three carry the usage the
    /// provider bills.
    fn is_terminal(&self, data: &[u8]) -> bool {
        let markers: &[&[u8]] = match self.endpoint {
            Endpoint::Messages => &[b"\"message_stop\""],
            Endpoint::Responses => &[
                b"\"response.completed\"",
                b"\"response.incomplete\"",
                b"\"response.failed\"",
            ],
            _ => &[],
        };
        markers.iter().any(|marker| find(data, marker).is_some())
    }
}

/// How much of an over-long line's start is checked for its event type.
const HEAD_BYTES: usize = 256;

/// Whether `data` has a `"usage":` key followed by an object (OpenAI streams with usage switched
/// on carry `"usage":null` in every chunk; those need no parse).
pub(crate) fn has_usage_object(data: &[u8]) -> bool {
    const KEY: &[u8] = b"\"usage\":";
    let mut rest = data;
    while let Some(at) = find(rest, KEY) {
        let after = rest.get(at + KEY.len()..).unwrap_or_default();
        if after.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
            return true;
        }
        rest = after;
    }
    false
}

/// Where `needle` first occurs in `haystack` (`None` for an empty needle). The SSE readers
/// run this on every event of every stream.
pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    memchr::memmem::find(haystack, needle)
}

/// Where `needle` last occurs in `haystack` (`None` for an empty needle).
pub(crate) fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    memchr::memmem::rfind(haystack, needle)
}

/// The JSON object after the last `"usage":` key in `text`, if it is complete.
///
/// `"usage":` with unescaped quotes can only be a key: inside a JSON string the quotes would be
/// escaped.
pub(crate) fn last_usage_object(text: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = b"\"usage\":";
    let at = rfind(text, KEY)? + KEY.len();
    let start = at
        + text
            .get(at..)?
            .iter()
            .position(|b| !b.is_ascii_whitespace())?;
    if text.get(start) != Some(&b'{') {
        return None;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in text.get(start..)?.iter().enumerate() {
        match (in_string, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (true, false, _) => {}
            (false, _, b'"') => in_string = true,
            (false, _, b'{') => depth += 1,
            (false, _, b'}') => {
                depth -= 1;
                if depth == 0 {
                    return text.get(start..start + i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod usage_key_tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::has_usage_object;

    #[test]
    fn find_and_rfind_agree_with_a_window_scan() {
        use super::{find, rfind};
        let hay = br#"{"a":"usage","usage":null,"x":"\"usage\":","usage":{"n":1}}"#;
        for needle in [&b"\"usage\":"[..], b"\"", b"u", b"}}", b"zz", b"{\"a\""] {
            let naive_first = hay.windows(needle.len()).position(|w| w == needle);
            let naive_last = hay.windows(needle.len()).rposition(|w| w == needle);
            assert_eq!(find(hay, needle), naive_first, "{needle:?}");
            assert_eq!(rfind(hay, needle), naive_last, "{needle:?}");
        }
        assert_eq!(find(b"", b"a"), None);
        assert_eq!(find(b"abc", b""), None);
        assert_eq!(find(b"ab", b"abc"), None);
        assert_eq!(rfind(b"aXa", b"a"), Some(2));
    }

    #[test]
    fn only_usage_objects_count() {
        assert!(has_usage_object(br#"{"usage": {"a":1}}"#));
        assert!(has_usage_object(br#"{"x":"\"usage\":null","usage":{}}"#));
        assert!(!has_usage_object(br#"{"choices":[],"usage":null}"#));
        assert!(!has_usage_object(br#"{"choices":[]}"#));
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    const OPENAI: &str = "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"He said \\\"usage\\\"\"}}]}\n\n\
        data: {\"id\":\"c\",\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
        data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5,\"total_tokens\":17}}\n\n\
        data: [DONE]\n\n";

    const ANTHROPIC: &str = "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":10,\"output_tokens\":1,\"cache_read_input_tokens\":3}}}\r\n\r\n\
        event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\r\n\r\n\
        event: message_delta\r\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":5}}\r\n\r\n\
        event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n";

    fn read(endpoint: Endpoint, chunks: &[&[u8]]) -> SseUsageReader {
        let mut reader = SseUsageReader::new(endpoint);
        for chunk in chunks {
            reader.feed(chunk);
        }
        reader.finish();
        reader
    }

    #[test]
    fn openai_stream_usage_is_read_from_the_final_chunk() {
        let r = read(Endpoint::ChatCompletions, &[OPENAI.as_bytes()]);
        let u = r.usage().unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (12, 5));
        assert!(r.saw_done());
    }

    #[test]
    fn split_at_every_byte_position_gives_the_same_usage() {
        for (endpoint, text) in [
            (Endpoint::ChatCompletions, OPENAI),
            (Endpoint::Messages, ANTHROPIC),
        ] {
            let whole = read(endpoint, &[text.as_bytes()]).usage();
            assert!(whole.is_some());
            for cut in 0..=text.len() {
                let (a, b) = text.as_bytes().split_at(cut);
                assert_eq!(read(endpoint, &[a, b]).usage(), whole, "cut at {cut}");
            }
            let bytes: Vec<&[u8]> = text.as_bytes().chunks(1).collect();
            assert_eq!(read(endpoint, &bytes).usage(), whole);
        }
    }

    #[test]
    fn anthropic_stream_merges_start_and_delta_with_crlf_lines() {
        let r = read(Endpoint::Messages, &[ANTHROPIC.as_bytes()]);
        let u = r.usage().unwrap();
        assert_eq!(
            (u.prompt_tokens, u.cached_tokens, u.completion_tokens),
            (13, 3, 5)
        );
        assert!(r.saw_done());
    }

    #[test]
    fn stream_without_usage_reports_none() {
        let text = "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\ndata: [DONE]\n\n";
        let r = read(Endpoint::ChatCompletions, &[text.as_bytes()]);
        assert_eq!(r.usage(), None);
        assert!(r.saw_done());
    }

    #[test]
    fn an_over_long_event_keeps_bounded_memory_and_still_yields_usage() {
        let mut reader = SseUsageReader::new(Endpoint::Responses);
        reader.feed(b"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"output\":[{\"text\":\"");
        let filler = vec![b'x'; 64 * 1024];
        for _ in 0..64 {
            reader.feed(&filler); // 4 MiB of answer text
            assert!(reader.buffered_bytes() <= MAX_LINE_BYTES);
        }
        reader.feed(b"\"}],\"usage\":{\"input_tokens\":9,\"output_tokens\":1000000,\"output_tokens_details\":{\"reasoning_tokens\":7}}}}\n\n");
        reader.finish();
        let u = reader.usage().unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.reasoning_tokens),
            (9, 1_000_000, 7)
        );
        assert!(reader.saw_done(), "its start said response.completed");
    }

    #[test]
    fn incomplete_and_failed_responses_streams_end_with_their_usage() {
        for kind in ["response.incomplete", "response.failed"] {
            let text = format!(
                "event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}}\n\n\
                 event: {kind}\ndata: {{\"type\":\"{kind}\",\"response\":{{\"id\":\"r\",\"status\":\"x\",\
                 \"usage\":{{\"input_tokens\":40,\"output_tokens\":16}}}}}}\n\n"
            );
            let r = read(Endpoint::Responses, &[text.as_bytes()]);
            let u = r.usage().unwrap();
            assert_eq!((u.prompt_tokens, u.completion_tokens), (40, 16), "{kind}");
            assert!(r.saw_done(), "{kind} ends the stream");
        }
        let quoted = "data: {\"type\":\"response.output_text.delta\",\"delta\":\"\\\"response.failed\\\"\"}\n\n";
        assert!(!read(Endpoint::Responses, &[quoted.as_bytes()]).saw_done());
    }

    #[test]
    fn usage_object_finder_skips_braces_inside_strings() {
        let text = br#"{"a":"}{","usage":{"x":"\"}","input_tokens":1},"b":2}"#;
        assert_eq!(
            last_usage_object(text),
            Some(&br#"{"x":"\"}","input_tokens":1}"#[..])
        );
        assert_eq!(last_usage_object(br#"{"usage":{"open":1"#), None);
    }
}
