//! The real LiteLLM cost map (tests/data) compiles, and provider sets derive from it.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use tollgate::core::compile;

fn policy_with_real_map() -> tollgate::core::Policy {
    let map = std::fs::read_to_string("tests/data/model_prices_and_context_window.json").unwrap();
    let doc = format!(r#"{{"version":"real","cost_map":{map}}}"#);
    compile(doc.as_bytes()).unwrap()
}

#[test]
fn real_litellm_cost_map_compiles_with_every_model() {
    let policy = policy_with_real_map();
    assert_eq!(policy.cost_map.len(), 4551);
    // 152 raw provider names, less 15 families folded into vertex_ai and fireworks_ai.
    assert_eq!(policy.summary().providers, 137);
}

#[test]
fn provider_sets_come_from_the_same_map() {
    let policy = policy_with_real_map();
    assert_eq!(
        policy.cost_map.provider_of_bare("claude-sonnet-4-6"),
        Some("anthropic")
    );
    assert_eq!(policy.cost_map.provider_of_bare("gpt-4o"), Some("openai"));
    assert_eq!(
        policy.cost_map.provider_of_bare("gemini-2.5-pro"),
        Some("vertex_ai")
    );
    // Not in the map: the map's own fallback_generalizations rules place it, as LiteLLM does.
    assert_eq!(
        policy.cost_map.provider_of_bare("claude-opus-5-0"),
        Some("anthropic")
    );
    assert_eq!(
        policy
            .cost_map
            .provider_of_bare("us.anthropic.claude-opus-5-0"),
        Some("bedrock")
    );
    assert_eq!(
        policy.cost_map.provider_of_bare("claude-opus-5-preview"),
        None
    );
    assert!(
        policy.cost_map.get("claude-opus-5-0").is_none(),
        "so it stays unpriced"
    );
    let entry = policy.cost_map.get("claude-sonnet-4-6").unwrap();
    assert_eq!(entry.input_cost_per_token, Some(3e-6));
    assert_eq!(entry.cache_read_input_token_cost, Some(3e-7));
}

#[test]
fn service_tier_and_one_hour_cache_prices_of_the_real_map_are_kept() {
    let policy = policy_with_real_map();
    let entries: Vec<_> = policy.cost_map.iter().map(|(_, e)| e).collect();
    let priority = entries
        .iter()
        .filter(|e| e.priority.as_ref().is_some_and(|t| t.input.is_some()))
        .count();
    let flex = entries
        .iter()
        .filter(|e| e.flex.as_ref().is_some_and(|t| t.input.is_some()))
        .count();
    let one_hour = entries
        .iter()
        .filter(|e| e.cache_creation_1h_cost.is_some())
        .count();
    // The counts of `input_cost_per_token_priority`, `input_cost_per_token_flex` and
    // `cache_creation_input_token_cost_above_1hr` in the file.
    assert_eq!((priority, flex, one_hour), (387, 260, 231));
    let gpt = policy.cost_map.get("gpt-4o").unwrap();
    let tier = gpt.priority.as_deref().unwrap();
    assert_eq!((tier.input, tier.output), (Some(4.25e-6), Some(1.7e-5)));
    let sonnet = policy.cost_map.get("claude-sonnet-4-6").unwrap();
    assert_eq!(sonnet.cache_creation_1h_cost, Some(6e-6));
}
