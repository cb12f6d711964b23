//! `tollgate import-litellm CONFIG.yaml [--keys EXPORT.json] [--output POLICY.json]`: a Tollgate
//! policy from a LiteLLM proxy `config.yaml` (`model_list`, `router_settings.model_group_alias`,
//! access groups) and an export of its keys and teams, with a list of what could not be carried.
//!
//! The keys export is `{"keys": [...], "teams": [...]}` holding LiteLLM's key objects
//! (`/key/list?return_full_object=true`, or the `LiteLLM_VerificationToken` table: `token` is
//! already the SHA-256 hex Tollgate stores) and team objects (`/team/list`).

use std::collections::BTreeSet;
use std::process::ExitCode;

use serde_json::{json, Map, Value};

use tollgate::core::compile;

const USAGE: &str =
    "usage: tollgate import-litellm CONFIG.yaml [--keys EXPORT.json] [--output POLICY.json]";

/// What the import produced and what it left behind.
#[derive(Debug, Default)]
pub struct Import {
    /// The Tollgate policy (without a cost map: add one with `build-config`).
    pub policy: Map<String, Value>,
    /// Settings that have no Tollgate equivalent, each with where it was.
    pub not_carried: Vec<String>,
    /// Envoy clusters the policy routes to, with the `api_base` LiteLLM used (if any).
    pub clusters: BTreeSet<(String, String)>,
}

fn text(value: Option<&Value>) -> Option<String> {
    value.and_then(Value::as_str).map(str::to_string)
}

