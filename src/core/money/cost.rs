//! What a request cost, in exact integer money.
//!
//! Rates are converted once from the config's USD-per-token floats into integer atto-dollars
//! (1e-18 USD) per token, which represents every price in the LiteLLM map exactly; a request's
//! cost is computed in `u128` atto-dollars and reported in nano-dollars (1e-9 USD), rounded half
//! up. Money is never accumulated as a float.
//!
//! Prices come from the deployment's own `model_info` first, then this version's cost map entry
//! for `provider/model`, then the bare model. A model with no known price is **not** free: only an
//! explicit `0` is free; a missing price is reported as [`PriceSource::Unpriced`].
//!
//! A cost-map entry's `_priority` and `_flex` prices apply to requests served in that service
//! tier (a rate the tier does not set is the standard one, as in LiteLLM); a deployment's own
//! `model_info` prices apply to every tier. Anthropic's one-hour cache writes are priced at
//! `cache_creation_input_token_cost_above_1hr` (falling back to the five-minute rate).

use crate::core::config::cost_map::{CostEntry, RateKind, ThresholdPrice, TierPrices};
use crate::core::config::index::{Deployment, Policy};
use crate::core::metering::usage::Usage;

/// Atto-dollars (1e-18 USD) per USD.
const ATTO_PER_USD: f64 = 1e18;
/// Atto-dollars per nano-dollar.
const ATTO_PER_NANO: u128 = 1_000_000_000;

/// Where a request's prices came from (reported with every spend event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceSource {
    /// The deployment's `model_info`.
    Deployment,
    /// This version's cost map.
    CostMap,
    /// `settings.unpriced_models.mode: default_price`.
    DefaultPrice,
    /// No price is known (never treated as free).
    Unpriced,
}

impl PriceSource {
    /// The name used in spend events.
    pub fn name(self) -> &'static str {
        match self {
            PriceSource::Deployment => "deployment",
            PriceSource::CostMap => "cost_map",
            PriceSource::DefaultPrice => "default_price",
            PriceSource::Unpriced => "unpriced",
        }
    }
}

/// The service tier a request asked for or was served in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ServiceTier {
    /// Standard prices (`default`, `auto`, `standard`, `scale`, and anything unknown).
    #[default]
    Standard,
    /// OpenAI's `priority` (and Anthropic's `priority`).
    Priority,
    /// OpenAI's `flex`.
    Flex,
}

impl ServiceTier {
    /// The tier a `service_tier` value names.
    pub fn parse(value: &str) -> ServiceTier {
        match value {
            "priority" => ServiceTier::Priority,
            "flex" => ServiceTier::Flex,
            _ => ServiceTier::Standard,
        }
    }

    /// The name used in spend events and logs.
    pub fn name(self) -> &'static str {
        match self {
            ServiceTier::Standard => "standard",
            ServiceTier::Priority => "priority",
            ServiceTier::Flex => "flex",
        }
    }
}

/// Per-token rates in atto-dollars; `None` means unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rates {
    /// Input.
    pub input: Option<u64>,
    /// Output.
    pub output: Option<u64>,
    /// Cached-read input (falls back to `input`).
    pub cache_read: Option<u64>,
    /// Cache-creation input (falls back to `input`).
    pub cache_creation: Option<u64>,
    /// One-hour cache-creation input (falls back to `cache_creation`).
    pub cache_creation_1h: Option<u64>,
    /// Reasoning output (falls back to `output`).
    pub reasoning: Option<u64>,
    /// Audio input (falls back to `input`).
    pub audio_input: Option<u64>,
    /// Audio output (falls back to `output`).
    pub audio_output: Option<u64>,
    /// One server-side web search, per call (no fallback: unknown is unpriced).
    pub web_search: Option<u64>,
}

/// Converts a USD-per-token price into atto-dollars per token (exact for the map's prices).
pub fn atto_per_token(usd: f64) -> Option<u64> {
    let atto = (usd * ATTO_PER_USD).round();
    (atto.is_finite() && atto >= 0.0 && atto < u64::MAX as f64).then_some(atto as u64)
}

