//! Affinity marks: the deployment that produced a Responses-API id or encrypted content, written
//! into the value itself, so that any replica can route a follow-up without a shared cache.
//!
//! A tag is ten base32 characters: four for the deployment (a hash of its id), four for its
//! *encryption boundary* (a hash of its credential variable or `affinity_group`), and a 10-bit
//! checksum over the original value and the tag. Marks stay short, because OpenAI refuses a
//! `previous_response_id` over 64 characters:
//!
//! - an id `prefix_rest` becomes `prefix_tg<tag><mode><payload>`. When `rest` is lowercase hex
//!   (OpenAI's and Azure's `resp_…`, `rs_…`), the mode is `h` and the payload is those bytes in
//!   base64url, so a 53-character `resp_` + 48 hex id is marked in 50 characters. Otherwise the
//!   mode is `r` and `rest` follows verbatim (13 characters longer).
//! - encrypted content (opaque base64) becomes `tg<tag>.<content>`. `.` is not base64, so
//!   genuine content never looks marked.
//!
//! Unmarking restores the exact original. A mark whose checksum fails is reported as corrupt; a
//! mark naming a deployment the caller may not use is the router's concern (it is only a hint).

use sha2::{Digest, Sha256};

/// Lowercase RFC 4648 base32 alphabet.
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// RFC 4648 base64url alphabet.
const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// Marks start with this after an id's prefix, and at the start of marked content.
const MARKER: &str = "tg";
/// Characters of a tag (deployment 4, boundary 4, checksum 2).
const TAG_LEN: usize = 10;

/// Who produced a value: a deployment and its encryption boundary (four base32 chars each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AffinityTag {
    /// Hash code of the deployment id.
    pub deployment: [u8; 4],
    /// Hash code of the encryption boundary.
    pub boundary: [u8; 4],
}

impl AffinityTag {
    /// The tag of a deployment with this id and boundary key (see
    /// [`crate::policy::index::Deployment`]'s boundary).
    pub fn new(deployment_id: &str, boundary_key: &str) -> AffinityTag {
        AffinityTag {
            deployment: code(deployment_id),
            boundary: code(boundary_key),
        }
    }
}

/// A four-character base32 code of `text` (20 bits of its SHA-256).
pub fn code(text: &str) -> [u8; 4] {
    let hash = Sha256::digest(text.as_bytes());
    let bits = u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]]) >> 12;
    let mut out = [0u8; 4];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = BASE32[((bits >> (15 - 5 * i)) & 31) as usize];
    }
    out
}

fn checksum(original: &str, tag: &AffinityTag) -> [u8; 2] {
    let mut hasher = Sha256::new();
    hasher.update(original.as_bytes());
    hasher.update(tag.deployment);
    hasher.update(tag.boundary);
    let hash = hasher.finalize();
    [
        BASE32[(hash[0] & 31) as usize],
        BASE32[(hash[1] & 31) as usize],
    ]
}

fn tag_text(original: &str, tag: &AffinityTag) -> String {
    let mut out = String::with_capacity(MARKER.len() + TAG_LEN);
    out.push_str(MARKER);
    out.extend(tag.deployment.iter().map(|&b| b as char));
    out.extend(tag.boundary.iter().map(|&b| b as char));
    out.extend(checksum(original, tag).iter().map(|&b| b as char));
    out
}

/// A mark that failed its checksum or does not decode: never routed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorruptMark;

/// Longest marked id: OpenAI refuses a longer `previous_response_id`.
pub const MAX_MARKED_ID: usize = 64;

