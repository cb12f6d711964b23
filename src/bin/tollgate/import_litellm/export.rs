//! The keys, teams, users and end users of a LiteLLM export: what carries over to Tollgate's
//! keys, teams, `users` and `end_users`, and what is named as left behind.
//!
//! Accepted shapes: `{"keys": [...], "teams": [...], "users": [...], "end_users": [...]}` (also
//! `customers`, LiteLLM's name for end users), holding LiteLLM's objects as its API returns them
//! (`/key/list?return_full_object=true` or the `LiteLLM_VerificationToken` table, `/team/list`,
//! `/user/list`, `/customer/list`); or one raw list from one of those (`/team/list` returns a bare
//! array), sorted by what its objects hold. A budget or rate limit comes from the object itself,
//! else from its budget tier (`litellm_budget_table`). Models LiteLLM keeps in its database come as
//! `model_list` or as `/model/info` answers them (`{"data": [...]}`), and join the config's.

use serde_json::{json, Map, Value};

use super::attribution;
use super::limits::{self, is_set, LIMIT_METADATA};
use super::{text, Import};

fn copy(from: &Value, to: &mut Map<String, Value>, fields: &[&str]) {
    for field in fields {
        if let Some(value) = from.get(*field).filter(|v| !v.is_null()) {
            to.insert((*field).to_string(), value.clone());
        }
    }
}

/// The export's list named `name` (or, for a bare array, its objects that are of that kind).
fn list<'e>(export: &'e Value, name: &str) -> Vec<&'e Value> {
    if let Some(items) = export.as_array() {
        let kind = |item: &Value| {
            if item.get("litellm_params").is_some() {
                "model_list"
            } else if item.get("token").is_some() {
                "keys"
            } else if item.get("team_id").is_some() && item.get("user_id").is_none() {
                "teams"
            } else if item.get("user_id").is_some() && item.get("user_email").is_some() {
                "users"
            } else {
                "end_users"
            }
        };
        return items.iter().filter(|item| kind(item) == name).collect();
    }
    let alias = (name == "end_users").then_some("customers");
    [Some(name), alias]
        .into_iter()
        .flatten()
        .filter_map(|n| export.get(n).and_then(Value::as_array))
        .flatten()
        .collect()
}

/// The models of the export (LiteLLM's database: `/model/info`'s `data`, or `model_list`), as
/// `model_list` entries.
pub fn stored_models(export: &Value) -> Vec<Value> {
    let mut models: Vec<Value> = list(export, "model_list").into_iter().cloned().collect();
    if let Some(data) = export.get("data").and_then(Value::as_array) {
        models.extend(data.iter().cloned());
    }
    models
}

/// What `/model/info` adds to each model's `model_info` from LiteLLM's cost map and its own
/// bookkeeping: facts the policy's cost map holds too, so not settings left behind.
const MODEL_INFO_FACTS: [&str; 7] = [
    "db_model",
    "key",
    "mode",
    "litellm_provider",
    "max_tokens",
    "max_input_tokens",
    "supported_openai_params",
];

/// The models kept in LiteLLM's database among `stored`, without the cost-map facts
/// `/model/info` adds, and how many were the config's own (`db_model: false`, which
/// `/model/info` lists as well).
pub fn database_models(stored: Vec<Value>) -> (Vec<Value>, usize) {
    let mut repeated = 0;
    let mut models = Vec::new();
    for mut model in stored {
        let info = model.get_mut("model_info").and_then(Value::as_object_mut);
        if let Some(info) = info {
            if info.get("db_model") == Some(&Value::Bool(false)) {
                repeated += 1;
                continue;
            }
            info.retain(|field, _| {
                !MODEL_INFO_FACTS.contains(&field.as_str()) && !field.starts_with("supports_")
            });
        }
        models.push(model);
    }
    (models, repeated)
}

/// A LiteLLM timestamp (`2026-12-31T23:59:59.000000+00:00`, or without a zone: UTC) as RFC 3339.
fn rfc3339(text: String) -> String {
    let tail = text.get(text.len().saturating_sub(6)..).unwrap_or("");
    let has_zone = text.ends_with('Z') || tail.contains(['+', '-']);
    if has_zone {
        text
    } else {
        format!("{text}Z")
    }
}

/// `max_budget` and `budget_duration` of `item`, else of its budget tier, and where its window
/// resets (`budget_reset_at`: windows then run from the budget's own start, as in LiteLLM).
fn budget(item: &Value, to: &mut Map<String, Value>) {
    let tier = item.get("litellm_budget_table").filter(|t| t.is_object());
    if let Some(reset) = text(item.get("budget_reset_at")) {
        if item.get("budget_duration").is_some_and(|d| !d.is_null())
            || tier.is_some_and(|t| t.get("budget_duration").is_some_and(|d| !d.is_null()))
        {
            to.insert("budget_reset_at".into(), json!(rfc3339(reset)));
        }
    }
    for field in ["max_budget", "budget_duration"] {
        let value = item
            .get(field)
            .filter(|v| !v.is_null())
            .or_else(|| tier.and_then(|t| t.get(field)).filter(|v| !v.is_null()));
        if let Some(value) = value {
            to.insert(field.to_string(), value.clone());
        }
    }
}

