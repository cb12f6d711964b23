//! Making streamed OpenAI completions report usage without the client noticing.
//!
//! OpenAI streams carry usage only when the request sets `stream_options.include_usage`. When a
//! client streams without it, the filter adds it upstream ([`include_usage_edit`]) and then takes
//! its traces back out of what the client receives ([`UsageChunkStripper`]): the extra final
//! chunk with `"choices":[]` and the `"usage":null` member OpenAI adds to every other chunk.
//!
//! The stripper forwards every *complete* event of a chunk at once and carries only an event's
//! unfinished tail to the next chunk (a client cannot act on half an event), so nothing a client
//! could use is delayed and memory stays bounded by [`MAX_HELD_BYTES`].

use std::ops::Range;

use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::core::admission::request::{BodyFacts, Endpoint};

/// Largest unfinished event held between chunks; a longer one is passed through untouched.
pub const MAX_HELD_BYTES: usize = 256 * 1024;

/// The body edit that turns on `stream_options.include_usage`, when this request needs it:
/// a streamed OpenAI chat or text completion that did not ask for usage.
pub fn include_usage_edit(
    endpoint: Endpoint,
    body: &[u8],
    facts: &BodyFacts<'_>,
) -> Option<(Range<usize>, Vec<u8>)> {
    let streams_openai = matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Completions);
    if !streams_openai || !facts.stream || facts.include_usage {
        return None;
    }
    match &facts.stream_options_span {
        None => {
            let open = body.iter().position(|&b| b == b'{')?;
            let at = open + 1;
            Some((
                at..at,
                br#""stream_options":{"include_usage":true},"#.to_vec(),
            ))
        }
        Some(span) => {
            let raw = body.get(span.clone())?;
            let mut options: serde_json::Map<String, serde_json::Value> = if raw == b"null" {
                serde_json::Map::new()
            } else {
                serde_json::from_slice(raw).ok()?
            };
            options.insert("include_usage".to_string(), serde_json::Value::Bool(true));
            let encoded = serde_json::to_vec(&options).ok()?;
            Some((span.clone(), encoded))
        }
    }
}

/// Removes the usage the client did not ask for from an OpenAI SSE stream, chunk by chunk.
#[derive(Debug, Default)]
pub struct UsageChunkStripper {
    held: Vec<u8>,
    /// Inside an event too long to hold: pass bytes through until its end.
    passing: bool,
    /// The last byte passed through was a newline (an event end may straddle chunks).
    passed_newline: bool,
}

impl UsageChunkStripper {
    /// A stripper for one stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes to send to the client for this chunk (`end` = last chunk of the body).
    pub fn rewrite(&mut self, chunk: &[u8], end: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len() + self.held.len());
        let mut input = chunk;
        if self.passing {
            let straddling = if self.passed_newline {
                if input.starts_with(b"\n") {
                    Some(1)
                } else if input.starts_with(b"\r\n") {
                    Some(2)
                } else {
                    None
                }
            } else {
                None
            };
            match straddling.or_else(|| event_end(input, 0)) {
                Some(stop) => {
                    out.extend_from_slice(&input[..stop]);
                    input = &input[stop..];
                    self.passing = false;
                }
                None => {
                    out.extend_from_slice(input);
                    if let Some(&last) = input.last() {
                        self.passed_newline = last == b'\n';
                    }
                    return out;
                }
            }
        }
        if self.held.is_empty() {
            // Whole events are read from the chunk in place; only a partial one is held.
            let mut start = 0;
            while let Some(stop) = event_end(input, start) {
                rewrite_event(input.get(start..stop).unwrap_or_default(), &mut out);
                start = stop;
            }
            self.held
                .extend_from_slice(input.get(start..).unwrap_or_default());
        } else {
            self.held.extend_from_slice(input);
            let mut start = 0;
            while let Some(stop) = event_end(&self.held, start) {
                rewrite_event(self.held.get(start..stop).unwrap_or_default(), &mut out);
                start = stop;
            }
            self.held.drain(..start);
        }
        if end {
            rewrite_event(&self.held, &mut out);
            self.held.clear();
        } else if self.held.len() > MAX_HELD_BYTES {
            self.passed_newline = self.held.last() == Some(&b'\n');
            out.append(&mut self.held);
            self.passing = true;
        }
        out
    }

    /// Bytes held back waiting for the rest of an event.
    pub fn held_bytes(&self) -> usize {
        self.held.len()
    }
}

/// The end (exclusive, after the blank line) of the first event that ends at or after `from`.
fn event_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(offset) = memchr::memchr(b'\n', bytes.get(at..)?) {
        let newline = at + offset;
        let next = bytes.get(newline + 1..)?;
        if next.first() == Some(&b'\n') {
            return Some(newline + 2);
        }
        if next.starts_with(b"\r\n") {
            return Some(newline + 3);
        }
        at = newline + 1;
    }
    None
}

