//! Unit tests of config compilation: every refusal names the JSON path of the bad field.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::core::config::key_hash::{digest, to_hex};

fn errors(json: &str) -> Vec<String> {
    match compile(json.as_bytes()) {
        Ok(_) => Vec::new(),
        Err(ConfigErrors(errors)) => errors.iter().map(ToString::to_string).collect(),
    }
}

const DEPLOYMENT: &str =
    r#"{"model_name":"gpt-4o","litellm_params":{"model":"openai/gpt-4o"},"cluster":"openai"}"#;

#[test]
fn minimal_config_compiles() {
    let policy = compile(br#"{"version":"v1"}"#).unwrap();
    assert_eq!(policy.version, "v1");
    assert_eq!(policy.max_request_body_bytes, 4 * 1024 * 1024);
}

#[test]
fn missing_version_is_reported() {
    assert_eq!(errors("{}"), ["missing field `version` at line 1 column 2"]);
}

#[test]
fn unknown_field_is_refused_with_its_path() {
    let e = errors(r#"{"version":"v1","keys":[{"key_hash":"00","max_budgte":1}]}"#);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("keys[0].max_budgte: unknown field `max_budgte`"),
        "{e:?}"
    );
}

#[test]
fn plain_text_key_is_refused() {
    let e = errors(r#"{"version":"v1","keys":[{"key_hash":"sk-live-123"}]}"#);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("keys[0].key_hash: looks like a plain-text key"),
        "{e:?}"
    );
}

#[test]
fn malformed_and_duplicate_hashes_are_refused() {
    let h = to_hex(&digest("sk-a"));
    let json = format!(
        r#"{{"version":"v1","keys":[{{"key_hash":"{h}"}},{{"key_hash":"abc"}},{{"key_hash":"{h}"}}]}}"#
    );
    let e = errors(&json);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with("keys[1].key_hash: must be the 64-character hex"));
    assert!(e[1].starts_with("keys[2].key_hash: the same key is already defined at keys[0]"));
}

#[test]
fn every_semantic_error_is_reported_at_once() {
    let json = format!(
        r#"{{"version":"v1","model_list":[{DEPLOYMENT}],
            "model_group_alias":{{"fast":"nowhere"}},
            "teams":[{{"team_id":"t","max_budget":-1}}],
            "keys":[{{"key_hash":"{}","team_id":"missing","expires":"soon","budget_duration":"1y"}}]}}"#,
        to_hex(&digest("sk-x"))
    );
    let e = errors(&json);
    let paths: Vec<&str> = e.iter().map(|s| s.split(':').next().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "model_group_alias.fast",
            "teams[0].max_budget",
            "keys[0].team_id",
            "keys[0].expires",
            "keys[0].budget_duration",
            "keys[0].budget_duration"
        ]
    );
}

#[test]
fn alias_whose_target_no_deployment_serves_is_refused() {
    let json = format!(
        r#"{{"version":"v1","model_list":[{DEPLOYMENT}],"model_group_alias":{{"fast":"gpt-5"}}}}"#
    );
    let e = errors(&json);
    assert_eq!(
        e,
        [r#"model_group_alias.fast: target "gpt-5" is not served by any deployment in model_list"#]
    );
}

#[test]
fn alias_target_served_by_wildcard_deployment_is_accepted() {
    let json = r#"{"version":"v1","cost_map":{"claude-x":{"litellm_provider":"anthropic"}},
        "model_list":[{"model_name":"anthropic/*","litellm_params":{"model":"anthropic/*"},"cluster":"anthropic"}],
        "model_group_alias":{"smart":"claude-x","smart2":"anthropic/claude-y"}}"#;
    assert_eq!(errors(json), Vec::<String>::new());
}

#[test]
fn price_that_is_not_a_number_refuses_the_version() {
    let e = errors(r#"{"version":"v1","cost_map":{"gpt-4o":{"input_cost_per_token":"cheap"}}}"#);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("cost_map.gpt-4o.input_cost_per_token: "),
        "{e:?}"
    );
}

