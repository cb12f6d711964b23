//! Spend attribution: the tags a request carries (LiteLLM's `metadata.tags` in the body, its
//! `x-litellm-tags` header, Tollgate's `x-tollgate-tags`), merged with the tags and metadata
//! configured on the key and its team, all bounded, so that spend can be grouped by them.

use std::collections::BTreeMap;

/// Most tags one request may send (body and headers together).
pub const MAX_REQUEST_TAGS: usize = 16;
/// Most tags a key or a team may be configured with.
pub const MAX_CONFIGURED_TAGS: usize = 16;
/// Most tags one spend event may carry (request, key and team together).
pub const MAX_EVENT_TAGS: usize = MAX_REQUEST_TAGS + 2 * MAX_CONFIGURED_TAGS;
/// Longest tag, in bytes.
pub const MAX_TAG_BYTES: usize = 64;
/// Most metadata entries a key or team may be configured with.
pub const MAX_METADATA_ENTRIES: usize = 16;
/// Longest metadata name, in bytes.
pub const MAX_METADATA_NAME_BYTES: usize = 64;
/// Longest metadata value, in bytes.
pub const MAX_METADATA_VALUE_BYTES: usize = 256;

/// The request header of Tollgate's own tags (comma-separated).
pub const TOLLGATE_TAGS_HEADER: &str = "x-tollgate-tags";
/// LiteLLM's request header of tags (comma-separated).
pub const LITELLM_TAGS_HEADER: &str = "x-litellm-tags";

/// Tags and metadata configured on a key or a team, checked when the policy compiles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attribution {
    /// Tags added to every request of the key (or of the team's keys).
    pub tags: Vec<String>,
    /// Name → value (numbers and booleans as their JSON text), carried into spend events.
    pub metadata: BTreeMap<String, String>,
}

/// Why a request's tags were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagProblem {
    /// Where the tags came from: `metadata.tags` or a header name.
    pub source: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// Whether `tag` may be a tag: 1 to [`MAX_TAG_BYTES`] bytes, no control characters, no commas
/// (the headers separate tags with them).
pub fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= MAX_TAG_BYTES
        && tag.trim() == tag
        // `-` is how the report names "no tag".
        && tag != "-"
        && !tag.chars().any(|c| c.is_control() || c == ',')
}

fn check(tag: &str, source: &'static str) -> Result<(), TagProblem> {
    if valid_tag(tag) {
        Ok(())
    } else {
        Err(TagProblem {
            source,
            reason: format!(
                "each tag must be 1 to {MAX_TAG_BYTES} bytes, without commas, control \
                 characters or surrounding spaces, and not \"-\""
            ),
        })
    }
}

/// The tags of a request: body tags, then each header's comma-separated tags (trimmed, empty
/// ones skipped). Refused when one is malformed or there are more than [`MAX_REQUEST_TAGS`].
pub fn request_tags<'a>(
    body_tags: impl IntoIterator<Item = &'a str>,
    headers: [(&'static str, Option<&'a str>); 2],
) -> Result<Vec<String>, TagProblem> {
    let mut tags: Vec<String> = Vec::new();
    let mut push = |tag: &str, source: &'static str| -> Result<(), TagProblem> {
        check(tag, source)?;
        if tags.len() >= MAX_REQUEST_TAGS {
            return Err(TagProblem {
                source,
                reason: format!("a request may carry at most {MAX_REQUEST_TAGS} tags"),
            });
        }
        tags.push(tag.to_string());
        Ok(())
    };
    for tag in body_tags {
        push(tag, "metadata.tags")?;
    }
    for (name, value) in headers {
        for tag in value.into_iter().flat_map(|v| v.split(',')) {
            let tag = tag.trim();
            if !tag.is_empty() {
                push(tag, name)?;
            }
        }
    }
    Ok(tags)
}

/// The tags a spend event carries: the request's, the key's and the team's, each once, sorted.
pub fn event_tags(
    request: &[String],
    key: &Attribution,
    team: Option<&Attribution>,
) -> Vec<String> {
    if request.is_empty() && key.tags.is_empty() && team.is_none_or(|t| t.tags.is_empty()) {
        return Vec::new();
    }
    let mut tags: Vec<String> = request
        .iter()
        .chain(&key.tags)
        .chain(team.map(|t| t.tags.as_slice()).unwrap_or_default())
        .cloned()
        .collect();
    tags.sort_unstable();
    tags.dedup();
    tags
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn tags_come_from_the_body_and_both_headers_and_are_bounded() {
        let tags = request_tags(
            ["prod", "search"],
            [
                (TOLLGATE_TAGS_HEADER, Some(" a, b ,,")),
                (LITELLM_TAGS_HEADER, Some("c")),
            ],
        )
        .unwrap();
        assert_eq!(tags, ["prod", "search", "a", "b", "c"]);
        let many = "t,".repeat(MAX_REQUEST_TAGS + 1);
        let refused = request_tags(
            [],
            [
                (TOLLGATE_TAGS_HEADER, Some(&many)),
                (LITELLM_TAGS_HEADER, None),
            ],
        );
        assert_eq!(refused.unwrap_err().source, TOLLGATE_TAGS_HEADER);
        let long = "x".repeat(MAX_TAG_BYTES + 1);
        for bad in [long.as_str(), "", "a,b", "tab\there", " padded", "-"] {
            let refused = request_tags(
                [bad],
                [(TOLLGATE_TAGS_HEADER, None), (LITELLM_TAGS_HEADER, None)],
            );
            assert_eq!(refused.unwrap_err().source, "metadata.tags", "{bad:?}");
        }
    }

    #[test]
    fn an_event_carries_each_tag_once_sorted() {
        let key = Attribution {
            tags: vec!["team-a".into(), "prod".into()],
            ..Attribution::default()
        };
        let team = Attribution {
            tags: vec!["prod".into()],
            ..Attribution::default()
        };
        let tags = event_tags(&["zeta".into(), "prod".into()], &key, Some(&team));
        assert_eq!(tags, ["prod", "team-a", "zeta"]);
        assert!(event_tags(&[], &Attribution::default(), None).is_empty());
    }
}
