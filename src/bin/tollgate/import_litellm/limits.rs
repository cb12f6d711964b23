//! The rate limits of LiteLLM's keys, teams, users and end users: `rpm_limit`, `tpm_limit` and
//! `max_parallel_requests` (on the object, else on its budget tier `litellm_budget_table`, as
//! budgets are read), and for keys and teams the per-model `model_rpm_limit` /
//! `model_tpm_limit` (on the object, else in its `metadata`, where LiteLLM stores them; for a
//! key, else the `rpm_limit` / `tpm_limit` of its `model_max_budget` entries, which LiteLLM
//! reads next). Null is unset; what is not a whole number is named and left out.

use serde_json::{json, Map, Value};
use tollgate::core::config::config::as_whole_number;

use super::Import;

/// `metadata` entries read here (so not named with the rest of `metadata`).
pub const LIMIT_METADATA: [&str; 4] = [
    "model_rpm_limit",
    "model_tpm_limit",
    "rpm_limit_type",
    "tpm_limit_type",
];

/// The per-holder limits Tollgate carries under LiteLLM's own names.
const HOLDER_LIMITS: [&str; 3] = ["rpm_limit", "tpm_limit", "max_parallel_requests"];

/// Whether `value` says something (not null, not an empty object, list or text).
pub fn is_set(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Object(o) => !o.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

/// `value` as a whole number from 0 to 2^53 (an integer, an integral float such as `10.0`, or
/// those digits as text, which LiteLLM's own parsing accepts), else named at `at`.
pub fn whole(value: &Value, at: &str, out: &mut Import) -> Option<u64> {
    let number = match value {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().and_then(as_whole_number)),
        Value::String(s) => s
            .trim()
            .parse::<u64>()
            .ok()
            .or_else(|| s.trim().parse::<f64>().ok().and_then(as_whole_number)),
        _ => None,
    };
    match number.filter(|&n| n as f64 <= 9_007_199_254_740_992.0) {
        Some(n) => Some(n),
        None => {
            out.not_carried.push(format!(
                "{at}: {value} is not a whole number from 0 to 2^53; not carried"
            ));
            None
        }
    }
}

/// `field` of `item`, else of its budget tier, with the path it was read at.
fn own_or_tier<'v>(item: &'v Value, at: &str, field: &str) -> Option<(&'v Value, String)> {
    if let Some(value) = item.get(field).filter(|v| !v.is_null()) {
        return Some((value, format!("{at}.{field}")));
    }
    let tier = item.get("litellm_budget_table").filter(|t| t.is_object())?;
    let value = tier.get(field).filter(|v| !v.is_null())?;
    Some((value, format!("{at}.litellm_budget_table.{field}")))
}

/// `rpm_limit`, `tpm_limit` and `max_parallel_requests` of `item` (or its tier) into `to`.
pub fn holder_limits(item: &Value, at: &str, to: &mut Map<String, Value>, out: &mut Import) {
    for field in HOLDER_LIMITS {
        if let Some((value, path)) = own_or_tier(item, at, field) {
            if let Some(n) = whole(value, &path, out) {
                to.insert(field.to_string(), json!(n));
            }
        }
    }
}

/// One per-model table (model → whole number) read at `path`; entries that are not whole
/// numbers are named and left out.
fn model_table(table: &Value, path: &str, out: &mut Import) -> Map<String, Value> {
    let mut carried = Map::new();
    let Some(entries) = table.as_object() else {
        out.not_carried
            .push(format!("{path}: not an object of model names; skipped"));
        return carried;
    };
    for (model, value) in entries.iter().filter(|(_, v)| !v.is_null()) {
        if let Some(n) = whole(value, &format!("{path}.{model}"), out) {
            carried.insert(model.clone(), json!(n));
        }
    }
    carried
}