/// The rates of a cost-map entry at a given prompt size in a service tier (threshold tiers
/// applied: the highest crossed `*_above_<N>k_tokens` rate of each kind prices *all* tokens of
/// that kind). A non-standard tier's prices replace the standard ones it sets, and its own
/// thresholds apply last.
pub fn entry_rates(entry: &CostEntry, prompt_tokens: u64, tier: ServiceTier) -> Rates {
    let mut rates = Rates {
        input: entry.input_cost_per_token.and_then(atto_per_token),
        output: entry.output_cost_per_token.and_then(atto_per_token),
        cache_read: entry.cache_read_input_token_cost.and_then(atto_per_token),
        cache_creation: entry
            .cache_creation_input_token_cost
            .and_then(atto_per_token),
        cache_creation_1h: entry.cache_creation_1h_cost.and_then(atto_per_token),
        reasoning: entry
            .output_cost_per_reasoning_token
            .and_then(atto_per_token),
        audio_input: entry.input_cost_per_audio_token.and_then(atto_per_token),
        audio_output: entry.output_cost_per_audio_token.and_then(atto_per_token),
        web_search: entry.web_search_cost_per_query.and_then(atto_per_token),
    };
    apply_thresholds(&mut rates, &entry.thresholds, prompt_tokens);
    let tier_prices = match tier {
        ServiceTier::Standard => None,
        ServiceTier::Priority => entry.priority.as_deref(),
        ServiceTier::Flex => entry.flex.as_deref(),
    };
    if let Some(prices) = tier_prices {
        overlay(&mut rates, prices);
        apply_thresholds(&mut rates, &prices.thresholds, prompt_tokens);
    }
    rates
}

fn overlay(rates: &mut Rates, prices: &TierPrices) {
    let pairs = [
        (&mut rates.input, prices.input),
        (&mut rates.output, prices.output),
        (&mut rates.cache_read, prices.cache_read),
        (&mut rates.cache_creation, prices.cache_creation),
        (&mut rates.cache_creation_1h, prices.cache_creation_1h),
        (&mut rates.reasoning, prices.reasoning),
        (&mut rates.audio_input, prices.audio_input),
        (&mut rates.audio_output, prices.audio_output),
    ];
    for (slot, price) in pairs {
        if let Some(price) = price {
            *slot = atto_per_token(price);
        }
    }
}

fn apply_thresholds(rates: &mut Rates, thresholds: &[ThresholdPrice], prompt_tokens: u64) {
    for tier in thresholds.iter().filter(|t| prompt_tokens > t.above_tokens) {
        let rate = atto_per_token(tier.cost_per_token);
        match tier.kind {
            RateKind::Input => rates.input = rate,
            RateKind::Output => rates.output = rate,
            RateKind::CacheRead => rates.cache_read = rate,
            RateKind::CacheCreation => rates.cache_creation = rate,
            RateKind::CacheCreation1h => rates.cache_creation_1h = rate,
        }
    }
}

/// The deployment's own rates, if it sets an input or output price.
pub fn deployment_rates(deployment: &Deployment) -> Option<Rates> {
    let p = &deployment.prices;
    if p.input.is_none() && p.output.is_none() {
        return None;
    }
    Some(Rates {
        input: p.input.and_then(atto_per_token),
        output: p.output.and_then(atto_per_token),
        cache_read: p.cache_read.and_then(atto_per_token),
        cache_creation: p.cache_creation.and_then(atto_per_token),
        cache_creation_1h: None,
        reasoning: p.reasoning.and_then(atto_per_token),
        audio_input: None,
        audio_output: None,
        web_search: None,
    })
}

/// The rates for a request that `deployment` served as upstream model `model`: the deployment's
/// own prices first; then, with a `base_model`, the cost map's entry of that name under the
/// deployment's provider, else as written (as LiteLLM looks it up; the operator chose it, so
/// any provider's entry counts); else this version's cost map entry for `provider/model`, then the bare `model`
/// (only when that entry belongs to the same provider, as LiteLLM requires), in service tier
/// `tier`.
pub fn rates_for(
    policy: &Policy,
    deployment: &Deployment,
    model: &str,
    prompt_tokens: u64,
    tier: ServiceTier,
) -> (Rates, PriceSource) {
    if let Some(rates) = deployment_rates(deployment) {
        return (rates, PriceSource::Deployment);
    }
    let map = &policy.cost_map;
    let entry = match deployment.base_model.as_deref() {
        Some(base) => map
            .get_qualified(&deployment.provider, base)
            .or_else(|| map.get(base)),
        None => map.get_qualified(&deployment.provider, model).or_else(|| {
            map.get(model)
                .filter(|e| e.provider.as_deref() == Some(deployment.provider.as_str()))
        }),
    };
    match entry {
        Some(entry) => (
            entry_rates(entry, prompt_tokens, tier),
            PriceSource::CostMap,
        ),
        None => (Rates::default(), PriceSource::Unpriced),
    }
}

