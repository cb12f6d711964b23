//! LiteLLM's `metadata.tags` in a request body: read, and taken out of `metadata` before the
//! provider sees it (OpenAI and Anthropic refuse a list there).
//!
//! One pass over `metadata`'s members, borrowing each value as written: no value tree is built
//! (a huge `metadata` costs its own size once, not a tree of it), and the members that stay are
//! copied byte for byte, in order, duplicates included, so the provider reads exactly what the
//! client sent but `tags`. Every member named `tags` (however its name is escaped) is read and
//! removed; a member the reader cannot decode refuses the request rather than passing unread.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde::Deserializer;
use serde_json::value::RawValue;

use super::request::BodyProblem;
use crate::core::spend::event_writer::json_string_into;

/// The tags, and the edit that rewrites `metadata` without them (`None` when it has none).
pub type MetadataTags<'a> = (Vec<Cow<'a, str>>, Option<(Range<usize>, Vec<u8>)>);

/// Reads `metadata` (its raw value in `body`, when present).
pub fn metadata_tags<'a>(
    body: &'a [u8],
    metadata: Option<&'a RawValue>,
    span_of: impl Fn(&[u8], &RawValue) -> Option<Range<usize>>,
) -> Result<MetadataTags<'a>, BodyProblem> {
    let Some(raw) = metadata.filter(|raw| raw.get().starts_with('{')) else {
        return Ok((Vec::new(), None));
    };
    let mut members = Members {
        kept: String::with_capacity(raw.get().len()),
        tags: Vec::new(),
        key: String::new(),
    };
    let mut reader = serde_json::Deserializer::from_str(raw.get());
    (&mut reader)
        .deserialize_map(&mut members)
        .map_err(|_| BodyProblem::InvalidTags)?;
    if members.tags.is_empty() {
        return Ok((Vec::new(), None));
    }
    let mut tags = Vec::new();
    for value in members.tags {
        if value.get() == "null" {
            continue;
        }
        let list: Vec<Cow<'a, str>> =
            serde_json::from_str(value.get()).map_err(|_| BodyProblem::InvalidTags)?;
        tags.extend(list);
    }
    let span = span_of(body, raw).ok_or(BodyProblem::InvalidTags)?;
    let rewritten = format!("{{{}}}", members.kept).into_bytes();
    Ok((tags, Some((span, rewritten))))
}

/// The members of `metadata` as the pass finds them.
struct Members<'a> {
    /// The members kept, as JSON text without the braces.
    kept: String,
    /// The values of the members named `tags`.
    tags: Vec<&'a RawValue>,
    /// The current member's name, JSON-escaped (reused).
    key: String,
}

impl<'de> Visitor<'de> for &mut Members<'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(is_tags) = map.next_key_seed(KeySeed { key: &mut self.key })? {
            let value: &'de RawValue = map.next_value()?;
            if is_tags {
                self.tags.push(value);
                continue;
            }
            if !self.kept.is_empty() {
                self.kept.push(',');
            }
            self.kept.push_str(&self.key);
            self.kept.push(':');
            self.kept.push_str(value.get());
        }
        Ok(())
    }
}

/// Reads one member name into `key` (JSON-escaped) and tells whether it is `tags`.
struct KeySeed<'k> {
    key: &'k mut String,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<bool, E> {
        self.key.clear();
        json_string_into(self.key, name);
        Ok(name == "tags")
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use crate::core::admission::request::{read_body, splice, BodyProblem};

    fn stripped(body: &str) -> String {
        let facts = read_body(body.as_bytes()).unwrap();
        let edit = facts.tags_edit.clone().unwrap();
        String::from_utf8(splice(body.as_bytes(), vec![edit])).unwrap()
    }

    #[test]
    fn only_the_tags_members_go_and_the_rest_stays_byte_for_byte() {
        assert_eq!(
            stripped(
                r#"{"model":"m","metadata":{"z":12345678901234567890123,"tags":["a"],"b":1E2,"s":"\u00e9","z":2}}"#
            ),
            r#"{"model":"m","metadata":{"z":12345678901234567890123,"b":1E2,"s":"\u00e9","z":2}}"#
        );
        assert_eq!(
            stripped(r#"{"model":"m","metadata":{"tags":["a"],"t\u0061gs":["b"]}}"#),
            r#"{"model":"m","metadata":{}}"#,
            "an escaped name is still tags, and every copy goes"
        );
        let facts =
            read_body(br#"{"model":"m","metadata":{"tags":["a"],"t\u0061gs":["b"]}}"#).unwrap();
        assert_eq!(facts.tags, ["a", "b"]);
    }

    #[test]
    fn a_member_that_cannot_be_read_refuses_rather_than_passing_unread() {
        for body in [
            &br#"{"model":"m","metadata":{"tags":["\ud800"]}}"#[..],
            br#"{"model":"m","metadata":{"\ud800":1,"tags":["a"]}}"#,
            br#"{"model":"m","metadata":{"tags":"a"}}"#,
        ] {
            assert_eq!(
                read_body(body).err(),
                Some(BodyProblem::InvalidTags),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // Values other than tags are borrowed as written, never decoded: a lone surrogate or an
        // out-of-range number there is the provider's to judge, and the tags still go.
        for body in [
            r#"{"model":"m","metadata":{"n":1e400,"tags":["a"]}}"#,
            r#"{"model":"m","metadata":{"x":"\ud800","tags":["a"]}}"#,
        ] {
            assert_eq!(read_body(body.as_bytes()).unwrap().tags, ["a"]);
            assert!(!stripped(body).contains("tags"), "{body}");
        }
    }
}