#[test]
fn deployment_errors_name_the_field() {
    let e = errors(
        r#"{"version":"v1","model_list":[
            {"model_name":"a","litellm_params":{"model":"bare-unknown"},"cluster":"c"},
            {"model_name":"b","litellm_params":{"model":"openai/b","api_key":"sk-upstream"},"cluster":"c"},
            {"model_name":"c","litellm_params":{"model":"openai/*"},"cluster":"c"},
            {"model_name":"d","litellm_params":{"model":"openai/d","api_key_env":"1BAD"},"cluster":""},
            {"model_name":"e","litellm_params":{"model":"openai/e","weight":-1},"cluster":"c",
             "model_info":{"input_cost_per_token":-2}}]}"#,
    );
    let paths: Vec<&str> = e.iter().map(|s| s.split(": ").next().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "model_list[0].litellm_params.model",
            "model_list[1].litellm_params.api_key",
            "model_list[2].litellm_params.model",
            "model_list[3].cluster",
            "model_list[3].litellm_params.api_key_env",
            "model_list[4].litellm_params.weight",
            "model_list[4].model_info.input_cost_per_token"
        ]
    );
}

#[test]
fn bare_upstream_model_takes_its_provider_from_the_cost_map() {
    let policy = compile(
        br#"{"version":"v1","cost_map":{"gpt-4o":{"litellm_provider":"openai"}},
            "model_list":[{"model_name":"gpt-4o","litellm_params":{"model":"gpt-4o"},"cluster":"c"}]}"#,
    )
    .unwrap();
    assert_eq!(policy.deployments[0].provider, "openai");
    assert_eq!(policy.deployments[0].upstream_model, "gpt-4o");
}

#[test]
fn duplicate_deployment_ids_are_refused() {
    let json = format!(r#"{{"version":"v1","model_list":[{DEPLOYMENT},{DEPLOYMENT}]}}"#);
    let e = errors(&json);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].contains("already used by model_list[0]; set distinct model_info.id"),
        "{e:?}"
    );
}

