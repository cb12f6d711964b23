//! Unit tests of the path forms through a decision: Azure's deployment path (the path names the
//! model; the body's `model` cannot walk around it) and Anthropic's count_tokens (checked and
//! routed like messages, never reserved or metered).

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::core::compile;
use crate::core::config::key_hash::{digest, to_hex};
use crate::core::money::reservation::{LedgerStore, MemoryLedgers};
use hashbrown::HashMap;

/// `sk-k` may use alias `fast` (→ gpt-4o) and `anthropic/*`, not `gpt-4o` by name nor
/// `gpt-4o-mini`; it has a $0.01 budget.
fn policy() -> Policy {
    let json = format!(
        r#"{{"version":"v1",
          "cost_map":{{"claude-x":{{"litellm_provider":"anthropic","input_cost_per_token":1e-06,"output_cost_per_token":1e-06}},
                       "gpt-4o":{{"litellm_provider":"openai","input_cost_per_token":1e-06,"output_cost_per_token":1e-06}}}},
          "model_list":[
            {{"model_name":"anthropic/*","litellm_params":{{"model":"anthropic/*","api_key_env":"ANTHROPIC_KEY"}},"cluster":"anthropic"}},
            {{"model_name":"gpt-4o","litellm_params":{{"model":"openai/gpt-4o","api_key_env":"OPENAI_KEY"}},"cluster":"openai"}},
            {{"model_name":"gpt-4o-mini","litellm_params":{{"model":"openai/gpt-4o-mini","api_key_env":"OPENAI_KEY"}},"cluster":"openai"}}],
          "model_group_alias":{{"fast":"gpt-4o"}},
          "keys":[{{"key_hash":"{}","key_alias":"k","models":["fast","anthropic/*"],"max_budget":0.01}}]}}"#,
        to_hex(&digest("sk-k"))
    );
    compile(json.as_bytes()).unwrap()
}

fn head<'a>(method: &'a str, path: &'a str) -> RequestHead<'a> {
    RequestHead {
        method,
        path,
        authorization: Some("Bearer sk-k"),
        ..RequestHead::default()
    }
}

fn decide<'p>(
    p: &'p Policy,
    path: &str,
    body: &[u8],
    ledgers: &MemoryLedgers,
) -> Result<Admission<'p>, Denial> {
    let ticket = match decide_head(Some(p), &head("POST", path), 0) {
        HeadOutcome::ReadBody(ticket) => ticket,
        HeadOutcome::Deny(denial) => return Err(denial),
        other => panic!("{other:?}"),
    };
    let credentials: HashMap<String, String> = [("ANTHROPIC_KEY", "a"), ("OPENAI_KEY", "o")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let around = Surroundings {
        credentials: &credentials,
        ledgers,
        random: 0,
        now: 1000,
    };
    decide_body(p, &ticket, body, &around).unwrap().outcome
}

fn sent_model(admission: &Admission) -> serde_json::Value {
    let body = admission
        .new_body
        .as_deref()
        .expect("the body is rewritten");
    serde_json::from_slice::<serde_json::Value>(body).unwrap()["model"].clone()
}

