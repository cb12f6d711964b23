//! What a request is charged (after it ends) and what it reserves (before it is forwarded).
//!
//! Both apply `settings.unpriced_models`: with `default_price` an unpriced model is charged the
//! configured rates (source `default_price`); with `track` or `deny` it is recorded at zero cost
//! with source `unpriced` (under `deny` it only gets this far when no budget applies).

use crate::policy::config::UnpricedMode;
use crate::policy::cost::{cost_of, rates_for, Cost, PriceSource, Rates};
use crate::policy::cost_map::CostEntry;
use crate::policy::index::{Deployment, Policy};
use crate::policy::request::Endpoint;
use crate::policy::usage::Usage;

/// The rates a request of `deployment` (upstream model `model`) is priced with.
pub fn effective_rates(
    policy: &Policy,
    deployment: &Deployment,
    model: &str,
    prompt_tokens: u64,
) -> (Rates, PriceSource) {
    let (rates, source) = rates_for(policy, deployment, model, prompt_tokens);
    if source == PriceSource::Unpriced && policy.spending.unpriced == UnpricedMode::DefaultPrice {
        return (policy.spending.default_rates, PriceSource::DefaultPrice);
    }
    (rates, source)
}

/// The cost of a finished request.
pub fn charge(policy: &Policy, deployment: &Deployment, model: &str, usage: &Usage) -> Cost {
    let (rates, source) = effective_rates(policy, deployment, model, usage.prompt_tokens);
    cost_of(usage, &rates, source)
}

/// The most a request can cost: its prompt estimate plus the largest answer it may get (the
/// request's own cap, bounded by the model's `max_output_tokens`, else the model's, else
/// `settings.default_max_output_tokens`). Embeddings produce no output. Zero when unpriced.
pub fn worst_case(
    policy: &Policy,
    deployment: &Deployment,
    model: &str,
    endpoint: Endpoint,
    prompt_tokens: u64,
    requested_cap: Option<u64>,
) -> Cost {
    let (rates, source) = effective_rates(policy, deployment, model, prompt_tokens);
    let model_cap = deployment
        .prices
        .max_output_tokens
        .or_else(|| cost_entry(policy, deployment, model).and_then(|e| e.max_output_tokens));
    let cap = match (requested_cap, model_cap) {
        (Some(asked), Some(model)) => asked.min(model),
        (Some(asked), None) => asked,
        (None, Some(model)) => model,
        (None, None) => policy.spending.default_max_output_tokens,
    };
    let completion_tokens = if endpoint == Endpoint::Embeddings {
        0
    } else {
        cap
    };
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

fn cost_entry<'p>(
    policy: &'p Policy,
    deployment: &Deployment,
    model: &str,
) -> Option<&'p CostEntry> {
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
    use crate::policy::compile;

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
        let capped = worst_case(&p, d, "gpt-4o", Endpoint::ChatCompletions, 1000, Some(50));
        // 1000 × 2.5e-6 + 50 × 1e-5 = 0.0025 + 0.0005 USD
        assert_eq!(capped.nano_usd, 3_000_000);
        let model_cap = worst_case(&p, d, "gpt-4o", Endpoint::ChatCompletions, 0, Some(1 << 40));
        assert_eq!(model_cap.nano_usd, 16384 * 10_000);
        let embeddings = worst_case(&p, d, "gpt-4o", Endpoint::Embeddings, 1000, None);
        assert_eq!(embeddings.nano_usd, 2_500_000);
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
        let cost = charge(&p, d, "mystery", &usage);
        assert_eq!(cost.source, PriceSource::Unpriced);
        assert_eq!(cost.nano_usd, 0);
        assert_eq!(
            worst_case(&p, d, "mystery", Endpoint::ChatCompletions, 10, None).nano_usd,
            0
        );

        let p = policy(
            r#"{"mode":"default_price","input_cost_per_token":1e-06,"output_cost_per_token":2e-06}"#,
        );
        let d = &p.deployments[1];
        let cost = charge(&p, d, "mystery", &usage);
        assert_eq!(cost.source, PriceSource::DefaultPrice);
        assert_eq!(cost.nano_usd, 30_000);
        let reserve = worst_case(&p, d, "mystery", Endpoint::ChatCompletions, 10, None);
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