#[test]
fn struct_doubles_are_accepted_for_whole_numbers() {
    let policy =
        compile(br#"{"version":"v1","settings":{"max_request_body_bytes":1024.0}}"#).unwrap();
    assert_eq!(policy.max_request_body_bytes, 1024);
    let e = errors(r#"{"version":"v1","settings":{"max_request_body_bytes":10.5}}"#);
    assert!(
        e[0].starts_with("settings.max_request_body_bytes: expected a whole number"),
        "{e:?}"
    );
}

#[test]
fn version_must_be_header_safe() {
    assert_eq!(errors(r#"{"version":"v 1"}"#).len(), 1);
    assert_eq!(errors(r#"{"version":""}"#).len(), 1);
}

#[test]
fn binary_protobuf_struct_is_refused_with_a_hint() {
    let e = errors("\n\u{16}\n\u{7}version\u{12}\u{b}\u{1a}\tv1");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("the configuration is binary protobuf"),
        "{e:?}"
    );
    assert!(compile(b"\n{\"version\":\"v1\"}").is_ok());
    assert!(compile(b"\n  \r\n\t{\n  \"version\": \"v1\"\n}\n").is_ok());
}

#[test]
fn istio_plugin_config_json_with_double_numbers_is_accepted() {
    // istiod turns the pluginConfig Struct into JSON: every number is a double.
    let policy = compile(br#"{"version":"v1","settings":{"max_request_body_bytes":4.194304e+06},
        "cost_map":{"m":{"litellm_provider":"openai","max_output_tokens":16384.0,"input_cost_per_token":2.5e-06}}}"#)
    .unwrap();
    assert_eq!(policy.max_request_body_bytes, 4_194_304);
    assert_eq!(
        policy.cost_map.get("m").unwrap().max_output_tokens,
        Some(16384)
    );
}

#[test]
fn malformed_json_is_refused_with_position() {
    let e = errors(r#"{"version":"v1","#);
    assert_eq!(e.len(), 1);
    assert!(e[0].contains("EOF"), "{e:?}");
}

#[test]
fn wildcard_deployments_are_ordered_most_specific_first() {
    let policy = compile(
        br#"{"version":"v1","model_list":[
            {"model_name":"*","litellm_params":{"model":"openai/*"},"cluster":"any"},
            {"model_name":"anthropic/*","litellm_params":{"model":"anthropic/*"},"cluster":"a"}]}"#,
    )
    .unwrap();
    let first = policy.wildcard_deployments[0] as usize;
    assert_eq!(policy.deployments[first].model_name, "anthropic/*");
}

#[test]
fn a_wildcard_upstream_has_no_more_stars_than_its_model_name() {
    let json = r#"{"version":"v1","model_list":[
        {"model_name":"bedrock/*.anthropic.*","litellm_params":{"model":"bedrock/*.anthropic.*"},"cluster":"b"},
        {"model_name":"*-mini","litellm_params":{"model":"openai/*-*"},"cluster":"o"}]}"#;
    let e = errors(json);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(
            r#"model_list[1].litellm_params.model: has 2 '*' but model_name "*-mini" has 1"#
        ),
        "{e:?}"
    );
}

#[test]
fn accounting_byte_bound_and_token_env_are_validated_with_their_paths() {
    let with = |extra: &str| {
        format!(r#"{{"version":"v1","accounting":{{"cluster":"accounting"{extra}}}}}"#)
    };
    let policy = compile(with("").as_bytes()).unwrap();
    let accounting = policy.accounting.unwrap();
    assert_eq!(accounting.max_buffered_bytes, 16 * 1024 * 1024);
    assert_eq!(accounting.token_env, None);
    let policy = compile(
        with(r#","max_buffered_bytes":65536,"token_env":"TOLLGATE_ACCOUNTING_TOKEN""#).as_bytes(),
    )
    .unwrap();
    let accounting = policy.accounting.unwrap();
    assert_eq!(accounting.max_buffered_bytes, 65536);
    assert_eq!(
        accounting.token_env.as_deref(),
        Some("TOLLGATE_ACCOUNTING_TOKEN")
    );
    for (extra, path) in [
        (
            r#","max_buffered_bytes":1000"#,
            "accounting.max_buffered_bytes",
        ),
        (
            r#","max_buffered_bytes":2000000000"#,
            "accounting.max_buffered_bytes",
        ),
        (r#","token_env":"NOT A NAME""#, "accounting.token_env"),
        (r#","token_env":"""#, "accounting.token_env"),
    ] {
        let found = errors(&with(extra));
        assert!(
            found.len() == 1 && found[0].starts_with(path),
            "{extra}: {found:?}"
        );
    }
}

#[test]
fn litellm_spelling_of_a_deployment_is_read_and_its_litellm_only_fields_are_warned_about() {
    // Phase 2 · 3/5 item 13.
    let policy = compile(
        br#"{"version":"v1","model_list":[
            {"model_name":"m","cluster":"c","litellm_params":{"model":"openai/m",
              "api_key":"os.environ/OPENAI_API_KEY","api_base":"https://x.example/v1",
              "api_version":"2024-10-21","rpm":100,"timeout":30,
              "input_cost_per_token":1e-6,"output_cost_per_token":2e-6}}]}"#,
    )
    .unwrap();
    let d = &policy.deployments[0];
    assert_eq!(d.credential_env.as_deref(), Some("OPENAI_API_KEY"));
    assert_eq!((d.prices.input, d.prices.output), (Some(1e-6), Some(2e-6)));
    // Phase 2 · 4/5: `rpm` is the deployment's capacity now, not a warning.
    assert_eq!(d.limits.as_ref().and_then(|l| l.rpm), Some(100));
    let warned: Vec<&str> = policy.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        warned,
        [
            "model_list[0].litellm_params.api_base",
            "model_list[0].litellm_params.api_version",
            "model_list[0].litellm_params.timeout"
        ]
    );
    let plain = errors(
        r#"{"version":"v1","model_list":[{"model_name":"m","cluster":"c",
            "litellm_params":{"model":"openai/m","api_key":"sk-live-secret"}}]}"#,
    );
    assert!(
        plain[0].starts_with("model_list[0].litellm_params.api_key: plain-text"),
        "{plain:?}"
    );
    let both = errors(
        r#"{"version":"v1","model_list":[{"model_name":"m","cluster":"c",
            "litellm_params":{"model":"openai/m","api_key":"os.environ/A","api_key_env":"B"}}]}"#,
    );
    assert!(
        both[0].contains("names A but api_key_env names B"),
        "{both:?}"
    );
    let typo = errors(
        r#"{"version":"v1","model_list":[{"model_name":"m","cluster":"c",
            "litellm_params":{"model":"openai/m","api_bsae":"x"}}]}"#,
    );
    assert!(
        typo[0].contains("unknown field"),
        "a real typo is still an error: {typo:?}"
    );
}