/// Drops a budget window that has no budget (LiteLLM keeps `budget_duration` after
/// `max_budget` is cleared; alone it means nothing, and Tollgate refuses it).
fn drop_empty_window(to: &mut Map<String, Value>) {
    if !to.contains_key("max_budget") && !to.contains_key("soft_budget") {
        to.remove("budget_duration");
        to.remove("budget_reset_at");
    }
}

/// A key's or team's `soft_budget` and `model_max_budget` (directly or in its tier). A
/// per-model budget written as a bare number (older LiteLLM) is a limit that never resets.
fn soft_and_model_budgets(item: &Value, at: &str, to: &mut Map<String, Value>, out: &mut Import) {
    let tier = item.get("litellm_budget_table").filter(|t| t.is_object());
    let field = |name: &str| {
        item.get(name)
            .filter(|v| !v.is_null())
            .or_else(|| tier.and_then(|t| t.get(name)).filter(|v| !v.is_null()))
    };
    if let Some(soft) = field("soft_budget") {
        to.insert("soft_budget".into(), soft.clone());
    }
    let Some(entries) = field("model_max_budget") else {
        return;
    };
    let Some(entries) = entries.as_object() else {
        out.not_carried
            .push(format!("{at}.model_max_budget: not an object; skipped"));
        return;
    };
    let mut carried = Map::new();
    for (model, entry) in entries {
        // An entry holding only per-model rate limits is read by `limits::model_limits`.
        let only_rates = entry.as_object().is_some_and(|fields| {
            !fields.is_empty()
                && fields
                    .keys()
                    .all(|f| matches!(f.as_str(), "rpm_limit" | "tpm_limit"))
        });
        if only_rates {
            continue;
        }
        let budget = match entry {
            Value::Number(limit) => Some(json!({ "budget_limit": limit })),
            Value::Object(fields) => {
                let limit = fields
                    .get("budget_limit")
                    .or_else(|| fields.get("max_budget"));
                let limit = limit.and_then(|l| match l {
                    Value::String(text) => text.trim().parse::<f64>().ok().map(|n| json!(n)),
                    Value::Number(_) => Some(l.clone()),
                    _ => None,
                });
                let period = fields
                    .get("time_period")
                    .or_else(|| fields.get("budget_duration"))
                    .filter(|p| !p.is_null());
                limit.map(|limit| match period {
                    Some(period) => json!({ "budget_limit": limit, "time_period": period }),
                    None => json!({ "budget_limit": limit }),
                })
            }
            _ => None,
        };
        match budget {
            Some(budget) => {
                carried.insert(model.clone(), budget);
            }
            None => out.not_carried.push(format!(
                "{at}.model_max_budget.{model}: no budget_limit; skipped"
            )),
        }
    }
    if !carried.is_empty() {
        to.insert("model_max_budget".into(), Value::Object(carried));
    }
}

/// Budget fields Tollgate carries for keys and teams but not for users and end users.
const KEY_AND_TEAM_BUDGETS: [&str; 2] = ["soft_budget", "model_max_budget"];

/// The budgets Tollgate does not enforce for users and end users, named where they appear
/// (directly or in the tier).
fn name_unenforced(item: &Value, at: &str, out: &mut Import) {
    let tier = item.get("litellm_budget_table");
    for field in KEY_AND_TEAM_BUDGETS {
        let set = |v: Option<&Value>| {
            v.is_some_and(|v| !v.is_null() && v.as_object().is_none_or(|o| !o.is_empty()))
        };
        if set(item.get(field)) || set(tier.and_then(|t| t.get(field))) {
            out.not_carried
                .push(format!("{at}.{field}: not enforced by Tollgate yet"));
        }
    }
}

/// Settings of LiteLLM's key objects that Tollgate does not read, when set.
const KEY_SETTINGS_LEFT: [(&str, &str); 6] = [
    ("permissions", "no Tollgate equivalent"),
    ("config", "no Tollgate equivalent"),
    (
        "allowed_routes",
        "not enforced: Tollgate serves its LLM routes to every key",
    ),
    ("allowed_cache_controls", "no Tollgate equivalent"),
    (
        "object_permission",
        "no Tollgate equivalent (MCP and vector-store permissions)",
    ),
    ("organization_id", "Tollgate has no organizations"),
];

