//! Reading affinity marks from a Responses-API follow-up and restoring the original values.
//!
//! The marks can sit in `previous_response_id` and, within `input` items, in `id` and
//! `encrypted_content`. Each marked value becomes an edit that puts back exactly what the
//! provider issued, and its tag is a pin for routing. The spans of items that carry
//! `encrypted_content` are kept too: `affinity_fallback: strip` removes those items when no
//! deployment on their encryption boundary is left.

use std::ops::Range;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::policy::affinity_mark::{unmark_content, unmark_id, AffinityTag, CorruptMark};

/// What a follow-up's marks say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    /// Body edits restoring the original values.
    pub restores: Vec<(Range<usize>, Vec<u8>)>,
    /// The tag of `previous_response_id`, if it was marked.
    pub previous: Option<AffinityTag>,
    /// Tags found in input items, in order.
    pub items: Vec<AffinityTag>,
    /// What to remove to drop every input item carrying `encrypted_content`: disjoint spans,
    /// each covering a run of adjacent such items with the separators around it that must go
    /// too (removing all of them leaves a valid array).
    pub encrypted_items: Vec<Range<usize>>,
}

impl Marks {
    /// The tag to route on: `previous_response_id`'s, else the first input item's.
    pub fn pin(&self) -> Option<AffinityTag> {
        self.previous.or_else(|| self.items.first().copied())
    }

    /// Whether the marks disagree about where the conversation lives.
    pub fn conflicting(&self) -> bool {
        let Some(pin) = self.pin() else {
            return false;
        };
        self.items.iter().any(|t| t.boundary != pin.boundary)
    }
}

#[derive(Deserialize)]
struct FollowUp<'a> {
    #[serde(borrow)]
    previous_response_id: Option<&'a RawValue>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Item<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    encrypted_content: Option<&'a RawValue>,
}

/// Reads the marks of a `/v1/responses` request body (already validated as a JSON object).
pub fn read_marks(body: &[u8]) -> Result<Marks, CorruptMark> {
    let mut marks = Marks::default();
    let Ok(request) = serde_json::from_slice::<FollowUp>(body) else {
        return Ok(marks);
    };
    if let Some(raw) = request.previous_response_id {
        if let Some((span, original, tag)) = unmark_value(body, raw, unmark_id)? {
            marks.previous = Some(tag);
            marks.restores.push((span, encode(&original)));
        }
    }
    let Some(input) = request.input else {
        return Ok(marks);
    };
    let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(input.get()) else {
        return Ok(marks); // a plain-text input carries no marks
    };
    let spans: Vec<Option<Range<usize>>> = items.iter().map(|raw| span_of(body, raw)).collect();
    let mut encrypted = vec![false; items.len()];
    for (i, raw) in items.iter().enumerate() {
        let Ok(item) = serde_json::from_str::<Item>(raw.get()) else {
            continue;
        };
        if let Some(id) = item.id {
            if let Some((span, original, tag)) = unmark_value(body, id, unmark_id)? {
                marks.items.push(tag);
                marks.restores.push((span, encode(&original)));
            }
        }
        if let Some(content) = item.encrypted_content {
            if let Some((span, original, tag)) = unmark_value(body, content, unmark_content)? {
                marks.items.push(tag);
                marks.restores.push((span, encode(&original)));
            }
            if let Some(slot) = encrypted.get_mut(i) {
                *slot = true;
            }
        }
    }
    marks.encrypted_items = removal_spans(&spans, &encrypted);
    Ok(marks)
}

type Unmark = fn(&str) -> Result<Option<(String, AffinityTag)>, CorruptMark>;

fn unmark_value(
    body: &[u8],
    raw: &RawValue,
    unmark: Unmark,
) -> Result<Option<(Range<usize>, String, AffinityTag)>, CorruptMark> {
    let Ok(text) = serde_json::from_str::<&str>(raw.get()) else {
        return Ok(None); // not a plain string: not ours
    };
    let Some(span) = span_of(body, raw) else {
        return Ok(None);
    };
    Ok(unmark(text)?.map(|(original, tag)| (span, original, tag)))
}

fn encode(text: &str) -> Vec<u8> {
    serde_json::Value::String(text.to_string())
        .to_string()
        .into_bytes()
}

