//! Unit tests of stored-response requests: routed by the id's tenant-sealed mark, with access
//! checked on the model the deployment serves, budgets checked but nothing reserved.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::core::admission::decide::{
    decide_body, decide_head, tenant_seal, Admission, HeadOutcome, Surroundings,
};
use crate::core::admission::denial::Denial;
use crate::core::admission::request::{Endpoint, RequestHead};
use crate::core::affinity::mark::{mark_id, MarkWith};
use crate::core::compile;
use crate::core::config::index::Policy;
use crate::core::config::key_hash::{digest, to_hex};
use crate::core::money::reservation::{LedgerStore, MemoryLedgers};
use hashbrown::HashMap;

/// Two `o4-mini` deployments on different credentials, a `gpt-4o` one, teams red and blue.
/// `sk-red` (red) may use o4-mini; `sk-red-4o` (red) only gpt-4o; `sk-blue` (blue) everything;
/// `sk-red` has a $0.01 budget.
fn policy(extra_deployment: &str) -> Policy {
    let json = format!(
        r#"{{"version":"v1",
          "cost_map":{{"o4-mini":{{"litellm_provider":"openai","input_cost_per_token":1e-06,"output_cost_per_token":4e-06}}}},
          "model_list":[
            {{"model_name":"o4-mini","litellm_params":{{"model":"openai/o4-mini","api_key_env":"K_EU"}},"cluster":"eu","model_info":{{"id":"eu"}}}},
            {{"model_name":"o4-mini","litellm_params":{{"model":"openai/o4-mini","api_key_env":"K_US"}},"cluster":"us","model_info":{{"id":"us"}}}},
            {{"model_name":"gpt-4o","litellm_params":{{"model":"openai/gpt-4o","api_key_env":"K_EU"}},"cluster":"eu","model_info":{{"id":"eu-4o"}}}}
            {extra_deployment}],
          "teams":[{{"team_id":"red"}},{{"team_id":"blue"}}],
          "keys":[{{"key_hash":"{}","team_id":"red","models":["o4-mini"],"max_budget":0.01}},
                  {{"key_hash":"{}","team_id":"red","models":["gpt-4o"]}},
                  {{"key_hash":"{}","team_id":"blue"}}]}}"#,
        to_hex(&digest("sk-red")),
        to_hex(&digest("sk-red-4o")),
        to_hex(&digest("sk-blue")),
    );
    compile(json.as_bytes()).unwrap()
}

fn creds(with_secret: bool) -> HashMap<String, String> {
    let mut pairs = vec![("K_EU", "eu-secret"), ("K_US", "us-secret")];
    if with_secret {
        pairs.push(("TOLLGATE_AFFINITY_SECRET", "sixteen bytes at least"));
    }
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `original` marked by deployment `deployment` for the tenant of `key`.
fn marked(p: &Policy, key: &str, deployment: &str, original: &str) -> String {
    let k = p.keys.iter().find(|k| k.digest == digest(key)).unwrap();
    let team = k.team.and_then(|t| p.team(t));
    let seal = tenant_seal(p, k, team, &creds(true)).unwrap();
    let d = p.deployments.iter().find(|d| d.id == deployment).unwrap();
    mark_id(
        original,
        &MarkWith {
            tag: d.affinity,
            seal,
        },
    )
}

fn ask<'p>(
    p: &'p Policy,
    key: &str,
    method: &str,
    path: &str,
    body: &[u8],
    ledgers: &MemoryLedgers,
    credentials: &HashMap<String, String>,
) -> Result<Admission<'p>, Denial> {
    let auth = format!("Bearer {key}");
    let head = RequestHead {
        method,
        path,
        authorization: Some(&auth),
        ..RequestHead::default()
    };
    let ticket = match decide_head(Some(p), &head, 0) {
        HeadOutcome::ReadBody(ticket) => ticket,
        HeadOutcome::Deny(denial) => return Err(denial),
        other => panic!("{other:?}"),
    };
    let around = Surroundings {
        credentials,
        ledgers,
        random: 0,
        now: 1000,
    };
    decide_body(p, &ticket, body, &around).unwrap().outcome
}

fn get<'p>(p: &'p Policy, key: &str, path: &str) -> Result<Admission<'p>, Denial> {
    ask(
        p,
        key,
        "GET",
        path,
        b"",
        &MemoryLedgers::default(),
        &creds(true),
    )
}

