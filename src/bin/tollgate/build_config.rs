//! `tollgate build-config --policy P [--cost-map MAP] [--output OUT]`: one plugin-config JSON
//! from a policy written in YAML or JSON and LiteLLM's `model_prices_and_context_window.json`.
//!
//! The cost map keeps every model (provider sets are derived from it) but only the fields the
//! filter reads, which cuts the full map to a fraction of its size. The result is compiled by
//! the filter's own compiler before it is written, and its size is reported against the limit
//! of an Istio `WasmPlugin` (a Kubernetes object; etcd refuses requests over 1.5 MiB).

use crate::yaml_doc::{Positions, YamlDoc};
use std::process::ExitCode;

use serde_json::{Map, Value};

use tollgate::core::compile;

/// Above this, the tool warns: `pluginConfig` shares the object with the rest of the resource.
const ISTIO_WARN_BYTES: usize = 1_000_000;
/// etcd's default request limit.
const ETCD_LIMIT_BYTES: usize = 1_572_864;

const USAGE: &str =
    "usage: tollgate build-config --policy POLICY.(yaml|json) [--cost-map MAP.json] [--output OUT.json]";

/// Whether a cost-map field is one the filter reads.
fn kept_field(name: &str) -> bool {
    matches!(
        name,
        "litellm_provider"
            | "max_output_tokens"
            | "max_input_tokens"
            | "input_cost_per_token"
            | "output_cost_per_token"
            | "cache_read_input_token_cost"
            | "cache_creation_input_token_cost"
            | "output_cost_per_reasoning_token"
    ) || (name.contains("_above_")
        && name.ends_with("k_tokens")
        && [
            "input_cost_per_token_above_",
            "output_cost_per_token_above_",
            "cache_read_input_token_cost_above_",
            "cache_creation_input_token_cost_above_",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix)))
}

/// The cost map with only the fields the filter reads (entries that are not objects, such as
/// LiteLLM's `sample_spec` prose, are dropped).
pub fn trim_cost_map(map: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (model, entry) in map {
        if model == "fallback_generalizations" {
            out.insert(model.clone(), trim_fallback_rules(entry));
            continue;
        }
        if model == "sample_spec" {
            continue;
        }
        let Some(fields) = entry.as_object() else {
            continue;
        };
        let kept: Map<String, Value> = fields
            .iter()
            .filter(|(name, _)| kept_field(name))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        out.insert(model.clone(), Value::Object(kept));
    }
    out
}

/// A YAML or JSON file, with the YAML positions of its nodes (none for JSON).
/// LiteLLM's `fallback_generalizations` with only the rules the filter uses (those naming a
/// provider), each with only its name, pattern and provider.
fn trim_fallback_rules(entry: &Value) -> Value {
    let rules: Vec<Value> = entry["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|rule| {
            // A routing rule, as LiteLLM defines one: model_info is only its provider.
            let info = rule["model_info"].as_object()?;
            if info.len() != 1 || rule.get("extends").is_some() {
                return None;
            }
            let provider = info.get("litellm_provider")?.as_str()?;
            Some(serde_json::json!({
                "name": rule["name"],
                "pattern": rule["pattern"],
                "model_info": { "litellm_provider": provider },
            }))
        })
        .collect();
    serde_json::json!({ "rules": rules })
}

fn read_document(path: &str) -> Result<(Value, Positions), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    if path.ends_with(".yaml") || path.ends_with(".yml") {
        let doc = YamlDoc::parse(&text, path)?;
        Ok((doc.value, doc.positions))
    } else {
        let value =
            serde_json::from_str(&text).map_err(|e| format!("{path}: not valid JSON: {e}"))?;
        Ok((value, Positions::default()))
    }
}