/// `model_rpm_limit` and `model_tpm_limit` of a key or team into `to`: the object's own table
/// wins, then the one in its `metadata`, then (`from_model_budgets`, for keys) the `rpm_limit`
/// / `tpm_limit` of its `model_max_budget` entries. As LiteLLM, one table is read whole; a
/// different one left behind is named.
pub fn model_limits(
    item: &Value,
    at: &str,
    from_model_budgets: bool,
    to: &mut Map<String, Value>,
    out: &mut Import,
) {
    let metadata = item.get("metadata").filter(|m| m.is_object());
    let budgets = item
        .get("model_max_budget")
        .filter(|v| is_set(v))
        .or_else(|| item.get("litellm_budget_table")?.get("model_max_budget"))
        .and_then(Value::as_object);
    for (field, budget_field) in [
        ("model_rpm_limit", "rpm_limit"),
        ("model_tpm_limit", "tpm_limit"),
    ] {
        let mut sources: Vec<(&Value, String)> = Vec::new();
        if let Some(own) = item.get(field).filter(|v| is_set(v)) {
            sources.push((own, format!("{at}.{field}")));
        }
        if let Some(inner) = metadata.and_then(|m| m.get(field)).filter(|v| is_set(v)) {
            sources.push((inner, format!("{at}.metadata.{field}")));
        }
        let in_budgets: Vec<(&String, &Value)> = budgets
            .into_iter()
            .flatten()
            .filter_map(|(model, entry)| {
                Some((model, entry.get(budget_field).filter(|v| !v.is_null())?))
            })
            .collect();
        let mut carried = Map::new();
        if let Some((table, path)) = sources.first() {
            carried = model_table(table, path, out);
            for (other, other_path) in sources.iter().skip(1) {
                if other != table {
                    out.not_carried.push(format!(
                        "{other_path}: not read: {path} is carried instead (LiteLLM too reads \
                         one table)"
                    ));
                }
            }
            if !in_budgets.is_empty() {
                out.not_carried.push(format!(
                    "{at}.model_max_budget: its {budget_field} entries are not read: {path} is \
                     carried instead (LiteLLM too reads one table)"
                ));
            }
        } else if from_model_budgets {
            for (model, value) in in_budgets {
                let path = format!("{at}.model_max_budget.{model}.{budget_field}");
                if let Some(n) = whole(value, &path, out) {
                    carried.insert(model.clone(), json!(n));
                }
            }
        } else {
            for (model, _) in in_budgets {
                out.not_carried.push(format!(
                    "{at}.model_max_budget.{model}.{budget_field}: not carried (write it in \
                     {field})"
                ));
            }
        }
        if !carried.is_empty() {
            to.insert(field.to_string(), Value::Object(carried));
        }
    }
}

/// A user's or end user's per-model limits, which Tollgate's users do not hold: named.
pub fn name_holder_model_limits(item: &Value, at: &str, out: &mut Import) {
    let metadata = item.get("metadata");
    for field in ["model_rpm_limit", "model_tpm_limit"] {
        let own = item
            .get(field)
            .is_some_and(is_set)
            .then(|| format!("{at}.{field}"));
        let inner = metadata
            .and_then(|m| m.get(field))
            .is_some_and(is_set)
            .then(|| format!("{at}.metadata.{field}"));
        for path in own.into_iter().chain(inner) {
            out.not_carried.push(format!(
                "{path}: per-model limits of users are not enforced by Tollgate (set them on \
                 the user's keys or team)"
            ));
        }
    }
}

/// `rpm_limit_type` / `tpm_limit_type` (on the object or in its `metadata`): Tollgate enforces
/// every limit as written in each window, LiteLLM's default `best_effort_throughput`; any
/// other kind is named.
pub fn name_limit_types(item: &Value, at: &str, out: &mut Import) {
    let metadata = item.get("metadata");
    for field in ["rpm_limit_type", "tpm_limit_type"] {
        let own = item.get(field).map(|v| (v, format!("{at}.{field}")));
        let inner = metadata
            .and_then(|m| m.get(field))
            .map(|v| (v, format!("{at}.metadata.{field}")));
        for (value, path) in own.into_iter().chain(inner) {
            if is_set(value) && value.as_str() != Some("best_effort_throughput") {
                out.not_carried.push(format!(
                    "{path}: {value} is not carried: Tollgate enforces each limit as written \
                     in every window (LiteLLM's best_effort_throughput)"
                ));
            }
        }
    }
}