/// Appends `event` to `out` unless it is the usage-only chunk; strips `"usage":null`. Written
/// straight into `out` (it runs on every event of a stream): a usage-only chunk found after
/// other lines of its event takes back what was written.
fn rewrite_event(event: &[u8], out: &mut Vec<u8>) {
    if event.is_empty() {
        return;
    }
    let mark = out.len();
    let mut rest = event;
    while !rest.is_empty() {
        let (line, after) =
            rest.split_at(memchr::memchr(b'\n', rest).map_or(rest.len(), |n| n + 1));
        rest = after;
        let Some(data) = line.strip_prefix(b"data:") else {
            out.extend_from_slice(line);
            continue;
        };
        let payload_end = data
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        let (payload, line_end) = data.split_at(payload_end);
        let trimmed = payload.strip_prefix(b" ").unwrap_or(payload);
        if is_usage_only_chunk(trimmed) {
            out.truncate(mark);
            return;
        }
        match null_usage_cut(payload) {
            Some((cut_start, cut_end)) => {
                out.extend_from_slice(b"data:");
                out.extend_from_slice(payload.get(..cut_start).unwrap_or_default());
                out.extend_from_slice(payload.get(cut_end..).unwrap_or_default());
                out.extend_from_slice(line_end);
            }
            None => out.extend_from_slice(line),
        }
    }
}

/// `{"choices":[], "usage":{...}}`: the chunk `include_usage` adds.
fn is_usage_only_chunk(data: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Chunk {
        choices: Option<Vec<IgnoredAny>>,
        usage: Option<IgnoredAny>,
    }
    if !crate::core::metering::sse::has_usage_object(data) {
        return false;
    }
    matches!(
        serde_json::from_slice::<Chunk>(data),
        Ok(Chunk { choices: Some(choices), usage: Some(_) }) if choices.is_empty()
    )
}

/// The byte range to cut from `data` to remove its top-level `"usage":null` member and one
/// adjoining comma, if it has one.
fn null_usage_cut(data: &[u8]) -> Option<(usize, usize)> {
    const KEY: &[u8] = b"\"usage\"";
    // Most events of a stream without usage switched on never mention it: skip the scan.
    crate::core::metering::sse::find(data, KEY)?;
    if let Some(cut) = trailing_null_usage_cut(data) {
        return Some(cut);
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in data.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'"' if depth == 1 && data.get(i..).is_some_and(|rest| rest.starts_with(KEY)) => {
                if let Some(end) = null_member_end(data, i + KEY.len()) {
                    return Some(member_cut(data, i, end));
                }
                in_string = true;
            }
            b'"' => in_string = true,
            _ => {}
        }
    }
    None
}

/// The common shape, `{...,"usage":null}` with the member last, recognised from the end without
/// a scan. The closing brace is the top-level object's, so the value just before it (`null`)
/// and its key (`"usage"`, opened after a `,` or the `{`) are a top-level member.
fn trailing_null_usage_cut(data: &[u8]) -> Option<(usize, usize)> {
    fn trim_end(bytes: &[u8]) -> &[u8] {
        let keep = bytes
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        bytes.get(..keep).unwrap_or_default()
    }
    let inner = data.strip_suffix(b"}")?;
    let before_value = trim_end(trim_end(inner).strip_suffix(b"null")?);
    let before_key =
        trim_end(trim_end(before_value.strip_suffix(b":")?).strip_suffix(b"\"usage\"")?);
    match before_key.last() {
        Some(b',') => Some((before_key.len() - 1, inner.len())),
        Some(b'{') if before_key.len() == 1 => Some((before_key.len(), inner.len())),
        _ => None,
    }
}

/// After a key ending at `at`: the end of `: null`, if that is the value.
fn null_member_end(data: &[u8], at: usize) -> Option<usize> {
    let skip = |from: usize| {
        data.get(from..)
            .and_then(|rest| rest.iter().position(|b| !b.is_ascii_whitespace()))
            .map(|n| from + n)
    };
    let colon = skip(at)?;
    if data.get(colon) != Some(&b':') {
        return None;
    }
    let value = skip(colon + 1)?;
    data.get(value..)?.starts_with(b"null").then_some(value + 4)
}