/// Settings of LiteLLM's team objects that Tollgate does not read, when set.
const TEAM_SETTINGS_LEFT: [(&str, &str); 4] = [
    (
        "members_with_roles",
        "Tollgate has no members or roles: a key's team_id is what counts",
    ),
    (
        "object_permission",
        "no Tollgate equivalent (MCP and vector-store permissions)",
    ),
    ("organization_id", "Tollgate has no organizations"),
    ("team_member_permissions", "no Tollgate equivalent"),
];

/// Names each of `fields` that `item` sets (not null, not empty), with why it is left; the
/// `metadata` entries that hold rate limits are read by `limits`, so do not count.
fn name_left(item: &Value, at: &str, fields: &[(&str, &str)], out: &mut Import) {
    for (field, why) in fields {
        let set = item.get(*field).is_some_and(|v| match v {
            Value::Object(o) if *field == "metadata" => o
                .iter()
                .any(|(entry, v)| !LIMIT_METADATA.contains(&entry.as_str()) && is_set(v)),
            v => is_set(v),
        });
        if set {
            out.not_carried.push(format!("{at}.{field}: {why}"));
        }
    }
}

/// The export's teams.
pub fn import_teams(export: &Value, out: &mut Import) {
    let mut teams = Vec::new();
    for (i, team) in list(export, "teams").into_iter().enumerate() {
        let at = format!("teams[{i}]");
        let mut t = Map::new();
        copy(
            team,
            &mut t,
            &["team_id", "team_alias", "models", "blocked"],
        );
        budget(team, &mut t);
        // Team aliases live in `model_aliases`, or in the joined `litellm_model_table`.
        let aliases = team
            .get("model_aliases")
            .or_else(|| team.get("litellm_model_table")?.get("model_aliases"))
            .filter(|v| v.as_object().is_some_and(|o| !o.is_empty()));
        if let Some(aliases) = aliases {
            t.insert("model_aliases".into(), aliases.clone());
        }
        soft_and_model_budgets(team, &at, &mut t, out);
        drop_empty_window(&mut t);
        limits::holder_limits(team, &at, &mut t, out);
        limits::model_limits(team, &at, false, &mut t, out);
        limits::name_limit_types(team, &at, out);
        name_left(team, &at, &TEAM_SETTINGS_LEFT, out);
        attribution::carry(team, &at, &mut t, out);
        let member_budgets = team
            .get("team_member_budget_table")
            .or_else(|| team.get("team_member_budget"))
            .is_some_and(|v| !v.is_null());
        if member_budgets {
            out.not_carried.push(format!(
                "{at}: per-member team budgets are not enforced by Tollgate yet"
            ));
        }
        teams.push(Value::Object(t));
    }
    if !teams.is_empty() {
        out.policy.insert("teams".into(), Value::Array(teams));
    }
}

/// The export's internal users and end users with a budget or a rate limit (`users`,
/// `end_users`).
pub fn import_budget_holders(export: &Value, out: &mut Import) {
    for (kind, id_field) in [("users", "user_id"), ("end_users", "user_id")] {
        let mut holders = Vec::new();
        for (i, item) in list(export, kind).into_iter().enumerate() {
            let at = format!("{kind}[{i}]");
            let Some(id) = text(item.get(id_field)) else {
                out.not_carried
                    .push(format!("{at}: no {id_field}; skipped"));
                continue;
            };
            let mut h = Map::new();
            h.insert("user_id".into(), json!(id));
            budget(item, &mut h);
            name_unenforced(item, &at, out);
            limits::holder_limits(item, &at, &mut h, out);
            limits::name_holder_model_limits(item, &at, out);
            limits::name_limit_types(item, &at, out);
            // LiteLLM also limits what a user's (or customer's) keys may call; Tollgate's users
            // and end users hold budgets and rate limits only, so a limit left behind widens
            // access: named.
            let restricts = |field: &str| {
                item.get(field).is_some_and(|v| match v {
                    Value::Array(list) => !list.is_empty(),
                    Value::Null => false,
                    _ => true,
                })
            };
            for field in ["models", "allowed_model_region"] {
                if restricts(field) {
                    out.not_carried.push(format!(
                        "{at}.{field}: not enforced by Tollgate (its keys may call what their own \
                         and their team's lists allow): carry the restriction into those lists"
                    ));
                }
            }
            if item.get("blocked").and_then(Value::as_bool) == Some(true) {
                out.not_carried.push(format!(
                    "{at}.blocked: a blocked {kind} entry is not enforced by Tollgate yet"
                ));
            }
            if !h.contains_key("max_budget") {
                // A window without a budget means nothing (and does not compile).
                h.remove("budget_duration");
                h.remove("budget_reset_at");
            }
            if h.len() > 1 {
                holders.push(Value::Object(h));
            }
        }
        if !holders.is_empty() {
            out.policy.insert(kind.into(), Value::Array(holders));
        }
    }
}