/// A priced request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Cost in nano-dollars (0 when unpriced).
    pub nano_usd: u64,
    /// Where the rates came from.
    pub source: PriceSource,
}

/// Prices `usage` with `rates`. Unpriced when either base rate a non-zero token count needs is
/// unknown. Web searches are priced per call when their price is known, else not at all (see
/// [`unpriced_tool_calls`]).
pub fn cost_of(usage: &Usage, rates: &Rates, source: PriceSource) -> Cost {
    let unpriced = Cost {
        nano_usd: 0,
        source: PriceSource::Unpriced,
    };
    let needs_input = usage.prompt_tokens > 0;
    let needs_output = usage.completion_tokens > 0;
    if source == PriceSource::Unpriced
        || (needs_input && rates.input.is_none())
        || (needs_output && rates.output.is_none())
    {
        return unpriced;
    }
    let input = u128::from(rates.input.unwrap_or(0));
    let output = u128::from(rates.output.unwrap_or(0));
    let cached = usage.cached_tokens.min(usage.prompt_tokens);
    let created = usage
        .cache_creation_tokens
        .min(usage.prompt_tokens - cached);
    let created_1h = usage.cache_creation_1h_tokens.min(created);
    let created_5m = created - created_1h;
    let audio_in = usage
        .audio_input_tokens
        .min(usage.prompt_tokens - cached - created);
    let text_in = usage.prompt_tokens - cached - created - audio_in;
    let creation = rates.cache_creation.map_or(input, u128::from);
    let reasoning = usage.reasoning_tokens.min(usage.completion_tokens);
    let audio_out = usage
        .audio_output_tokens
        .min(usage.completion_tokens - reasoning);
    let text_out = usage.completion_tokens - reasoning - audio_out;
    let atto = u128::from(text_in) * input
        + u128::from(audio_in) * rates.audio_input.map_or(input, u128::from)
        + u128::from(audio_out) * rates.audio_output.map_or(output, u128::from)
        + u128::from(cached) * rates.cache_read.map_or(input, u128::from)
        + u128::from(created_5m) * creation
        + u128::from(created_1h) * rates.cache_creation_1h.map_or(creation, u128::from)
        + u128::from(text_out) * output
        + u128::from(reasoning) * rates.reasoning.map_or(output, u128::from)
        + u128::from(usage.web_search_requests) * u128::from(rates.web_search.unwrap_or(0));
    let nano = (atto + ATTO_PER_NANO / 2) / ATTO_PER_NANO;
    Cost {
        nano_usd: u64::try_from(nano).unwrap_or(u64::MAX),
        source,
    }
}

