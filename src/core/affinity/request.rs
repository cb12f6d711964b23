//! Reading affinity marks from a Responses-API follow-up and restoring the original values.
//!
//! The marks can sit in `previous_response_id` and, within `input` items, in `id` (`resp_…`,
//! `rs_…`) and `encrypted_content`. Each value sealed for the caller's tenant becomes an edit
//! that puts back exactly what the provider issued, and its tag is a pin for routing. A value
//! not sealed for this tenant (another tenant's, forged, raw, or of the earlier unsealed format)
//! is *unvouched*: an unvouched `previous_response_id` is refused as unknown, and unvouched input
//! items are removed (or refused under `affinity_fallback: fail`). The spans of items that carry
//! `encrypted_content` are kept too: `affinity_fallback: strip` removes those items when no
//! deployment on their encryption boundary is left.

use std::ops::Range;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::core::affinity::mark::{
    unmark_content, unmark_id, AffinityTag, CorruptMark, Reading, Seal,
};

/// Why a follow-up's marks cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkProblem {
    /// A mark was altered (its checksum fails).
    Corrupt,
    /// The follow-up carries Responses state, but no affinity secret is configured to verify
    /// whose it is.
    NoSecret,
    /// The body or one of its `input` items cannot be read unambiguously (a duplicated key):
    /// what the upstream would act on cannot be checked.
    Unreadable,
}

impl From<CorruptMark> for MarkProblem {
    fn from(_: CorruptMark) -> Self {
        MarkProblem::Corrupt
    }
}

