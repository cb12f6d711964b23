//! Unit tests of rate limits on the request path: who counts, what is counted after aliases,
//! deployment headroom, and that a refusal gives everything back.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::core::compile;
use crate::core::config::key_hash::{digest, to_hex};
use crate::core::money::reservation::MemoryLedgers;
use hashbrown::HashMap;

fn policy(key_extra: &str, deployment_extra: [&str; 2]) -> Policy {
    let json = format!(
        r#"{{"version":"v1",
          "cost_map":{{"gpt-4o":{{"litellm_provider":"openai","input_cost_per_token":1e-06,
                                  "output_cost_per_token":2e-06,"max_output_tokens":100}}}},
          "model_list":[
            {{"model_name":"gpt-4o","litellm_params":{{"model":"openai/gpt-4o"{}}},"cluster":"one",
              "model_info":{{"id":"one"}}}},
            {{"model_name":"gpt-4o","litellm_params":{{"model":"openai/gpt-4o"{}}},"cluster":"two",
              "model_info":{{"id":"two"}}}}],
          "model_group_alias":{{"fast":"gpt-4o"}},
          "teams":[{{"team_id":"t","team_alias":"Team T","rpm_limit":100}}],
          "users":[{{"user_id":"u","tpm_limit":100000}}],
          "end_users":[{{"user_id":"customer-1","rpm_limit":1}}],
          "keys":[{{"key_hash":"{}","key_alias":"k","team_id":"t","user_id":"u","max_budget":10{}}}]}}"#,
        deployment_extra[0],
        deployment_extra[1],
        to_hex(&digest("sk-k")),
        key_extra
    );
    compile(json.as_bytes()).unwrap()
}

fn ticket(p: &Policy) -> BodyTicket {
    let head = RequestHead {
        method: "POST",
        path: "/v1/chat/completions",
        authorization: Some("Bearer sk-k"),
        ..RequestHead::default()
    };
    match decide_head(Some(p), &head, 0) {
        HeadOutcome::ReadBody(ticket) => ticket,
        other => panic!("{other:?}"),
    }
}

fn decide<'p>(
    p: &'p Policy,
    ledgers: &MemoryLedgers,
    body: &str,
    now: i64,
) -> Result<Admission<'p>, Denial> {
    let credentials: HashMap<String, String> = HashMap::new();
    let around = Surroundings {
        credentials: &credentials,
        ledgers,
        random: 7,
        now,
    };
    decide_body(p, &ticket(p), body.as_bytes(), &around)
        .unwrap()
        .outcome
}

const CHAT: &str = r#"{"model":"gpt-4o","max_tokens":10,"messages":[]}"#;