/// Server-side tool calls in `usage` that `rates` cannot price (web searches without a
/// `search_context_cost_per_query`): the request's cost is then an estimate.
pub fn unpriced_tool_calls(usage: &Usage, rates: &Rates) -> bool {
    usage.web_search_requests > 0 && rates.web_search.is_none()
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::core::config::cost_map::ThresholdPrice;

    fn usage(prompt: u64, cached: u64, created: u64, completion: u64, reasoning: u64) -> Usage {
        Usage {
            prompt_tokens: prompt,
            cached_tokens: cached,
            cache_creation_tokens: created,
            completion_tokens: completion,
            reasoning_tokens: reasoning,
            ..Usage::default()
        }
    }

    fn entry(input: Option<f64>, output: Option<f64>) -> CostEntry {
        CostEntry {
            input_cost_per_token: input,
            output_cost_per_token: output,
            ..CostEntry::default()
        }
    }

    #[test]
    fn audio_tokens_are_priced_at_the_audio_rates_or_else_the_text_rates() {
        // gpt-4o-audio-preview: text 2.5e-6 / 1e-5, audio 4e-5 / 8e-5 per token.
        let mut e = entry(Some(2.5e-06), Some(1e-05));
        e.input_cost_per_audio_token = Some(4e-05);
        e.output_cost_per_audio_token = Some(8e-05);
        let usage = Usage {
            prompt_tokens: 100,
            audio_input_tokens: 60,
            completion_tokens: 50,
            audio_output_tokens: 40,
            ..Usage::default()
        };
        let rates = entry_rates(&e, 100, ServiceTier::Standard);
        // 40 × 2.5e-6 + 60 × 4e-5 + 10 × 1e-5 + 40 × 8e-5 = 0.0001 + 0.0024 + 0.0001 + 0.0032
        assert_eq!(
            cost_of(&usage, &rates, PriceSource::CostMap).nano_usd,
            5_800_000
        );
        // No audio rates: the text rates.
        let text = entry_rates(
            &entry(Some(2.5e-06), Some(1e-05)),
            100,
            ServiceTier::Standard,
        );
        assert_eq!(
            cost_of(&usage, &text, PriceSource::CostMap).nano_usd,
            100 * 2_500 + 50 * 10_000
        );
        // Counts larger than their totals are bounded by them.
        let odd = Usage {
            audio_input_tokens: 1_000,
            audio_output_tokens: 1_000,
            ..usage
        };
        assert_eq!(
            cost_of(&odd, &rates, PriceSource::CostMap).nano_usd,
            100 * 40_000 + 50 * 80_000
        );
    }

    #[test]
    fn web_searches_are_priced_per_call_when_known() {
        let mut e = entry(Some(3e-06), Some(1.5e-05));
        e.web_search_cost_per_query = Some(0.01);
        let usage = Usage {
            prompt_tokens: 10,
            completion_tokens: 5,
            web_search_requests: 3,
            ..Usage::default()
        };
        let rates = entry_rates(&e, 10, ServiceTier::Standard);
        // 10 × 3e-6 + 5 × 1.5e-5 + 3 × $0.01
        assert_eq!(
            cost_of(&usage, &rates, PriceSource::CostMap).nano_usd,
            30_000 + 75_000 + 30_000_000
        );
        assert!(!unpriced_tool_calls(&usage, &rates));
        let unknown = entry_rates(
            &entry(Some(3e-06), Some(1.5e-05)),
            10,
            ServiceTier::Standard,
        );
        assert_eq!(
            cost_of(&usage, &unknown, PriceSource::CostMap).nano_usd,
            105_000
        );
        assert!(unpriced_tool_calls(&usage, &unknown));
        let none = Usage {
            web_search_requests: 0,
            ..usage
        };
        assert!(!unpriced_tool_calls(&none, &unknown));
    }

    #[test]
    fn prices_convert_exactly_to_atto_dollars() {
        assert_eq!(atto_per_token(1.5e-07), Some(150_000_000_000));
        assert_eq!(atto_per_token(3e-06), Some(3_000_000_000_000));
        assert_eq!(atto_per_token(0.0), Some(0));
        assert_eq!(atto_per_token(f64::NAN), None);
    }

    #[test]
    fn gpt_4o_mini_chat_costs_the_exact_sum() {
        // 12 prompt tokens at $0.15/M and 5 completion tokens at $0.60/M = $0.0000048.
        let rates = entry_rates(
            &entry(Some(1.5e-07), Some(6e-07)),
            12,
            ServiceTier::Standard,
        );
        let cost = cost_of(&usage(12, 0, 0, 5, 0), &rates, PriceSource::CostMap);
        assert_eq!(
            cost,
            Cost {
                nano_usd: 4_800,
                source: PriceSource::CostMap
            }
        );
    }

    #[test]
    fn cache_and_reasoning_rates_fall_back_to_input_and_output() {
        let rates = entry_rates(&entry(Some(1e-06), Some(2e-06)), 100, ServiceTier::Standard);
        // 100 prompt (40 cached) at 1e-6 and 10 completion (4 reasoning) at 2e-6 = 120e-6.
        let cost = cost_of(&usage(100, 40, 0, 10, 4), &rates, PriceSource::CostMap);
        assert_eq!(cost.nano_usd, 120_000);
    }

    #[test]
    fn cache_reads_and_writes_use_their_own_rates() {
        let mut e = entry(Some(3e-06), Some(1.5e-05));
        e.cache_read_input_token_cost = Some(3e-07);
        e.cache_creation_input_token_cost = Some(3.75e-06);
        let rates = entry_rates(&e, 160, ServiceTier::Standard);
        // claude-sonnet-4-6: 10 fresh + 100 cached + 50 written in, 5 out.
        let cost = cost_of(&usage(160, 100, 50, 5, 0), &rates, PriceSource::CostMap);
        assert_eq!(cost.nano_usd, 30_000 + 30_000 + 187_500 + 75_000);
    }

    #[test]
    fn explicit_zero_is_free_but_missing_price_is_unpriced() {
        let free = entry_rates(&entry(Some(0.0), Some(0.0)), 10, ServiceTier::Standard);
        assert_eq!(
            cost_of(&usage(10, 0, 0, 10, 0), &free, PriceSource::CostMap).source,
            PriceSource::CostMap
        );
        let unknown = entry_rates(&entry(None, None), 10, ServiceTier::Standard);
        let cost = cost_of(&usage(10, 0, 0, 10, 0), &unknown, PriceSource::CostMap);
        assert_eq!(
            cost,
            Cost {
                nano_usd: 0,
                source: PriceSource::Unpriced
            }
        );
        let half = entry_rates(&entry(Some(1e-06), None), 10, ServiceTier::Standard);
        assert_eq!(
            cost_of(&usage(10, 0, 0, 10, 0), &half, PriceSource::CostMap).source,
            PriceSource::Unpriced
        );
        // An embedding needs no output price.
        assert_eq!(
            cost_of(&usage(10, 0, 0, 0, 0), &half, PriceSource::CostMap).nano_usd,
            10_000
        );
    }

    #[test]
    fn crossed_threshold_prices_all_tokens_of_that_kind() {
        let mut e = entry(Some(1.25e-06), Some(1e-05));
        e.thresholds = vec![
            ThresholdPrice {
                kind: RateKind::Input,
                above_tokens: 200_000,
                cost_per_token: 2.5e-06,
            },
            ThresholdPrice {
                kind: RateKind::Output,
                above_tokens: 200_000,
                cost_per_token: 1.5e-05,
            },
        ];
        let below = cost_of(
            &usage(200_000, 0, 0, 1_000, 0),
            &entry_rates(&e, 200_000, ServiceTier::Standard),
            PriceSource::CostMap,
        );
        assert_eq!(below.nano_usd, 250_000_000 + 10_000_000);
        let above = cost_of(
            &usage(200_001, 0, 0, 1_000, 0),
            &entry_rates(&e, 200_001, ServiceTier::Standard),
            PriceSource::CostMap,
        );
        assert_eq!(above.nano_usd, 500_002_500 + 15_000_000);
    }

    #[test]
    fn lookup_order_is_deployment_then_provider_model_then_bare_model_of_that_provider() {
        let policy = crate::core::compile(
            br#"{"version":"v1",
              "cost_map":{"gpt-4o":{"litellm_provider":"openai","input_cost_per_token":2.5e-06,"output_cost_per_token":1e-05},
                          "azure/gpt-4o":{"litellm_provider":"azure","input_cost_per_token":2.75e-06,"output_cost_per_token":1.1e-05}},
              "model_list":[
                {"model_name":"a","litellm_params":{"model":"openai/gpt-4o"},"cluster":"c"},
                {"model_name":"b","litellm_params":{"model":"azure/gpt-4o"},"cluster":"c"},
                {"model_name":"c","litellm_params":{"model":"openrouter/gpt-4o"},"cluster":"c"},
                {"model_name":"d","litellm_params":{"model":"openai/gpt-4o"},"cluster":"c",
                 "model_info":{"input_cost_per_token":0,"output_cost_per_token":0}},
                {"model_name":"e","litellm_params":{"model":"azure/my-prod-deployment"},"cluster":"c",
                 "model_info":{"base_model":"azure/gpt-4o"}},
                {"model_name":"f","litellm_params":{"model":"azure/my-eu-deployment"},"cluster":"c",
                 "model_info":{"base_model":"gpt-4o"}},
                {"model_name":"g","litellm_params":{"model":"azure/my-deployment"},"cluster":"c"},
                {"model_name":"h","litellm_params":{"model":"azure/gpt-4o"},"cluster":"c",
                 "model_info":{"base_model":"no-such-model"}}]}"#,
        )
        .unwrap();
        let rates = |i: usize| {
            let d = &policy.deployments[i];
            rates_for(&policy, d, &d.upstream_model, 10, ServiceTier::Standard)
        };
        assert_eq!(rates(0).1, PriceSource::CostMap);
        assert_eq!(rates(0).0.input, Some(2_500_000_000_000));
        assert_eq!(rates(1).0.input, Some(2_750_000_000_000));
        // openrouter's gpt-4o is not OpenAI's: no price is known, so it is not free.
        assert_eq!(rates(2), (Rates::default(), PriceSource::Unpriced));
        assert_eq!(
            rates(3),
            (
                Rates {
                    input: Some(0),
                    output: Some(0),
                    ..Rates::default()
                },
                PriceSource::Deployment
            )
        );
        // base_model: a custom deployment name priced as the model it runs.
        assert_eq!(
            rates(4).0.input,
            Some(2_750_000_000_000),
            "azure/gpt-4o as written"
        );
        assert_eq!(
            rates(5).0.input,
            Some(2_750_000_000_000),
            "gpt-4o under azure first"
        );
        assert_eq!(
            rates(6).1,
            PriceSource::Unpriced,
            "without base_model, unpriced"
        );
        assert_eq!(
            rates(7).1,
            PriceSource::Unpriced,
            "an unknown base_model is not free"
        );
    }

    fn gpt_4o() -> CostEntry {
        let map: crate::core::config::cost_map::CostMap = serde_json::from_str(
            r#"{"gpt-4o":{"input_cost_per_token":2.5e-06,"output_cost_per_token":1e-05,
                "cache_read_input_token_cost":1.25e-06,"input_cost_per_token_priority":4.25e-06,
                "output_cost_per_token_priority":1.7e-05,"input_cost_per_token_flex":1.25e-06,
                "output_cost_per_token_flex":5e-06,"input_cost_per_token_above_200k_tokens":5e-06,
                "input_cost_per_token_above_200k_tokens_priority":9e-06}}"#,
        )
        .unwrap();
        map.get("gpt-4o").unwrap().clone()
    }

    #[test]
    fn each_service_tier_is_priced_at_its_own_rates() {
        let e = gpt_4o();
        let u = usage(1_000, 400, 0, 100, 0);
        let price =
            |tier| cost_of(&u, &entry_rates(&e, 1_000, tier), PriceSource::CostMap).nano_usd;
        // 600 × 2.5e-6 + 400 × 1.25e-6 + 100 × 1e-5
        assert_eq!(
            price(ServiceTier::Standard),
            1_500_000 + 500_000 + 1_000_000
        );
        // priority: 600 × 4.25e-6 + 400 × 1.25e-6 (no priority cache price: standard) + 100 × 1.7e-5
        assert_eq!(
            price(ServiceTier::Priority),
            2_550_000 + 500_000 + 1_700_000
        );
        // flex: 600 × 1.25e-6 + 400 × 1.25e-6 + 100 × 5e-6
        assert_eq!(price(ServiceTier::Flex), 750_000 + 500_000 + 500_000);
        // Above the threshold, the tier's own threshold price wins.
        let big = entry_rates(&e, 200_001, ServiceTier::Priority);
        assert_eq!(big.input, Some(9_000_000_000_000));
        assert_eq!(
            entry_rates(&e, 200_001, ServiceTier::Flex).input,
            Some(1_250_000_000_000),
            "the tier's base price replaces the standard threshold price"
        );
        assert_eq!(ServiceTier::parse("priority"), ServiceTier::Priority);
        assert_eq!(ServiceTier::parse("default"), ServiceTier::Standard);
        assert_eq!(ServiceTier::parse("flex"), ServiceTier::Flex);
    }

    #[test]
    fn one_hour_cache_writes_cost_the_one_hour_rate() {
        let mut e = entry(Some(3e-06), Some(1.5e-05));
        e.cache_creation_input_token_cost = Some(3.75e-06);
        e.cache_creation_1h_cost = Some(6e-06);
        let mut u = usage(1_010, 0, 1_000, 0, 0);
        u.cache_creation_1h_tokens = 600;
        let rates = entry_rates(&e, 1_010, ServiceTier::Standard);
        // 10 × 3e-6 + 400 × 3.75e-6 + 600 × 6e-6
        assert_eq!(
            cost_of(&u, &rates, PriceSource::CostMap).nano_usd,
            30_000 + 1_500_000 + 3_600_000
        );
        e.cache_creation_1h_cost = None;
        let rates = entry_rates(&e, 1_010, ServiceTier::Standard);
        assert_eq!(
            cost_of(&u, &rates, PriceSource::CostMap).nano_usd,
            30_000 + 3_750_000,
            "without a one-hour price, the five-minute one"
        );
    }

    #[test]
    fn rounding_is_half_up_to_the_nano_dollar() {
        let rates = entry_rates(&entry(Some(1e-10), Some(0.0)), 5, ServiceTier::Standard);
        assert_eq!(
            cost_of(&usage(5, 0, 0, 0, 0), &rates, PriceSource::CostMap).nano_usd,
            1
        );
        assert_eq!(
            cost_of(&usage(4, 0, 0, 0, 0), &rates, PriceSource::CostMap).nano_usd,
            0
        );
    }
}