/// What a follow-up's marks say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    /// Body edits restoring the original values.
    pub restores: Vec<(Range<usize>, Vec<u8>)>,
    /// The tag of `previous_response_id`, if it was sealed for this tenant.
    pub previous: Option<AffinityTag>,
    /// `previous_response_id` is set but not sealed for this tenant.
    pub previous_unvouched: bool,
    /// Tags found in input items, in order.
    pub items: Vec<AffinityTag>,
    /// The span of each input item (None when unknown).
    item_spans: Vec<Option<Range<usize>>>,
    /// Which input items carry `encrypted_content`.
    encrypted: Vec<bool>,
    /// Which input items carry a value not sealed for this tenant.
    unvouched: Vec<bool>,
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

    /// Whether some input item carries a value not sealed for this tenant.
    pub fn has_unvouched_items(&self) -> bool {
        self.unvouched.contains(&true)
    }

    /// What to remove from the body: the unvouched input items, and when `boundary_lost` also
    /// every item carrying `encrypted_content`. Disjoint spans, each covering a run of adjacent
    /// such items with the separators around it that must go too (removing all of them leaves a
    /// valid array).
    pub fn removals(&self, boundary_lost: bool) -> Vec<Range<usize>> {
        let remove: Vec<bool> = self
            .unvouched
            .iter()
            .zip(&self.encrypted)
            .map(|(&unvouched, &encrypted)| unvouched || (boundary_lost && encrypted))
            .collect();
        removal_spans(&self.item_spans, &remove)
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

/// What one value in a follow-up turned out to be.
enum Found {
    /// Not Responses state (absent, not a string, an id kind the gateway does not mark).
    Nothing,
    /// Sealed for this tenant: restore it here, and route on its tag.
    Own(Range<usize>, String, AffinityTag),
    /// Responses state that nothing vouches for.
    Unvouched,
}

/// Reads the marks of a `/v1/responses` request body (already validated as a JSON object),
/// verifying each against `seal`, the caller's tenant key (`None`: no secret configured).
pub fn read_marks(body: &[u8], seal: Option<&Seal>) -> Result<Marks, MarkProblem> {
    let mut marks = Marks::default();
    // The body is already known to be a JSON object: failing here means a duplicated key, and
    // checking one copy while the upstream acts on the other would check nothing.
    let request = serde_json::from_slice::<FollowUp>(body).map_err(|_| MarkProblem::Unreadable)?;
    if let Some(raw) = request.previous_response_id {
        match examine(body, raw, seal, |_| true, unmark_id)? {
            Found::Nothing => {}
            Found::Own(span, original, tag) => {
                marks.previous = Some(tag);
                marks.restores.push((span, encode(&original)));
            }
            Found::Unvouched => marks.previous_unvouched = true,
        }
    }
    let Some(input) = request.input else {
        return Ok(marks);
    };
    let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(input.get()) else {
        return Ok(marks); // a plain-text input carries no marks
    };
    marks.item_spans = items.iter().map(|raw| span_of(body, raw)).collect();
    marks.encrypted = vec![false; items.len()];
    marks.unvouched = vec![false; items.len()];
    let marked_id = |text: &str| text.starts_with("resp_") || text.starts_with("rs_");
    let any = |text: &str| !text.is_empty();
    for (i, raw) in items.iter().enumerate() {
        let item = match serde_json::from_str::<Item>(raw.get()) {
            Ok(item) => item,
            // Not an object: no Responses state can be in it (the provider refuses it anyway).
            Err(_) if !raw.get().starts_with('{') => continue,
            Err(_) => return Err(MarkProblem::Unreadable),
        };
        let mut unvouched = false;
        if let Some(id) = item.id {
            match examine(body, id, seal, marked_id, unmark_id)? {
                Found::Nothing => {}
                Found::Own(span, original, tag) => {
                    marks.items.push(tag);
                    marks.restores.push((span, encode(&original)));
                }
                Found::Unvouched => unvouched = true,
            }
        }
        if let Some(content) = item.encrypted_content {
            match examine(body, content, seal, any, unmark_content)? {
                Found::Nothing => {}
                Found::Own(span, original, tag) => {
                    marks.items.push(tag);
                    marks.restores.push((span, encode(&original)));
                }
                Found::Unvouched => unvouched = true,
            }
            if let Some(slot) = marks.encrypted.get_mut(i) {
                *slot = true;
            }
        }
        if let Some(slot) = marks.unvouched.get_mut(i) {
            *slot = unvouched;
        }
    }
    Ok(marks)
}

fn examine(
    body: &[u8],
    raw: &RawValue,
    seal: Option<&Seal>,
    is_state: fn(&str) -> bool,
    unmark: Unmark,
) -> Result<Found, MarkProblem> {
    // Decoded, escapes included: the provider reads `resp\u005f…` as `resp_…`, so must we.
    let text = match serde_json::from_str::<String>(raw.get()) {
        Ok(text) => text,
        // A string that does not decode (a lone surrogate escape): what would the provider read?
        Err(_) if raw.get().starts_with('"') => return Err(MarkProblem::Unreadable),
        Err(_) => return Ok(Found::Nothing), // not a string: not Responses state
    };
    if !is_state(&text) {
        return Ok(Found::Nothing);
    }
    let seal = seal.ok_or(MarkProblem::NoSecret)?;
    Ok(match unmark(&text, seal)? {
        Reading::Sealed(original, tag) => match span_of(body, raw) {
            Some(span) => Found::Own(span, original, tag),
            None => Found::Unvouched,
        },
        Reading::Plain | Reading::Foreign => Found::Unvouched,
    })
}

type Unmark = fn(&str, &Seal) -> Result<Reading, CorruptMark>;

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
    use crate::core::admission::request::splice;
    use crate::core::affinity::mark::{mark_content, mark_id, MarkWith};

    const RESP: &str = "resp_68af4030592c81938ec0a5fbab4a3e9f05438e46b5f69a3b";
    const RS: &str = "rs_68af4030baa48193b0b43b4c2a176a1a05438e46b5f69a3b";
    const SECRET: &[u8] = b"an operator secret of 32 bytes..";

    fn east() -> AffinityTag {
        AffinityTag::new("east", "cred:EAST")
    }

    fn seal() -> Seal {
        Seal::new(SECRET, "team:search")
    }

    fn by(tag: AffinityTag) -> MarkWith {
        MarkWith { tag, seal: seal() }
    }

    fn read(body: &str) -> Result<Marks, MarkProblem> {
        read_marks(body.as_bytes(), Some(&seal()))
    }

    fn follow_up(previous: &str, rs_id: &str, content: &str) -> String {
        format!(
            r#"{{"model":"o4-mini","store":false,"previous_response_id":"{previous}","input":[
                {{"role":"user","content":"hi"}},
                {{"type":"reasoning","id":"{rs_id}","encrypted_content":"{content}","summary":[]}},
                {{"role":"user","content":"and then?"}}]}}"#
        )
    }

    fn apply(body: &str, spans: Vec<Range<usize>>) -> serde_json::Value {
        let edits = spans.into_iter().map(|s| (s, Vec::new())).collect();
        let out = splice(body.as_bytes(), edits);
        serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
    }

    #[test]
    fn marks_are_read_and_the_originals_restored() {
        let body = follow_up(
            &mark_id(RESP, &by(east())),
            &mark_id(RS, &by(east())),
            &mark_content("gAAAA/+=", &by(east())),
        );
        let marks = read(&body).unwrap();
        assert_eq!(marks.pin(), Some(east()));
        assert_eq!(marks.items, vec![east(), east()]);
        assert!(!marks.conflicting() && !marks.previous_unvouched && !marks.has_unvouched_items());
        assert!(marks.removals(false).is_empty());
        let restored = splice(body.as_bytes(), marks.restores.clone());
        let expected = follow_up(RESP, RS, "gAAAA/+=");
        assert_eq!(String::from_utf8(restored).unwrap(), expected);
    }

    /// `text` as a JSON string body with every `_`, `A` and `/` escaped as `\uXXXX`.
    fn escaped(text: &str) -> String {
        text.replace('_', "\\u005f")
            .replace('A', "\\u0041")
            .replace('/', "\\/")
    }

    #[test]
    fn escaped_values_are_read_as_the_provider_reads_them() {
        // Another tenant's raw state, escaped: still unvouched (it used to pass unchecked).
        let body = follow_up(&escaped(RESP), &escaped(RS), &escaped("gAAAA/+="));
        let marks = read(&body).unwrap();
        assert!(
            marks.previous_unvouched && marks.has_unvouched_items(),
            "{marks:?}"
        );
        // The caller's own marks, escaped by its JSON library: restored, not left marked.
        let body = follow_up(
            &escaped(&mark_id(RESP, &by(east()))),
            &escaped(&mark_id(RS, &by(east()))),
            &escaped(&mark_content("gAAAA/+=", &by(east()))),
        );
        let marks = read(&body).unwrap();
        assert_eq!(marks.pin(), Some(east()));
        assert!(!marks.previous_unvouched && !marks.has_unvouched_items());
        let restored: serde_json::Value =
            serde_json::from_slice(&splice(body.as_bytes(), marks.restores.clone())).unwrap();
        assert_eq!(restored["previous_response_id"], RESP);
        assert_eq!(restored["input"][1]["id"], RS);
        assert_eq!(restored["input"][1]["encrypted_content"], "gAAAA/+=");
    }

    #[test]
    fn a_duplicated_key_in_the_follow_up_is_unreadable_not_unchecked() {
        let foreign = follow_up(RESP, RS, "gAAAA");
        let twice = foreign.replacen(r#""input":["#, r#""input":"ignored","input":["#, 1);
        assert_eq!(read(&twice), Err(MarkProblem::Unreadable));
        let twice = foreign.replacen(
            r#""previous_response_id""#,
            r#""previous_response_id":"x","previous_response_id""#,
            1,
        );
        assert_eq!(read(&twice), Err(MarkProblem::Unreadable));
        let item_twice = foreign.replacen(r#""id":"rs_"#, r#""id":"msg_1","id":"rs_"#, 1);
        assert_eq!(read(&item_twice), Err(MarkProblem::Unreadable));
        let content_twice = foreign.replacen(
            r#""encrypted_content""#,
            r#""encrypted_content":"","encrypted_content""#,
            1,
        );
        assert_eq!(read(&content_twice), Err(MarkProblem::Unreadable));
        let surrogate = foreign.replacen(RESP, &format!("{RESP}\\ud800"), 1);
        assert_eq!(read(&surrogate), Err(MarkProblem::Unreadable));
        // Items that are not objects carry no state.
        let odd = r#"{"model":"o4-mini","input":["just text", 3, null]}"#;
        assert_eq!(
            read(odd),
            Ok(Marks {
                item_spans: read(odd).unwrap().item_spans,
                encrypted: vec![false; 3],
                unvouched: vec![false; 3],
                ..Marks::default()
            })
        );
    }

    #[test]
    fn unsealed_state_is_unvouched_and_corrupt_marks_are_refused() {
        let plain = follow_up(RESP, RS, "gAAAA");
        let marks = read(&plain).unwrap();
        assert_eq!(marks.pin(), None);
        assert!(marks.restores.is_empty());
        assert!(marks.previous_unvouched && marks.has_unvouched_items());
        assert_eq!(
            apply(&plain, marks.removals(false))["input"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let mut bad = mark_id(RESP, &by(east()));
        bad.replace_range(10..11, if &bad[10..11] == "a" { "b" } else { "a" });
        assert_eq!(read(&follow_up(&bad, RS, "x")), Err(MarkProblem::Corrupt));
        let text_input = r#"{"model":"m","input":"just text","previous_response_id":null}"#;
        assert_eq!(read(text_input).unwrap(), Marks::default());
        // Ids of kinds the gateway never marks are not Responses state.
        let message = r#"{"model":"m","input":[{"id":"msg_1","role":"user","content":"x"}]}"#;
        assert!(!read(message).unwrap().has_unvouched_items());
    }

    #[test]
    fn another_tenants_marks_are_unvouched() {
        let theirs = MarkWith {
            tag: east(),
            seal: Seal::new(SECRET, "team:ads"),
        };
        let body = follow_up(
            &mark_id(RESP, &theirs),
            &mark_id(RS, &theirs),
            &mark_content("gAAAA/+=", &theirs),
        );
        let marks = read(&body).unwrap();
        assert_eq!(marks.pin(), None, "a foreign mark never pins");
        assert!(marks.previous_unvouched && marks.has_unvouched_items());
        assert!(marks.restores.is_empty(), "nothing foreign is restored");
    }

    #[test]
    fn without_a_secret_any_responses_state_is_refused() {
        let body = follow_up(&mark_id(RESP, &by(east())), RS, "x");
        assert_eq!(
            read_marks(body.as_bytes(), None),
            Err(MarkProblem::NoSecret)
        );
        let first_turn = r#"{"model":"m","input":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(
            read_marks(first_turn.as_bytes(), None),
            Ok(Marks {
                item_spans: read(first_turn).unwrap().item_spans,
                encrypted: vec![false],
                unvouched: vec![false],
                ..Marks::default()
            })
        );
    }

    #[test]
    fn stripping_encrypted_items_leaves_valid_json() {
        let own = mark_content("x", &by(east()));
        for position in 0..3 {
            let mut items = vec![r#"{"role":"user","content":"a"}"#.to_string(); 3];
            items[position] = format!(r#"{{"type":"reasoning","encrypted_content":"{own}"}}"#);
            let body = format!(r#"{{"model":"m","input":[ {} ]}}"#, items.join(" , "));
            let marks = read(&body).unwrap();
            assert_eq!(
                apply(&body, marks.removals(false))["input"]
                    .as_array()
                    .unwrap()
                    .len(),
                3
            );
            let v = apply(&body, marks.removals(true));
            assert_eq!(
                v["input"].as_array().unwrap().len(),
                2,
                "position {position}"
            );
        }
        // Any set of encrypted items, adjacent or not, at either end: all go, valid JSON stays.
        let plain = r#"{"role":"user","content":"a"}"#;
        let secret = format!(r#"{{"type":"reasoning","encrypted_content":"{own}"}}"#);
        for flags in 0u32..32 {
            let items: Vec<&str> = (0..5)
                .map(|i| {
                    if flags & (1 << i) != 0 {
                        secret.as_str()
                    } else {
                        plain
                    }
                })
                .collect();
            let body = format!(r#"{{"model":"m","input":[ {} ]}}"#, items.join(" ,\n "));
            let marks = read(&body).unwrap();
            let v = apply(&body, marks.removals(true));
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
        let only = format!(r#"{{"model":"m","input":[{{"encrypted_content":"{own}"}}]}}"#);
        let marks = read(&only).unwrap();
        assert_eq!(
            apply(&only, marks.removals(true))["input"],
            serde_json::json!([])
        );
    }

    #[test]
    fn marks_from_two_boundaries_conflict() {
        let west = AffinityTag::new("west", "cred:WEST");
        let body = follow_up(
            &mark_id(RESP, &by(east())),
            &mark_id(RS, &by(west)),
            &mark_content("c", &by(west)),
        );
        let marks = read(&body).unwrap();
        assert_eq!(marks.pin(), Some(east()));
        assert!(marks.conflicting());
    }
}
