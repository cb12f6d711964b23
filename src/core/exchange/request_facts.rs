//! The request headers the core reads (first value of each), borrowed from the host's header
//! block where they are valid UTF-8 (lossy otherwise: a non-UTF-8 credential is still seen,
//! and refused as malformed).

use std::borrow::Cow;

use super::host::HeaderBlock;
use crate::core::RequestHead;

/// First values of the request headers the decision reads.
#[derive(Default)]
pub struct HeadFacts<'a> {
    /// `:method`.
    pub method: Option<Cow<'a, str>>,
    /// `:path`.
    pub path: Option<Cow<'a, str>>,
    /// `authorization`.
    pub authorization: Option<Cow<'a, str>>,
    /// `x-api-key`.
    pub x_api_key: Option<Cow<'a, str>>,
    /// `api-key`.
    pub api_key: Option<Cow<'a, str>>,
    /// `content-length`, as sent.
    pub content_length: Option<Cow<'a, str>>,
    /// `content-encoding`.
    pub content_encoding: Option<Cow<'a, str>>,
    /// `x-tollgate-tags`.
    pub tollgate_tags: Option<Cow<'a, str>>,
    /// `x-litellm-tags`.
    pub litellm_tags: Option<Cow<'a, str>>,
}

impl<'a> HeadFacts<'a> {
    /// Reads the facts from one pass over the request headers.
    pub fn read(pairs: &'a HeaderBlock) -> Self {
        let mut facts = HeadFacts::default();
        for (name, value) in pairs.iter() {
            // Every copy of a tags header counts (each is removed before the upstream).
            let tags = match name {
                b"x-tollgate-tags" => Some(&mut facts.tollgate_tags),
                b"x-litellm-tags" => Some(&mut facts.litellm_tags),
                _ => None,
            };
            if let Some(slot) = tags {
                let value = String::from_utf8_lossy(value);
                *slot = Some(match slot.take() {
                    Some(before) => Cow::Owned(format!("{before},{value}")),
                    None => value,
                });
                continue;
            }
            let slot = match name {
                b":method" => &mut facts.method,
                b":path" => &mut facts.path,
                b"authorization" => &mut facts.authorization,
                b"x-api-key" => &mut facts.x_api_key,
                b"api-key" => &mut facts.api_key,
                b"content-length" => &mut facts.content_length,
                b"content-encoding" => &mut facts.content_encoding,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(String::from_utf8_lossy(value));
            }
        }
        facts
    }

    /// The virtual key the client presented, if its credential headers name one.
    pub fn presented_key(&self) -> Option<String> {
        RequestHead {
            authorization: self.authorization.as_deref(),
            x_api_key: self.x_api_key.as_deref(),
            api_key: self.api_key.as_deref(),
            ..RequestHead::default()
        }
        .credential()
        .ok()
        .map(str::to_string)
    }

    /// The request head the decision reads.
    pub fn head(&self) -> RequestHead<'_> {
        let content_length = self
            .content_length
            .as_deref()
            .and_then(|v| v.trim().parse::<u64>().ok());
        RequestHead {
            method: self.method.as_deref().unwrap_or_default(),
            path: self.path.as_deref().unwrap_or_default(),
            authorization: self.authorization.as_deref(),
            x_api_key: self.x_api_key.as_deref(),
            api_key: self.api_key.as_deref(),
            content_length,
            content_encoding: self.content_encoding.as_deref(),
            tag_headers: [self.tollgate_tags.as_deref(), self.litellm_tags.as_deref()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_value_of_each_header_counts() {
        let mut block = HeaderBlock::default();
        block.push(b":method", b"POST");
        block.push(b"x-api-key", b"sk-first");
        block.push(b"x-api-key", b"sk-second");
        block.push(b"content-length", b" 12 ");
        let facts = HeadFacts::read(&block);
        assert_eq!(facts.presented_key().as_deref(), Some("sk-first"));
        let head = facts.head();
        assert_eq!(head.method, "POST");
        assert_eq!(head.content_length, Some(12));
    }
}
