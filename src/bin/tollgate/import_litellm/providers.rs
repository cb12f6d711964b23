//! Which provider a LiteLLM `model` string names, inferred as LiteLLM infers it: a prefix that
//! is one of LiteLLM's provider names (`anthropic/claude-…`, `hosted_vllm/…`), else the cost
//! map's provider of the whole name (`gpt-4o` → `openai`), from the same cost map the policy
//! is built with.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};
use tollgate::core::config::cost_map::normalize_provider;

/// LiteLLM's provider names (`LlmProviders`, litellm 1.109.1), one per line.
const LITELLM_PROVIDERS: &str = include_str!("litellm_providers.txt");

/// Provider names and the cost map's bare model names.
pub struct Providers {
    known: HashSet<String>,
    bare: HashMap<String, String>,
}

impl Providers {
    /// From a LiteLLM cost map (`model_prices_and_context_window.json`).
    pub fn from_cost_map(map: &Map<String, Value>) -> Providers {
        let mut known: HashSet<String> = LITELLM_PROVIDERS
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(str::to_string)
            .collect();
        let mut bare = HashMap::new();
        for (model, entry) in map {
            let Some(provider) = entry.get("litellm_provider").and_then(Value::as_str) else {
                continue;
            };
            let provider = normalize_provider(provider).to_string();
            known.insert(provider.clone());
            bare.insert(model.clone(), provider);
        }
        Providers { known, bare }
    }

    /// `(provider, the model name the provider sees)`, or why LiteLLM could not tell either.
    pub fn split(&self, model: &str) -> Result<(String, String), String> {
        if let Some((prefix, rest)) = model.split_once('/') {
            if self.known.contains(prefix) && !rest.is_empty() {
                return Ok((prefix.to_string(), rest.to_string()));
            }
        }
        match self.bare.get(model) {
            // A cost-map name that carries its provider (`openrouter/…`) keeps it whole only if
            // the prefix is not the provider itself.
            Some(provider) => {
                let upstream = model
                    .strip_prefix(provider.as_str())
                    .and_then(|rest| rest.strip_prefix('/'))
                    .unwrap_or(model);
                Ok((provider.clone(), upstream.to_string()))
            }
            None => Err(match model.split_once('/') {
                Some((prefix, _)) => format!(
                    "{model:?}: {prefix:?} is not a LiteLLM provider and the cost map does not \
                     know the model (LiteLLM refuses it too); write it as provider/model"
                ),
                None => format!(
                    "{model:?} has no provider prefix and the cost map does not know it \
                     (LiteLLM refuses it too); write it as provider/model"
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_then_the_cost_map_name_the_provider() {
        let map: Map<String, Value> = serde_json::from_str(
            r#"{"gpt-4o":{"litellm_provider":"openai"},
                "claude-sonnet-4-6":{"litellm_provider":"anthropic"},
                "text-bison":{"litellm_provider":"vertex_ai-text-models"}}"#,
        )
        .unwrap();
        let p = Providers::from_cost_map(&map);
        let split = |m: &str| p.split(m).unwrap();
        assert_eq!(split("gpt-4o"), ("openai".into(), "gpt-4o".into()));
        assert_eq!(split("claude-sonnet-4-6").0, "anthropic");
        assert_eq!(split("text-bison").0, "vertex_ai");
        assert_eq!(
            split("anthropic/claude-new-9"),
            ("anthropic".into(), "claude-new-9".into())
        );
        assert_eq!(split("hosted_vllm/llama").0, "hosted_vllm");
        assert_eq!(split("openai/*"), ("openai".into(), "*".into()));
        assert!(p
            .split("mistralai/mistral-7b")
            .unwrap_err()
            .contains("\"mistralai\""));
        assert!(p
            .split("gpt-unknown")
            .unwrap_err()
            .contains("no provider prefix"));
    }
}