#[test]
fn the_azure_path_names_the_model_and_the_body_model_cannot_walk_around_it() {
    let p = policy();
    let ledgers = MemoryLedgers::default();
    // The path names a model the key may not use; the body names an allowed one: refused.
    let path = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21";
    for body in [
        &br#"{"model":"fast","messages":[]}"#[..],
        br#"{"messages":[]}"#,
    ] {
        assert_eq!(
            decide(&p, path, body, &ledgers).unwrap_err(),
            Denial::ModelNotAllowed {
                model: "gpt-4o".into()
            }
        );
    }
    let path = "/openai/deployments/gpt-4o-mini/embeddings";
    assert!(decide(&p, path, br#"{"model":"fast","input":"x"}"#, &ledgers).is_err());
    // The path names an allowed alias; whatever the body says, the upstream gets what was checked.
    let path = "/openai/deployments/fast/chat/completions?api-version=2024-10-21&x=1";
    for body in [
        &br#"{"model":"gpt-4o-mini","messages":[]}"#[..],
        br#"{"messages":[]}"#,
        br#"{"model":null,"messages":[]}"#,
    ] {
        let admission = decide(&p, path, body, &ledgers).unwrap();
        assert_eq!(admission.upstream_model, "gpt-4o");
        assert_eq!(sent_model(&admission), "gpt-4o");
        assert_eq!(admission.deployment.cluster, "openai");
        assert_eq!(
            admission.upstream_path.as_deref(),
            Some("/v1/chat/completions?x=1")
        );
        assert!(admission.metering.metered);
        assert!(admission.reservation.amount > 0, "budgets as usual");
        crate::core::money::reservation::release(&ledgers, &admission.reservation, 1000);
    }
    let unknown = "/openai/deployments/nope/completions";
    assert_eq!(
        decide(&p, unknown, br#"{"prompt":"x"}"#, &ledgers).unwrap_err(),
        Denial::ModelNotAllowed {
            model: "nope".into()
        }
    );
    // The plain form is forwarded on the client's path.
    let plain = decide(&p, "/v1/chat/completions", br#"{"model":"fast"}"#, &ledgers).unwrap();
    assert_eq!(plain.upstream_path, None);
}

#[test]
fn a_hostile_deployment_name_is_a_clear_400() {
    let p = policy();
    for path in [
        "/openai/deployments//chat/completions",
        "/openai/deployments/..%2F..%2Fv1/chat/completions",
        "/openai/deployments/fast%2F..%2Fx/chat/completions",
        "/openai/deployments/a/../fast/chat/completions",
    ] {
        let HeadOutcome::Deny(denial) = decide_head(Some(&p), &head("POST", path), 0) else {
            panic!("{path}");
        };
        assert_eq!(
            (denial.status(), denial.code(), denial.param()),
            (400, "invalid_model", Some("model")),
            "{path}"
        );
        let body: serde_json::Value = serde_json::from_str(&denial.body()).unwrap();
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("deployment name"));
    }
    let huge = format!(
        "/openai/deployments/{}/chat/completions",
        "x".repeat(60_000)
    );
    assert!(matches!(
        decide_head(Some(&p), &head("POST", &huge), 0),
        HeadOutcome::Deny(Denial::InvalidRequest {
            code: "invalid_model",
            ..
        })
    ));
    // Authentication still comes first.
    let stranger = RequestHead {
        authorization: Some("Bearer sk-nobody"),
        ..head("POST", "/openai/deployments//chat/completions")
    };
    assert_eq!(
        decide_head(Some(&p), &stranger, 0),
        HeadOutcome::Deny(Denial::UnknownKey)
    );
}

#[test]
fn count_tokens_is_checked_and_routed_like_messages_but_holds_nothing() {
    let p = policy();
    let ledgers = MemoryLedgers::default();
    let path = "/v1/messages/count_tokens";
    let body = br#"{"model":"anthropic/claude-x","messages":[{"role":"user","content":"hi"}]}"#;
    let admission = decide(&p, path, body, &ledgers).unwrap();
    assert_eq!(admission.deployment.cluster, "anthropic");
    assert_eq!(admission.upstream_model, "claude-x");
    assert_eq!(sent_model(&admission), "claude-x");
    assert_eq!(admission.credential, Some(("x-api-key", "a".to_string())));
    assert!(!admission.metering.metered);
    assert_eq!(admission.metering.endpoint, Endpoint::CountTokens);
    assert!(admission.reservation.lines.is_empty());
    assert!(ledgers.0.borrow().is_empty(), "nothing held");
    assert_eq!(admission.upstream_path, None);
    // Access as for messages.
    let refused = decide(
        &p,
        path,
        br#"{"model":"gpt-4o-mini","messages":[]}"#,
        &ledgers,
    );
    assert_eq!(refused.unwrap_err().code(), "model_not_allowed");
    // A used-up budget refuses it, as LiteLLM's budget checks do on every model route.
    let key = &p.keys[0];
    let lines = crate::core::money::budget::applicable_budgets(&p, (key, None), None, None, 1000);
    ledgers
        .update(lines[0].ledger_key(), &mut |l| {
            l.record(10_000_000);
            true
        })
        .unwrap();
    let refused = decide(&p, path, body, &ledgers).unwrap_err();
    assert_eq!(refused.code(), "budget_exceeded");
    assert_eq!(
        decide_head(Some(&p), &head("GET", path), 0),
        HeadOutcome::Deny(Denial::MethodNotAllowed { allowed: "POST" })
    );
}
