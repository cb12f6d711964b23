//! The tags and metadata of LiteLLM's keys and teams, carried for spend attribution within
//! Tollgate's bounds: `tags` and `metadata.tags` become `tags`; string, number and boolean
//! `metadata` entries become `metadata` (rate limits kept there are read by `limits`). What
//! does not fit is named, never silently dropped.

use serde_json::{Map, Value};
use tollgate::core::spend::attribution::{
    valid_tag, MAX_CONFIGURED_TAGS, MAX_METADATA_ENTRIES, MAX_METADATA_NAME_BYTES,
    MAX_METADATA_VALUE_BYTES,
};

use super::limits::LIMIT_METADATA;
use super::Import;

/// Copies `item`'s tags and metadata (at `at` in the export) into `to`.
pub fn carry(item: &Value, at: &str, to: &mut Map<String, Value>, out: &mut Import) {
    let metadata = item.get("metadata").and_then(Value::as_object);
    let mut tags: Vec<String> = Vec::new();
    let sources = [
        (item.get("tags"), format!("{at}.tags")),
        (
            metadata.and_then(|m| m.get("tags")),
            format!("{at}.metadata.tags"),
        ),
    ];
    for (value, path) in sources {
        match value {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, tag) in items.iter().enumerate() {
                    match tag.as_str() {
                        Some(tag) if valid_tag(tag) && tags.len() < MAX_CONFIGURED_TAGS => {
                            if !tags.iter().any(|t| t == tag) {
                                tags.push(tag.to_string());
                            }
                        }
                        _ => out.not_carried.push(format!(
                            "{path}[{i}]: not carried (a tag is a string of 1 to 64 bytes \
                             without commas, at most {MAX_CONFIGURED_TAGS} per key or team)"
                        )),
                    }
                }
            }
            Some(_) => out
                .not_carried
                .push(format!("{path}: not carried (not a list of strings)")),
        }
    }
    if !tags.is_empty() {
        to.insert("tags".into(), Value::from(tags));
    }
    let mut carried = Map::new();
    for (name, value) in metadata.into_iter().flatten() {
        let read_elsewhere = LIMIT_METADATA.contains(&name.as_str())
            || matches!(name.as_str(), "tags" | "rpm_limit_type" | "tpm_limit_type");
        if read_elsewhere || value.is_null() {
            continue;
        }
        let fits = !name.is_empty()
            && name.len() <= MAX_METADATA_NAME_BYTES
            && !name.chars().any(char::is_control)
            && carried.len() < MAX_METADATA_ENTRIES
            && match value {
                Value::String(text) => {
                    text.len() <= MAX_METADATA_VALUE_BYTES && !text.chars().any(char::is_control)
                }
                Value::Number(_) | Value::Bool(_) => true,
                _ => false,
            };
        if fits {
            carried.insert(name.clone(), value.clone());
        } else {
            out.not_carried.push(format!(
                "{at}.metadata.{name}: not carried into spend (metadata carries at most \
                 {MAX_METADATA_ENTRIES} strings, numbers or booleans of up to \
                 {MAX_METADATA_VALUE_BYTES} bytes)"
            ));
        }
    }
    if !carried.is_empty() {
        to.insert("metadata".into(), Value::Object(carried));
    }
}
