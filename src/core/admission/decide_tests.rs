//! Unit tests of the request path: headers, then body, through every step of a decision.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::core::compile;
use crate::core::config::key_hash::{digest, to_hex};
use crate::core::money::reservation::MemoryLedgers;
use hashbrown::HashMap;

fn policy() -> Policy {
    let json = format!(
        r#"{{"version":"v1","settings":{{"max_request_body_bytes":100}},
          "cost_map":{{"claude-x":{{"litellm_provider":"anthropic"}}}},
          "model_list":[
            {{"model_name":"anthropic/*","litellm_params":{{"model":"anthropic/*","api_key_env":"ANTHROPIC_KEY"}},"cluster":"anthropic"}},
            {{"model_name":"gpt-4o","litellm_params":{{"model":"openai/gpt-4o","api_key_env":"OPENAI_KEY"}},"cluster":"openai"}}],
          "model_group_alias":{{"fast":"gpt-4o"}},
          "keys":[{{"key_hash":"{}","key_alias":"k","models":["fast","anthropic/*"]}}]}}"#,
        to_hex(&digest("sk-k"))
    );
    compile(json.as_bytes()).unwrap()
}

fn head<'a>(method: &'a str, path: &'a str, auth: &'a str) -> RequestHead<'a> {
    RequestHead {
        method,
        path,
        authorization: Some(auth),
        ..RequestHead::default()
    }
}

fn creds() -> HashMap<String, String> {
    [("ANTHROPIC_KEY", "a-secret"), ("OPENAI_KEY", "o-secret")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn decide<'p>(
    p: &'p Policy,
    body: &[u8],
    credentials: &HashMap<String, String>,
    random: u64,
) -> Option<Verdict<'p>> {
    let ledgers = MemoryLedgers::default();
    let around = Surroundings {
        credentials,
        ledgers: &ledgers,
        random,
        now: 0,
    };
    decide_body(p, &ticket(p), body, &around)
}

fn ticket(p: &Policy) -> BodyTicket {
    match decide_head(
        Some(p),
        &head("POST", "/v1/chat/completions", "Bearer sk-k"),
        0,
    ) {
        HeadOutcome::ReadBody(ticket) => ticket,
        other => panic!("{other:?}"),
    }
}

#[test]
fn without_a_policy_everything_is_refused_with_503() {
    let outcome = decide_head(
        None,
        &head("POST", "/v1/chat/completions", "Bearer sk-k"),
        0,
    );
    assert_eq!(outcome, HeadOutcome::Deny(Denial::PolicyUnavailable));
}

#[test]
fn authentication_runs_before_endpoint_checks() {
    let p = policy();
    let outcome = decide_head(Some(&p), &head("POST", "/v1/files", "Bearer sk-nobody"), 0);
    assert_eq!(outcome, HeadOutcome::Deny(Denial::UnknownKey));
    let outcome = decide_head(Some(&p), &head("POST", "/v1/files", "Bearer sk-k"), 0);
    assert_eq!(outcome, HeadOutcome::Deny(Denial::UnknownEndpoint));
    let outcome = decide_head(Some(&p), &head("GET", "/v1/messages", "Bearer sk-k"), 0);
    assert_eq!(
        outcome,
        HeadOutcome::Deny(Denial::MethodNotAllowed { allowed: "POST" })
    );
}

#[test]
fn a_compressed_request_body_is_refused_with_415_after_authentication() {
    let p = policy();
    let mut h = head("POST", "/v1/chat/completions", "Bearer sk-k");
    h.content_encoding = Some("gzip");
    let outcome = decide_head(Some(&p), &h, 0);
    let HeadOutcome::Deny(denial) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        (denial.status(), denial.code()),
        (415, "unsupported_content_encoding")
    );
    h.content_encoding = Some("identity");
    assert!(matches!(
        decide_head(Some(&p), &h, 0),
        HeadOutcome::ReadBody(_)
    ));
    let mut stranger = head("POST", "/v1/chat/completions", "Bearer sk-nobody");
    stranger.content_encoding = Some("gzip");
    assert_eq!(
        decide_head(Some(&p), &stranger, 0),
        HeadOutcome::Deny(Denial::UnknownKey)
    );
}