#[test]
fn budget_reset_at_anchors_windows_and_is_checked_with_its_path() {
    let key = |extra: &str| {
        format!(
            r#"{{"version":"v1","keys":[{{"key_hash":"{}","models":[],"max_budget":1{extra}}}]}}"#,
            to_hex(&digest("sk-a"))
        )
    };
    let policy = compile(
        key(r#","budget_duration":"7d","budget_reset_at":"2026-11-20T15:30:00Z""#).as_bytes(),
    )
    .unwrap();
    let budget = policy.keys[0].budget.as_ref().unwrap();
    assert_eq!(budget.anchor, 1_795_188_600);
    let lonely = errors(&key(r#","budget_reset_at":"2026-11-20T15:30:00Z""#));
    assert!(
        lonely[0].starts_with("keys[0].budget_reset_at: a window boundary needs"),
        "{lonely:?}"
    );
    let bad = errors(&key(
        r#","budget_duration":"1d","budget_reset_at":"tomorrow""#,
    ));
    assert!(bad[0].starts_with("keys[0].budget_reset_at:"), "{bad:?}");
}

#[test]
fn budget_timezone_moves_window_boundaries_to_local_midnight() {
    use crate::core::config::time::{format_rfc3339, parse_rfc3339};
    use crate::core::money::budget::applicable_budgets;
    let config = |zone: &str| {
        format!(
            r#"{{"version":"v1","settings":{{"budget_timezone":"{zone}"}},"keys":[
                {{"key_hash":"{}","models":[],"max_budget":1,"budget_duration":"daily"}},
                {{"key_hash":"{}","models":[],"max_budget":1,"budget_duration":"monthly"}}]}}"#,
            to_hex(&digest("sk-a")),
            to_hex(&digest("sk-b"))
        )
    };
    let policy = compile(config("US/Eastern").as_bytes()).unwrap();
    assert_eq!(policy.budget_zone.name(), "US/Eastern");
    let now = parse_rfc3339("2026-12-01T03:00:00Z").unwrap();
    let window = |key: usize| {
        let lines = applicable_budgets(&policy, (&policy.keys[key], None), None, None, now);
        (
            format_rfc3339(lines[0].window_start),
            format_rfc3339(lines[0].window_end.unwrap()),
        )
    };
    assert_eq!(
        window(0),
        (
            "2026-11-30T05:00:00Z".to_string(),
            "2026-12-01T05:00:00Z".to_string()
        ),
        "22:00 on Nov 30 in New York"
    );
    assert_eq!(window(1).0, "2026-11-01T04:00:00Z", "still November there");
    let bad = errors(&config("Mars/Olympus"));
    assert!(
        bad[0].starts_with("settings.budget_timezone: \"Mars/Olympus\" is not a time zone"),
        "{bad:?}"
    );
}

#[test]
fn key_and_team_tags_and_metadata_are_bounded_with_their_paths() {
    let h = to_hex(&digest("sk-a"));
    let json = format!(
        r#"{{"version":"v1","teams":[{{"team_id":"t","tags":["team-a"],"metadata":{{"cc":"4711"}}}}],
            "keys":[{{"key_hash":"{h}","team_id":"t","tags":["prod","prod"],
                      "metadata":{{"owner":"ana","n":2,"on":true,"tags":["m"],"nested":{{"x":1}}}}}}]}}"#
    );
    let policy = compile(json.as_bytes()).unwrap();
    let key = &policy.keys[0];
    assert_eq!(
        key.attribution.tags,
        ["prod", "m"],
        "each once; metadata.tags join"
    );
    let metadata: Vec<(&str, &str)> = key
        .attribution
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(metadata, [("n", "2"), ("on", "true"), ("owner", "ana")]);
    assert_eq!(policy.teams[0].attribution.tags, ["team-a"]);

    let many: Vec<String> = (0..17).map(|i| format!("\"t{i}\"")).collect();
    let json = format!(
        r#"{{"version":"v1","keys":[
            {{"key_hash":"{h}","tags":["a,b"]}},
            {{"key_hash":"{}","tags":[{}]}},
            {{"key_hash":"{}","metadata":{{"tags":"one","v":"{}"}}}}]}}"#,
        to_hex(&digest("sk-b")),
        many.join(","),
        to_hex(&digest("sk-c")),
        "v".repeat(300),
    );
    let e = errors(&json);
    assert!(
        e[0].starts_with("keys[0].tags[0]: a tag must be 1 to 64 bytes"),
        "{e:?}"
    );
    assert!(e[1].starts_with("keys[1].tags: at most 16 tags"), "{e:?}");
    assert!(
        e[2].starts_with("keys[2].metadata.tags: must be a list"),
        "{e:?}"
    );
    assert!(
        e[3].starts_with("keys[2].metadata.v: a metadata value must be at most 256"),
        "{e:?}"
    );
    assert_eq!(e.len(), 4, "{e:?}");
}