/// Marks an id (`resp_…`, `rs_…`). An id without `_`, already marked, or whose mark would exceed
/// [`MAX_MARKED_ID`] characters is returned unchanged (it then carries no affinity).
pub fn mark_id(original: &str, tag: &AffinityTag) -> String {
    let Some((prefix, rest)) = original.split_once('_') else {
        return original.to_string();
    };
    if rest.starts_with(MARKER) {
        return original.to_string();
    }
    let mut out = String::with_capacity(original.len() + 12);
    out.push_str(prefix);
    out.push('_');
    out.push_str(&tag_text(original, tag));
    match hex_bytes(rest) {
        Some(bytes) => {
            out.push('h');
            out.push_str(&base64url(&bytes));
        }
        None => {
            out.push('r');
            out.push_str(rest);
        }
    }
    if out.len() > MAX_MARKED_ID {
        return original.to_string();
    }
    out
}

/// The original id and its tag, `Ok(None)` for an id that is not marked.
pub fn unmark_id(marked: &str) -> Result<Option<(String, AffinityTag)>, CorruptMark> {
    let Some((prefix, rest)) = marked.split_once('_') else {
        return Ok(None);
    };
    let Some(after) = rest.strip_prefix(MARKER) else {
        return Ok(None);
    };
    if marked.len() > MAX_MARKED_ID {
        return Err(CorruptMark); // never issued: marks are at most 64 characters
    }
    let (tag_chars, body) = split_tag(after).ok_or(CorruptMark)?;
    let restored_rest = match body.split_at_checked(1) {
        Some(("h", payload)) => hex_text(&unbase64url(payload).ok_or(CorruptMark)?),
        Some(("r", raw)) => raw.to_string(),
        _ => return Err(CorruptMark),
    };
    let original = format!("{prefix}_{restored_rest}");
    let tag = verify(&original, tag_chars)?;
    Ok(Some((original, tag)))
}

/// Marks encrypted content.
pub fn mark_content(original: &str, tag: &AffinityTag) -> String {
    if unmark_content(original).is_ok_and(|m| m.is_some()) {
        return original.to_string();
    }
    let mut out = tag_text(original, tag);
    out.push('.');
    out.push_str(original);
    out
}

/// The original encrypted content and its tag, `Ok(None)` when it is not marked.
pub fn unmark_content(marked: &str) -> Result<Option<(String, AffinityTag)>, CorruptMark> {
    let Some(after) = marked.strip_prefix(MARKER) else {
        return Ok(None);
    };
    if after.as_bytes().get(TAG_LEN) != Some(&b'.') {
        return Ok(None);
    }
    let (tag_chars, body) = split_tag(after).ok_or(CorruptMark)?;
    let original = body.get(1..).ok_or(CorruptMark)?;
    let tag = verify(original, tag_chars)?;
    Ok(Some((original.to_string(), tag)))
}

fn split_tag(text: &str) -> Option<(&str, &str)> {
    let (tag, body) = text.split_at_checked(TAG_LEN)?;
    tag.bytes()
        .all(|b| BASE32.contains(&b))
        .then_some((tag, body))
}

fn verify(original: &str, tag_chars: &str) -> Result<AffinityTag, CorruptMark> {
    let bytes = tag_chars.as_bytes();
    let mut tag = AffinityTag {
        deployment: [0; 4],
        boundary: [0; 4],
    };
    tag.deployment
        .copy_from_slice(bytes.get(0..4).ok_or(CorruptMark)?);
    tag.boundary
        .copy_from_slice(bytes.get(4..8).ok_or(CorruptMark)?);
    if bytes.get(8..10) == Some(&checksum(original, &tag)[..]) {
        Ok(tag)
    } else {
        Err(CorruptMark)
    }
}