fn span_of(body: &[u8], raw: &RawValue) -> Option<Range<usize>> {
    let text = raw.get();
    let start = (text.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
    let span = start..start.checked_add(text.len())?;
    (body.get(span.clone()) == Some(text.as_bytes())).then_some(span)
}

/// The spans that remove the array elements flagged in `remove` together with their separators.
/// Each run of adjacent flagged elements goes from its first element to the start of the next
/// kept element; a run at the end goes from the end of the kept element before it; a run that is
/// the whole array goes from the first element to the last. Spans never overlap, so all of them
/// apply. An element whose span is unknown is kept (and so is a run touching it).
fn removal_spans(spans: &[Option<Range<usize>>], remove: &[bool]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < spans.len() {
        if !remove.get(i).copied().unwrap_or(false) {
            i += 1;
            continue;
        }
        let start = i;
        while remove.get(i).copied().unwrap_or(false) {
            i += 1;
        }
        let run = start..i;
        let first = spans.get(run.start).cloned().flatten();
        let last = spans.get(run.end - 1).cloned().flatten();
        let (Some(first), Some(last)) = (first, last) else {
            continue;
        };
        let span = if let Some(next) = spans.get(run.end) {
            next.as_ref().map(|next| first.start..next.start)
        } else if let Some(before) = run.start.checked_sub(1) {
            spans
                .get(before)
                .cloned()
                .flatten()
                .map(|prev| prev.end..last.end)
        } else {
            Some(first.start..last.end)
        };
        out.extend(span);
    }
    out
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::policy::affinity_mark::{mark_content, mark_id};
    use crate::policy::request::splice;

    const RESP: &str = "resp_68af4030592c81938ec0a5fbab4a3e9f05438e46b5f69a3b";
    const RS: &str = "rs_68af4030baa48193b0b43b4c2a176a1a05438e46b5f69a3b";

    fn east() -> AffinityTag {
        AffinityTag::new("east", "cred:EAST")
    }

    fn follow_up(previous: &str, rs_id: &str, content: &str) -> String {
        format!(
            r#"{{"model":"o4-mini","store":false,"previous_response_id":"{previous}","input":[
                {{"role":"user","content":"hi"}},
                {{"type":"reasoning","id":"{rs_id}","encrypted_content":"{content}","summary":[]}},
                {{"role":"user","content":"and then?"}}]}}"#
        )
    }

    #[test]
    fn marks_are_read_and_the_originals_restored() {
        let body = follow_up(
            &mark_id(RESP, &east()),
            &mark_id(RS, &east()),
            &mark_content("gAAAA/+=", &east()),
        );
        let marks = read_marks(body.as_bytes()).unwrap();
        assert_eq!(marks.pin(), Some(east()));
        assert_eq!(marks.items, vec![east(), east()]);
        assert!(!marks.conflicting());
        let restored = splice(body.as_bytes(), marks.restores.clone());
        let expected = follow_up(RESP, RS, "gAAAA/+=");
        assert_eq!(String::from_utf8(restored).unwrap(), expected);
    }

    #[test]
    fn unmarked_bodies_have_no_marks_and_corrupt_ones_are_refused() {
        let plain = follow_up(RESP, RS, "gAAAA");
        let marks = read_marks(plain.as_bytes()).unwrap();
        assert_eq!(marks.pin(), None);
        assert!(marks.restores.is_empty());
        assert_eq!(marks.encrypted_items.len(), 1);
        let mut bad = mark_id(RESP, &east());
        bad.replace_range(10..11, if &bad[10..11] == "a" { "b" } else { "a" });
        assert_eq!(
            read_marks(follow_up(&bad, RS, "x").as_bytes()),
            Err(CorruptMark)
        );
        let text_input = br#"{"model":"m","input":"just text","previous_response_id":null}"#;
        assert_eq!(read_marks(text_input).unwrap(), Marks::default());
    }

    #[test]
    fn stripping_encrypted_items_leaves_valid_json() {
        for position in 0..3 {
            let mut items = vec![r#"{"role":"user","content":"a"}"#.to_string(); 3];
            items[position] =
                format!(r#"{{"type":"reasoning","id":"{RS}","encrypted_content":"x"}}"#);
            let body = format!(r#"{{"model":"m","input":[ {} ]}}"#, items.join(" , "));
            let marks = read_marks(body.as_bytes()).unwrap();
            let edits = marks
                .encrypted_items
                .iter()
                .map(|s| (s.clone(), Vec::new()))
                .collect();
            let stripped = splice(body.as_bytes(), edits);
            let v: serde_json::Value = serde_json::from_slice(&stripped).unwrap();
            assert_eq!(
                v["input"].as_array().unwrap().len(),
                2,
                "position {position}"
            );
        }
        // Any set of encrypted items, adjacent or not, at either end: all go, valid JSON stays.
        let plain = r#"{"role":"user","content":"a"}"#;
        let secret = r#"{"type":"reasoning","encrypted_content":"x"}"#;
        for flags in 0u32..32 {
            let items: Vec<&str> = (0..5)
                .map(|i| if flags & (1 << i) != 0 { secret } else { plain })
                .collect();
            let body = format!(r#"{{"model":"m","input":[ {} ]}}"#, items.join(" ,\n "));
            let marks = read_marks(body.as_bytes()).unwrap();
            let edits = marks
                .encrypted_items
                .iter()
                .map(|s| (s.clone(), Vec::new()))
                .collect();
            let stripped = splice(body.as_bytes(), edits);
            let v: serde_json::Value = serde_json::from_slice(&stripped)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&stripped)));
            let left = v["input"].as_array().unwrap();
            assert_eq!(
                left.len(),
                5 - flags.count_ones() as usize,
                "flags {flags:05b}"
            );
            assert!(left
                .iter()
                .all(|item| item.get("encrypted_content").is_none()));
        }
        let only = r#"{"model":"m","input":[{"encrypted_content":"x"}]}"#.to_string();
        let marks = read_marks(only.as_bytes()).unwrap();
        let edits = marks
            .encrypted_items
            .iter()
            .map(|s| (s.clone(), Vec::new()))
            .collect();
        let v: serde_json::Value = serde_json::from_slice(&splice(only.as_bytes(), edits)).unwrap();
        assert_eq!(v["input"], serde_json::json!([]));
    }

    #[test]
    fn marks_from_two_boundaries_conflict() {
        let west = AffinityTag::new("west", "cred:WEST");
        let body = follow_up(&mark_id(RESP, &east()), &mark_id(RS, &west), "plain");
        let marks = read_marks(body.as_bytes()).unwrap();
        assert_eq!(marks.pin(), Some(east()));
        assert!(marks.conflicting());
    }
}
