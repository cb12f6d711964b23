//! The keys and teams of a LiteLLM export (`/key/list?return_full_object=true` or the
//! `LiteLLM_VerificationToken` table, and `/team/list`): what carries over to Tollgate's keys and
//! teams, and what is named as left behind.

use serde_json::{json, Map, Value};

use super::{text, Import};

fn copy(from: &Value, to: &mut Map<String, Value>, fields: &[&str]) {
    for field in fields {
        if let Some(value) = from.get(*field).filter(|v| !v.is_null()) {
            to.insert((*field).to_string(), value.clone());
        }
    }
}

/// The export's teams.
pub fn import_teams(export: &Value, out: &mut Import) {
    let mut teams = Vec::new();
    for (i, team) in export
        .get("teams")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let mut t = Map::new();
        copy(
            team,
            &mut t,
            &[
                "team_id",
                "team_alias",
                "models",
                "max_budget",
                "budget_duration",
                "blocked",
            ],
        );
        if let Some(aliases) = team.get("model_aliases").filter(|v| v.is_object()) {
            t.insert("model_aliases".into(), aliases.clone());
        }
        for limit in ["tpm_limit", "rpm_limit", "max_parallel_requests"] {
            if team.get(limit).is_some_and(|v| !v.is_null()) {
                out.not_carried.push(format!(
                    "teams[{i}].{limit}: rate limits are not enforced by Tollgate"
                ));
            }
        }
        teams.push(Value::Object(t));
    }
    if !teams.is_empty() {
        out.policy.insert("teams".into(), Value::Array(teams));
    }
}

/// The export's keys (only those with a SHA-256 `token`).
pub fn import_keys(export: &Value, out: &mut Import) {
    let mut keys = Vec::new();
    for (i, key) in export
        .get("keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("keys[{i}]");
        let token = text(key.get("token")).unwrap_or_default();
        let hashed = token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit());
        if !hashed {
            out.not_carried.push(format!(
                "{at}: no SHA-256 `token`; skipped (export the stored hash, never the key)"
            ));
            continue;
        }
        let mut k = Map::new();
        k.insert("key_hash".into(), json!(token.to_ascii_lowercase()));
        copy(
            key,
            &mut k,
            &[
                "key_alias",
                "team_id",
                "user_id",
                "models",
                "max_budget",
                "budget_duration",
                "blocked",
                "aliases",
            ],
        );
        if let Some(expires) = text(key.get("expires")) {
            // LiteLLM writes `2026-12-31T23:59:59.000000+00:00` or without a zone (UTC).
            let tail = expires.get(expires.len().saturating_sub(6)..).unwrap_or("");
            let has_zone = expires.ends_with('Z') || tail.contains(['+', '-']);
            let rfc3339 = if has_zone {
                expires
            } else {
                format!("{expires}Z")
            };
            k.insert("expires".into(), json!(rfc3339));
        }
        for limit in ["tpm_limit", "rpm_limit", "max_parallel_requests"] {
            if key.get(limit).is_some_and(|v| !v.is_null()) {
                out.not_carried.push(format!(
                    "{at}.{limit}: rate limits are not enforced by Tollgate"
                ));
            }
        }
        if key
            .get("spend")
            .and_then(Value::as_f64)
            .is_some_and(|s| s > 0.0)
        {
            out.not_carried.push(format!(
                "{at}.spend: past spend stays in LiteLLM; budgets start from the accounting cluster's totals"
            ));
        }
        keys.push(Value::Object(k));
    }
    if !keys.is_empty() {
        // After any key the config itself made (the master key).
        match out.policy.get_mut("keys") {
            Some(Value::Array(earlier)) => earlier.extend(keys),
            _ => {
                out.policy.insert("keys".into(), Value::Array(keys));
            }
        }
    }
}
