//! Affinity marks: the deployment that produced a Responses-API id or encrypted content, written
//! into the value itself, so that any replica can route a follow-up without a shared cache.
//!
//! A tag is eighteen base32 characters: four for the deployment (a hash of its id), four for its
//! *encryption boundary* (a hash of its credential variable or `affinity_group`), a 10-bit
//! checksum over the original value and the tag, and a 40-bit **tenant seal**: an HMAC-SHA256,
//! keyed by the operator's secret and the tenant (team, or key without a team), of the original
//! value and the tag. Anyone can see the original inside a mark and recompute the checksum; only
//! the gateway can make a seal, so a mark proves which tenant it was issued to. Marks stay
//! short, because OpenAI refuses a `previous_response_id` over 64 characters:
//!
//! - an id `prefix_rest` becomes `prefix_ts<tag><mode><payload>`. When `rest` is lowercase hex
//!   (OpenAI's and Azure's `resp_…`, `rs_…`), the mode is `h` and the payload is those bytes in
//!   base64url, so a 53-character `resp_` + 48 hex id is marked in 58 characters. Otherwise the
//!   mode is `r` and `rest` follows verbatim (21 characters longer).
//! - encrypted content (opaque base64) becomes `ts<tag>.<content>`. `.` is not base64, so
//!   genuine content never looks marked.
//!
//! Unmarking restores the exact original. A mark whose checksum fails is reported as corrupt; a
//! well-formed mark whose seal is not this tenant's is [`Reading::Foreign`]. Marks of the
//! earlier, unsealed format (`tg`, before issue 10) read as [`Reading::Plain`]: nothing vouches
//! for their tenant. A mark naming a deployment the caller may not use is the router's concern
//! (it is only a hint).

use sha2::{Digest, Sha256};

/// Lowercase RFC 4648 base32 alphabet.
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// RFC 4648 base64url alphabet.
const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// Marks start with this after an id's prefix, and at the start of marked content.
const MARKER: &str = "ts";
/// Characters of a tag (deployment 4, boundary 4, checksum 2, seal 8).
const TAG_LEN: usize = 18;
/// Characters of the tenant seal at the end of a tag (40 bits).
const SEAL_LEN: usize = 8;
/// The shortest affinity secret accepted (shorter ones count as unset).
pub const MIN_AFFINITY_SECRET_BYTES: usize = 16;

/// A tenant's sealing key: HMAC-SHA256 of the tenant under the operator's secret. Marks made
/// with it verify only with it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Seal([u8; 32]);

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seal(..)")
    }
}

impl Seal {
    /// The key of `tenant` (`team:<id>` or `key:<hash>`) under `secret`.
    pub fn new(secret: &[u8], tenant: &str) -> Seal {
        Seal(hmac_sha256(
            secret,
            &[b"tollgate/affinity-tenant/v1\0", tenant.as_bytes()],
        ))
    }

    fn code(&self, original: &str, tag: &AffinityTag) -> [u8; SEAL_LEN] {
        let mac = hmac_sha256(
            &self.0,
            &[original.as_bytes(), &tag.deployment, &tag.boundary],
        );
        let bits = u64::from_be_bytes([0, 0, 0, mac[0], mac[1], mac[2], mac[3], mac[4]]);
        let mut out = [0u8; SEAL_LEN];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = BASE32[((bits >> (35 - 5 * i)) & 31) as usize];
        }
        out
    }
}

/// How to mark one answer: the producing deployment's tag, sealed to the caller's tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkWith {
    /// The deployment that produced the answer.
    pub tag: AffinityTag,
    /// The tenant the answer belongs to.
    pub seal: Seal,
}

/// What a value in a follow-up says about its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// Not marked by this gateway in the current format (raw, or an unsealed mark of the
    /// earlier format): nothing vouches for its tenant.
    Plain,
    /// Marked for this tenant: the original value and where it was produced.
    Sealed(String, AffinityTag),
    /// Marked for another tenant (or forged).
    Foreign,
}

/// HMAC-SHA256 (RFC 2104) of the concatenated `parts`.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

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
    /// [`crate::core::config::index::Deployment`]'s boundary).
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

fn tag_text(original: &str, with: &MarkWith) -> String {
    let tag = &with.tag;
    let mut out = String::with_capacity(MARKER.len() + TAG_LEN);
    out.push_str(MARKER);
    out.extend(tag.deployment.iter().map(|&b| b as char));
    out.extend(tag.boundary.iter().map(|&b| b as char));
    out.extend(checksum(original, tag).iter().map(|&b| b as char));
    out.extend(with.seal.code(original, tag).iter().map(|&b| b as char));
    out
}

