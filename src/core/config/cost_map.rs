//! The LiteLLM cost map (`model_prices_and_context_window.json`), read in one pass.
//!
//! The document is accepted as-is: `sample_spec` (documentation) is skipped,
//! `fallback_generalizations` (LiteLLM's provider rules for names the map lacks) is compiled into
//! [`FallbackRules`], every other entry is a model. Only the fields the
//! filter uses are kept; every other field whose name contains `cost` is still checked to be a
//! finite, non-negative number (or a nested object/array, such as `search_context_cost_per_query`),
//! so a map with a price that is not a number is refused with the path of that price.
//!
//! Provider sets (which bare model names belong to which provider) are *derived* from these
//! entries and rules at compile time ([`CostMap::provider_of_bare`]); they are never delivered
//! separately, so they cannot be stale relative to the prices.

use std::fmt;

use hashbrown::HashMap;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use crate::core::config::config::as_whole_number;
use crate::core::config::fallback_rules::FallbackRules;
use crate::core::money::cost_fields::priced_field;

/// Entries of the cost map that are not models.
const NON_MODEL_ENTRIES: [&str; 2] = ["sample_spec", FALLBACK_RULES];

/// The entry holding LiteLLM's provider rules.
const FALLBACK_RULES: &str = "fallback_generalizations";

/// Prices and limits of one model, in USD per token.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CostEntry {
    /// The provider as LiteLLM names it, normalised (`vertex_ai-language-models` → `vertex_ai`).
    pub provider: Option<String>,
    /// Input price.
    pub input_cost_per_token: Option<f64>,
    /// Output price.
    pub output_cost_per_token: Option<f64>,
    /// Cached-read input price.
    pub cache_read_input_token_cost: Option<f64>,
    /// Cache-creation input price.
    pub cache_creation_input_token_cost: Option<f64>,
    /// Reasoning output price.
    pub output_cost_per_reasoning_token: Option<f64>,
    /// Audio input price (`input_cost_per_audio_token`; falls back to the input price).
    pub input_cost_per_audio_token: Option<f64>,
    /// Audio output price (`output_cost_per_audio_token`; falls back to the output price).
    pub output_cost_per_audio_token: Option<f64>,
    /// One-hour cache-write price (`cache_creation_input_token_cost_above_1hr`; Anthropic's
    /// `ephemeral_1h_input_tokens`).
    pub cache_creation_1h_cost: Option<f64>,
    /// Price of one web search (`search_context_cost_per_query.search_context_size_medium`,
    /// as LiteLLM prices Anthropic's `server_tool_use.web_search_requests`).
    pub web_search_cost_per_query: Option<f64>,
    /// Threshold prices (`<rate>_above_<N>k_tokens`), used by cost calculation.
    pub thresholds: Vec<ThresholdPrice>,
    /// Prices of the `priority` service tier (fields ending in `_priority`), when any.
    pub priority: Option<Box<TierPrices>>,
    /// Prices of the `flex` service tier (fields ending in `_flex`), when any.
    pub flex: Option<Box<TierPrices>>,
    /// Largest completion the model produces.
    pub max_output_tokens: Option<u64>,
    /// Largest prompt the model accepts.
    pub max_input_tokens: Option<u64>,
}

/// The prices of one non-standard service tier; a rate it does not set is the standard one
/// (LiteLLM's fallback).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TierPrices {
    /// Input price.
    pub input: Option<f64>,
    /// Output price.
    pub output: Option<f64>,
    /// Cached-read input price.
    pub cache_read: Option<f64>,
    /// Cache-creation input price.
    pub cache_creation: Option<f64>,
    /// One-hour cache-creation price.
    pub cache_creation_1h: Option<f64>,
    /// Reasoning output price.
    pub reasoning: Option<f64>,
    /// Audio input price.
    pub audio_input: Option<f64>,
    /// Audio output price.
    pub audio_output: Option<f64>,
    /// This tier's threshold prices.
    pub thresholds: Vec<ThresholdPrice>,
}

/// Which base rate a threshold price replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateKind {
    /// `input_cost_per_token`.
    Input,
    /// `output_cost_per_token`.
    Output,
    /// `cache_read_input_token_cost`.
    CacheRead,
    /// `cache_creation_input_token_cost`.
    CacheCreation,
    /// `cache_creation_input_token_cost_above_1hr`.
    CacheCreation1h,
}