/// The range covering `data[start..end]` and the comma that separates it from its neighbour.
fn member_cut(data: &[u8], start: usize, end: usize) -> (usize, usize) {
    let after = data
        .get(end..)
        .and_then(|rest| rest.iter().position(|b| !b.is_ascii_whitespace()))
        .map(|n| end + n);
    match after {
        Some(comma) if data.get(comma) == Some(&b',') => (start, comma + 1),
        _ => {
            let before = data
                .get(..start)
                .and_then(|head| head.iter().rposition(|b| !b.is_ascii_whitespace()));
            match before {
                Some(comma) if data.get(comma) == Some(&b',') => (comma, end),
                _ => (start, end),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::core::admission::request::{read_body, splice};

    fn edited(body: &str) -> Option<String> {
        let facts = read_body(body.as_bytes()).unwrap();
        let edit = include_usage_edit(Endpoint::ChatCompletions, body.as_bytes(), &facts)?;
        let out = splice(body.as_bytes(), vec![edit]);
        Some(String::from_utf8(out).unwrap())
    }

    #[test]
    fn include_usage_is_added_only_when_missing() {
        let out = edited(r#" {"model":"m","stream":true}"#).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["model"], "m");

        let out = edited(r#"{"model":"m","stream":true,"stream_options":{"x":1}}"#).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["stream_options"],
            serde_json::json!({"x":1,"include_usage":true})
        );

        let out = edited(r#"{"model":"m","stream":true,"stream_options":{"include_usage":false}}"#);
        let v: serde_json::Value = serde_json::from_str(&out.unwrap()).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);

        let out = edited(r#"{"model":"m","stream":true,"stream_options":null}"#).unwrap();
        assert!(out.contains(r#""stream_options":{"include_usage":true}"#));

        assert_eq!(edited(r#"{"model":"m","stream":false}"#), None);
        assert_eq!(
            edited(r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#),
            None
        );
        let body = br#"{"model":"m","stream":true}"#;
        let facts = read_body(body).unwrap();
        assert_eq!(include_usage_edit(Endpoint::Messages, body, &facts), None);
    }

    const STREAM: &str = concat!(
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"He said \\\"usage\\\":null\"}}],\"usage\":null}\n\n",
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n",
        "data: [DONE]\n\n"
    );

    const EXPECTED: &str = concat!(
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"He said \\\"usage\\\":null\"}}]}\n\n",
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: [DONE]\n\n"
    );

    #[test]
    fn usage_chunk_and_null_usage_are_removed() {
        let mut stripper = UsageChunkStripper::new();
        let out = stripper.rewrite(STREAM.as_bytes(), true);
        assert_eq!(String::from_utf8(out).unwrap(), EXPECTED);
    }

    #[test]
    fn any_split_gives_the_same_output_and_holds_only_partial_events() {
        let bytes = STREAM.as_bytes();
        for split in 0..=bytes.len() {
            let mut stripper = UsageChunkStripper::new();
            let mut out = stripper.rewrite(&bytes[..split], false);
            assert!(stripper.held_bytes() <= split);
            out.extend(stripper.rewrite(&bytes[split..], true));
            assert_eq!(
                String::from_utf8(out).unwrap(),
                EXPECTED,
                "split at {split}"
            );
        }
        let mut stripper = UsageChunkStripper::new();
        let mut out = Vec::new();
        for byte in bytes {
            out.extend(stripper.rewrite(std::slice::from_ref(byte), false));
        }
        out.extend(stripper.rewrite(b"", true));
        assert_eq!(String::from_utf8(out).unwrap(), EXPECTED);
    }

    #[test]
    fn complete_events_are_forwarded_at_once() {
        let mut stripper = UsageChunkStripper::new();
        let first =
            "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\ndata: {\"cho";
        let out = stripper.rewrite(first.as_bytes(), false);
        assert_eq!(
            out,
            b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"
        );
        assert_eq!(stripper.held_bytes(), "data: {\"cho".len());
    }

    fn without_null_usage(data: &[u8]) -> Option<Vec<u8>> {
        let (start, end) = null_usage_cut(data)?;
        Some([&data[..start], &data[end..]].concat())
    }

    #[test]
    fn a_usage_only_chunk_after_other_lines_of_its_event_takes_them_back() {
        let mut stripper = UsageChunkStripper::new();
        let out = stripper.rewrite(
            b"id: 7\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\ndata: [DONE]\n\n",
            true,
        );
        assert_eq!(out, b"data: [DONE]\n\n");
    }

    #[test]
    fn null_usage_is_removed_wherever_it_sits_and_crlf_survives() {
        assert_eq!(
            without_null_usage(br#"{"usage": null, "a":1}"#).unwrap(),
            br#"{ "a":1}"#
        );
        assert_eq!(
            without_null_usage(br#"{"a":{"usage":null}}"#),
            None,
            "nested members are not the chunk's usage"
        );
        assert_eq!(without_null_usage(br#"{"usage":{"x":1}}"#), None);
        let mut stripper = UsageChunkStripper::new();
        let out = stripper.rewrite(b"data: {\"a\":1,\"usage\":null}\r\n\r\n", true);
        assert_eq!(out, b"data: {\"a\":1}\r\n\r\n");
    }

    #[test]
    fn an_overlong_event_passes_through_unchanged() {
        let long = format!(
            "data: {{\"choices\":[{{\"delta\":{{\"content\":\"{}\"}}}}],\"usage\":null}}\n\ndata: [DONE]\n\n",
            "x".repeat(MAX_HELD_BYTES + 100 * 1024)
        );
        let bytes = long.as_bytes();
        let mut stripper = UsageChunkStripper::new();
        let mut out = Vec::new();
        for chunk in bytes.chunks(64 * 1024) {
            out.extend(stripper.rewrite(chunk, false));
            assert!(stripper.held_bytes() <= MAX_HELD_BYTES + 64 * 1024);
        }
        out.extend(stripper.rewrite(b"", true));
        assert_eq!(out.len(), bytes.len());
        assert!(out == bytes, "the long event was altered");
    }
}