const ORIGINAL: &str = "resp_0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn an_own_id_goes_to_its_origin_with_the_original_id_and_nothing_reserved() {
    let p = policy("");
    let id = marked(&p, "sk-red", "us", ORIGINAL);
    for random in 0..20 {
        let ledgers = MemoryLedgers::default();
        let path = format!("/v1/responses/{id}?include[]=reasoning.encrypted_content");
        let admission = ask(&p, "sk-red", "GET", &path, b"", &ledgers, &creds(true)).unwrap();
        assert_eq!(admission.deployment.id, "us", "random {random}");
        assert_eq!(
            admission.upstream_path.as_deref(),
            Some(
                format!("/v1/responses/{ORIGINAL}?include[]=reasoning.encrypted_content").as_str()
            )
        );
        assert_eq!(
            admission.credential,
            Some(("authorization", "Bearer us-secret".to_string()))
        );
        assert!(!admission.metering.metered);
        assert_eq!(admission.metering.endpoint, Endpoint::StoredResponse);
        assert!(
            admission.metering.mark_with.is_some(),
            "the answer is re-marked"
        );
        assert_eq!(admission.new_body, None);
        assert!(admission.reservation.lines.is_empty());
        assert!(ledgers.0.borrow().is_empty(), "nothing held");
    }
    let deleted = ask(
        &p,
        "sk-red",
        "DELETE",
        &format!("/openai/v1/responses/{id}?api-version=preview"),
        b"",
        &MemoryLedgers::default(),
        &creds(true),
    )
    .unwrap();
    assert_eq!(
        deleted.upstream_path.as_deref(),
        Some(format!("/v1/responses/{ORIGINAL}").as_str())
    );
    let items = get(&p, "sk-red", &format!("/v1/responses/{id}/input_items")).unwrap();
    assert_eq!(
        items.upstream_path.as_deref(),
        Some(format!("/v1/responses/{ORIGINAL}/input_items").as_str())
    );
    assert_eq!(items.deployment.id, "us");
}

#[test]
fn another_tenants_raw_forged_or_damaged_ids_are_refused() {
    let p = policy("");
    let not_found = Err(Denial::ResponseStateNotFound {
        param: "response_id",
    });
    let blue = marked(&p, "sk-blue", "us", ORIGINAL);
    assert_eq!(
        get(&p, "sk-red", &format!("/v1/responses/{blue}")),
        not_found
    );
    assert!(get(&p, "sk-blue", &format!("/v1/responses/{blue}")).is_ok());
    assert_eq!(
        get(&p, "sk-red", &format!("/v1/responses/{ORIGINAL}")),
        not_found
    );
    assert_eq!(get(&p, "sk-red", "/v1/responses/msg_123"), not_found);
    let long = format!("/v1/responses/resp_{}", "a".repeat(300));
    assert_eq!(get(&p, "sk-red", &long), not_found);
    let own = marked(&p, "sk-red", "us", ORIGINAL);
    // One changed character of the payload: the checksum (or the seal) fails.
    let mut damaged = own.clone().into_bytes();
    let last = damaged.len() - 1;
    damaged[last] = if damaged[last] == b'A' { b'B' } else { b'A' };
    let damaged = String::from_utf8(damaged).unwrap();
    let answer = get(&p, "sk-red", &format!("/v1/responses/{damaged}"));
    assert!(
        matches!(
            answer,
            Err(Denial::InvalidAffinityMark | Denial::ResponseStateNotFound { .. })
        ),
        "{answer:?}"
    );
    // No secret: nothing can be vouched for (fail closed).
    let none = ask(
        &p,
        "sk-red",
        "GET",
        &format!("/v1/responses/{own}"),
        b"",
        &MemoryLedgers::default(),
        &creds(false),
    );
    assert_eq!(none, Err(Denial::AffinitySecretUnavailable));
    // A body is not taken.
    let with_body = ask(
        &p,
        "sk-red",
        "GET",
        &format!("/v1/responses/{own}"),
        br#"{"model":"o4-mini"}"#,
        &MemoryLedgers::default(),
        &creds(true),
    );
    assert_eq!(with_body.unwrap_err().code(), "unexpected_body");
}

#[test]
fn access_is_checked_on_the_model_the_deployment_serves() {
    let p = policy("");
    // sk-red-4o shares red's tenant, so the seal verifies, but it may not use o4-mini.
    let id = marked(&p, "sk-red", "us", ORIGINAL);
    let refused = get(&p, "sk-red-4o", &format!("/v1/responses/{id}")).unwrap_err();
    assert_eq!(
        refused,
        Denial::ModelNotAllowed {
            model: "o4-mini".into()
        }
    );
    // Its own gpt-4o response (on the eu credential) it may read.
    let own = marked(&p, "sk-red-4o", "eu-4o", ORIGINAL);
    let admitted = get(&p, "sk-red-4o", &format!("/v1/responses/{own}")).unwrap();
    assert_eq!(admitted.deployment.id, "eu-4o");
}

