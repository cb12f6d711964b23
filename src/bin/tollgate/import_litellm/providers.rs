//! Which provider a LiteLLM `model` string names, inferred as LiteLLM infers it: a prefix that
//! is one of LiteLLM's provider names (`anthropic/claude-…`, `hosted_vllm/…`), else the cost
//! map's provider of the whole name (`gpt-4o` → `openai`; a name it lacks through its
//! `fallback_generalizations` rules), read by the same code the filter's compiler uses.

use std::collections::HashSet;

use tollgate::core::config::cost_map::CostMap;

/// LiteLLM's provider names (`LlmProviders`, litellm 1.109.1), one per line.
const LITELLM_PROVIDERS: &str = include_str!("litellm_providers.txt");

/// Provider names and the cost map's bare model names.
pub struct Providers {
    known: HashSet<String>,
    map: CostMap,
}

impl Providers {
    /// From a LiteLLM cost map (`model_prices_and_context_window.json`), already parsed.
    pub fn new(map: CostMap) -> Providers {
        let mut known: HashSet<String> = LITELLM_PROVIDERS
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(str::to_string)
            .collect();
        known.extend(map.iter().filter_map(|(_, e)| e.provider.clone()));
        Providers { known, map }
    }

    /// `(provider, the model name the provider sees)`, or why LiteLLM could not tell either.
    pub fn split(&self, model: &str) -> Result<(String, String), String> {
        if let Some((prefix, rest)) = model.split_once('/') {
            if self.known.contains(prefix) && !rest.is_empty() {
                return Ok((prefix.to_string(), rest.to_string()));
            }
        }
        let provider = match self.map.provider_of_bare(model) {
            Some(provider) => Some(provider),
            // A cost-map name that carries a namespace that is not a provider
            // (`openrouter`-style entries are keyed with their provider prefix).
            None => self.map.get(model).and_then(|e| e.provider.as_deref()),
        };
        match provider {
            // A cost-map name that starts with its provider (`openrouter/…`) loses that prefix.
            Some(provider) => {
                let upstream = model
                    .strip_prefix(provider)
                    .and_then(|rest| rest.strip_prefix('/'))
                    .unwrap_or(model);
                Ok((provider.to_string(), upstream.to_string()))
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
        let map: CostMap = serde_json::from_str(
            r#"{"gpt-4o":{"litellm_provider":"openai"},
                "claude-sonnet-4-6":{"litellm_provider":"anthropic"},
                "text-bison":{"litellm_provider":"vertex_ai-text-models"},
                "fallback_generalizations":{"rules":[{"name":"c","pattern":"^claude-[a-z]+-\\d+$",
                    "model_info":{"litellm_provider":"anthropic"}}]}}"#,
        )
        .unwrap();
        let p = Providers::new(map);
        let split = |m: &str| p.split(m).unwrap();
        assert_eq!(split("gpt-4o"), ("openai".into(), "gpt-4o".into()));
        assert_eq!(split("claude-sonnet-4-6").0, "anthropic");
        assert_eq!(split("text-bison").0, "vertex_ai");
        assert_eq!(
            split("claude-newfamily-9").0,
            "anthropic",
            "the map's fallback rules"
        );
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