/// Runs the command.
pub fn run(args: &[String]) -> Result<ExitCode, String> {
    let (mut policy_path, mut cost_map_path, mut output) = (None, None, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--policy" => policy_path = it.next().cloned(),
            "--cost-map" => cost_map_path = it.next().cloned(),
            "--output" => output = it.next().cloned(),
            _ => return Err(USAGE.to_string()),
        }
    }
    let policy_path = policy_path.ok_or_else(|| USAGE.to_string())?;
    let (mut policy, positions) = read_document(&policy_path)?;
    let Some(object) = policy.as_object_mut() else {
        return Err(format!(
            "{policy_path}: the policy must be a mapping/object"
        ));
    };
    let mut cost_map = match &cost_map_path {
        Some(path) => match read_document(path)?.0 {
            Value::Object(map) => trim_cost_map(&map),
            _ => return Err(format!("{path}: the cost map must be a JSON object")),
        },
        // Without a map there are no prices and no provider sets (a bare name would reach no
        // provider/* deployment, the imported catch-all included): the bundled one, as
        // import-litellm reads it.
        None => {
            eprintln!(
                "cost map: the bundled litellm 1.109.1 map (--cost-map names another, such as \
                 a newer model_prices_and_context_window.json)"
            );
            match serde_json::from_str(crate::import_litellm::BUNDLED_COST_MAP) {
                Ok(Value::Object(map)) => trim_cost_map(&map),
                _ => return Err("the bundled cost map is not a JSON object".into()),
            }
        }
    };
    // Entries written in the policy itself win over the LiteLLM map's.
    if let Some(Value::Object(own)) = object.remove("cost_map") {
        for (model, entry) in own {
            cost_map.insert(model, entry);
        }
    }
    object.insert("cost_map".to_string(), Value::Object(cost_map));
    let document = serde_json::to_string(&policy).map_err(|e| e.to_string())?;
    let compiled = match compile(document.as_bytes()) {
        Ok(compiled) => compiled,
        Err(errors) => {
            for error in &errors.0 {
                match positions.of(&error.path) {
                    Some((line, column)) => {
                        eprintln!("error: {policy_path}:{line}:{column}: {error}")
                    }
                    None => eprintln!("error: {error}"),
                }
            }
            eprintln!(
                "{policy_path}: refused ({} errors); nothing written",
                errors.0.len()
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    match &output {
        Some(path) => {
            std::fs::write(path, &document).map_err(|e| format!("cannot write {path}: {e}"))?
        }
        None => println!("{document}"),
    }
    crate::warn_unpriced(&compiled);
    let size = document.len();
    eprintln!(
        "ok: {}; plugin config {size} bytes ({:.2} MiB)",
        compiled.summary(),
        size as f64 / 1_048_576.0
    );
    if size > ETCD_LIMIT_BYTES {
        eprintln!(
            "warning: {size} bytes is over etcd's {ETCD_LIMIT_BYTES}-byte request limit: an Istio \
             WasmPlugin cannot carry it; deliver it by ECDS from a file, or trim keys and models"
        );
    } else if size > ISTIO_WARN_BYTES {
        eprintln!(
            "warning: {size} bytes leaves little room under etcd's {ETCD_LIMIT_BYTES}-byte limit \
             for the rest of an Istio WasmPlugin"
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_fields_the_filter_reads_are_kept() {
        let map: Map<String, Value> = serde_json::from_str(
            r#"{"sample_spec":{"litellm_provider":"prose"},
                "gpt-4o":{"litellm_provider":"openai","input_cost_per_token":2.5e-6,"mode":"chat",
                          "supports_vision":true,"input_cost_per_token_batches":1e-6,
                          "input_cost_per_token_above_200k_tokens":5e-6,"max_output_tokens":16384}}"#,
        )
        .unwrap();
        let trimmed = trim_cost_map(&map);
        assert_eq!(
            Value::Object(trimmed),
            serde_json::json!({"gpt-4o":{"litellm_provider":"openai","input_cost_per_token":2.5e-6,
                "input_cost_per_token_above_200k_tokens":5e-6,"max_output_tokens":16384}})
        );
    }
}
