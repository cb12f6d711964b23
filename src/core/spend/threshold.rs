//! Threshold events: a budget window's spend reached its soft budget (`soft_budget`).
//!
//! A soft budget never refuses; reaching it is reported once per window on the spend channel,
//! as a CloudEvents 1.0 event of type [`THRESHOLD_EVENT_TYPE`] beside the spend events. Every
//! replica that sees the crossing sends the event with the same id (derived from the budget,
//! the window and the threshold), so the accounting cluster, which stores an id once, keeps
//! exactly one per window however many replicas or retries sent it.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::core::config::index::Policy;
use crate::core::config::key_hash::to_hex;
use crate::core::spend::accounting_api::{
    truncated, BudgetTotal, MAX_EVENT_COST_NANO, MAX_EVENT_ID_BYTES, MAX_FIELD_BYTES,
};
use crate::core::spend::event::format_millis;

/// CloudEvents `type` of a threshold event.
pub const THRESHOLD_EVENT_TYPE: &str = "tollgate.budget.threshold";

/// The event's `data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThresholdData {
    /// The policy version whose budget this is.
    pub policy_version: String,
    /// `soft_budget`: the only kind of threshold for now.
    pub threshold: Cow<'static, str>,
    /// The budget, `scope:id` as in spend events.
    pub budget: String,
    /// Whose budget: `key`, `team`, `user` or `end_user`.
    pub scope: Cow<'static, str>,
    /// The holder's name (key alias, team alias, user id).
    pub holder: String,
    /// For a per-model budget, the model it is written for.
    pub model: Option<String>,
    /// Window start, Unix seconds (0: the budget never resets).
    pub window_start: i64,
    /// Window end, Unix seconds (absent: never resets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_end: Option<i64>,
    /// The soft budget, nano-dollars.
    pub threshold_nano_usd: u64,
    /// The hard budget (`max_budget`), nano-dollars, if there is one.
    pub limit_nano_usd: Option<u64>,
    /// The window's spend the sender saw when it reached the threshold, nano-dollars.
    pub spend_nano_usd: u64,
}

/// A CloudEvents 1.0 threshold event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThresholdEvent {
    /// Always `1.0`.
    pub specversion: Cow<'static, str>,
    /// [`threshold_event_id`]: the same from every replica for one window.
    pub id: String,
    /// The sender, from `accounting.source`.
    pub source: String,
    /// Always [`THRESHOLD_EVENT_TYPE`].
    #[serde(rename = "type")]
    pub kind: Cow<'static, str>,
    /// When the sender saw the threshold reached, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// The budget.
    pub subject: String,
    /// Always `application/json`.
    pub datacontenttype: Cow<'static, str>,
    /// The crossing.
    pub data: ThresholdData,
}

/// The id every replica gives the event of `budget`'s window at `window_start` reaching
/// `threshold_nano`: `threshold-` and 32 hex digits of a SHA-256 over the three.
pub fn threshold_event_id(budget: &str, window_start: i64, threshold_nano: u64) -> String {
    let mut hasher = Sha256::new();
    hasher.update(budget.as_bytes());
    hasher.update(b"\n");
    hasher.update(window_start.to_string().as_bytes());
    hasher.update(b"\n");
    hasher.update(threshold_nano.to_string().as_bytes());
    let digest: [u8; 32] = hasher.finalize().into();
    let hex = to_hex(&digest);
    format!("threshold-{}", hex.get(..32).unwrap_or(&hex))
}

impl ThresholdEvent {
    /// Wraps `data` in its envelope, seen at `at_ms` (Unix milliseconds) by `source`.
    pub fn new(source: &str, at_ms: i64, data: ThresholdData) -> ThresholdEvent {
        ThresholdEvent {
            specversion: Cow::Borrowed("1.0"),
            id: threshold_event_id(&data.budget, data.window_start, data.threshold_nano_usd),
            source: source.to_string(),
            kind: Cow::Borrowed(THRESHOLD_EVENT_TYPE),
            time: format_millis(at_ms),
            subject: data.budget.clone(),
            datacontenttype: Cow::Borrowed("application/json"),
            data,
        }
    }