/// The cluster a LiteLLM deployment goes to: its provider, plus the host of a custom `api_base`.
fn cluster_for(provider: &str, api_base: Option<&str>) -> String {
    let host = api_base.and_then(|base| {
        let rest = base.split("://").nth(1).unwrap_or(base);
        rest.split(['/', ':']).next().filter(|h| !h.is_empty())
    });
    let raw = match host {
        Some(host) => format!("{provider}-{host}"),
        None => provider.to_string(),
    };
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Converts a parsed LiteLLM config (and optional keys export) into a policy.
pub fn import(config: &Value, export: Option<&Value>, version: &str) -> Import {
    let mut out = Import::default();
    let mut model_list = Vec::new();
    let deployments = config.get("model_list").and_then(Value::as_array);
    for (i, deployment) in deployments.into_iter().flatten().enumerate() {
        let at = format!("model_list[{i}]");
        let params = deployment.get("litellm_params").and_then(Value::as_object);
        let (Some(name), Some(params)) = (text(deployment.get("model_name")), params) else {
            out.not_carried
                .push(format!("{at}: no model_name or litellm_params; skipped"));
            continue;
        };
        let Some(model) = text(params.get("model")) else {
            out.not_carried
                .push(format!("{at}.litellm_params: no model; skipped"));
            continue;
        };
        let provider = model.split('/').next().unwrap_or("openai").to_string();
        let api_base = text(params.get("api_base"));
        let cluster = cluster_for(&provider, api_base.as_deref());
        out.clusters.insert((
            cluster.clone(),
            api_base
                .clone()
                .unwrap_or_else(|| "(provider default)".into()),
        ));
        let mut tg_params = json!({ "model": model });
        let mut model_info = Map::new();
        for (key, value) in params {
            match key.as_str() {
                "model" | "api_base" => {}
                "api_key" => match value.as_str().and_then(|v| v.strip_prefix("os.environ/")) {
                    Some(env) => tg_params["api_key_env"] = json!(env),
                    None => out.not_carried.push(format!(
                        "{at}.litellm_params.api_key: a literal key is never copied; set \
                         api_key_env to a variable holding it in the Envoy VM"
                    )),
                },
                "weight" => tg_params["weight"] = value.clone(),
                "input_cost_per_token"
                | "output_cost_per_token"
                | "cache_read_input_token_cost"
                | "cache_creation_input_token_cost"
                | "output_cost_per_reasoning_token" => {
                    model_info.insert(key.clone(), value.clone());
                }
                other => out.not_carried.push(format!(
                    "{at}.litellm_params.{other}: no Tollgate equivalent"
                )),
            }
        }
        if let Some(info) = deployment.get("model_info").and_then(Value::as_object) {
            for (key, value) in info {
                match key.as_str() {
                    "id" | "access_groups" | "max_output_tokens" => {
                        model_info.insert(key.clone(), value.clone());
                    }
                    other => out
                        .not_carried
                        .push(format!("{at}.model_info.{other}: no Tollgate equivalent")),
                }
            }
        }
        let mut entry =
            json!({ "model_name": name, "litellm_params": tg_params, "cluster": cluster });
        if !model_info.is_empty() {
            entry["model_info"] = Value::Object(model_info);
        }
        model_list.push(entry);
    }
    out.policy.insert("version".into(), json!(version));
    out.policy
        .insert("model_list".into(), Value::Array(model_list));
    let router = config.get("router_settings");
    if let Some(aliases) = router.and_then(|r| r.get("model_group_alias")) {
        out.policy
            .insert("model_group_alias".into(), aliases.clone());
    }
    if let Some(settings) = router.and_then(Value::as_object) {
        for key in settings.keys().filter(|k| *k != "model_group_alias") {
            out.not_carried
                .push(format!("router_settings.{key}: no Tollgate equivalent"));
        }
    }
    for section in [
        "litellm_settings",
        "general_settings",
        "guardrails",
        "callback_settings",
    ] {
        if config.get(section).is_some() {
            out.not_carried.push(format!(
                "{section}: not read (only model_list and aliases are)"
            ));
        }
    }
    if let Some(export) = export {
        import_teams(export, &mut out);
        import_keys(export, &mut out);
    }
    out
}

fn copy(from: &Value, to: &mut Map<String, Value>, fields: &[&str]) {
    for field in fields {
        if let Some(value) = from.get(*field).filter(|v| !v.is_null()) {
            to.insert((*field).to_string(), value.clone());
        }
    }
}

fn import_teams(export: &Value, out: &mut Import) {
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

fn import_keys(export: &Value, out: &mut Import) {
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
        out.policy.insert("keys".into(), Value::Array(keys));
    }
}

/// Runs the command.
pub fn run(args: &[String]) -> Result<ExitCode, String> {
    let (mut config_path, mut keys_path, mut output) = (None, None, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--keys" => keys_path = it.next().cloned(),
            "--output" => output = it.next().cloned(),
            path if config_path.is_none() && !path.starts_with("--") => {
                config_path = Some(path.to_string())
            }
            _ => return Err(USAGE.to_string()),
        }
    }
    let config_path = config_path.ok_or_else(|| USAGE.to_string())?;
    let config_text = std::fs::read_to_string(&config_path)
        .map_err(|e| format!("cannot read {config_path}: {e}"))?;
    let config = crate::yaml_doc::YamlDoc::parse(&config_text, &config_path)?.value;
    let export: Option<Value> = match &keys_path {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            Some(serde_json::from_str(&text).map_err(|e| format!("{path}: not valid JSON: {e}"))?)
        }
        None => None,
    };
    let imported = import(&config, export.as_ref(), "imported-from-litellm");
    let document =
        serde_json::to_string_pretty(&Value::Object(imported.policy)).map_err(|e| e.to_string())?;
    match &output {
        Some(path) => {
            std::fs::write(path, &document).map_err(|e| format!("cannot write {path}: {e}"))?
        }
        None => println!("{document}"),
    }
    eprintln!("Envoy clusters the policy routes to (define them in the Envoy config):");
    for (cluster, base) in &imported.clusters {
        eprintln!("  {cluster}: {base}");
    }
    if imported.not_carried.is_empty() {
        eprintln!("everything was carried over");
    } else {
        eprintln!("not carried over ({}):", imported.not_carried.len());
        for item in &imported.not_carried {
            eprintln!("  {item}");
        }
    }
    match compile(document.as_bytes()) {
        Ok(policy) => eprintln!(
            "ok: {} (add the cost map with build-config)",
            policy.summary()
        ),
        Err(errors) => {
            eprintln!("the imported policy does not compile yet; fix these before use:");
            for error in &errors.0 {
                eprintln!("  error: {error}");
            }
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY
      rpm: 100
    model_info:
      id: gpt4o-main
      access_groups: [general]
  - model_name: gpt-4o
    litellm_params:
      model: azure/gpt-4o-eu
      api_base: https://eu.openai.azure.com/
      api_key: sk-plaintext-never-copied
      weight: 2
router_settings:
  model_group_alias: {"fast": "gpt-4o"}
  routing_strategy: latency-based-routing
litellm_settings:
  drop_params: true
"#;

    #[test]
    fn a_litellm_config_and_keys_export_become_a_policy_with_a_report() {
        let config = crate::yaml_doc::YamlDoc::parse(CONFIG, "test.yaml")
            .unwrap()
            .value;
        let export = json!({
            "keys": [
                {"token": "A".repeat(64), "key_alias": "k", "team_id": "t", "models": ["fast"],
                 "max_budget": 5.0, "budget_duration": "30d", "expires": "2027-01-01T00:00:00",
                 "rpm_limit": 10, "spend": 1.5},
                {"token": "sk-raw", "key_alias": "raw"}
            ],
            "teams": [{"team_id": "t", "team_alias": "Team", "models": [], "tpm_limit": null}]
        });
        let imported = import(&config, Some(&export), "v1");
        let policy = Value::Object(imported.policy.clone());
        assert_eq!(
            policy["model_list"][0]["litellm_params"]["api_key_env"],
            "OPENAI_API_KEY"
        );
        assert_eq!(policy["model_list"][0]["cluster"], "openai");
        assert_eq!(
            policy["model_list"][1]["cluster"],
            "azure-eu-openai-azure-com"
        );
        assert!(policy["model_list"][1]["litellm_params"]
            .get("api_key")
            .is_none());
        assert_eq!(policy["model_group_alias"]["fast"], "gpt-4o");
        assert_eq!(policy["keys"][0]["key_hash"], "a".repeat(64));
        assert_eq!(policy["keys"][0]["expires"], "2027-01-01T00:00:00Z");
        assert_eq!(policy["keys"].as_array().unwrap().len(), 1);
        let report = imported.not_carried.join("\n");
        for expected in [
            "litellm_params.rpm",
            "literal key is never copied",
            "router_settings.routing_strategy",
            "litellm_settings",
            "keys[0].rpm_limit",
            "keys[0].spend",
            "keys[1]: no SHA-256",
        ] {
            assert!(
                report.contains(expected),
                "{expected} missing from:\n{report}"
            );
        }
        let document = serde_json::to_vec(&policy).unwrap();
        compile(&document).unwrap();
    }
}