/// One `<rate>_above_<N>k_tokens` price: applies to all tokens of that kind once the prompt
/// exceeds `above_tokens`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdPrice {
    /// The rate being replaced.
    pub kind: RateKind,
    /// The prompt size (in tokens) that must be exceeded.
    pub above_tokens: u64,
    /// USD per token above the threshold.
    pub cost_per_token: f64,
}

/// The cost map of one config version.
#[derive(Debug, Default)]
pub struct CostMap {
    entries: HashMap<String, CostEntry>,
    fallback: FallbackRules,
}

impl CostMap {
    /// Builds a map from entries (used by tests and tools).
    pub fn from_entries<I: IntoIterator<Item = (String, CostEntry)>>(entries: I) -> Self {
        CostMap {
            entries: entries.into_iter().collect(),
            fallback: FallbackRules::default(),
        }
    }

    /// The entry for a model name exactly as written in the map.
    pub fn get(&self, model: &str) -> Option<&CostEntry> {
        self.entries.get(model)
    }

    /// The entry named `provider/model`. The name is assembled on the stack: this runs for
    /// every priced request, and a `format!` there was one of its allocations.
    pub fn get_qualified(&self, provider: &str, model: &str) -> Option<&CostEntry> {
        let mut buffer = [0u8; 256];
        let length = provider.len() + 1 + model.len();
        let Some(name) = buffer.get_mut(..length) else {
            return self.entries.get(&format!("{provider}/{model}"));
        };
        let (head, tail) = name.split_at_mut(provider.len());
        head.copy_from_slice(provider.as_bytes());
        let (slash, rest) = tail.split_at_mut(1);
        slash.copy_from_slice(b"/");
        rest.copy_from_slice(model.as_bytes());
        // Two &str joined by an ASCII byte are UTF-8.
        let name = std::str::from_utf8(name).ok()?;
        self.entries.get(name)
    }

    /// Number of model entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map has no model entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Iterates over `(model name, entry)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &CostEntry)> {
        self.entries
            .iter()
            .map(|(name, entry)| (name.as_str(), entry))
    }

    /// The provider of a bare model name (no `/`): this map's entry for it, else the first of
    /// its `fallback_generalizations` rules that matches (a name in the map without a provider
    /// stays without one).
    pub fn provider_of_bare(&self, model: &str) -> Option<&str> {
        if model.contains('/') {
            return None;
        }
        match self.entries.get(model) {
            Some(entry) => entry.provider.as_deref(),
            None => self.fallback.provider_of(model),
        }
    }

    /// The provider-naming `fallback_generalizations` rules.
    pub fn fallback_rules(&self) -> &FallbackRules {
        &self.fallback
    }
}

/// Folds LiteLLM's provider *families* into the routable provider name:
/// `vertex_ai-language-models` and `vertex_ai-anthropic_models` → `vertex_ai`,
/// `fireworks_ai-embedding-models` → `fireworks_ai`. Real names with a dash
/// (`text-completion-openai`, `scx-ai`) are kept.
pub fn normalize_provider(raw: &str) -> &str {
    match raw.split_once('-') {
        Some((family, _)) if raw.ends_with("models") => family,
        _ => raw,
    }
}

impl<'de> Deserialize<'de> for CostMap {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_map(CostMapVisitor)
    }
}

struct CostMapVisitor;

impl<'de> Visitor<'de> for CostMapVisitor {
    type Value = CostMap;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a LiteLLM cost map object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CostMap, A::Error> {
        let mut entries = HashMap::with_capacity(map.size_hint().unwrap_or(0));
        let mut fallback = FallbackRules::default();
        while let Some(name) = map.next_key::<String>()? {
            if name == FALLBACK_RULES {
                fallback = map.next_value()?;
                continue;
            }
            if NON_MODEL_ENTRIES.contains(&name.as_str()) {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let entry: CostEntry = map.next_value()?;
            entries.insert(name, entry);
        }
        Ok(CostMap { entries, fallback })
    }
}

impl<'de> Deserialize<'de> for CostEntry {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_map(CostEntryVisitor)
    }
}

struct CostEntryVisitor;

/// A JSON value whose only acceptable scalar form is a finite, non-negative number.
enum PriceField {
    Number(f64),
    Absent,
    Nested,
}

impl<'de> Deserialize<'de> for PriceField {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_any(PriceFieldVisitor)
    }
}

struct PriceFieldVisitor;

