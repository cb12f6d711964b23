//! Which parts of a client's request may reach an upstream: credentials, Tollgate's own internal
//! headers and provider tenant selectors are removed from the headers (and trailers), and
//! credentials are removed from the query string. Decided once per header name, by rules
//! compiled with the policy.

use std::collections::HashSet;

/// Every request header starting with this belongs to Tollgate (the route reads
/// `x-tollgate-cluster`): a client's copy is removed before anything else happens.
pub const INTERNAL_HEADER_PREFIX: &[u8] = b"x-tollgate-";

/// Envoy's router acts on client `x-envoy-*` headers (`x-envoy-retry-on`, `x-envoy-max-retries`,
/// `x-envoy-upstream-rq-timeout-ms`, …): a client could make Envoy retry a call the provider
/// bills while Tollgate meters one answer, or cut its timeouts. All are removed.
pub const ENVOY_HEADER_PREFIX: &[u8] = b"x-envoy-";

/// Always removed: they carry a credential (the virtual key, or another one the provider could
/// act on). Not configurable.
pub const CREDENTIAL_HEADERS: [&str; 6] = [
    "authorization",
    "x-api-key",
    "api-key",
    "proxy-authorization",
    "cookie",
    "x-goog-api-key",
];

/// Removed unless `settings.client_headers.forward` names them: they pick which provider
/// organisation or project is billed under the gateway's credential.
pub const TENANT_SELECTORS: [&str; 3] = [
    "openai-organization",
    "openai-project",
    "x-goog-user-project",
];

/// Always removed: read by Tollgate for spend attribution (LiteLLM's tag header; Tollgate's own
/// `x-tollgate-tags` goes with the other internal headers). Providers have no use for them.
pub const ATTRIBUTION_HEADERS: [&str; 1] = ["x-litellm-tags"];

/// Presented keys shorter than this are not searched for in other headers and query values
/// (a very short string would match innocent values).
const MIN_SEARCHED_KEY_BYTES: usize = 12;

/// Query parameters that carry a credential; removed from the path (names compared
/// case-insensitively after percent-decoding).
pub const CREDENTIAL_QUERY_PARAMS: [&str; 5] =
    ["key", "api-key", "api_key", "apikey", "access_token"];

/// Why a client header does not go upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// One of Tollgate's `x-tollgate-*` headers: only the filter may set them.
    Internal,
    /// An `x-envoy-*` header: only Envoy itself may steer its router.
    EnvoyControl,
    /// A credential header.
    Credential,
    /// A provider tenant selector not listed in `settings.client_headers.forward`.
    TenantSelector,
    /// Named by `settings.client_headers.remove`.
    Configured,
    /// Any other header whose value contains the virtual key the client presented.
    CarriesKey,
    /// A header Tollgate reads for spend attribution ([`ATTRIBUTION_HEADERS`]).
    Attribution,
}

impl Removal {
    /// A short stable name for metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Removal::Internal => "internal",
            Removal::EnvoyControl => "envoy_control",
            Removal::Credential => "credential",
            Removal::TenantSelector => "tenant_selector",
            Removal::Configured => "configured",
            Removal::CarriesKey => "carries_key",
            Removal::Attribution => "attribution",
        }
    }
}

/// What the filter asks upstreams for, replacing the client's `accept-encoding`: the response
/// must be readable to be metered, stripped and marked.
pub const UPSTREAM_ACCEPT_ENCODING: &str = "identity";

/// Whether a response `content-encoding` value leaves the body readable.
pub fn is_identity_encoding(value: &str) -> bool {
    let value = value.trim();
    value.is_empty() || value.eq_ignore_ascii_case("identity")
}

/// The compiled `settings.client_headers`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHeaderRules {
    /// Tenant selectors the operator lets through, by index in [`TENANT_SELECTORS`].
    forwarded_selectors: [bool; TENANT_SELECTORS.len()],
    /// Extra header names to remove (lowercase).
    removed: HashSet<String>,
}

impl ClientHeaderRules {
    /// Rules from the (already validated, lowercase) `forward` and `remove` lists.
    pub fn new(forward: &[String], remove: &[String]) -> ClientHeaderRules {
        let mut forwarded_selectors = [false; TENANT_SELECTORS.len()];
        for (slot, name) in forwarded_selectors.iter_mut().zip(TENANT_SELECTORS) {
            *slot = forward.iter().any(|f| f == name);
        }
        ClientHeaderRules {
            forwarded_selectors,
            removed: remove.iter().cloned().collect(),
        }
    }