#[test]
fn a_removed_origin_is_followed_to_its_boundary_else_refused() {
    let p = policy("");
    let id = marked(&p, "sk-blue", "us", ORIGINAL);
    // Another deployment on the origin's credential: the origin still wins while it is there.
    let moved = policy(
        r#",{"model_name":"o4-mini","litellm_params":{"model":"openai/o4-mini","api_key_env":"K_US"},"cluster":"us-2","model_info":{"id":"us-2"}}"#,
    );
    for _ in 0..5 {
        let both = get(&moved, "sk-blue", &format!("/v1/responses/{id}")).unwrap();
        assert_eq!(both.deployment.id, "us");
    }
    let ledgers = MemoryLedgers::default();
    // Now drop the origin: compile a policy whose "us" deployment is gone.
    let only_boundary = compile(
        format!(
            r#"{{"version":"v2","model_list":[
                {{"model_name":"o4-mini","litellm_params":{{"model":"openai/o4-mini","api_key_env":"K_EU"}},"cluster":"eu","model_info":{{"id":"eu"}}}},
                {{"model_name":"o4-mini","litellm_params":{{"model":"openai/o4-mini","api_key_env":"K_US"}},"cluster":"us-2","model_info":{{"id":"us-2"}}}}],
              "teams":[{{"team_id":"blue"}}],
              "keys":[{{"key_hash":"{}","team_id":"blue"}}]}}"#,
            to_hex(&digest("sk-blue"))
        )
        .as_bytes(),
    )
    .unwrap();
    let admission = ask(
        &only_boundary,
        "sk-blue",
        "GET",
        &format!("/v1/responses/{id}"),
        b"",
        &ledgers,
        &creds(true),
    )
    .unwrap();
    assert_eq!(admission.deployment.id, "us-2");
    let lost = compile(
        format!(
            r#"{{"version":"v3","model_list":[
                {{"model_name":"o4-mini","litellm_params":{{"model":"openai/o4-mini","api_key_env":"K_EU"}},"cluster":"eu","model_info":{{"id":"eu"}}}}],
              "teams":[{{"team_id":"blue"}}],
              "keys":[{{"key_hash":"{}","team_id":"blue"}}]}}"#,
            to_hex(&digest("sk-blue"))
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(
        get(&lost, "sk-blue", &format!("/v1/responses/{id}")),
        Err(Denial::AffinityUnavailable)
    );
}

#[test]
fn a_used_up_budget_refuses_a_read_that_holds_nothing() {
    let p = policy("");
    let id = marked(&p, "sk-red", "eu", ORIGINAL);
    let path = format!("/v1/responses/{id}");
    let ledgers = MemoryLedgers::default();
    let key_budget = crate::core::money::budget::applicable_budgets(
        &p,
        (&p.keys[0], p.keys[0].team.and_then(|t| p.team(t))),
        None,
        None,
        1000,
    );
    assert_eq!(key_budget.len(), 1);
    assert!(ask(&p, "sk-red", "GET", &path, b"", &ledgers, &creds(true)).is_ok());
    ledgers
        .update(key_budget[0].ledger_key(), &mut |l| {
            l.record(10_000_000);
            true
        })
        .unwrap();
    let refused = ask(&p, "sk-red", "GET", &path, b"", &ledgers, &creds(true)).unwrap_err();
    assert_eq!((refused.status(), refused.code()), (429, "budget_exceeded"));
}

#[test]
fn methods_and_paths_of_stored_responses() {
    let p = policy("");
    let auth = "Bearer sk-red".to_string();
    let head = |method, path| RequestHead {
        method,
        path,
        authorization: Some(&auth),
        ..RequestHead::default()
    };
    assert_eq!(
        decide_head(Some(&p), &head("POST", "/v1/responses/resp_1"), 0),
        HeadOutcome::Deny(Denial::MethodNotAllowed {
            allowed: "GET or DELETE"
        })
    );
    assert_eq!(
        decide_head(
            Some(&p),
            &head("DELETE", "/v1/responses/resp_1/input_items"),
            0
        ),
        HeadOutcome::Deny(Denial::MethodNotAllowed { allowed: "GET" })
    );
    assert_eq!(
        decide_head(Some(&p), &head("POST", "/v1/responses/resp_1/cancel"), 0),
        HeadOutcome::Deny(Denial::UnknownEndpoint)
    );
}
