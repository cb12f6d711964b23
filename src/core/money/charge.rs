//! What a request is charged (after it ends) and what it reserves (before it is forwarded).
//!
//! Both apply `settings.unpriced_models`: with `default_price` an unpriced model is charged the
//! configured rates (source `default_price`); with `track` or `deny` it is recorded at zero cost
//! with source `unpriced` (under `deny` it only gets this far when no budget applies).
//!
//! The worst case is the most the provider can bill: the largest answer times the number of
//! answers asked for (`n`; `best_of` for completions, which bills every candidate; times the
//! number of prompts of a completions `prompt` list, each answered), in the
//! requested service tier, and for a request that continues stored state (Responses
//! `previous_response_id` or `conversation`) the model's whole context window as input, since the
//! provider bills the conversation so far, which the body does not show.

use crate::core::admission::request::{BodyFacts, Endpoint};
use crate::core::config::config::UnpricedMode;
use crate::core::config::cost_map::CostEntry;
use crate::core::config::index::{Deployment, Policy};
use crate::core::metering::usage::Usage;
use crate::core::money::cost::{
    cost_of, rates_for, unpriced_tool_calls, Cost, PriceSource, Rates, ServiceTier,
};

/// The rates a request of `deployment` (upstream model `model`) is priced with.
pub fn effective_rates(
    policy: &Policy,
    deployment: &Deployment,
    model: &str,
    prompt_tokens: u64,
    tier: ServiceTier,
) -> (Rates, PriceSource) {
    let (rates, source) = rates_for(policy, deployment, model, prompt_tokens, tier);
    if source == PriceSource::Unpriced && policy.spending.unpriced == UnpricedMode::DefaultPrice {
        return (policy.spending.default_rates, PriceSource::DefaultPrice);
    }
    (rates, source)
}

/// The cost of a finished request, in the tier the upstream reports it served the request in,
/// else the tier the request asked for.
pub fn charge(
    policy: &Policy,
    deployment: &Deployment,
    model: &str,
    usage: &Usage,
    requested_tier: ServiceTier,
) -> Cost {
    let tier = usage.service_tier.unwrap_or(requested_tier);
    let (rates, source) = effective_rates(policy, deployment, model, usage.prompt_tokens, tier);
    cost_of(usage, &rates, source)
}

/// Whether the finished request ran server-side tool calls (web searches) that have no price
/// for this deployment and model: its charge is then an estimate.
pub fn has_unpriced_tool_calls(
    policy: &Policy,
    deployment: &Deployment,
    model: &str,
    usage: &Usage,
    requested_tier: ServiceTier,
) -> bool {
    if usage.web_search_requests == 0 {
        return false;
    }
    let tier = usage.service_tier.unwrap_or(requested_tier);
    let (rates, _) = effective_rates(policy, deployment, model, usage.prompt_tokens, tier);
    unpriced_tool_calls(usage, &rates)
}

/// What a request asks for that bounds its cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    /// The API called.
    pub endpoint: Endpoint,
    /// Prompt size estimate from the body, in tokens.
    pub prompt_tokens: u64,
    /// The request's own output cap, if any.
    pub requested_cap: Option<u64>,
    /// Answers asked for (at least 1).
    pub choices: u64,
    /// The service tier asked for.
    pub tier: ServiceTier,
    /// The request continues stored state the provider bills as input.
    pub continues_conversation: bool,
}

impl Ask {
    /// What a request of `endpoint` with this body asks for (`prompt_tokens` estimated from it).
    pub fn of_request(endpoint: Endpoint, prompt_tokens: u64, facts: &BodyFacts<'_>) -> Ask {
        Ask {
            endpoint,
            prompt_tokens,
            requested_cap: facts.max_output_tokens,
            choices: Ask::choices(endpoint, facts.n, facts.best_of)
                .saturating_mul(Ask::prompts(endpoint, facts.prompts)),
            tier: facts
                .service_tier
                .as_deref()
                .map_or(ServiceTier::Standard, ServiceTier::parse),
            continues_conversation: endpoint == Endpoint::Responses && facts.continues_conversation,
        }
    }

    /// The answers a request of `endpoint` is billed for: chat's `n`; for text completions the
    /// larger of `n` and `best_of` (every candidate is billed). At least 1; other APIs have none.
    pub fn choices(endpoint: Endpoint, n: Option<u64>, best_of: Option<u64>) -> u64 {
        let asked = match endpoint {
            Endpoint::ChatCompletions => n,
            Endpoint::Completions => n.max(best_of),
            _ => None,
        };
        asked.unwrap_or(1).max(1)
    }