#[test]
fn a_failed_clock_fails_closed() {
    let p = policy();
    let h = head("POST", "/v1/chat/completions", "Bearer sk-k");
    assert_eq!(
        decide_head_at(Some(&p), &h, None),
        HeadOutcome::Deny(Denial::GatewayError {
            code: "clock_unavailable"
        })
    );
    assert!(matches!(
        decide_head_at(Some(&p), &h, Some(0)),
        HeadOutcome::ReadBody(_)
    ));
}

#[test]
fn oversized_content_length_is_refused_before_reading_the_body() {
    let p = policy();
    let mut h = head("POST", "/v1/chat/completions", "Bearer sk-k");
    h.content_length = Some(101);
    assert_eq!(
        decide_head(Some(&p), &h, 0),
        HeadOutcome::Deny(Denial::BodyTooLarge { limit: 100 })
    );
}

#[test]
fn models_endpoint_is_answered_from_headers() {
    let p = policy();
    let HeadOutcome::Respond { status, body } =
        decide_head(Some(&p), &head("GET", "/v1/models", "Bearer sk-k"), 0)
    else {
        panic!("expected a listing");
    };
    assert_eq!(status, 200);
    let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["claude-x", "fast"]);
}

#[test]
fn admitted_request_gets_route_credential_and_rewritten_body() {
    let p = policy();
    let c = creds();
    let verdict = decide(&p, br#"{"model":"fast","n":1}"#, &c, 7).unwrap();
    let admission = verdict.outcome.unwrap();
    assert_eq!(admission.deployment.cluster, "openai");
    assert_eq!(
        admission.credential,
        Some(("authorization", "Bearer o-secret".to_string()))
    );
    assert_eq!(
        admission.new_body.as_deref(),
        Some(&br#"{"model":"gpt-4o","n":1}"#[..])
    );
    assert_eq!(verdict.trace.resolved.as_deref(), Some("gpt-4o"));
}

#[test]
fn unchanged_model_keeps_the_body_untouched() {
    let p = policy();
    let c = creds();
    let verdict = decide(&p, br#"{"model":"claude-x"}"#, &c, 0).unwrap();
    let admission = verdict.outcome.unwrap();
    assert_eq!(admission.new_body, None);
    assert_eq!(
        admission.credential,
        Some(("x-api-key", "a-secret".to_string()))
    );
}

#[test]
fn body_refusals_carry_their_codes() {
    let p = policy();
    let c = creds();
    let code = |body: &[u8]| decide(&p, body, &c, 0).unwrap().outcome.unwrap_err().code();
    assert_eq!(code(b"not json"), "invalid_json");
    assert_eq!(code(b"{}"), "missing_model");
    assert_eq!(code(b"  "), "missing_body");
    assert_eq!(code(br#"{"model":"gpt-4o"}"#), "model_not_allowed");
    assert_eq!(code(&[b' '; 101]), "request_too_large");
}

#[test]
fn missing_credential_is_503_not_a_forward_without_it() {
    let p = policy();
    let none: HashMap<String, String> = HashMap::new();
    let verdict = decide(&p, br#"{"model":"claude-x"}"#, &none, 0).unwrap();
    assert_eq!(verdict.outcome.unwrap_err(), Denial::CredentialUnavailable);
}

fn budget_policy(unpriced: &str) -> Policy {
    let json = format!(
        r#"{{"version":"v1","settings":{{"unpriced_models":{{"mode":"{unpriced}"}}}},
          "cost_map":{{"gpt-4o":{{"litellm_provider":"openai","input_cost_per_token":2.5e-06,
                                  "output_cost_per_token":1e-05,"max_output_tokens":1000}}}},
          "model_list":[
            {{"model_name":"gpt-4o","litellm_params":{{"model":"openai/gpt-4o"}},"cluster":"openai"}},
            {{"model_name":"mystery","litellm_params":{{"model":"openai/mystery"}},"cluster":"openai"}}],
          "teams":[{{"team_id":"t","max_budget":0.02}}],
          "keys":[{{"key_hash":"{}","team_id":"t"}}]}}"#,
        to_hex(&digest("sk-k"))
    );
    compile(json.as_bytes()).unwrap()
}

fn decide_with<'p>(p: &'p Policy, body: &[u8], ledgers: &MemoryLedgers) -> Verdict<'p> {
    let none: HashMap<String, String> = HashMap::new();
    let around = Surroundings {
        credentials: &none,
        ledgers,
        random: 0,
        now: 1000,
    };
    decide_body(p, &ticket(p), body, &around).unwrap()
}

#[test]
fn a_background_request_is_refused_however_it_is_written() {
    let p = budget_policy("deny");
    let ledgers = MemoryLedgers::default();
    for body in [
        &br#"{"model":"gpt-4o","background":true}"#[..],
        br#"{"model":"gpt-4o","background":"true"}"#,
        br#"{"model":"gpt-4o","background":1}"#,
    ] {
        let denial = decide_with(&p, body, &ledgers).outcome.unwrap_err();
        assert_eq!(
            denial,
            Denial::UnsupportedParameter {
                param: "background"
            }
        );
        assert_eq!((denial.status(), denial.param()), (400, Some("background")));
    }
    let twice = br#"{"model":"gpt-4o","background":false,"background":true}"#;
    let denial = decide_with(&p, twice, &ledgers).outcome.unwrap_err();
    assert_eq!(denial.code(), "invalid_json", "a duplicated key is refused");
    assert!(ledgers.0.borrow().is_empty(), "nothing was reserved");
    for allowed in [
        &br#"{"model":"gpt-4o","background":false}"#[..],
        br#"{"model":"gpt-4o","background":null}"#,
    ] {
        assert!(decide_with(&p, allowed, &ledgers).outcome.is_ok());
    }
}

#[test]
fn a_budgeted_request_reserves_its_worst_case_and_the_next_one_is_refused() {
    let p = budget_policy("deny");
    let ledgers = MemoryLedgers::default();
    let body = br#"{"model":"gpt-4o","max_tokens":1500,"messages":[]}"#;
    let first = decide_with(&p, body, &ledgers).outcome.unwrap();
    // 13 prompt tokens (52 bytes / 4) at 2.5e-6 + 1000 (the model's cap) at 1e-5.
    assert_eq!(first.reservation.amount, 32_500 + 10_000_000);
    assert_eq!(first.reservation.lines.len(), 1);
    let second = decide_with(&p, body, &ledgers).outcome;
    assert_eq!(
        second.map(|_| ()),
        Ok(()),
        "0.01 of 0.02 reserved: still room"
    );
    let third = decide_with(&p, body, &ledgers).outcome.unwrap_err();
    assert_eq!(third.status(), 429);
    assert!(third.message().contains("team 't'"), "{}", third.message());
}

#[test]
fn unpriced_models_are_refused_under_a_budget_unless_tracked() {
    let body = br#"{"model":"mystery"}"#;
    let p = budget_policy("deny");
    let denial = decide_with(&p, body, &MemoryLedgers::default())
        .outcome
        .unwrap_err();
    assert_eq!(
        denial,
        Denial::UnpricedModel {
            model: "mystery".into()
        }
    );
    let p = budget_policy("track");
    let admitted = decide_with(&p, body, &MemoryLedgers::default())
        .outcome
        .unwrap();
    assert_eq!(admitted.reservation.amount, 0);
}

#[test]
fn an_openai_stream_gets_usage_switched_on_and_marked_for_stripping() {
    let p = budget_policy("deny");
    let ledgers = MemoryLedgers::default();
    let body = br#"{"model":"gpt-4o","stream":true,"user":"cust"}"#;
    let admission = decide_with(&p, body, &ledgers).outcome.unwrap();
    assert!(admission.metering.strip_usage && admission.metering.stream);
    assert_eq!(admission.metering.end_user.as_deref(), Some("cust"));
    let sent: serde_json::Value =
        serde_json::from_slice(admission.new_body.as_deref().unwrap()).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    let asked = br#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}"#;
    let admission = decide_with(&p, asked, &ledgers).outcome.unwrap();
    assert!(!admission.metering.strip_usage);
    assert_eq!(admission.new_body, None);
}

fn tenant_policy() -> Policy {
    let json = format!(
        r#"{{"version":"v1",
          "model_list":[{{"model_name":"o4-mini","litellm_params":{{"model":"openai/o4-mini"}},"cluster":"openai"}}],
          "teams":[{{"team_id":"red"}},{{"team_id":"blue"}}],
          "keys":[{{"key_hash":"{}","team_id":"red"}},{{"key_hash":"{}","team_id":"blue"}},{{"key_hash":"{}"}}]}}"#,
        to_hex(&digest("sk-red")),
        to_hex(&digest("sk-blue")),
        to_hex(&digest("sk-solo"))
    );
    compile(json.as_bytes()).unwrap()
}

