//! Compiling the tags and metadata of keys and teams (spend attribution): bounded and checked
//! once per version, with LiteLLM's `metadata.tags` joining `tags`.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Compiler;
use crate::core::spend::attribution::{
    valid_tag, Attribution, MAX_CONFIGURED_TAGS, MAX_METADATA_ENTRIES, MAX_METADATA_NAME_BYTES,
    MAX_METADATA_VALUE_BYTES, MAX_TAG_BYTES,
};

impl Compiler {
    /// The attribution of the holder at `path` from its `tags` and `metadata`.
    pub(super) fn attribution(
        &mut self,
        path: &str,
        tags: Vec<String>,
        mut metadata: BTreeMap<String, Value>,
    ) -> Attribution {
        let mut all: Vec<(String, String)> = tags
            .into_iter()
            .enumerate()
            .map(|(i, tag)| (format!("{path}.tags[{i}]"), tag))
            .collect();
        match metadata.remove("tags") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.into_iter().enumerate() {
                    let at = format!("{path}.metadata.tags[{i}]");
                    match item {
                        Value::String(tag) => all.push((at, tag)),
                        _ => self.error(&at, "a tag must be a string".into()),
                    }
                }
            }
            Some(_) => self.error(
                &format!("{path}.metadata.tags"),
                "must be a list of strings".into(),
            ),
        }
        let mut out = Attribution::default();
        for (at, tag) in all {
            if !valid_tag(&tag) {
                self.error(
                    &at,
                    format!(
                        "a tag must be 1 to {MAX_TAG_BYTES} bytes, without commas or control \
                         characters"
                    ),
                );
            } else if !out.tags.contains(&tag) {
                out.tags.push(tag);
            }
        }
        if out.tags.len() > MAX_CONFIGURED_TAGS {
            self.error(
                &format!("{path}.tags"),
                format!("at most {MAX_CONFIGURED_TAGS} tags (tags and metadata.tags together)"),
            );
        }
        for (name, value) in metadata {
            let at = format!("{path}.metadata.{name}");
            if name.is_empty()
                || name.len() > MAX_METADATA_NAME_BYTES
                || name.chars().any(char::is_control)
            {
                self.error(
                    &at,
                    format!("a metadata name must be 1 to {MAX_METADATA_NAME_BYTES} bytes without control characters"),
                );
                continue;
            }
            let text = match value {
                Value::String(text) => text,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                // LiteLLM keeps other state in metadata (e.g. limits read elsewhere): not carried.
                Value::Null | Value::Array(_) | Value::Object(_) => continue,
            };
            if text.len() > MAX_METADATA_VALUE_BYTES || text.chars().any(char::is_control) {
                self.error(
                    &at,
                    format!(
                        "a metadata value must be at most {MAX_METADATA_VALUE_BYTES} bytes without \
                         control characters"
                    ),
                );
                continue;
            }
            out.metadata.insert(name, text);
        }
        if out.metadata.len() > MAX_METADATA_ENTRIES {
            self.error(
                &format!("{path}.metadata"),
                format!("at most {MAX_METADATA_ENTRIES} string, number or boolean entries"),
            );
        }
        out
    }
}