#[test]
fn a_key_rpm_limit_refuses_the_request_after_it_and_gives_the_budget_back() {
    let p = policy(r#","rpm_limit":3"#, ["", ""]);
    let ledgers = MemoryLedgers::default();
    let now = 600;
    for remaining in [2, 1, 0] {
        let admission = decide(&p, &ledgers, CHAT, now).unwrap();
        let requests = admission.rate_view.requests.unwrap();
        assert_eq!((requests.limit, requests.remaining), (3, remaining));
    }
    let budget_held = |ledgers: &MemoryLedgers| {
        let ledgers = ledgers.0.borrow();
        ledgers
            .iter()
            .filter(|(k, _)| k.starts_with("tollgate/budget/"))
            .map(|(_, l)| l.reserved(now))
            .sum::<u64>()
    };
    let before = budget_held(&ledgers);
    let denial = decide(&p, &ledgers, CHAT, now).unwrap_err();
    assert!(matches!(
        denial,
        Denial::RateLimited {
            scope: "key",
            limit: 3,
            ..
        }
    ));
    assert_eq!(
        budget_held(&ledgers),
        before,
        "the refused request holds no budget"
    );
    assert!(
        decide(&p, &ledgers, CHAT, now + 60).is_ok(),
        "the next minute has room"
    );
}

#[test]
fn a_per_model_limit_counts_the_model_an_alias_reaches() {
    let p = policy(r#","model_rpm_limit":{"openai/gpt-4o":1}"#, ["", ""]);
    let ledgers = MemoryLedgers::default();
    let alias = r#"{"model":"fast","messages":[]}"#;
    assert!(decide(&p, &ledgers, alias, 0).is_ok());
    let denial = decide(&p, &ledgers, CHAT, 0).unwrap_err();
    assert!(
        matches!(&denial, Denial::RateLimited { model: Some(m), .. } if &**m == "openai/gpt-4o"),
        "{denial:?}"
    );
    assert!(denial
        .message()
        .contains("key 'k' on model 'openai/gpt-4o'"));
}

#[test]
fn team_user_and_end_user_limits_all_count() {
    let p = policy("", ["", ""]);
    let ledgers = MemoryLedgers::default();
    let admission = decide(&p, &ledgers, CHAT, 0).unwrap();
    let scopes: Vec<_> = admission
        .limits
        .lines
        .iter()
        .map(|l| (l.scope.name(), l.kind.name()))
        .collect();
    assert_eq!(scopes, vec![("team", "rpm"), ("user", "tpm")]);
    // 110 tokens reserved: the 10-token cap plus the prompt estimate.
    let tokens = admission.rate_view.tokens.unwrap();
    assert_eq!(tokens.limit - tokens.remaining, admission.limits.tokens);
    let customer = r#"{"model":"gpt-4o","user":"customer-1","messages":[]}"#;
    assert!(decide(&p, &ledgers, customer, 0).is_ok());
    let denial = decide(&p, &ledgers, customer, 0).unwrap_err();
    assert!(matches!(
        denial,
        Denial::RateLimited {
            scope: "end_user",
            ..
        }
    ));
}

#[test]
fn routing_prefers_the_deployment_with_headroom_and_refuses_when_all_are_full() {
    let p = policy("", [r#","rpm":2"#, r#","rpm":4"#]);
    let ledgers = MemoryLedgers::default();
    let mut served = Vec::new();
    for _ in 0..6 {
        let admission = decide(&p, &ledgers, CHAT, 0).unwrap();
        served.push(admission.deployment.id.clone());
    }
    let count = |id: &str| served.iter().filter(|d| d.as_str() == id).count();
    assert_eq!((count("one"), count("two")), (2, 4), "{served:?}");
    let denial = decide(&p, &ledgers, CHAT, 0).unwrap_err();
    assert!(matches!(
        denial,
        Denial::RateLimited {
            scope: "deployment",
            ..
        }
    ));
    assert!(denial.message().contains("model 'gpt-4o'"));
    let headers = denial.retry_headers();
    assert!(headers.contains(&("retry-after", "60".to_string())));
    assert!(
        !headers.iter().any(|(n, _)| n.starts_with("x-ratelimit")),
        "shared capacity is not shown"
    );
}

#[test]
fn limits_compile_from_istio_numbers_and_report_bad_ones_with_their_path() {
    let p = policy(
        r#","rpm_limit":10.0,"model_tpm_limit":{"gpt-4o":5.0}"#,
        ["", ""],
    );
    assert_eq!(p.keys[0].limits.as_ref().and_then(|l| l.rpm), Some(10));
    let json = r#"{"version":"v1","keys":[{"key_hash":"00","rpm_limit":1.5}]}"#;
    let errors = compile(json.as_bytes()).unwrap_err().to_string();
    assert!(errors.contains("keys[0].rpm_limit"), "{errors}");
}

#[test]
fn headroom_scales_the_weights_and_full_deployments_are_skipped() {
    use crate::core::limits::deployment_room::Room;
    use crate::core::limits::rules::LimitKind;
    let p = policy("", [r#","rpm":10"#, ""]);
    let target = ModelTarget::new(&p, "gpt-4o");
    let ids: Vec<u32> = vec![0, 1];
    let credentials: HashMap<String, String> = HashMap::new();
    let pick = |room: &dyn Fn(&Deployment) -> Room, random: u64| {
        p.route_with_room(&target, &ids, &credentials, (random, None), room)
            .map(|r| r.deployment.id.clone())
    };
    // "one" has a tenth of its minute left, "two" has no limit: one gets 1 in 11.
    let tenth = |d: &Deployment| Room::Left(if d.id == "one" { 100 } else { 1000 });
    let to_one = (0..11_000u64)
        .filter(|i| pick(&tenth, i * 100).as_deref() == Ok("one"))
        .count();
    assert_eq!(to_one, 1000);
    let full = |d: &Deployment| match d.id.as_str() {
        "one" => Room::Full {
            kind: LimitKind::Tpm,
            resets_in: 7,
        },
        _ => Room::Left(1000),
    };
    assert!((0..100).all(|r| pick(&full, r).as_deref() == Ok("two")));
    let all_full = |_: &Deployment| Room::Full {
        kind: LimitKind::Rpm,
        resets_in: 9,
    };
    assert_eq!(
        pick(&all_full, 0),
        Err(RouteError::Full {
            kind: LimitKind::Rpm,
            resets_in: 9
        })
    );
}

#[test]
fn per_model_limits_in_both_spellings_and_under_the_asked_alias_all_count() {
    let p = policy(
        r#","model_rpm_limit":{"gpt-4o":5,"fast":1},"model_tpm_limit":{"openai/gpt-4o":500}"#,
        ["", ""],
    );
    let ledgers = MemoryLedgers::default();
    let admission = decide(&p, &ledgers, r#"{"model":"fast","messages":[]}"#, 0).unwrap();
    let mut counted: Vec<_> = admission
        .limits
        .lines
        .iter()
        .filter(|l| l.model.is_some())
        .map(|l| (l.model.as_deref().unwrap_or("").to_string(), l.kind.name()))
        .collect();
    counted.sort();
    assert_eq!(
        counted,
        vec![
            ("fast".to_string(), "rpm"),
            ("gpt-4o".to_string(), "rpm"),
            ("openai/gpt-4o".to_string(), "tpm")
        ]
    );
    // The alias's own limit is used up; the model asked for directly is not under it.
    assert!(decide(&p, &ledgers, r#"{"model":"fast","messages":[]}"#, 0).is_err());
    assert!(decide(&p, &ledgers, CHAT, 0).is_ok());
}

#[test]
fn a_per_model_limit_no_request_can_reach_is_warned_about() {
    let p = policy(r#","model_rpm_limit":{"gpt-99":3}"#, ["", ""]);
    let warned: Vec<&str> = p.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(warned, ["keys[0].model_rpm_limit.gpt-99"]);
}

#[test]
fn a_lone_full_deployment_is_refused_by_its_own_counter_without_numbers() {
    let json = format!(
        r#"{{"version":"v1",
          "model_list":[{{"model_name":"m","cluster":"c","litellm_params":{{"model":"openai/m","rpm":1}}}}],
          "keys":[{{"key_hash":"{}","key_alias":"k"}}]}}"#,
        to_hex(&digest("sk-k"))
    );
    let p = compile(json.as_bytes()).unwrap();
    let ledgers = MemoryLedgers::default();
    let body = r#"{"model":"m","messages":[]}"#;
    assert!(decide(&p, &ledgers, body, 0).is_ok());
    let denial = decide(&p, &ledgers, body, 0).unwrap_err();
    assert!(
        matches!(
            denial,
            Denial::RateLimited {
                scope: "deployment",
                ..
            }
        ),
        "{denial:?}"
    );
    assert!(denial.message().contains("model 'm'"));
    assert!(!denial
        .retry_headers()
        .iter()
        .any(|(n, _)| n.starts_with("x-ratelimit")));
}
