//! Rate limits through a whole import: LiteLLM's limit fields on keys, teams, users, end users,
//! deployments and `general_settings` land in the policy, and the policy compiles with them.

use super::*;
use tollgate::core::config::config::TokenCount;

const CONFIG: &str = r#"
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, rpm: 600, tpm: 90000.0}
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_base: "https://eu.example", rpm: 300}
  - model_name: mini
    litellm_params: {model: openai/gpt-4o-mini, tpm: 50}
  - model_name: mini
    litellm_params: {model: openai/gpt-4o-mini, tpm: 50}
  - model_name: odd
    litellm_params: {model: openai/o3, rpm: 2.5, tpm: null}
router_settings:
  routing_strategy: usage-based-routing-v2
general_settings:
  token_rate_limit_type: output
"#;

fn imported(config: &str, export: &Value) -> Import {
    let config = crate::yaml_doc::YamlDoc::parse(config, "c.yaml")
        .unwrap()
        .value;
    let providers = read_cost_map(None).unwrap();
    let cx = Context {
        providers: &providers,
        env: &|_: &str| None,
    };
    let imported = import(&config, Some(export), "v1", &cx);
    assert!(imported.errors.is_empty(), "{:?}", imported.errors);
    imported
}

#[test]
fn every_litellm_limit_is_carried_and_compiles() {
    let export = json!({
        "keys": [
            {"token": "a".repeat(64), "key_alias": "k", "team_id": "t", "user_id": "alice",
             "rpm_limit": 10, "tpm_limit": 1000.0, "max_parallel_requests": 2,
             "metadata": {"model_rpm_limit": {"gpt-4o": 3}, "model_tpm_limit": {},
                          "rpm_limit_type": "guaranteed_throughput", "tags": ["prod"]}},
            {"token": "b".repeat(64), "key_alias": "k2", "tpm_limit": 1.5,
             "rpm_limit_type": "best_effort_throughput",
             "model_max_budget": {"mini": {"budget_limit": 1, "tpm_limit": 40},
                                  "o3": {"rpm_limit": 4}}}
        ],
        "teams": [
            {"team_id": "t", "team_alias": "T", "rpm_limit": null,
             "model_tpm_limit": {"openai/gpt-4o": 5000},
             "metadata": {"model_rpm_limit": {}},
             "litellm_budget_table": {"rpm_limit": 100, "max_parallel_requests": null}}
        ],
        "users": [
            {"user_id": "alice", "user_email": "a@x", "max_budget": null,
             "budget_duration": "30d", "rpm_limit": 7, "tpm_limit": null,
             "metadata": {"model_rpm_limit": {"gpt-4o": 1}}}
        ],
        "customers": [
            {"user_id": "cust-1", "litellm_budget_table": {"tpm_limit": 20000, "rpm_limit": null}}
        ]
    });
    let imported = imported(CONFIG, &export);
    let policy = Value::Object(imported.policy.clone());
    let key = &policy["keys"][0];
    assert_eq!(
        (
            &key["rpm_limit"],
            &key["tpm_limit"],
            &key["max_parallel_requests"]
        ),
        (&json!(10), &json!(1000), &json!(2))
    );
    assert_eq!(key["model_rpm_limit"], json!({"gpt-4o": 3}));
    assert!(
        key.get("model_tpm_limit").is_none(),
        "an empty table is unset"
    );
    let second = &policy["keys"][1];
    assert!(second.get("tpm_limit").is_none());
    assert_eq!(second["model_tpm_limit"], json!({"mini": 40}));
    assert_eq!(second["model_rpm_limit"], json!({"o3": 4}));
    assert_eq!(
        second["model_max_budget"],
        json!({"mini": {"budget_limit": 1}})
    );
    let team = &policy["teams"][0];
    assert_eq!(team["rpm_limit"], 100, "from the tier");
    assert_eq!(team["model_tpm_limit"], json!({"openai/gpt-4o": 5000}));
    assert_eq!(
        policy["users"],
        json!([{"user_id": "alice", "rpm_limit": 7}]),
        "a user with limits and no budget is carried, without its empty window"
    );
    assert_eq!(
        policy["end_users"],
        json!([{"user_id": "cust-1", "tpm_limit": 20000}])
    );
    let models = policy["model_list"].as_array().unwrap();
    let params = |i: usize| &models[i]["litellm_params"];
    assert_eq!(
        (&params(0)["rpm"], &params(0)["tpm"]),
        (&json!(600), &json!(90000))
    );
    assert_eq!(params(0)["weight"], 1000.0, "rpm is still the weight");
    assert_eq!(params(1)["weight"], 500.0);
    assert_eq!(models.len(), 4, "the two equal mini deployments are one");
    assert_eq!(params(2)["tpm"], 100, "with the capacity of both");
    assert!(params(3).get("rpm").is_none() && params(3).get("tpm").is_none());
    assert_eq!(policy["settings"]["token_rate_limit_type"], "output");

    let report = imported.not_carried.join("\n");
    for expected in [
        "model_list[4].litellm_params.rpm: 2.5 is not a whole number",
        "keys[1].tpm_limit: 1.5 is not a whole number",
        "keys[0].metadata.rpm_limit_type: \"guaranteed_throughput\" is not carried",
        "users[0].metadata.model_rpm_limit: per-model limits of users are not enforced",
    ] {
        assert!(
            report.contains(expected),
            "{expected} missing from:\n{report}"
        );
    }
    for absent in [
        "keys[1].rpm_limit_type",
        "teams[0].metadata",
        "model_max_budget.o3",
        "rpm_limit: not",
        "token_rate_limit_type",
    ] {
        assert!(!report.contains(absent), "{absent} named in:\n{report}");
    }

    let compiled = compile(&serde_json::to_vec(&policy).unwrap()).unwrap();
    let limits = compiled.keys[0].limits.as_ref().unwrap();
    assert_eq!(
        (limits.rpm, limits.tpm, limits.parallel),
        (Some(10), Some(1000), Some(2))
    );
    assert_eq!(compiled.keys[0].model_limits.exact["gpt-4o"].rpm, Some(3));
    assert_eq!(compiled.keys[1].model_limits.exact["mini"].tpm, Some(40));
    let team = compiled.teams[0].limits.as_ref().unwrap();
    assert_eq!(team.rpm, Some(100));
    assert_eq!(
        compiled.teams[0].model_limits.exact["openai/gpt-4o"].tpm,
        Some(5000)
    );
    assert_eq!(compiled.user_limits["alice"].rpm, Some(7));
    assert!(compiled.users.is_empty(), "alice has no budget");
    assert_eq!(compiled.end_user_limits["cust-1"].tpm, Some(20000));
    let capacity = compiled.deployments[0].limits.as_ref().unwrap();
    assert_eq!((capacity.rpm, capacity.tpm), (Some(600), Some(90000)));
    assert_eq!(compiled.token_count, TokenCount::Output);
}

#[test]
fn an_unknown_token_rate_limit_type_is_named() {
    let config = "model_list: []\ngeneral_settings:\n  token_rate_limit_type: cached\n";
    let imported = imported(config, &json!({}));
    assert!(imported.policy.get("settings").is_none());
    let [why] = imported.not_carried.as_slice() else {
        panic!("{:?}", imported.not_carried);
    };
    assert!(
        why.starts_with("general_settings.token_rate_limit_type: \"cached\" is not total"),
        "{why}"
    );
}
