//! OpenAI's rate-limit answer headers (`x-ratelimit-limit-requests`, `-remaining-`, `-reset-`
//! and the `-tokens` forms), on allowed and refused answers alike, so SDKs back off correctly.

use crate::core::limits::hold::{RateView, Remaining};

/// Upstream answer headers that describe the gateway's shared provider credential (every
/// tenant's traffic), removed before the answer reaches a client.
pub fn is_upstream_rate_header(name: &[u8]) -> bool {
    name.starts_with(b"x-ratelimit-") || name.starts_with(b"anthropic-ratelimit-")
}

/// A duration as OpenAI writes its resets: `1s`, `6m0s`, `1h2m3s`.
pub fn reset_text(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

fn push(out: &mut Vec<(&'static str, String)>, names: [&'static str; 3], state: Remaining) {
    out.push((names[0], state.limit.to_string()));
    out.push((names[1], state.remaining.to_string()));
    out.push((names[2], reset_text(state.resets_in)));
}

/// Header names for requests.
const REQUESTS: [&str; 3] = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
];
/// Header names for tokens.
const TOKENS: [&str; 3] = [
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
];

/// The headers for what a request saw of its tightest limits (none when it has none).
pub fn rate_headers(view: &RateView) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(requests) = view.requests {
        push(&mut out, REQUESTS, requests);
    }
    if let Some(tokens) = view.tokens {
        push(&mut out, TOKENS, tokens);
    }
    out
}

/// The headers of a refusal by a requests (`tokens: false`) or tokens limit: nothing left.
pub fn refused_headers(tokens: bool, limit: u64, resets_in: u64) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let state = Remaining {
        limit,
        remaining: 0,
        resets_in,
    };
    push(&mut out, if tokens { TOKENS } else { REQUESTS }, state);
    out
}

/// The request headers naming who and what an admitted request is, for Envoy's rate-limit
/// filters placed after Tollgate (`settings.rate_limit_descriptors`): the key's hash, its team,
/// its user, the body's end user and the model after aliases. Clients cannot send them (every
/// client `x-tollgate-*` header is removed first). A value that is not printable ASCII is left
/// out rather than written.
pub fn descriptor_headers(
    key_hash: String,
    team: Option<&str>,
    user: Option<&str>,
    end_user: Option<&str>,
    model: &str,
) -> Vec<(&'static str, String)> {
    let printable = |v: &str| !v.is_empty() && v.bytes().all(|b| (0x20..0x7f).contains(&b));
    let mut out = vec![("x-tollgate-key", key_hash)];
    for (name, value) in [
        ("x-tollgate-team", team),
        ("x-tollgate-user", user),
        ("x-tollgate-end-user", end_user),
        ("x-tollgate-model", Some(model)),
    ] {
        if let Some(value) = value.filter(|v| printable(v)) {
            out.push((name, value.to_string()));
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
    fn descriptor_headers_leave_out_what_cannot_be_a_header_value() {
        let headers = descriptor_headers("ab".into(), Some("t"), None, Some("bad\u{7}"), "gpt-4o");
        assert_eq!(
            headers,
            vec![
                ("x-tollgate-key", "ab".to_string()),
                ("x-tollgate-team", "t".to_string()),
                ("x-tollgate-model", "gpt-4o".to_string()),
            ]
        );
    }

    #[test]
    fn resets_read_as_openai_writes_them() {
        assert_eq!(reset_text(1), "1s");
        assert_eq!(reset_text(59), "59s");
        assert_eq!(reset_text(60), "1m0s");
        assert_eq!(reset_text(3723), "1h2m3s");
    }

    #[test]
    fn headers_show_the_tightest_limits() {
        let view = RateView {
            requests: Some(Remaining {
                limit: 10,
                remaining: 3,
                resets_in: 42,
            }),
            tokens: None,
        };
        let headers = rate_headers(&view);
        assert_eq!(
            headers,
            vec![
                ("x-ratelimit-limit-requests", "10".to_string()),
                ("x-ratelimit-remaining-requests", "3".to_string()),
                ("x-ratelimit-reset-requests", "42s".to_string()),
            ]
        );
        assert!(rate_headers(&RateView::default()).is_empty());
        assert!(is_upstream_rate_header(b"x-ratelimit-remaining-tokens"));
        assert!(is_upstream_rate_header(
            b"anthropic-ratelimit-requests-limit"
        ));
        assert!(!is_upstream_rate_header(b"retry-after"));
    }
}