    /// Whether (and why) the client header `name` (lowercase, as Envoy hands it over) must
    /// not reach the upstream.
    pub fn removal(&self, name: &[u8]) -> Option<Removal> {
        if name.starts_with(INTERNAL_HEADER_PREFIX) {
            return Some(Removal::Internal);
        }
        if name.starts_with(ENVOY_HEADER_PREFIX) {
            return Some(Removal::EnvoyControl);
        }
        if CREDENTIAL_HEADERS.iter().any(|h| h.as_bytes() == name) {
            return Some(Removal::Credential);
        }
        if ATTRIBUTION_HEADERS.iter().any(|h| h.as_bytes() == name) {
            return Some(Removal::Attribution);
        }
        if let Some(i) = TENANT_SELECTORS.iter().position(|h| h.as_bytes() == name) {
            let forwarded = self.forwarded_selectors.get(i).copied().unwrap_or(false);
            return (!forwarded).then_some(Removal::TenantSelector);
        }
        let configured = std::str::from_utf8(name).is_ok_and(|n| self.removed.contains(n));
        configured.then_some(Removal::Configured)
    }
}

/// Whether `value` contains the virtual key the client presented (`None`: no well-formed key).
/// Headers that do are removed whatever their name, so the key never reaches a provider.
pub fn carries_key(value: &[u8], presented: Option<&str>) -> bool {
    match presented {
        Some(key) if key.len() >= MIN_SEARCHED_KEY_BYTES => {
            memchr::memmem::find(value, key.as_bytes()).is_some()
        }
        _ => false,
    }
}

/// Removal when no policy is loaded (every request is refused then; internal and credential
/// headers still never reach a route or an upstream).
pub fn removal_without_policy(name: &[u8]) -> Option<Removal> {
    ClientHeaderRules::default().removal(name)
}

/// Checks one configured header name: lowercase token characters only, not a pseudo-header.
pub fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.!#$%&'*+^`|~".contains(&b)
        })
}

/// The path without credential query parameters (by name, or whose value, percent-decoded,
/// contains the `presented` virtual key), or `None` when it has none to remove.
pub fn scrub_query(path: &str, presented: Option<&str>) -> Option<String> {
    let (base, query) = path.split_once('?')?;
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let mut kept: Vec<&str> = Vec::new();
    let mut removed = false;
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = percent_decode(value);
        // The whole pair decoded too: the key may sit in the name (`?%73k-…`).
        let whole = percent_decode(pair);
        if is_credential_param(name)
            || carries_key(&decoded, presented)
            || carries_key(&whole, presented)
        {
            removed = true;
        } else {
            kept.push(pair);
        }
    }
    if !removed {
        return None;
    }
    let mut out = String::with_capacity(path.len());
    out.push_str(base);
    let kept: Vec<&str> = kept.into_iter().filter(|p| !p.is_empty()).collect();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    Some(out)
}

fn is_credential_param(raw_name: &str) -> bool {
    let name = String::from_utf8_lossy(&percent_decode(raw_name)).to_ascii_lowercase();
    CREDENTIAL_QUERY_PARAMS.iter().any(|p| *p == name)
}

/// `raw` with `%XX` escapes and `+` decoded (invalid escapes stay as they are). Only used to
/// compare parameter names and look for the presented key in values.
fn percent_decode(raw: &str) -> Vec<u8> {
    percent_decode_with(raw, true, usize::MAX)
}

