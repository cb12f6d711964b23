//! The real LiteLLM cost map (tests/data) compiles, and provider sets derive from it.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use tollgate::policy::compile;

fn policy_with_real_map() -> tollgate::policy::Policy {
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
    assert_eq!(policy.cost_map.provider_of_bare("claude-opus-5-0"), None);
    let entry = policy.cost_map.get("claude-sonnet-4-6").unwrap();
    assert_eq!(entry.input_cost_per_token, Some(3e-6));
    assert_eq!(entry.cache_read_input_token_cost, Some(3e-7));
}