    /// The prompts a request of `endpoint` is answered for: a text completion's list of
    /// prompts each gets its own answers (at least 1; other APIs take one prompt).
    pub fn prompts(endpoint: Endpoint, prompts: Option<u64>) -> u64 {
        match endpoint {
            Endpoint::Completions => prompts.unwrap_or(1).max(1),
            _ => 1,
        }
    }

    /// A plain request: one answer, standard tier, no stored state.
    pub fn new(endpoint: Endpoint, prompt_tokens: u64, requested_cap: Option<u64>) -> Ask {
        Ask {
            endpoint,
            prompt_tokens,
            requested_cap,
            choices: 1,
            tier: ServiceTier::Standard,
            continues_conversation: false,
        }
    }
}

/// The input a request may be billed for: the prompt estimate, or for a follow-up on stored
/// state the model's context window (the provider bills the stored conversation as input). Also
/// what a stream cut before its usage is charged as input.
pub fn worst_case_input(policy: &Policy, deployment: &Deployment, model: &str, ask: &Ask) -> u64 {
    if ask.continues_conversation {
        let window = cost_entry(policy, deployment, model)
            .and_then(|e| e.max_input_tokens)
            .unwrap_or(policy.spending.default_max_input_tokens);
        ask.prompt_tokens.max(window)
    } else {
        ask.prompt_tokens
    }
}

/// The most a request can cost: its input (the prompt estimate, or for a follow-up on stored
/// state the model's `max_input_tokens`, else `settings.default_max_input_tokens`) plus the
/// largest answer it may get (the request's own cap, bounded by the model's
/// `max_output_tokens`, else the model's, else `settings.default_max_output_tokens`) times the
/// answers asked for, priced at the largest of the output, reasoning and audio-output rates, in the requested
/// tier. Embeddings produce no output. Zero when unpriced.
pub fn worst_case(policy: &Policy, deployment: &Deployment, model: &str, ask: &Ask) -> Cost {
    let (prompt_tokens, completion_tokens) = worst_case_tokens(policy, deployment, model, ask);
    let (mut rates, source) = effective_rates(policy, deployment, model, prompt_tokens, ask.tier);
    // The answer may be all reasoning, or all audio: reserve at the dearest output rate.
    if let Some(output) = rates.output {
        let dearest = [rates.reasoning, rates.audio_output]
            .into_iter()
            .flatten()
            .fold(output, u64::max);
        rates.output = Some(dearest);
    }
    let usage = Usage {
        prompt_tokens,
        completion_tokens,
        ..Usage::default()
    };
    let mut cost = cost_of(&usage, &rates, source);
    if cost.source == PriceSource::Unpriced {
        cost.nano_usd = 0;
    }
    cost
}

/// The most tokens a request can use, `(input, output)`: what [`worst_case`] prices, and what
/// token rate limits reserve.
pub fn worst_case_tokens(
    policy: &Policy,
    deployment: &Deployment,
    model: &str,
    ask: &Ask,
) -> (u64, u64) {
    let entry = cost_entry(policy, deployment, model);
    let prompt_tokens = worst_case_input(policy, deployment, model, ask);
    let model_cap = deployment
        .prices
        .max_output_tokens
        .or_else(|| entry.and_then(|e| e.max_output_tokens));
    let cap = match (ask.requested_cap, model_cap) {
        (Some(asked), Some(model)) => asked.min(model),
        (Some(asked), None) => asked,
        (None, Some(model)) => model,
        (None, None) => policy.spending.default_max_output_tokens,
    };
    let completion_tokens = if ask.endpoint == Endpoint::Embeddings {
        0
    } else {
        cap.saturating_mul(ask.choices.max(1))
    };
    (prompt_tokens, completion_tokens)
}