/// The bytes of a non-empty, even-length, lowercase hex string.
fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    let raw = text.as_bytes();
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    raw.chunks(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

fn hex_text(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

fn base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(BASE64URL[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn unbase64url(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| BASE64URL.iter().position(|&a| a == c).map(|p| p as u32);
    let raw = text.as_bytes();
    if raw.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len() * 3 / 4);
    for chunk in raw.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    // Reject non-canonical encodings (stray low bits), so that one id has one mark.
    (base64url(&out) == text).then_some(out)
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    const RESP: &str = "resp_68af4030592c81938ec0a5fbab4a3e9f05438e46b5f69a3b";
    const RS: &str = "rs_68af4030baa48193b0b43b4c2a176a1a05438e46b5f69a3b";

    fn tag() -> AffinityTag {
        AffinityTag::new("azure-eastus", "cred:AZURE_EASTUS_KEY")
    }

    #[test]
    fn openai_ids_round_trip_within_64_characters() {
        for original in [RESP, RS] {
            let marked = mark_id(original, &tag());
            assert!(marked.len() <= 64, "{marked} is {} chars", marked.len());
            assert!(marked.starts_with(original.split('_').next().unwrap()));
            assert_eq!(unmark_id(&marked), Ok(Some((original.to_string(), tag()))));
        }
        assert_eq!(mark_id(RESP, &tag()).len(), 50);
        assert!(mark_id(&format!("resp_{}", "ab".repeat(30)), &tag()).len() <= 64);
        let long = format!("resp_{}", "X".repeat(50));
        assert_eq!(
            mark_id(&long, &tag()),
            long,
            "a mark over 64 characters is not made"
        );
    }

    #[test]
    fn other_ids_are_carried_verbatim_and_unmarked_ids_pass() {
        for original in ["msg_ABC-def", "resp_abc", "fc_0a1", "resp_0A1B"] {
            let marked = mark_id(original, &tag());
            assert_eq!(unmark_id(&marked).unwrap().unwrap().0, original);
        }
        assert_eq!(mark_id("noprefix", &tag()), "noprefix");
        assert_eq!(unmark_id(RESP), Ok(None));
        assert_eq!(unmark_id("noprefix"), Ok(None));
        let marked = mark_id(RESP, &tag());
        assert_eq!(mark_id(&marked, &tag()), marked, "marking is idempotent");
    }

    #[test]
    fn corruption_is_detected() {
        let marked = mark_id(RESP, &tag());
        for i in 5..marked.len() {
            let mut bytes = marked.clone().into_bytes();
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            let tampered = String::from_utf8(bytes).unwrap();
            if tampered == marked {
                continue;
            }
            assert!(
                !matches!(unmark_id(&tampered), Ok(Some((ref o, _))) if o == RESP),
                "a change at {i} still decodes to the original with a valid tag"
            );
        }
        assert_eq!(unmark_id("resp_tgshort"), Err(CorruptMark));
        // Found by fuzzing: a well-formed mark longer than any we issue.
        let long = include_str!("../../fuzz/regressions/affinity-long-mark.txt");
        assert_eq!(unmark_id(long.trim_end_matches('\n')), Err(CorruptMark));
    }

    #[test]
    fn encrypted_content_round_trips() {
        let content = "gAAAAABoxyz+/=";
        let marked = mark_content(content, &tag());
        assert_eq!(&marked[..2], "tg");
        assert_eq!(
            unmark_content(&marked),
            Ok(Some((content.to_string(), tag())))
        );
        assert_eq!(unmark_content(content), Ok(None));
        assert_eq!(mark_content(&marked, &tag()), marked);
        let forged = format!("tgaaaaaaaaaa.{content}");
        assert_eq!(unmark_content(&forged), Err(CorruptMark));
    }

    #[test]
    fn tags_differ_by_deployment_and_boundary() {
        let a = AffinityTag::new("east", "cred:A");
        let b = AffinityTag::new("west", "cred:A");
        assert_ne!(a.deployment, b.deployment);
        assert_eq!(a.boundary, b.boundary);
        assert!(code("x").iter().all(|c| BASE32.contains(c)));
    }

    #[test]
    fn base64url_round_trips_every_length() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(unbase64url(&base64url(&bytes)), Some(bytes));
        }
        assert_eq!(unbase64url("A"), None);
        assert_eq!(unbase64url("AB"), None, "non-canonical");
    }
}
