//! The per-request summary the filter leaves in Envoy filter state for access logs
//! (`%FILTER_STATE(wasm.tollgate:PLAIN)%`): one `key=value` line, values quoted when needed.

use std::fmt::Write;

use crate::core::admission::denial::{usd, Denial};
use crate::core::config::index::Policy;
use crate::core::limits::hold::RateView;
use crate::core::money::settlement::Settlement;
use crate::core::spend::event::SpendData;

/// Filter-state name (Envoy prefixes it with `wasm.`).
pub const FILTER_STATE_NAME: &str = "tollgate";

fn field(out: &mut String, name: &str, value: &str) {
    if !out.is_empty() {
        out.push(' ');
    }
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    if plain {
        let _ = write!(out, "{name}={value}");
    } else {
        let _ = write!(
            out,
            "{name}={}",
            serde_json::Value::String(value.to_string())
        );
    }
}

/// The line of a forwarded request, from its spend event data.
pub fn forwarded_line(data: &SpendData) -> String {
    let mut out = String::with_capacity(256);
    field(&mut out, "decision", "allowed");
    field(&mut out, "version", &data.policy_version);
    field(
        &mut out,
        "key",
        data.key_alias.as_deref().unwrap_or(&data.key_hash),
    );
    field(&mut out, "team", data.team_id.as_deref().unwrap_or("-"));
    field(&mut out, "model", &data.requested_model);
    field(&mut out, "resolved", &data.resolved_model);
    field(&mut out, "deployment", &data.deployment);
    field(
        &mut out,
        "prompt_tokens",
        &data.usage.prompt_tokens.to_string(),
    );
    field(
        &mut out,
        "completion_tokens",
        &data.usage.completion_tokens.to_string(),
    );
    field(&mut out, "cost_usd", &usd(data.cost_nano_usd));
    field(&mut out, "cost_source", &data.cost_source);
    field(&mut out, "status", &data.status);
    if data.usage.estimated {
        field(&mut out, "estimated", "true");
    }
    out
}

/// The line of a forwarded request that is free and not metered (count_tokens, stored
/// responses): who, what and where, without usage or cost.
pub fn relayed_line(policy: &Policy, settlement: &Settlement) -> String {
    let mut out = String::with_capacity(192);
    let key = policy.keys.get(settlement.key_id as usize);
    let team = key.and_then(|k| k.team).and_then(|t| policy.team(t));
    field(&mut out, "decision", "allowed");
    field(&mut out, "version", &policy.version);
    let key_name = key.map_or_else(
        || "-".to_string(),
        |k| {
            k.alias
                .clone()
                .unwrap_or_else(|| crate::core::config::key_hash::to_hex(&k.digest))
        },
    );
    field(&mut out, "key", &key_name);
    field(&mut out, "team", team.map_or("-", |t| t.id.as_str()));
    field(&mut out, "endpoint", settlement.plan.endpoint.name());
    field(&mut out, "model", &settlement.requested_model);
    field(&mut out, "resolved", &settlement.resolved_model);
    let deployment = policy.deployment(settlement.deployment);
    field(
        &mut out,
        "deployment",
        deployment.map_or("-", |d| d.id.as_str()),
    );
    field(&mut out, "metered", "false");
    out
}

/// The line of a refused request.
pub fn denied_line(version: Option<&str>, denial: &Denial) -> String {
    let mut out = String::with_capacity(96);
    field(&mut out, "decision", "denied");
    field(&mut out, "version", version.unwrap_or("-"));
    field(&mut out, "status", &denial.status().to_string());
    field(&mut out, "code", denial.code());
    if let Denial::RateLimited { scope, .. } = denial {
        field(&mut out, "limit_scope", scope);
    }
    out
}

/// Appends what an allowed request left of its tightest rate limits
/// (`ratelimit_remaining_requests`, `ratelimit_remaining_tokens`).
pub fn append_rate_fields(out: &mut String, view: &RateView) {
    if let Some(requests) = view.requests {
        field(
            out,
            "ratelimit_remaining_requests",
            &requests.remaining.to_string(),
        );
    }
    if let Some(tokens) = view.tokens {
        field(
            out,
            "ratelimit_remaining_tokens",
            &tokens.remaining.to_string(),
        );
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::core::spend::event::UsageData;

    #[test]
    fn lines_are_key_value_and_quote_odd_values() {
        let data = SpendData {
            policy_version: "v1".into(),
            key_hash: "ab".into(),
            key_alias: Some("search backend".into()),
            team_id: None,
            user_id: None,
            end_user: None,
            endpoint: "chat_completions".into(),
            requested_model: "fast".into(),
            resolved_model: "gpt-4o-mini".into(),
            deployment: "d1".into(),
            provider: "openai".into(),
            upstream_model: "gpt-4o-mini".into(),
            stream: false,
            usage: UsageData {
                prompt_tokens: 12,
                completion_tokens: 5,
                ..UsageData::default()
            },
            cost_nano_usd: 4800,
            cost_source: "cost_map".into(),
            status: "ok".into(),
            http_status: 200,
            budgets: vec![],
            limits: vec![],
            tags: vec![],
            metadata: Default::default(),
        };
        assert_eq!(
            forwarded_line(&data),
            "decision=allowed version=v1 key=\"search backend\" team=- model=fast \
             resolved=gpt-4o-mini deployment=d1 prompt_tokens=12 completion_tokens=5 \
             cost_usd=0.0000048 cost_source=cost_map status=ok"
        );
        assert_eq!(
            denied_line(Some("v1"), &Denial::KeyBlocked),
            "decision=denied version=v1 status=401 code=key_blocked"
        );
    }
}