    /// The event as JSON text (rare: once per budget window, so serde is fine here).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The threshold event's data for the window `total` reports, when its budget is one of
/// `policy`'s with a soft budget (`spend_nano_usd` left 0 for the caller).
pub fn soft_threshold_of(policy: &Policy, total: &BudgetTotal) -> Option<ThresholdData> {
    let (scope, budget) = policy.soft_budget(&total.budget)?;
    Some(ThresholdData {
        policy_version: policy.version.clone(),
        threshold: Cow::Borrowed("soft_budget"),
        budget: total.budget.clone(),
        scope: Cow::Borrowed(scope.name()),
        holder: budget.label.to_string(),
        model: budget.model.as_deref().map(str::to_string),
        window_start: total.window_start,
        window_end: total.window_end,
        threshold_nano_usd: budget.soft_limit_nano?,
        limit_nano_usd: budget.enforced.then_some(budget.limit_nano),
        spend_nano_usd: 0,
    })
}

/// How the accounting service's own alert ids start (budget shares it finds crossed).
pub const SERVER_ALERT_PREFIX: &str = "budget-";

/// Checks a received threshold event's values: envelope, bounded strings, `scope:id`, a valid window.
pub fn check_threshold(event: &ThresholdEvent) -> Result<(), String> {
    if event.specversion != "1.0" {
        return Err("specversion must be 1.0".into());
    }
    if event.id.is_empty() || event.id.len() > MAX_EVENT_ID_BYTES || event.id.contains('\0') {
        return Err(format!(
            "id must be 1 to {MAX_EVENT_ID_BYTES} bytes without a NUL character"
        ));
    }
    if event.id.starts_with(SERVER_ALERT_PREFIX) {
        // The accounting service's own alerts: a writer may not take their ids first.
        return Err(format!(
            "ids starting {SERVER_ALERT_PREFIX:?} are the accounting service's"
        ));
    }
    let d = &event.data;
    let fields = [
        ("source", Some(event.source.as_str())),
        ("time", Some(event.time.as_str())),
        ("subject", Some(event.subject.as_str())),
        ("data.policy_version", Some(d.policy_version.as_str())),
        ("data.threshold", Some(d.threshold.as_ref())),
        ("data.budget", Some(d.budget.as_str())),
        ("data.scope", Some(d.scope.as_ref())),
        ("data.holder", Some(d.holder.as_str())),
        ("data.model", d.model.as_deref()),
    ];
    for (name, value) in fields {
        if value.is_some_and(|v| v.len() > MAX_FIELD_BYTES) {
            return Err(format!("{name} is longer than {MAX_FIELD_BYTES} bytes"));
        }
        if value.is_some_and(|v| v.contains('\0')) {
            return Err(format!("{name} holds a NUL character"));
        }
    }
    if d.budget.split_once(':').is_none() {
        return Err(format!(
            "budget {:?} is not scope:id",
            truncated(&d.budget, 64)
        ));
    }
    if d.window_start < 0 || d.window_end.is_some_and(|end| end < d.window_start) {
        return Err("the window is invalid".into());
    }
    if d.threshold_nano_usd > MAX_EVENT_COST_NANO * 1_000 {
        return Err("data.threshold_nano_usd is out of range".into());
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    pub(crate) fn sample_threshold() -> ThresholdData {
        ThresholdData {
            policy_version: "v1".into(),
            threshold: "soft_budget".into(),
            budget: "team:t-search".into(),
            scope: "team".into(),
            holder: "search".into(),
            model: None,
            window_start: 1_795_000_000,
            window_end: Some(1_795_086_400),
            threshold_nano_usd: 5_000,
            limit_nano_usd: Some(10_000),
            spend_nano_usd: 5_100,
        }
    }

    #[test]
    fn one_window_has_one_id_whoever_sends_it() {
        let a = ThresholdEvent::new("replica-a", 1, sample_threshold());
        let mut later = sample_threshold();
        later.spend_nano_usd = 9_000;
        let b = ThresholdEvent::new("replica-b", 2, later);
        assert_eq!(a.id, b.id);
        assert!(a.id.starts_with("threshold-") && a.id.len() == 42);
        let mut next_window = sample_threshold();
        next_window.window_start += 86_400;
        assert_ne!(ThresholdEvent::new("a", 1, next_window).id, a.id);
        let json = a.to_json();
        let back: ThresholdEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a);
        assert!(json.contains("\"type\":\"tollgate.budget.threshold\""));
    }
}