/// A mark that failed its checksum or does not decode: never routed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorruptMark;

/// Longest marked id: OpenAI refuses a longer `previous_response_id`.
pub const MAX_MARKED_ID: usize = 64;

/// Marks an id (`resp_…`, `rs_…`). An id without `_`, already marked, or whose mark would exceed
/// [`MAX_MARKED_ID`] characters is returned unchanged (it then carries no affinity, and no
/// follow-up can use it).
pub fn mark_id(original: &str, with: &MarkWith) -> String {
    let Some((prefix, rest)) = original.split_once('_') else {
        return original.to_string();
    };
    if rest.starts_with(MARKER) {
        return original.to_string();
    }
    let mut out = String::with_capacity(original.len() + 12);
    out.push_str(prefix);
    out.push('_');
    out.push_str(&tag_text(original, with));
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

/// What a marked id says for the tenant of `seal`; an error for a damaged mark.
pub fn unmark_id(marked: &str, seal: &Seal) -> Result<Reading, CorruptMark> {
    let Some((prefix, rest)) = marked.split_once('_') else {
        return Ok(Reading::Plain);
    };
    let Some(after) = rest.strip_prefix(MARKER) else {
        return Ok(Reading::Plain);
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
    verify(original, tag_chars, seal)
}

/// Marks encrypted content.
pub fn mark_content(original: &str, with: &MarkWith) -> String {
    if is_marked_content(original) {
        return original.to_string();
    }
    let mut out = tag_text(original, with);
    out.push('.');
    out.push_str(original);
    out
}

fn is_marked_content(text: &str) -> bool {
    text.strip_prefix(MARKER)
        .is_some_and(|after| after.as_bytes().get(TAG_LEN) == Some(&b'.'))
}

/// What marked encrypted content says for the tenant of `seal`; an error for a damaged mark.
pub fn unmark_content(marked: &str, seal: &Seal) -> Result<Reading, CorruptMark> {
    if !is_marked_content(marked) {
        return Ok(Reading::Plain);
    }
    let after = marked.get(MARKER.len()..).ok_or(CorruptMark)?;
    let (tag_chars, body) = split_tag(after).ok_or(CorruptMark)?;
    let original = body.get(1..).ok_or(CorruptMark)?;
    verify(original.to_string(), tag_chars, seal)
}

fn split_tag(text: &str) -> Option<(&str, &str)> {
    let (tag, body) = text.split_at_checked(TAG_LEN)?;
    tag.bytes()
        .all(|b| BASE32.contains(&b))
        .then_some((tag, body))
}

fn verify(original: String, tag_chars: &str, seal: &Seal) -> Result<Reading, CorruptMark> {
    let bytes = tag_chars.as_bytes();
    let mut tag = AffinityTag {
        deployment: [0; 4],
        boundary: [0; 4],
    };
    tag.deployment
        .copy_from_slice(bytes.get(0..4).ok_or(CorruptMark)?);
    tag.boundary
        .copy_from_slice(bytes.get(4..8).ok_or(CorruptMark)?);
    if bytes.get(8..10) != Some(&checksum(&original, &tag)[..]) {
        return Err(CorruptMark);
    }
    let expected = seal.code(&original, &tag);
    let given = bytes.get(10..TAG_LEN).ok_or(CorruptMark)?;
    // Compared in constant time.
    let difference = given
        .iter()
        .zip(expected.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if difference == 0 {
        Ok(Reading::Sealed(original, tag))
    } else {
        Ok(Reading::Foreign)
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

    fn seal() -> Seal {
        Seal::new(b"an operator secret of 32 bytes..", "team:search")
    }

    fn with() -> MarkWith {
        MarkWith {
            tag: tag(),
            seal: seal(),
        }
    }

    #[test]
    fn openai_ids_round_trip_within_64_characters() {
        for original in [RESP, RS] {
            let marked = mark_id(original, &with());
            assert!(marked.len() <= 64, "{marked} is {} chars", marked.len());
            assert!(marked.starts_with(original.split('_').next().unwrap()));
            assert_eq!(
                unmark_id(&marked, &seal()),
                Ok(Reading::Sealed(original.to_string(), tag()))
            );
        }
        assert_eq!(mark_id(RESP, &with()).len(), 58);
        // Up to 56 hex digits (28 bytes) fit; a longer id stays unmarked.
        assert_eq!(
            mark_id(&format!("resp_{}", "ab".repeat(28)), &with()).len(),
            64
        );
        let longer = format!("resp_{}", "ab".repeat(29));
        assert_eq!(mark_id(&longer, &with()), longer);
        let long = format!("resp_{}", "X".repeat(50));
        assert_eq!(
            mark_id(&long, &with()),
            long,
            "a mark over 64 characters is not made"
        );
    }

    #[test]
    fn other_ids_are_carried_verbatim_and_unmarked_ids_pass() {
        for original in ["msg_ABC-def", "resp_abc", "fc_0a1", "resp_0A1B"] {
            let marked = mark_id(original, &with());
            assert!(
                matches!(unmark_id(&marked, &seal()), Ok(Reading::Sealed(o, _)) if o == original)
            );
        }
        assert_eq!(mark_id("noprefix", &with()), "noprefix");
        assert_eq!(unmark_id(RESP, &seal()), Ok(Reading::Plain));
        assert_eq!(unmark_id("noprefix", &seal()), Ok(Reading::Plain));
        let marked = mark_id(RESP, &with());
        assert_eq!(mark_id(&marked, &with()), marked, "marking is idempotent");
    }

    #[test]
    fn corruption_is_detected() {
        let marked = mark_id(RESP, &with());
        for i in 5..marked.len() {
            let mut bytes = marked.clone().into_bytes();
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            let tampered = String::from_utf8(bytes).unwrap();
            if tampered == marked {
                continue;
            }
            assert!(
                !matches!(unmark_id(&tampered, &seal()), Ok(Reading::Sealed(ref o, _)) if o == RESP),
                "a change at {i} still decodes to the original with a valid tag"
            );
        }
        assert_eq!(unmark_id("resp_tsshort", &seal()), Err(CorruptMark));
        // Found by fuzzing (in the earlier format): a well-formed mark longer than any we issue.
        let long = format!("resp_ts{}r{}", "a".repeat(TAG_LEN), "x".repeat(50));
        assert_eq!(unmark_id(&long, &seal()), Err(CorruptMark));
        // The earlier, unsealed format vouches for no tenant.
        let legacy = include_str!("../../../fuzz/regressions/affinity-long-mark.txt");
        assert_eq!(
            unmark_id(legacy.trim_end_matches('\n'), &seal()),
            Ok(Reading::Plain)
        );
    }

    #[test]
    fn encrypted_content_round_trips() {
        let content = "gAAAAABoxyz+/=";
        let marked = mark_content(content, &with());
        assert_eq!(&marked[..2], "ts");
        assert_eq!(
            unmark_content(&marked, &seal()),
            Ok(Reading::Sealed(content.to_string(), tag()))
        );
        assert_eq!(unmark_content(content, &seal()), Ok(Reading::Plain));
        assert_eq!(mark_content(&marked, &with()), marked);
        let forged = format!("ts{}.{content}", "a".repeat(TAG_LEN));
        assert_eq!(unmark_content(&forged, &seal()), Err(CorruptMark));
    }

    #[test]
    fn a_mark_verifies_only_for_the_tenant_it_was_sealed_to() {
        let other_team = Seal::new(b"an operator secret of 32 bytes..", "team:ads");
        let other_secret = Seal::new(b"another secret of 32 bytes......", "team:search");
        let id = mark_id(RESP, &with());
        let content = mark_content("gAAAA+/=", &with());
        for foreign in [other_team, other_secret] {
            assert_eq!(unmark_id(&id, &foreign), Ok(Reading::Foreign));
            assert_eq!(unmark_content(&content, &foreign), Ok(Reading::Foreign));
        }
        // A forger who recomputes the public checksum for another deployment still lacks the seal.
        let other = AffinityTag::new("vault", "cred:VAULT");
        let forged = format!(
            "resp_ts{}{}{}{}",
            std::str::from_utf8(&other.deployment).unwrap(),
            std::str::from_utf8(&other.boundary).unwrap(),
            std::str::from_utf8(&checksum(RESP, &other)).unwrap(),
            &id[5 + 2 + 10..]
        );
        assert_eq!(unmark_id(&forged, &seal()), Ok(Reading::Foreign));
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
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