/// `general_settings.token_rate_limit_type` (which tokens `tpm_limit` counts) into
/// `settings.token_rate_limit_type`; another value is named.
pub fn token_rate_limit_type(value: &Value, out: &mut Import) {
    let at = "general_settings.token_rate_limit_type";
    match value.as_str() {
        Some(kind @ ("total" | "input" | "output")) => {
            let settings = out.policy.entry("settings").or_insert_with(|| json!({}));
            if let Some(settings) = settings.as_object_mut() {
                settings.insert("token_rate_limit_type".into(), json!(kind));
            }
        }
        _ if value.is_null() => {}
        _ => out.not_carried.push(format!(
            "{at}: {value} is not total, input or output; not carried (Tollgate counts total \
             tokens)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_are_read_as_litellm_writes_them() {
        let mut out = Import::default();
        assert_eq!(whole(&json!(10), "a", &mut out), Some(10));
        assert_eq!(whole(&json!(10.0), "a", &mut out), Some(10));
        assert_eq!(whole(&json!("25"), "a", &mut out), Some(25));
        assert!(out.not_carried.is_empty());
        assert_eq!(whole(&json!(1.5), "x.rpm_limit", &mut out), None);
        assert_eq!(whole(&json!(-3), "y", &mut out), None);
        assert_eq!(whole(&json!(true), "z", &mut out), None);
        assert_eq!(whole(&json!(u64::MAX), "w", &mut out), None);
        assert_eq!(out.not_carried.len(), 4, "{:?}", out.not_carried);
        assert!(out.not_carried[0].starts_with("x.rpm_limit: 1.5 is not a whole number"));
    }

    #[test]
    fn per_model_limits_come_from_the_object_then_metadata_then_model_budgets() {
        let mut out = Import::default();
        let mut to = Map::new();
        let key = json!({
            "model_rpm_limit": {"gpt-4o": 5},
            "metadata": {"model_rpm_limit": {"gpt-4o": 9}, "model_tpm_limit": {"o3": 1000.0,
                         "bad": 0.5}},
            "model_max_budget": {"o3": {"budget_limit": 1, "tpm_limit": 7, "rpm_limit": 2}}
        });
        model_limits(&key, "keys[0]", true, &mut to, &mut out);
        assert_eq!(to["model_rpm_limit"], json!({"gpt-4o": 5}));
        assert_eq!(to["model_tpm_limit"], json!({"o3": 1000}));
        let report = out.not_carried.join("\n");
        assert!(
            report.contains("keys[0].metadata.model_rpm_limit: not read"),
            "{report}"
        );
        assert!(
            report.contains("keys[0].metadata.model_tpm_limit.bad: 0.5"),
            "{report}"
        );

        let mut out = Import::default();
        let mut to = Map::new();
        let budgets_only = json!({"metadata": {"model_rpm_limit": {}},
            "model_max_budget": {"o3": {"budget_limit": 1, "rpm_limit": 2}}});
        model_limits(&budgets_only, "keys[1]", true, &mut to, &mut out);
        assert_eq!(to["model_rpm_limit"], json!({"o3": 2}));
        assert!(to.get("model_tpm_limit").is_none());
        assert!(out.not_carried.is_empty(), "{:?}", out.not_carried);
    }

    #[test]
    fn holder_limits_come_from_the_object_else_its_tier() {
        let mut out = Import::default();
        let mut to = Map::new();
        let customer = json!({"user_id": "c", "rpm_limit": null,
            "litellm_budget_table": {"rpm_limit": 3, "tpm_limit": null,
                                     "max_parallel_requests": -1}});
        holder_limits(&customer, "end_users[0]", &mut to, &mut out);
        assert_eq!(Value::Object(to), json!({"rpm_limit": 3}));
        assert_eq!(
            out.not_carried,
            ["end_users[0].litellm_budget_table.max_parallel_requests: -1 is not a whole number \
              from 0 to 2^53; not carried"]
        );
    }
}
