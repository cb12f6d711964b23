//! The cost map's `fallback_generalizations`: LiteLLM's rules that place a model name the map
//! does not list under a provider (a bare `claude-<family>-<n>` newer than the map goes to
//! `anthropic`, a Bedrock-style `anthropic.claude-…` id to `bedrock`).
//!
//! Each rule is `{name, pattern, model_info}`. As in LiteLLM, a rule is a *routing* rule when its
//! `model_info` holds nothing but `litellm_provider` and it `extends` nothing; only those take
//! part in routing and access (the others carry model facts, never a price, so such a model
//! stays unpriced). A pattern is matched as LiteLLM matches it: a search anywhere in the name,
//! case-insensitive, anchored only where the pattern anchors itself; the first rule that
//! matches wins. Routing rules are compiled once per config version and bounded (count, pattern
//! length, compiled size), and only names up to [`MAX_PLACED_NAME_BYTES`] are placed, so a
//! request with a made-up name costs little. A routing rule the engine cannot compile
//! (look-around, which Python's `re` has; or over the size bound) is skipped with a warning, as
//! LiteLLM skips one it cannot compile; the rest of the map still serves.

use std::fmt;

use regex_lite::{Regex, RegexBuilder};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// Most rules a cost map may list (routing or not).
pub const MAX_RULES: usize = 1024;
/// Most routing rules (the real map has 3).
pub const MAX_ROUTING_RULES: usize = 32;
/// Longest routing pattern accepted, in bytes.
pub const MAX_PATTERN_BYTES: usize = 512;
/// Largest compiled routing pattern (regex-lite's own measure).
const MAX_COMPILED_BYTES: usize = 16 * 1024;
/// Longest model name the rules place (real model ids are far shorter); a longer unknown name
/// is not placed, so no request can make the rules scan a long string.
pub const MAX_PLACED_NAME_BYTES: usize = 128;

/// One rule that names a provider.
#[derive(Debug)]
struct Rule {
    pattern: Regex,
    provider: String,
}

/// The provider-naming rules of one cost map, in their order, and the ones skipped.
#[derive(Debug, Default)]
pub struct FallbackRules(Vec<Rule>, Vec<String>);