/// `raw` with `%XX` escapes decoded (invalid ones stay as they are), and `+` as a space when
/// `plus_is_space` (query strings, not paths); at most `limit` bytes of output.
pub(crate) fn percent_decode_with(raw: &str, plus_is_space: bool, limit: usize) -> Vec<u8> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() && out.len() < limit {
        let b = bytes[i];
        let escaped = (b == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (b, escaped) {
            (_, Some(value)) => {
                out.push(value);
                i += 3;
            }
            (b'+', None) if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            (other, None) => {
                out.push(other);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn internal_credential_and_selector_headers_are_removed_by_default() {
        let rules = ClientHeaderRules::default();
        assert_eq!(
            rules.removal(b"x-tollgate-cluster"),
            Some(Removal::Internal)
        );
        assert_eq!(
            rules.removal(b"x-tollgate-anything-new"),
            Some(Removal::Internal)
        );
        for name in CREDENTIAL_HEADERS {
            assert_eq!(
                rules.removal(name.as_bytes()),
                Some(Removal::Credential),
                "{name}"
            );
        }
        assert_eq!(
            rules.removal(b"openai-organization"),
            Some(Removal::TenantSelector)
        );
        assert_eq!(
            rules.removal(b"openai-project"),
            Some(Removal::TenantSelector)
        );
        for kept in [
            "anthropic-version",
            "anthropic-beta",
            "openai-beta",
            "content-type",
            "x-stainless-os",
        ] {
            assert_eq!(rules.removal(kept.as_bytes()), None, "{kept}");
        }
    }

    #[test]
    fn operators_may_forward_selectors_and_remove_more_but_never_forward_credentials() {
        let rules = ClientHeaderRules::new(
            &["openai-project".into(), "authorization".into()],
            &["x-internal-debug".into()],
        );
        assert_eq!(rules.removal(b"openai-project"), None);
        assert_eq!(
            rules.removal(b"openai-organization"),
            Some(Removal::TenantSelector)
        );
        assert_eq!(rules.removal(b"authorization"), Some(Removal::Credential));
        assert_eq!(
            rules.removal(b"x-internal-debug"),
            Some(Removal::Configured)
        );
        assert_eq!(
            removal_without_policy(b"x-tollgate-cluster"),
            Some(Removal::Internal)
        );
    }

    #[test]
    fn credential_query_parameters_are_removed_and_the_rest_kept_in_order() {
        assert_eq!(scrub_query("/v1/chat/completions", None), None);
        assert_eq!(
            scrub_query("/v1/chat/completions?api-version=2024-10-21", None),
            None
        );
        assert_eq!(
            scrub_query(
                "/v1/chat/completions?api-key=sk-1&api-version=2024&key=x",
                None
            )
            .as_deref(),
            Some("/v1/chat/completions?api-version=2024")
        );
        assert_eq!(
            scrub_query("/v1/messages?KEY=sk-1", None).as_deref(),
            Some("/v1/messages")
        );
        assert_eq!(
            scrub_query("/v1/messages?%6Bey=sk-1&a=1", None).as_deref(),
            Some("/v1/messages?a=1")
        );
        assert_eq!(
            scrub_query("/v1/messages?api_key&b", None).as_deref(),
            Some("/v1/messages?b")
        );
        assert_eq!(
            scrub_query("/v1/x?access_token=t#frag", None).as_deref(),
            Some("/v1/x#frag")
        );
        assert_eq!(scrub_query("/v1/x?keys=1", None), None, "only exact names");
    }

    #[test]
    fn the_presented_key_is_removed_wherever_it_is_carried() {
        let key = Some("sk-e2e-all-models");
        assert!(carries_key(b"Bearer sk-e2e-all-models", key));
        assert!(!carries_key(b"sk-e2e-other", key));
        assert!(
            !carries_key(b"sk-1", Some("sk-1")),
            "too short to search for"
        );
        assert_eq!(
            scrub_query("/v1/x?token=sk-e2e-all-models&a=1", key).as_deref(),
            Some("/v1/x?a=1")
        );
        assert_eq!(
            scrub_query("/v1/x?authorization=Bearer%20sk%2De2e-all-models&a=1", key).as_deref(),
            Some("/v1/x?a=1")
        );
        assert_eq!(
            scrub_query("/v1/x?a=1;key=sk-e2e-all-models", key).as_deref(),
            Some("/v1/x")
        );
        assert_eq!(scrub_query("/v1/x?a=1", key), None);
        assert_eq!(
            scrub_query("/v1/x?%73k-e2e-all-models&a=1", key).as_deref(),
            Some("/v1/x?a=1")
        );
        assert_eq!(
            ClientHeaderRules::default().removal(b"x-goog-user-project"),
            Some(Removal::TenantSelector)
        );
    }

    #[test]
    fn configured_names_are_checked() {
        assert!(valid_header_name("x-my-header"));
        assert!(!valid_header_name("X-Upper"));
        assert!(!valid_header_name(":path"));
        assert!(!valid_header_name(""));
        assert!(!valid_header_name("a b"));
    }
}