/// The export's keys (only those with a SHA-256 `token`).
pub fn import_keys(export: &Value, out: &mut Import) {
    let mut keys = Vec::new();
    for (i, key) in list(export, "keys").into_iter().enumerate() {
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
                "blocked",
                "aliases",
            ],
        );
        budget(key, &mut k);
        if let Some(expires) = text(key.get("expires")) {
            k.insert("expires".into(), json!(rfc3339(expires)));
        }
        soft_and_model_budgets(key, &at, &mut k, out);
        drop_empty_window(&mut k);
        limits::holder_limits(key, &at, &mut k, out);
        limits::model_limits(key, &at, true, &mut k, out);
        limits::name_limit_types(key, &at, out);
        name_left(key, &at, &KEY_SETTINGS_LEFT, out);
        attribution::carry(key, &at, &mut k, out);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_model_budgets_are_carried_in_every_spelling_litellm_stored() {
        let keys: Value = serde_json::from_str(&format!(
            r#"{{"keys":[{{"token":"{}","soft_budget":2,
                 "model_max_budget":{{"gpt-4o":{{"budget_limit":"0.5","time_period":"1d"}},
                   "o3":1.5,"claude-*":{{"max_budget":3}},"bad":{{"time_period":"1d"}}}}}}]}}"#,
            "ab".repeat(32)
        ))
        .unwrap();
        let mut out = Import::default();
        import_keys(&keys, &mut out);
        let key = &out.policy["keys"][0];
        assert_eq!(key["soft_budget"], 2);
        assert_eq!(
            key["model_max_budget"],
            json!({"gpt-4o":{"budget_limit":0.5,"time_period":"1d"},"o3":{"budget_limit":1.5},
                   "claude-*":{"budget_limit":3}})
        );
        assert_eq!(
            out.not_carried,
            ["keys[0].model_max_budget.bad: no budget_limit; skipped"]
        );
    }

    #[test]
    fn budgets_come_from_the_object_or_its_tier_and_raw_lists_are_sorted() {
        let teams: Value = serde_json::from_str(
            r#"[{"team_id":"t","team_alias":"T","models":[],"max_budget":null,
                 "budget_reset_at":"2026-12-20T08:00:00.000000",
                 "litellm_budget_table":{"max_budget":50,"budget_duration":"monthly","soft_budget":40},
                 "litellm_model_table":{"model_aliases":{"fast":"gpt-4o-mini"}}}]"#,
        )
        .unwrap();
        let mut out = Import::default();
        import_teams(&teams, &mut out);
        import_keys(&teams, &mut out);
        let team = &out.policy["teams"][0];
        assert_eq!(team["max_budget"], 50);
        assert_eq!(team["budget_duration"], "monthly");
        // A window whose budget was cleared (max_budget null) is dropped: alone it does not
        // compile.
        let cleared: Value = serde_json::from_str(&format!(
            r#"{{"keys":[{{"token":"{}","max_budget":null,"budget_duration":"30d",
                     "budget_reset_at":"2026-12-01T00:00:00Z"}}]}}"#,
            "ab".repeat(32)
        ))
        .unwrap();
        let mut import = Import::default();
        import_keys(&cleared, &mut import);
        let key = &import.policy["keys"][0];
        assert!(key.get("budget_duration").is_none(), "{key}");
        assert_eq!(team["budget_reset_at"], "2026-12-20T08:00:00.000000Z");
        assert_eq!(team["model_aliases"]["fast"], "gpt-4o-mini");
        assert!(out.policy.get("keys").is_none());
        assert_eq!(team["soft_budget"], 40);
        assert!(!out.not_carried.iter().any(|n| n.contains("soft_budget")));

        let export: Value = serde_json::from_str(
            r#"{"users":[{"user_id":"alice","user_email":"a@x","max_budget":5,"budget_duration":"daily"},
                         {"user_id":"bob","user_email":"b@x"}],
                "customers":[{"user_id":"cust-1","litellm_budget_table":{"max_budget":1}}]}"#,
        )
        .unwrap();
        let mut out = Import::default();
        import_budget_holders(&export, &mut out);
        assert_eq!(
            out.policy["users"],
            json!([{"user_id":"alice","max_budget":5,"budget_duration":"daily"}])
        );
        assert_eq!(
            out.policy["end_users"],
            json!([{"user_id":"cust-1","max_budget":1}])
        );
        let limited: Value = serde_json::from_str(
            r#"{"users":[{"user_id":"alice","user_email":"a@x","models":["gpt-4o-mini"]}]}"#,
        )
        .unwrap();
        let mut out = Import::default();
        import_budget_holders(&limited, &mut out);
        assert!(
            out.not_carried
                .iter()
                .any(|n| n.starts_with("users[0].models: not enforced")),
            "a model restriction left behind is named: {:?}",
            out.not_carried
        );
    }
}