/// The cost-map entry whose limits (`max_output_tokens`, `max_input_tokens`) apply: the
/// deployment's `base_model` if it names one, else the upstream model.
fn cost_entry<'p>(
    policy: &'p Policy,
    deployment: &Deployment,
    model: &str,
) -> Option<&'p CostEntry> {
    let model = deployment.base_model.as_deref().unwrap_or(model);
    policy
        .cost_map
        .get_qualified(&deployment.provider, model)
        .or_else(|| policy.cost_map.get(model))
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::core::compile;

    fn policy(unpriced: &str) -> Policy {
        let json = format!(
            r#"{{"version":"v1","settings":{{"unpriced_models":{unpriced},"default_max_output_tokens":100}},
              "cost_map":{{"gpt-4o":{{"litellm_provider":"openai","input_cost_per_token":2.5e-06,
                                      "output_cost_per_token":1e-05,"max_output_tokens":16384}}}},
              "model_list":[
                {{"model_name":"gpt-4o","litellm_params":{{"model":"openai/gpt-4o"}},"cluster":"o"}},
                {{"model_name":"mystery","litellm_params":{{"model":"openai/mystery"}},"cluster":"o"}}]}}"#
        );
        compile(json.as_bytes()).unwrap()
    }

    #[test]
    fn worst_case_uses_the_smaller_of_request_and_model_caps() {
        let p = policy(r#"{"mode":"deny"}"#);
        let d = &p.deployments[0];
        let chat = |prompt, cap| Ask::new(Endpoint::ChatCompletions, prompt, cap);
        let capped = worst_case(&p, d, "gpt-4o", &chat(1000, Some(50)));
        // 1000 × 2.5e-6 + 50 × 1e-5 = 0.0025 + 0.0005 USD
        assert_eq!(capped.nano_usd, 3_000_000);
        let model_cap = worst_case(&p, d, "gpt-4o", &chat(0, Some(1 << 40)));
        assert_eq!(model_cap.nano_usd, 16384 * 10_000);
        let embeddings = worst_case(&p, d, "gpt-4o", &Ask::new(Endpoint::Embeddings, 1000, None));
        assert_eq!(embeddings.nano_usd, 2_500_000);
    }

    fn ask(endpoint: Endpoint, cap: Option<u64>) -> Ask {
        Ask::new(endpoint, 1000, cap)
    }

    #[test]
    fn n_and_best_of_multiply_the_answer_and_saturate() {
        let p = policy(r#"{"mode":"deny"}"#);
        let d = &p.deployments[0];
        assert_eq!(Ask::choices(Endpoint::ChatCompletions, Some(4), Some(9)), 4);
        assert_eq!(Ask::choices(Endpoint::Completions, Some(2), Some(5)), 5);
        assert_eq!(Ask::choices(Endpoint::Completions, None, None), 1);
        assert_eq!(Ask::choices(Endpoint::ChatCompletions, Some(0), None), 1);
        assert_eq!(
            Ask::choices(Endpoint::Messages, Some(8), None),
            1,
            "no n on Messages"
        );
        let four = Ask {
            choices: 4,
            ..ask(Endpoint::ChatCompletions, Some(50))
        };
        // 1000 × 2.5e-6 + 4 × 50 × 1e-5
        assert_eq!(
            worst_case(&p, d, "gpt-4o", &four).nano_usd,
            2_500_000 + 2_000_000
        );
        let listed = |body: &[u8]| {
            let facts = crate::core::admission::request::read_body(body).unwrap();
            Ask::of_request(Endpoint::Completions, 10, &facts).choices
        };
        assert_eq!(listed(br#"{"model":"m","prompt":["a","b","c"],"n":2}"#), 6);
        assert_eq!(
            listed(br#"{"model":"m","prompt":[[1],[2]],"best_of":3}"#),
            6
        );
        assert_eq!(listed(br#"{"model":"m","prompt":[1,2,3]}"#), 1);
        assert_eq!(
            listed(br#"{"model":"m","prompt":["a","b"],"n":1e300}"#),
            u64::MAX
        );
        let chat =
            crate::core::admission::request::read_body(br#"{"model":"m","prompt":["a","b"]}"#)
                .unwrap();
        assert_eq!(
            Ask::of_request(Endpoint::ChatCompletions, 1, &chat).choices,
            1
        );
        let absurd = Ask {
            choices: u64::MAX,
            ..ask(Endpoint::ChatCompletions, None)
        };
        assert_eq!(worst_case(&p, d, "gpt-4o", &absurd).nano_usd, u64::MAX);
    }

    #[test]
    fn a_follow_up_reserves_the_models_context_window_as_input() {
        let json = r#"{"version":"v1","settings":{"default_max_input_tokens":50000},
          "cost_map":{"gpt-4o":{"litellm_provider":"openai","input_cost_per_token":2.5e-06,
                                "output_cost_per_token":1e-05,"max_input_tokens":128000}},
          "model_list":[
            {"model_name":"gpt-4o","litellm_params":{"model":"openai/gpt-4o"},"cluster":"o"},
            {"model_name":"own","litellm_params":{"model":"openai/own"},"cluster":"o",
             "model_info":{"input_cost_per_token":1e-06,"output_cost_per_token":0}}]}"#;
        let p = compile(json.as_bytes()).unwrap();
        let follow_up = Ask {
            continues_conversation: true,
            ..ask(Endpoint::Responses, Some(10))
        };
        let cost =
            |i: usize, model, ask: &Ask| worst_case(&p, &p.deployments[i], model, ask).nano_usd;
        assert_eq!(cost(0, "gpt-4o", &follow_up), 320_000_000 + 100_000);
        assert_eq!(
            cost(0, "gpt-4o", &ask(Endpoint::Responses, Some(10))),
            2_500_000 + 100_000
        );
        // No max_input_tokens known: settings.default_max_input_tokens.
        assert_eq!(cost(1, "own", &follow_up), 50_000_000);
    }

    #[test]
    fn reservations_use_the_requested_tier_and_charges_the_served_one() {
        let json = r#"{"version":"v1",
          "cost_map":{"gpt-4o":{"litellm_provider":"openai","input_cost_per_token":2.5e-06,
             "output_cost_per_token":1e-05,"input_cost_per_token_priority":4.25e-06,
             "output_cost_per_token_priority":1.7e-05,"output_cost_per_reasoning_token":2e-05}},
          "model_list":[{"model_name":"gpt-4o","litellm_params":{"model":"openai/gpt-4o"},"cluster":"o"}]}"#;
        let p = compile(json.as_bytes()).unwrap();
        let d = &p.deployments[0];
        let priority = Ask {
            tier: ServiceTier::Priority,
            ..ask(Endpoint::ChatCompletions, Some(100))
        };
        // 1000 × 4.25e-6 + 100 × max(1.7e-5, 2e-5 reasoning)
        assert_eq!(
            worst_case(&p, d, "gpt-4o", &priority).nano_usd,
            4_250_000 + 2_000_000
        );
        let mut usage = Usage {
            prompt_tokens: 12,
            completion_tokens: 5,
            ..Usage::default()
        };
        assert_eq!(
            charge(&p, d, "gpt-4o", &usage, ServiceTier::Priority).nano_usd,
            136_000
        );
        usage.service_tier = Some(ServiceTier::Standard);
        assert_eq!(
            charge(&p, d, "gpt-4o", &usage, ServiceTier::Priority).nano_usd,
            80_000,
            "the tier the answer names wins"
        );
        usage.service_tier = Some(ServiceTier::Priority);
        assert_eq!(
            charge(&p, d, "gpt-4o", &usage, ServiceTier::Standard).nano_usd,
            136_000
        );
    }

    #[test]
    fn an_audio_model_reserves_its_answer_at_the_audio_output_rate() {
        let json = r#"{"version":"v1",
          "cost_map":{"a":{"litellm_provider":"openai","input_cost_per_token":2.5e-06,
             "output_cost_per_token":1e-05,"input_cost_per_audio_token":4e-05,
             "output_cost_per_audio_token":8e-05}},
          "model_list":[{"model_name":"a","litellm_params":{"model":"openai/a"},"cluster":"o"}]}"#;
        let p = compile(json.as_bytes()).unwrap();
        let worst = worst_case(
            &p,
            &p.deployments[0],
            "a",
            &ask(Endpoint::ChatCompletions, Some(100)),
        );
        // 1000 × 2.5e-6 + 100 × 8e-5
        assert_eq!(worst.nano_usd, 2_500_000 + 8_000_000);
    }

    #[test]
    fn unpriced_models_follow_the_setting() {
        let usage = Usage {
            prompt_tokens: 10,
            completion_tokens: 10,
            ..Usage::default()
        };
        let p = policy(r#"{"mode":"track"}"#);
        let d = &p.deployments[1];
        let cost = charge(&p, d, "mystery", &usage, ServiceTier::Standard);
        assert_eq!(cost.source, PriceSource::Unpriced);
        assert_eq!(cost.nano_usd, 0);
        assert_eq!(
            worst_case(
                &p,
                d,
                "mystery",
                &Ask::new(Endpoint::ChatCompletions, 10, None)
            )
            .nano_usd,
            0
        );

        let p = policy(
            r#"{"mode":"default_price","input_cost_per_token":1e-06,"output_cost_per_token":2e-06}"#,
        );
        let d = &p.deployments[1];
        let cost = charge(&p, d, "mystery", &usage, ServiceTier::Standard);
        assert_eq!(cost.source, PriceSource::DefaultPrice);
        assert_eq!(cost.nano_usd, 30_000);
        let reserve = worst_case(
            &p,
            d,
            "mystery",
            &Ask::new(Endpoint::ChatCompletions, 10, None),
        );
        assert_eq!(
            reserve.nano_usd,
            10_000 + 100 * 2_000,
            "default cap of 100 tokens"
        );
    }

    #[test]
    fn default_price_without_prices_is_refused() {
        let err =
            compile(br#"{"version":"v1","settings":{"unpriced_models":{"mode":"default_price"}}}"#)
                .unwrap_err();
        assert_eq!(err.0[0].path, "settings.unpriced_models.mode");
        let err = compile(br#"{"version":"v1","settings":{"unpriced_models":{"mode":"free"}}}"#)
            .unwrap_err();
        assert!(
            err.0[0].path.starts_with("settings.unpriced_models"),
            "{err}"
        );
    }
}