impl<'de> Visitor<'de> for PriceFieldVisitor {
    type Value = PriceField;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a finite, non-negative number")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<PriceField, E> {
        if v.is_finite() && v >= 0.0 {
            Ok(PriceField::Number(v))
        } else {
            Err(E::custom(format!(
                "a price must be a finite, non-negative number, found {v}"
            )))
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<PriceField, E> {
        Ok(PriceField::Number(v as f64))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<PriceField, E> {
        self.visit_f64(v as f64)
    }

    fn visit_unit<E: de::Error>(self) -> Result<PriceField, E> {
        Ok(PriceField::Absent)
    }

    fn visit_none<E: de::Error>(self) -> Result<PriceField, E> {
        Ok(PriceField::Absent)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<PriceField, E> {
        Err(E::custom(format!(
            "a price must be a number, found the string {v:?}"
        )))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<PriceField, E> {
        Err(E::custom(format!("a price must be a number, found {v}")))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PriceField, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(PriceField::Nested)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<PriceField, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(PriceField::Nested)
    }
}

impl PriceField {
    fn scalar<E: de::Error>(self, field: &str) -> Result<Option<f64>, E> {
        match self {
            PriceField::Number(v) => Ok(Some(v)),
            PriceField::Absent => Ok(None),
            PriceField::Nested => Err(E::custom(format!(
                "`{field}` must be a number, found an object or array"
            ))),
        }
    }
}

impl PriceField {
    /// A per-token rate: also at most [`MAX_RATE_USD_PER_TOKEN`], so it is exactly representable
    /// in integer atto-dollars (a larger one would silently become "unpriced").
    fn rate<E: de::Error>(self, field: &str) -> Result<Option<f64>, E> {
        let value = self.scalar(field)?;
        match value {
            Some(v) if v > MAX_RATE_USD_PER_TOKEN => Err(E::custom(format!(
                "`{field}` is {v} USD per token; the most Tollgate accepts is {MAX_RATE_USD_PER_TOKEN}"
            ))),
            _ => Ok(value),
        }
    }
}

/// Largest per-token rate accepted (integer atto-dollars stay below 2^64).
pub const MAX_RATE_USD_PER_TOKEN: f64 = 10.0;

impl<'de> Visitor<'de> for CostEntryVisitor {
    type Value = CostEntry;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a cost-map entry object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CostEntry, A::Error> {
        let mut entry = CostEntry::default();
        while let Some(field) = map.next_key::<String>()? {
            match field.as_str() {
                "litellm_provider" => {
                    let raw: Option<String> = map.next_value()?;
                    entry.provider = raw.map(|p| normalize_provider(&p).to_string());
                }
                "max_output_tokens" => entry.max_output_tokens = token_limit(&mut map)?,
                "max_input_tokens" => entry.max_input_tokens = token_limit(&mut map)?,
                "search_context_cost_per_query" => {
                    let sizes: Option<std::collections::BTreeMap<String, PriceField>> =
                        map.next_value()?;
                    for (size, value) in sizes.into_iter().flatten() {
                        let path = format!("search_context_cost_per_query.{size}");
                        let price = value.rate::<A::Error>(&path)?;
                        if size == "search_context_size_medium" {
                            entry.web_search_cost_per_query = price;
                        }
                    }
                }
                name if name.contains("cost") => {
                    // Every such field is checked: a finite, non-negative number, or nested;
                    // the ones Tollgate prices with are also per-token rates.
                    let value: PriceField = map.next_value()?;
                    if let Some(field) = priced_field(name) {
                        if let Some(price) = value.rate(name)? {
                            entry.set_price(field, price);
                        }
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        entry.thresholds.sort_by_key(|t| t.above_tokens);
        for tier in [&mut entry.priority, &mut entry.flex].into_iter().flatten() {
            tier.thresholds.sort_by_key(|t| t.above_tokens);
        }
        Ok(entry)
    }
}

fn token_limit<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<u64>, A::Error> {
    match map.next_value::<Option<f64>>()? {
        None => Ok(None),
        Some(v) => as_whole_number(v).map(Some).ok_or_else(|| {
            de::Error::custom(format!(
                "a token limit must be a whole, non-negative number, found {v}"
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn parse(json: &str) -> Result<CostMap, String> {
        let de = &mut serde_json::Deserializer::from_str(json);
        serde_path_to_error::deserialize(de).map_err(|e| format!("{}: {}", e.path(), e.inner()))
    }

    #[test]
    fn qualified_lookup_joins_provider_and_model_at_any_length() {
        let long = "m".repeat(300);
        let map = parse(&format!(
            r#"{{"openai/gpt-4o":{{"litellm_provider":"openai","input_cost_per_token":1e-6}},
                "openai/{long}":{{"litellm_provider":"openai","input_cost_per_token":2e-6}}}}"#
        ))
        .unwrap();
        assert!(map.get_qualified("openai", "gpt-4o").is_some());
        assert!(
            map.get_qualified("openai", &long).is_some(),
            "past the stack buffer"
        );
        assert!(map.get_qualified("openai", "gpt-4").is_none());
        assert!(map.get_qualified("openai/gpt-4o", "").is_none());
    }

    #[test]
    fn skips_documentation_and_routing_rule_entries() {
        let map = parse(
            r#"{"sample_spec":{"litellm_provider":"one of","max_output_tokens":"prose"},
                "fallback_generalizations":{"rules":[]},
                "gpt-4o":{"litellm_provider":"openai","input_cost_per_token":2.5e-6}}"#,
        )
        .unwrap();
        assert_eq!(map.len(), 1);
        assert_eq!(map.provider_of_bare("gpt-4o"), Some("openai"));
    }

    #[test]
    fn folds_provider_families_into_routable_provider() {
        assert_eq!(normalize_provider("vertex_ai-language-models"), "vertex_ai");
        assert_eq!(
            normalize_provider("vertex_ai-anthropic_models"),
            "vertex_ai"
        );
        assert_eq!(
            normalize_provider("fireworks_ai-embedding-models"),
            "fireworks_ai"
        );
        assert_eq!(
            normalize_provider("text-completion-openai"),
            "text-completion-openai"
        );
        assert_eq!(normalize_provider("scx-ai"), "scx-ai");
        assert_eq!(normalize_provider("anthropic"), "anthropic");
    }

    #[test]
    fn price_given_as_string_is_refused_with_its_path() {
        let err = parse(r#"{"m":{"litellm_provider":"openai","input_cost_per_token":"0.1"}}"#)
            .unwrap_err();
        assert!(err.starts_with("m.input_cost_per_token: "), "{err}");
        assert!(err.contains("must be a number"), "{err}");
    }

    #[test]
    fn unused_cost_fields_are_still_checked() {
        let err = parse(r#"{"m":{"ocr_cost_per_page":true}}"#).unwrap_err();
        assert!(err.starts_with("m.ocr_cost_per_page: "), "{err}");
        let nested = parse(r#"{"m":{"search_context_cost_per_query":{"low":0.01}}}"#);
        assert!(nested.is_ok());
    }

    #[test]
    fn negative_price_is_refused() {
        let err = parse(r#"{"m":{"output_cost_per_token":-1e-6}}"#).unwrap_err();
        assert!(err.contains("non-negative"), "{err}");
    }

    #[test]
    fn explicit_zero_price_is_kept_distinct_from_missing() {
        let map = parse(r#"{"free":{"input_cost_per_token":0},"unknown":{}}"#).unwrap();
        assert_eq!(map.get("free").unwrap().input_cost_per_token, Some(0.0));
        assert_eq!(map.get("unknown").unwrap().input_cost_per_token, None);
    }

    #[test]
    fn threshold_prices_are_parsed_and_sorted() {
        let map = parse(
            r#"{"m":{"input_cost_per_token_above_272k_tokens":3e-6,
                     "input_cost_per_token_above_200k_tokens":2e-6,
                     "input_cost_per_token_above_200k_tokens_priority":9e-6}}"#,
        )
        .unwrap();
        let t = &map.get("m").unwrap().thresholds;
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].above_tokens, 200_000);
        assert_eq!(t[1].above_tokens, 272_000);
        assert_eq!(t[0].kind, RateKind::Input);
        let priority = map.get("m").unwrap().priority.as_deref().unwrap();
        assert_eq!(priority.thresholds.len(), 1);
        assert_eq!(priority.thresholds[0].cost_per_token, 9e-6);
    }

    #[test]
    fn service_tier_and_one_hour_cache_prices_are_read() {
        let map = parse(
            r#"{"gpt-4o":{"input_cost_per_token":2.5e-06,"input_cost_per_token_priority":4.25e-06,
                 "output_cost_per_token_priority":1.7e-05,"cache_read_input_token_cost_priority":2.125e-06,
                 "input_cost_per_token_flex":1.25e-06,"input_cost_per_token_batches":1.25e-06},
                "claude":{"cache_creation_input_token_cost":3.75e-06,"cache_creation_input_token_cost_above_1hr":6e-06,
                 "cache_creation_input_token_cost_above_1hr_above_200k_tokens":1.2e-05,
                 "cache_creation_input_token_cost_above_12hr_priority":1.0}}"#,
        )
        .unwrap();
        let gpt = map.get("gpt-4o").unwrap();
        assert_eq!(gpt.input_cost_per_token, Some(2.5e-06), "batches ignored");
        let priority = gpt.priority.as_deref().unwrap();
        assert_eq!(
            (priority.input, priority.output, priority.cache_read),
            (Some(4.25e-06), Some(1.7e-05), Some(2.125e-06))
        );
        assert_eq!(gpt.flex.as_deref().unwrap().input, Some(1.25e-06));
        let claude = map.get("claude").unwrap();
        assert_eq!(claude.cache_creation_1h_cost, Some(6e-06));
        assert_eq!(claude.cache_creation_input_token_cost, Some(3.75e-06));
        assert_eq!(claude.thresholds.len(), 1);
        assert_eq!(claude.thresholds[0].kind, RateKind::CacheCreation1h);
        assert!(claude.priority.is_none(), "an unused suffix sets nothing");
    }

    #[test]
    fn tier_prices_are_validated_like_the_others() {
        let err = parse(r#"{"m":{"input_cost_per_token_priority":"0.1"}}"#).unwrap_err();
        assert!(
            err.starts_with("m.input_cost_per_token_priority: "),
            "{err}"
        );
        let err = parse(r#"{"m":{"cache_creation_input_token_cost_above_1hr":-1}}"#).unwrap_err();
        assert!(err.contains("non-negative"), "{err}");
        let err = parse(r#"{"m":{"output_cost_per_token_flex":1e300}}"#).unwrap_err();
        assert!(err.contains("the most Tollgate accepts"), "{err}");
    }

    #[test]
    fn audio_prices_are_read_and_validated() {
        let map = parse(
            r#"{"a":{"input_cost_per_audio_token":4e-05,"output_cost_per_audio_token":8e-05,
                 "input_cost_per_audio_token_priority":6e-05}}"#,
        )
        .unwrap();
        let a = map.get("a").unwrap();
        assert_eq!(
            (a.input_cost_per_audio_token, a.output_cost_per_audio_token),
            (Some(4e-05), Some(8e-05))
        );
        assert_eq!(a.priority.as_deref().unwrap().audio_input, Some(6e-05));
        let err = parse(r#"{"m":{"output_cost_per_audio_token":-1}}"#).unwrap_err();
        assert!(
            err.starts_with("m.output_cost_per_audio_token: ") && err.contains("non-negative"),
            "{err}"
        );
        let err = parse(r#"{"m":{"input_cost_per_audio_token":11}}"#).unwrap_err();
        assert!(err.contains("the most Tollgate accepts"), "{err}");
    }

    #[test]
    fn the_medium_web_search_price_is_read_and_every_size_validated() {
        let map = parse(
            r#"{"c":{"search_context_cost_per_query":{"search_context_size_low":0.005,
                 "search_context_size_medium":0.01,"search_context_size_high":0.02}},
                "d":{"search_context_cost_per_query":null}}"#,
        )
        .unwrap();
        assert_eq!(map.get("c").unwrap().web_search_cost_per_query, Some(0.01));
        assert_eq!(map.get("d").unwrap().web_search_cost_per_query, None);
        let err =
            parse(r#"{"m":{"search_context_cost_per_query":{"search_context_size_high":-1}}}"#)
                .unwrap_err();
        assert!(err.contains("non-negative"), "{err}");
        let err =
            parse(r#"{"m":{"search_context_cost_per_query":{"search_context_size_low":"x"}}}"#)
                .unwrap_err();
        assert!(err.starts_with("m.search_context_cost_per_query"), "{err}");
        assert!(parse(r#"{"m":{"search_context_cost_per_query":7}}"#).is_err());
    }

    #[test]
    fn bare_provider_lookup_ignores_prefixed_names() {
        let map = parse(r#"{"anthropic/x":{"litellm_provider":"anthropic"}}"#).unwrap();
        assert_eq!(map.provider_of_bare("anthropic/x"), None);
        assert_eq!(map.provider_of_bare("x"), None);
    }
}
