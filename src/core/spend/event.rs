//! Spend events: one CloudEvents 1.0 JSON object per finished request.
//!
//! The wire format is specified in `docs/accounting-api.md`; this module is its writer (the
//! filter) and, through [`SpendData`], its reader (the reference accounting server).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::core::config::time::format_rfc3339;

/// CloudEvents `type` of a spend event.
pub const EVENT_TYPE: &str = "tollgate.spend";

/// Content type of a batch of events.
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";

/// One budget window an event counts against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetRef {
    /// `scope:id`, e.g. `team:t-search` or `key:<sha256 hex>`.
    pub budget: String,
    /// Window start, Unix seconds (0: the budget never resets).
    pub window_start: i64,
    /// Window end, Unix seconds (absent: never resets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_end: Option<i64>,
    /// The budget's limit in nano-dollars (absent for a soft budget alone), so that the
    /// accounting service can tell when a window's total crosses a share of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_nano_usd: Option<u64>,
}

/// Token counts, normalised the way LiteLLM does (prompt includes cached and cache-creation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageData {
    /// All input tokens.
    pub prompt_tokens: u64,
    /// Output tokens (including reasoning).
    pub completion_tokens: u64,
    /// Input tokens read from the provider's cache.
    pub cached_tokens: u64,
    /// Input tokens written to the provider's cache.
    pub cache_creation_tokens: u64,
    /// Output tokens spent on reasoning.
    pub reasoning_tokens: u64,
    /// True when counts are estimates (the stream ended before usage was reported).
    pub estimated: bool,
}

/// The event's `data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendData {
    /// The policy version that decided the request.
    pub policy_version: String,
    /// SHA-256 hex of the virtual key.
    pub key_hash: String,
    /// The key's alias.
    pub key_alias: Option<String>,
    /// The key's team id.
    pub team_id: Option<String>,
    /// The key's user id.
    pub user_id: Option<String>,
    /// The request body's `user`.
    pub end_user: Option<String>,
    /// The API called (`chat_completions`, `messages`, …).
    pub endpoint: Cow<'static, str>,
    /// The model the client asked for.
    pub requested_model: String,
    /// The model after alias resolution.
    pub resolved_model: String,
    /// The deployment id that served it.
    pub deployment: String,
    /// The deployment's provider.
    pub provider: String,
    /// The model name the provider saw.
    pub upstream_model: String,
    /// Whether the response was streamed.
    pub stream: bool,
    /// Token counts.
    pub usage: UsageData,
    /// Cost in nano-dollars (1e-9 USD), exact.
    pub cost_nano_usd: u64,
    /// Where prices came from: `deployment`, `cost_map`, `default_price` or `unpriced`.
    pub cost_source: Cow<'static, str>,
    /// `ok`, `client_disconnect` or `upstream_error`.
    pub status: Cow<'static, str>,
    /// The upstream's HTTP status (0: none).
    pub http_status: u16,
    /// The budget windows this spend counts against.
    pub budgets: Vec<BudgetRef>,
    /// What the request counted on rate-limit windows (requests, tokens), so the accounting
    /// cluster can sum them across replicas. Absent when the request is under no rate limit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<LimitRef>,
    /// The request's tags with the key's and team's (each once, sorted; absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The metadata configured on the key and its team (absent when none).
    #[serde(default, skip_serializing_if = "EventMetadata::is_empty")]
    pub metadata: EventMetadata,
}

/// The metadata configured on a request's key and team, carried for attribution.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// The key's metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub key: BTreeMap<String, String>,
    /// The team's metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub team: BTreeMap<String, String>,
}

impl EventMetadata {
    /// Nothing configured on either.
    pub fn is_empty(&self) -> bool {
        self.key.is_empty() && self.team.is_empty()
    }
}

/// One rate-limit window a request counted on, and by how much.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitRef {
    /// `holder/kind`, e.g. `key:<sha256 hex>/rpm` or `deployment:<id>/tpm`.
    pub limit: String,
    /// Window start, Unix seconds.
    pub window_start: i64,
    /// Window end, Unix seconds.
    pub window_end: i64,
    /// Requests (1) or tokens counted.
    pub count: u64,
}

