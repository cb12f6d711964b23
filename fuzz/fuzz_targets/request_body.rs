//! Any bytes as a request body through the whole body step (read, aliases, access, affinity
//! marks, routing, budgets, edits) of every endpoint: an answer, never a panic.
#![no_main]

use std::sync::OnceLock;

use hashbrown::HashMap;
use tollgate::core::admission::decide::{decide_body, decide_head, HeadOutcome, Surroundings};
use tollgate::core::money::reservation::MemoryLedgers;
use tollgate::core::{compile, Policy, RequestHead};

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let key = tollgate::core::config::key_hash::to_hex(&tollgate::core::config::key_hash::digest("sk-fuzz"));
        let json = format!(
            r#"{{"version":"fuzz","settings":{{"max_request_body_bytes":65536}},
              "cost_map":{{"gpt-4o":{{"litellm_provider":"openai","input_cost_per_token":2.5e-06,"output_cost_per_token":1e-05}}}},
              "model_list":[
                {{"model_name":"gpt-4o","litellm_params":{{"model":"openai/gpt-4o","api_key_env":"A"}},"cluster":"a","model_info":{{"id":"a"}}}},
                {{"model_name":"gpt-4o","litellm_params":{{"model":"openai/gpt-4o","api_key_env":"B"}},"cluster":"b","model_info":{{"id":"b"}}}},
                {{"model_name":"*","litellm_params":{{"model":"openai/*"}},"cluster":"c"}}],
              "model_group_alias":{{"fast":"gpt-4o"}},
              "teams":[{{"team_id":"t","max_budget":1}}],
              "keys":[{{"key_hash":"{key}","team_id":"t","max_budget":0.5,"budget_duration":"1d"}}],
              "end_users":[{{"user_id":"u","max_budget":0.1}}]}}"#
        );
        match compile(json.as_bytes()) {
            Ok(policy) => policy,
            Err(errors) => panic!("fuzz policy does not compile: {errors}"),
        }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let policy = policy();
    let credentials: HashMap<String, String> =
        [("A".to_string(), "a".to_string()), ("B".to_string(), "b".to_string())].into_iter().collect();
    let ledgers = MemoryLedgers::default();
    for path in ["/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1/embeddings"] {
        let head = RequestHead {
            method: "POST",
            path,
            authorization: Some("Bearer sk-fuzz"),
            ..RequestHead::default()
        };
        let HeadOutcome::ReadBody(ticket) = decide_head(Some(policy), &head, 1_800_000_000) else {
            panic!("the fuzz key is refused");
        };
        let around = Surroundings { credentials: &credentials, ledgers: &ledgers, random: 7, now: 1_800_000_000 };
        let _ = decide_body(policy, &ticket, data, &around);
    }
});
