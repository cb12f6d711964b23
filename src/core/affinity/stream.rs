//! Marking a Responses-API answer as it passes (JSON or SSE): every response id and reasoning
//! item id, and every `encrypted_content`, gets the producing deployment's
//! [`AffinityTag`](crate::core::affinity::mark::AffinityTag).
//!
//! A byte-level JSON tokenizer follows strings and keys across chunks. Only the value of a key
//! of interest is held until its closing quote (bounded by [`MAX_VALUE_BYTES`]); everything
//! else is forwarded in the chunk it arrived in. Marked keys:
//! - `id`, `item_id`, `response_id` and `previous_response_id` whose value starts with `resp_`
//!   or `rs_`: the response and its reasoning items, and references to them;
//! - `encrypted_content`: reasoning state bound to the deployment's credential.

use crate::core::affinity::mark::{mark_content, mark_id, MarkWith};

/// Longest value held for marking; a longer one passes unmarked.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Longest key remembered (the keys of interest are shorter).
const MAX_KEY_BYTES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Id,
    Content,
}

fn key_of(name: &[u8]) -> Option<Key> {
    match name {
        b"id" | b"item_id" | b"response_id" | b"previous_response_id" => Some(Key::Id),
        b"encrypted_content" => Some(Key::Content),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Outside,
    /// In a string that is forwarded as it passes (remembering a short one as a possible key).
    Passing,
    /// In the value of a key of interest, held until it ends.
    Holding(Key),
}

/// Marks one response body, chunk by chunk.
#[derive(Debug)]
pub struct ResponseMarker {
    tag: MarkWith,
    mode: Mode,
    escaped: bool,
    key: Vec<u8>,
    key_valid: bool,
    pending: Option<Key>,
    colon: bool,
    held: Vec<u8>,
    held_escape: bool,
}

impl ResponseMarker {
    /// A marker writing `tag` (the producing deployment, sealed to the caller's tenant).
    pub fn new(tag: MarkWith) -> ResponseMarker {
        ResponseMarker {
            tag,
            mode: Mode::Outside,
            escaped: false,
            key: Vec::new(),
            key_valid: true,
            pending: None,
            colon: false,
            held: Vec::new(),
            held_escape: false,
        }
    }

    /// Bytes held back (the unfinished value of a key of interest).
    pub fn held_bytes(&self) -> usize {
        self.held.len()
    }

    /// The bytes to forward for `chunk` (`end`: the body's last chunk).
    pub fn rewrite(&mut self, chunk: &[u8], end: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len() + 64);
        for &b in chunk {
            match self.mode {
                Mode::Outside => self.outside(b, &mut out),
                Mode::Passing => self.passing(b, &mut out),
                Mode::Holding(key) => self.holding(key, b, &mut out),
            }
        }
        if end {
            out.append(&mut self.held);
            self.mode = Mode::Outside;
        }
        out
    }

    fn outside(&mut self, b: u8, out: &mut Vec<u8>) {
        match b {
            b'"' => {
                if let (Some(key), true) = (self.pending, self.colon) {
                    self.mode = Mode::Holding(key);
                    self.held.clear();
                    self.held.push(b);
                    self.held_escape = false;
                } else {
                    self.mode = Mode::Passing;
                    self.key.clear();
                    self.key_valid = true;
                    out.push(b);
                }
                self.pending = None;
                self.colon = false;
                self.escaped = false;
            }
            b':' => {
                if self.pending.is_some() && !self.colon {
                    self.colon = true;
                } else {
                    self.pending = None;
                }
                out.push(b);
            }
            b' ' | b'\t' | b'\r' => out.push(b),
            _ => {
                self.pending = None;
                self.colon = false;
                out.push(b);
            }
        }
    }

    fn passing(&mut self, b: u8, out: &mut Vec<u8>) {
        out.push(b);
        if self.escaped {
            self.escaped = false;
        } else if b == b'\\' {
            self.escaped = true;
            self.key_valid = false;
        } else if b == b'"' {
            self.mode = Mode::Outside;
            self.pending = if self.key_valid {
                key_of(&self.key)
            } else {
                None
            };
            self.colon = false;
        } else if b == b'\n' {
            // A raw newline never occurs inside a JSON string: we are between SSE lines.
            self.mode = Mode::Outside;
        } else if self.key.len() < MAX_KEY_BYTES {
            self.key.push(b);
        } else {
            self.key_valid = false;
        }
    }

    fn holding(&mut self, key: Key, b: u8, out: &mut Vec<u8>) {
        self.held.push(b);
        if self.escaped {
            self.escaped = false;
        } else if b == b'\\' {
            self.escaped = true;
            self.held_escape = true;
        } else if b == b'"' {
            self.finish_value(key, out);
            self.mode = Mode::Outside;
        } else if b == b'\n' {
            out.append(&mut self.held);
            self.mode = Mode::Outside;
        } else if self.held.len() > MAX_VALUE_BYTES {
            out.append(&mut self.held);
            self.mode = Mode::Passing;
            self.key_valid = false;
        }
    }

    fn finish_value(&mut self, key: Key, out: &mut Vec<u8>) {
        let inner = self
            .held
            .get(1..self.held.len().saturating_sub(1))
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .filter(|_| !self.held_escape);
        let marked = match (inner, key) {
            (Some(id), Key::Id) if id.starts_with("resp_") || id.starts_with("rs_") => {
                Some(mark_id(id, &self.tag))
            }
            (Some(content), Key::Content) if !content.is_empty() => {
                Some(mark_content(content, &self.tag))
            }
            _ => None,
        };
        match marked {
            Some(value) => {
                out.push(b'"');
                out.extend_from_slice(value.as_bytes());
                out.push(b'"');
                self.held.clear();
            }
            None => out.append(&mut self.held),
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::core::affinity::mark::{unmark_content, unmark_id, AffinityTag, Reading, Seal};

    const RESP: &str = "resp_68af4030592c81938ec0a5fbab4a3e9f05438e46b5f69a3b";
    const RS: &str = "rs_68af4030baa48193b0b43b4c2a176a1a05438e46b5f69a3b";

    fn tag() -> MarkWith {
        MarkWith {
            tag: AffinityTag::new("east", "cred:EAST"),
            seal: seal(),
        }
    }

    fn seal() -> Seal {
        Seal::new(b"a secret of at least 16 bytes", "key:abc")
    }

    /// The original of a value sealed for [`seal`].
    fn original(reading: Reading) -> String {
        match reading {
            Reading::Sealed(original, _) => original,
            other => panic!("{other:?}"),
        }
    }

    fn body() -> String {
        format!(
            r#"{{
  "id": "{RESP}",
  "object": "response",
  "previous_response_id": null,
  "output": [
    {{"type": "reasoning", "id": "{RS}", "encrypted_content": "gAAAAB/x+y=", "summary": []}},
    {{"type": "message", "id": "msg_1", "content": [{{"type": "output_text",
      "text": "He wrote \"id\": \"resp_fake\" and \\\"encrypted_content\\\""}}]}}
  ]
}}"#
        )
    }

    fn marked(input: &str) -> String {
        let mut marker = ResponseMarker::new(tag());
        String::from_utf8(marker.rewrite(input.as_bytes(), true)).unwrap()
    }

    #[test]
    fn ids_and_encrypted_content_are_marked_and_nothing_else() {
        let out = marked(&body());
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let id = v["id"].as_str().unwrap();
        assert_eq!(
            unmark_id(id, &seal()),
            Ok(Reading::Sealed(RESP.to_string(), tag().tag))
        );
        let rs = &v["output"][0];
        assert_eq!(
            original(unmark_id(rs["id"].as_str().unwrap(), &seal()).unwrap()),
            RS
        );
        let content = rs["encrypted_content"].as_str().unwrap();
        assert_eq!(
            original(unmark_content(content, &seal()).unwrap()),
            "gAAAAB/x+y="
        );
        assert_eq!(v["output"][1]["id"], "msg_1");
        let text = v["output"][1]["content"][0]["text"].as_str().unwrap();
        assert_eq!(
            text,
            r#"He wrote "id": "resp_fake" and \"encrypted_content\""#
        );
        assert!(v["previous_response_id"].is_null());
    }

    #[test]
    fn any_split_gives_the_same_output() {
        let body = body();
        let whole = marked(&body);
        let bytes = body.as_bytes();
        for split in 0..=bytes.len() {
            let mut marker = ResponseMarker::new(tag());
            let mut out = marker.rewrite(&bytes[..split], false);
            out.extend(marker.rewrite(&bytes[split..], true));
            assert_eq!(String::from_utf8(out).unwrap(), whole, "split at {split}");
        }
    }

    #[test]
    fn sse_events_are_marked_line_by_line() {
        let stream = format!(
            "event: response.created\ndata: {{\"type\":\"response.created\",\"response\":{{\"id\":\"{RESP}\"}}}}\n\n\
             event: response.reasoning_summary_text.delta\ndata: {{\"item_id\":\"{RS}\",\"delta\":\"a\"}}\n\n"
        );
        let out = marked(&stream);
        assert!(!out.contains(RESP) && !out.contains(RS), "{out}");
        assert!(out.starts_with("event: response.created\ndata: {"));
        assert_eq!(out.matches("\n\n").count(), 2);
    }

    #[test]
    fn only_unfinished_values_are_held() {
        let mut marker = ResponseMarker::new(tag());
        let out = marker.rewrite(br#"{"object":"response","id":"resp_68af"#, false);
        assert_eq!(out, br#"{"object":"response","id":"#);
        assert_eq!(marker.held_bytes(), r#""resp_68af"#.len());
        let rest = marker.rewrite(br#"40"}"#, true);
        assert!(String::from_utf8(rest).unwrap().starts_with("\"resp_ts"));
    }

    #[test]
    fn escaped_or_huge_values_pass_unmarked() {
        assert_eq!(
            marked(r#"{"encrypted_content":"a\/b"}"#),
            r#"{"encrypted_content":"a\/b"}"#
        );
        let huge = format!(
            r#"{{"encrypted_content":"{}","id":"{RESP}"}}"#,
            "A".repeat(MAX_VALUE_BYTES + 5)
        );
        let out = marked(&huge);
        assert!(out.starts_with(r#"{"encrypted_content":"AAAA"#));
        assert!(!out.contains(RESP), "later values are still marked");
    }
}