/// A CloudEvents 1.0 spend event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendEvent {
    /// Always `1.0`.
    pub specversion: Cow<'static, str>,
    /// Unique and stable across retries (the receiver deduplicates on it).
    pub id: String,
    /// The sender, from `accounting.source`.
    pub source: String,
    /// Always [`EVENT_TYPE`].
    #[serde(rename = "type")]
    pub kind: Cow<'static, str>,
    /// When the request ended, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// The key alias, else the key hash.
    pub subject: String,
    /// Always `application/json`.
    pub datacontenttype: Cow<'static, str>,
    /// The spend itself.
    pub data: SpendData,
}

impl SpendEvent {
    /// Wraps `data` in its CloudEvents envelope.
    pub fn new(id: String, source: &str, ended_at_ms: i64, data: SpendData) -> SpendEvent {
        SpendEvent {
            specversion: Cow::Borrowed("1.0"),
            id,
            source: source.to_string(),
            kind: Cow::Borrowed(EVENT_TYPE),
            time: format_millis(ended_at_ms),
            subject: data
                .key_alias
                .clone()
                .unwrap_or_else(|| data.key_hash.clone()),
            datacontenttype: Cow::Borrowed("application/json"),
            data,
        }
    }

    /// The event as JSON text.
    pub fn to_json(&self) -> String {
        // Sized for a typical event, so the text is not regrown as it is written.
        let mut out = Vec::with_capacity(1024);
        if serde_json::to_writer(&mut out, self).is_err() {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_millis(ms: i64) -> String {
    let seconds = format_rfc3339(ms.div_euclid(1000));
    let base = seconds.trim_end_matches('Z');
    format!("{base}.{:03}Z", ms.rem_euclid(1000))
}

/// A batch body from already-serialised events.
pub fn batch_body<'a>(events: impl Iterator<Item = &'a str>) -> Vec<u8> {
    let mut out = Vec::from(&b"["[..]);
    for (i, event) in events.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(event.as_bytes());
    }
    out.push(b']');
    out
}

#[cfg(test)]
pub(crate) mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    pub(crate) fn sample_data() -> SpendData {
        SpendData {
            policy_version: "v1".into(),
            key_hash: "ab".repeat(32),
            key_alias: Some("search-prod".into()),
            team_id: Some("t-search".into()),
            user_id: None,
            end_user: Some("cust-1".into()),
            endpoint: "chat_completions".into(),
            requested_model: "fast".into(),
            resolved_model: "gpt-4o".into(),
            deployment: "openai-gpt-4o".into(),
            provider: "openai".into(),
            upstream_model: "gpt-4o".into(),
            stream: true,
            usage: UsageData {
                prompt_tokens: 10,
                completion_tokens: 2,
                ..UsageData::default()
            },
            cost_nano_usd: 45_000,
            cost_source: "cost_map".into(),
            status: "ok".into(),
            http_status: 200,
            budgets: vec![BudgetRef {
                budget: "team:t-search".into(),
                window_start: 1_795_392_000,
                window_end: Some(1_798_070_400),
                max_nano_usd: None,
            }],
            limits: vec![],
            tags: vec![],
            metadata: Default::default(),
        }
    }

    #[test]
    fn events_are_cloudevents_and_round_trip() {
        let event = SpendEvent::new(
            "n-1".into(),
            "tollgate/test",
            1_795_402_116_123,
            sample_data(),
        );
        let json: serde_json::Value = serde_json::from_str(&event.to_json()).unwrap();
        assert_eq!(json["specversion"], "1.0");
        assert_eq!(json["type"], "tollgate.spend");
        assert_eq!(json["time"], "2026-11-23T02:48:36.123Z");
        assert_eq!(json["subject"], "search-prod");
        assert_eq!(json["data"]["cost_nano_usd"], 45_000);
        assert_eq!(json["data"]["budgets"][0]["budget"], "team:t-search");
        let back: SpendEvent = serde_json::from_str(&event.to_json()).unwrap();
        assert_eq!(back, event);
        let body = batch_body(
            [event.to_json(), event.to_json()]
                .iter()
                .map(String::as_str),
        );
        let parsed: Vec<SpendEvent> = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(batch_body(std::iter::empty()), b"[]");
    }
}
