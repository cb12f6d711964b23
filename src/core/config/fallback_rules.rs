//! The cost map's `fallback_generalizations`: LiteLLM's rules that place a model name the map
//! does not list under a provider (a bare `claude-<family>-<n>` newer than the map goes to
//! `anthropic`, a Bedrock-style `anthropic.claude-…` id to `bedrock`).
//!
//! Each rule is `{name, pattern, model_info}`; only rules whose `model_info` names a
//! `litellm_provider` take part in routing and access (the others carry model facts, never a
//! price, so such a model stays unpriced). A pattern is matched as LiteLLM matches it: a search
//! anywhere in the name, case-insensitive, anchored only where the pattern anchors itself; the
//! first rule that matches wins. Patterns are compiled once per config version, bounded in
//! number, length and compiled size, and a bad one refuses the version naming the rule.

use std::fmt;

use regex_lite::{Regex, RegexBuilder};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// Most rules a cost map may carry.
pub const MAX_RULES: usize = 256;
/// Longest pattern accepted, in bytes.
pub const MAX_PATTERN_BYTES: usize = 1024;
/// Largest compiled pattern (regex-lite's own measure), so a rule cannot cost unbounded memory.
const MAX_COMPILED_BYTES: usize = 1 << 20;

/// One rule that names a provider.
#[derive(Debug)]
struct Rule {
    pattern: Regex,
    provider: String,
}

/// The provider-naming rules of one cost map, in their order.
#[derive(Debug, Default)]
pub struct FallbackRules(Vec<Rule>);

impl FallbackRules {
    /// The provider of the first rule whose pattern matches `model`.
    pub fn provider_of(&self, model: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|rule| rule.pattern.is_match(model))
            .map(|rule| rule.provider.as_str())
    }

    /// Number of provider-naming rules.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A rule as written: every field optional, unknown fields ignored (LiteLLM adds prose).
#[derive(Deserialize)]
struct RuleText {
    name: Option<String>,
    pattern: Option<String>,
    model_info: Option<ModelInfoText>,
}

#[derive(Deserialize)]
struct ModelInfoText {
    litellm_provider: Option<String>,
}

fn compiled(rule: RuleText, index: usize) -> Result<Option<Rule>, String> {
    let name = rule.name.unwrap_or_else(|| format!("rules[{index}]"));
    let Some(provider) = rule.model_info.and_then(|info| info.litellm_provider) else {
        return Ok(None);
    };
    let pattern = rule
        .pattern
        .ok_or_else(|| format!("rule {name:?} names a provider but has no pattern"))?;
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(format!(
            "rule {name:?}: the pattern is longer than {MAX_PATTERN_BYTES} bytes"
        ));
    }
    let pattern = RegexBuilder::new(&pattern)
        .case_insensitive(true)
        .size_limit(MAX_COMPILED_BYTES)
        .build()
        .map_err(|e| format!("rule {name:?}: the pattern does not compile: {e}"))?;
    let provider = crate::core::config::cost_map::normalize_provider(&provider).to_string();
    Ok(Some(Rule { pattern, provider }))
}

impl<'de> Deserialize<'de> for FallbackRules {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_map(RulesVisitor)
    }
}

struct RulesVisitor;

impl<'de> Visitor<'de> for RulesVisitor {
    type Value = FallbackRules;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with a `rules` list")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FallbackRules, A::Error> {
        let mut rules = FallbackRules::default();
        while let Some(key) = map.next_key::<String>()? {
            if key == "rules" {
                rules = map.next_value::<RuleList>()?.0;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(rules)
    }
}

struct RuleList(FallbackRules);

impl<'de> Deserialize<'de> for RuleList {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_seq(RuleListVisitor)
    }
}

struct RuleListVisitor;

impl<'de> Visitor<'de> for RuleListVisitor {
    type Value = RuleList;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of rules")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RuleList, A::Error> {
        let mut rules = Vec::new();
        let mut index = 0;
        while let Some(rule) = seq.next_element::<RuleText>()? {
            if index >= MAX_RULES {
                return Err(de::Error::custom(format!(
                    "more than {MAX_RULES} fallback_generalizations rules"
                )));
            }
            if let Some(rule) = compiled(rule, index).map_err(de::Error::custom)? {
                rules.push(rule);
            }
            index += 1;
        }
        Ok(RuleList(FallbackRules(rules)))
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn rules(json: &str) -> Result<FallbackRules, serde_json::Error> {
        serde_json::from_str(json)
    }

    const LITELLM: &str = r#"{"rules":[
        {"name":"bedrock-claude-ids","pattern":"^(?:[a-z-]+\\.)?anthropic\\.claude-",
         "description":"prose","model_info":{"litellm_provider":"bedrock"}},
        {"name":"anthropic-claude-ids","pattern":"^claude-[a-z]+-\\d+(?:[-.]\\d+)?(?:-\\d{8})?$",
         "model_info":{"litellm_provider":"anthropic"}},
        {"name":"claude-family-baseline","pattern":"claude-[a-z]+-\\d+",
         "model_info":{"mode":"chat","max_output_tokens":64000}}]}"#;

    #[test]
    fn rules_place_names_the_map_lacks_as_litellm_does() {
        let rules = rules(LITELLM).unwrap();
        assert_eq!(rules.len(), 2, "only provider-naming rules are kept");
        assert_eq!(rules.provider_of("claude-newfamily-9"), Some("anthropic"));
        assert_eq!(
            rules.provider_of("Claude-Opus-5-20270101"),
            Some("anthropic"),
            "any case"
        );
        assert_eq!(
            rules.provider_of("claude-opus-5-extra"),
            None,
            "anchored to the end"
        );
        assert_eq!(rules.provider_of("eu.anthropic.claude-x"), Some("bedrock"));
        assert_eq!(
            rules.provider_of("bedrockz/anthropic.claude-x"),
            None,
            "anchored to the start"
        );
        assert_eq!(rules.provider_of("gpt-9"), None);
    }

    #[test]
    fn bad_rules_refuse_the_map_naming_the_rule() {
        let bad = rules(
            r#"{"rules":[{"name":"broken","pattern":"(","model_info":{"litellm_provider":"x"}}]}"#,
        );
        assert!(bad.unwrap_err().to_string().contains("\"broken\""));
        let long = format!(
            r#"{{"rules":[{{"name":"long","pattern":"{}","model_info":{{"litellm_provider":"x"}}}}]}}"#,
            "a".repeat(MAX_PATTERN_BYTES + 1)
        );
        assert!(rules(&long).is_err());
        let none = rules(r#"{"rules":[{"name":"p","model_info":{"litellm_provider":"x"}}]}"#);
        assert!(none.is_err(), "a provider rule needs a pattern");
        let many = format!(
            r#"{{"rules":[{}]}}"#,
            vec![r#"{"pattern":"a","model_info":{"litellm_provider":"x"}}"#; MAX_RULES + 1]
                .join(",")
        );
        assert!(rules(&many).is_err());
    }
}