impl FallbackRules {
    /// The provider of the first rule whose pattern matches `model`.
    pub fn provider_of(&self, model: &str) -> Option<&str> {
        if model.len() > MAX_PLACED_NAME_BYTES {
            return None;
        }
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

    /// Why each skipped routing rule was skipped (for the version's warnings).
    pub fn skipped(&self) -> &[String] {
        &self.1
    }
}

/// A rule as written: every field optional, unknown fields ignored (LiteLLM adds prose).
#[derive(Deserialize)]
struct RuleText {
    name: Option<String>,
    pattern: Option<String>,
    model_info: Option<serde_json::Map<String, serde_json::Value>>,
    extends: Option<IgnoredAny>,
}

/// What became of one rule.
enum Compiled {
    Routing(Rule),
    /// Not a routing rule (model facts only).
    NotRouting,
    /// A routing rule this engine cannot compile: skipped, with why.
    Skipped(String),
}

fn compiled(rule: RuleText, index: usize) -> Result<Compiled, String> {
    let name = rule.name.unwrap_or_else(|| format!("rules[{index}]"));
    let info = rule.model_info.unwrap_or_default();
    let provider = match (info.len(), info.get("litellm_provider"), rule.extends) {
        (1, Some(serde_json::Value::String(provider)), None) => provider.clone(),
        _ => return Ok(Compiled::NotRouting),
    };
    let pattern = rule
        .pattern
        .ok_or_else(|| format!("rule {name:?} names a provider but has no pattern"))?;
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(format!(
            "rule {name:?}: the pattern is longer than {MAX_PATTERN_BYTES} bytes"
        ));
    }
    let built = RegexBuilder::new(&pattern)
        .case_insensitive(true)
        .size_limit(MAX_COMPILED_BYTES)
        .build();
    let pattern = match built {
        Ok(pattern) => pattern,
        Err(e) => {
            let why = e.to_string();
            let why = why.lines().last().unwrap_or("").trim().to_string();
            return Ok(Compiled::Skipped(format!(
                "fallback_generalizations rule {name:?} is skipped: its pattern does not compile \
                 here ({why})"
            )));
        }
    };
    let provider = crate::core::config::cost_map::normalize_provider(&provider).to_string();
    Ok(Compiled::Routing(Rule { pattern, provider }))
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
        let mut skipped = Vec::new();
        let mut index = 0;
        while let Some(rule) = seq.next_element::<RuleText>()? {
            if index >= MAX_RULES {
                return Err(de::Error::custom(format!(
                    "more than {MAX_RULES} fallback_generalizations rules"
                )));
            }
            match compiled(rule, index).map_err(de::Error::custom)? {
                Compiled::Routing(rule) => rules.push(rule),
                Compiled::NotRouting => {}
                Compiled::Skipped(why) => skipped.push(why),
            }
            if rules.len() > MAX_ROUTING_RULES {
                return Err(de::Error::custom(format!(
                    "more than {MAX_ROUTING_RULES} fallback_generalizations routing rules"
                )));
            }
            index += 1;
        }
        Ok(RuleList(FallbackRules(rules, skipped)))
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
         "model_info":{"mode":"chat","max_output_tokens":64000}},
        {"name":"old-format","pattern":"^gpt-","model_info":{"litellm_provider":"openai","mode":"chat"}},
        {"name":"extending","pattern":"^gpt-","extends":"x","model_info":{"litellm_provider":"openai"}},
        {"name":"lookahead","pattern":"^gpt-(?!oss)[6-9]","model_info":{"litellm_provider":"openai"}}]}"#;

    #[test]
    fn rules_place_names_the_map_lacks_as_litellm_does() {
        let rules = rules(LITELLM).unwrap();
        assert_eq!(
            rules.len(),
            2,
            "only routing rules, as LiteLLM defines them, are kept"
        );
        assert_eq!(
            rules.provider_of("gpt-9"),
            None,
            "old-format and extending rules do not route"
        );
        assert_eq!(
            rules.skipped().len(),
            1,
            "look-around is skipped, not fatal"
        );
        assert!(rules.skipped()[0].contains("\"lookahead\""));
        let long = format!("claude-{}-9", "a".repeat(MAX_PLACED_NAME_BYTES));
        assert_eq!(rules.provider_of(&long), None, "long names are not placed");
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
    fn bad_rules_are_skipped_or_refuse_the_map_naming_the_rule() {
        let bad = rules(
            r#"{"rules":[{"name":"broken","pattern":"(","model_info":{"litellm_provider":"x"}}]}"#,
        )
        .unwrap();
        assert!(bad.is_empty() && bad.skipped()[0].contains("\"broken\""));
        let huge = rules(
            r#"{"rules":[{"name":"huge","pattern":"[a-z0-9]{12000}","model_info":{"litellm_provider":"x"}}]}"#,
        )
        .unwrap();
        assert!(huge.is_empty(), "over the compiled-size bound: skipped");
        let long = format!(
            r#"{{"rules":[{{"name":"long","pattern":"{}","model_info":{{"litellm_provider":"x"}}}}]}}"#,
            "a".repeat(MAX_PATTERN_BYTES + 1)
        );
        assert!(rules(&long).is_err());
        let none = rules(r#"{"rules":[{"name":"p","model_info":{"litellm_provider":"x"}}]}"#);
        assert!(none.is_err(), "a provider rule needs a pattern");
        let many = format!(
            r#"{{"rules":[{}]}}"#,
            vec![r#"{"pattern":"a","model_info":{"litellm_provider":"x"}}"#; MAX_ROUTING_RULES + 1]
                .join(",")
        );
        assert!(rules(&many).is_err());
    }
}