fn respond<'p>(
    p: &'p Policy,
    key: &str,
    body: &str,
    credentials: &HashMap<String, String>,
) -> Result<Admission<'p>, Denial> {
    let auth = format!("Bearer {key}");
    let HeadOutcome::ReadBody(ticket) =
        decide_head(Some(p), &head("POST", "/v1/responses", &auth), 0)
    else {
        panic!("no body step");
    };
    let ledgers = MemoryLedgers::default();
    let around = Surroundings {
        credentials,
        ledgers: &ledgers,
        random: 0,
        now: 0,
    };
    decide_body(p, &ticket, body.as_bytes(), &around)
        .unwrap()
        .outcome
}

#[test]
fn responses_state_is_bound_to_its_tenant() {
    use crate::core::affinity::mark::mark_id;
    let p = tenant_policy();
    let secret: HashMap<String, String> = [(
        "TOLLGATE_AFFINITY_SECRET".to_string(),
        "sixteen bytes at least".to_string(),
    )]
    .into_iter()
    .collect();
    let first = respond(&p, "sk-red", r#"{"model":"o4-mini","input":"hi"}"#, &secret).unwrap();
    let with = first.metering.mark_with.expect("answers are marked");
    let id = mark_id("resp_0123abcd", &with);
    let follow = format!(r#"{{"model":"o4-mini","input":"more","previous_response_id":"{id}"}}"#);
    let own = respond(&p, "sk-red", &follow, &secret).unwrap();
    // A stream of this follow-up cut before its usage is billed the stored conversation.
    assert!(
        own.metering.prompt_estimate > first.metering.prompt_estimate * 1000,
        "{} vs {}",
        own.metering.prompt_estimate,
        first.metering.prompt_estimate
    );
    let sent = String::from_utf8(own.new_body.unwrap()).unwrap();
    assert!(
        sent.contains(r#""previous_response_id":"resp_0123abcd""#),
        "{sent}"
    );
    let not_found = Denial::ResponseStateNotFound {
        param: "previous_response_id",
    };
    for other in ["sk-blue", "sk-solo"] {
        assert_eq!(respond(&p, other, &follow, &secret), Err(not_found.clone()));
    }
    // The original id (anyone can read it inside the mark) is vouched for by no one.
    let raw = r#"{"model":"o4-mini","input":"x","previous_response_id":"resp_0123abcd"}"#;
    assert_eq!(respond(&p, "sk-red", raw, &secret), Err(not_found));
    // Without the secret: nothing is marked, and follow-ups fail closed.
    let none: HashMap<String, String> = HashMap::new();
    let unmarked = respond(&p, "sk-red", r#"{"model":"o4-mini","input":"hi"}"#, &none).unwrap();
    assert_eq!(unmarked.metering.mark_with, None);
    assert_eq!(
        respond(&p, "sk-red", &follow, &none),
        Err(Denial::AffinitySecretUnavailable)
    );
}
