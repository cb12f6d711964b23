//! The `tollgate` command: validate, explain and hash-key, run as a real process.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::process::{Command, Output};

fn tollgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const EXAMPLE: &str = "envoy/policy.example.json";

fn explain(key: &str, model: &str) -> Output {
    tollgate(&[
        "explain", "--config", EXAMPLE, "--key", key, "--model", model,
    ])
}

#[test]
fn validate_prints_a_summary_for_the_example_config() {
    let out = tollgate(&["validate", EXAMPLE]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "ok: version 2026-11-23.1: 2 keys, 1 teams, 3 deployments, 4 cost-map models, 2 providers"
    );
}

#[test]
fn the_readme_sample_config_validates() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme.split("## Sample config").nth(1).unwrap();
    let sample = section
        .split("```json\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let path = std::env::temp_dir().join(format!(
        "tollgate-readme-sample-{}.json",
        std::process::id()
    ));
    std::fs::write(&path, sample).unwrap();
    let out = tollgate(&["validate", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn validate_lists_every_error_with_its_path() {
    let dir = std::env::temp_dir().join(format!("tollgate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"version":"v1","keys":[{"key_hash":"sk-plain"},{"key_hash":"00","team_id":"ghost"}]}"#,
    )
    .unwrap();
    let out = tollgate(&["validate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("error: keys[0].key_hash: looks like a plain-text key"),
        "{err}"
    );
    assert!(
        err.contains("error: keys[1].key_hash: must be the 64-character hex"),
        "{err}"
    );
    assert!(
        err.contains("error: keys[1].team_id: team \"ghost\" is not defined"),
        "{err}"
    );
    assert!(err.contains("refused (3 errors)"), "{err}");
}

#[test]
fn explain_exits_zero_when_admitted_and_shows_the_alias_chain_and_route() {
    let out = explain("sk-demo-search-1", "fast");
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains(r#""fast" -> "gpt-4o-mini" (model_group_alias)"#),
        "{text}"
    );
    assert!(
        text.contains(r#"deployment "openai-gpt-4o-mini" -> cluster "openai""#),
        "{text}"
    );
    assert!(text.trim_end().ends_with("ALLOW"), "{text}");
}

#[test]
fn explain_exits_one_with_the_exact_denial() {
    let out = explain("sk-demo-search-1", "smart");
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("DENY 403 model_not_allowed: The model 'smart' is not allowed"));
    let unknown = explain("sk-nobody", "fast");
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stdout(&unknown).contains("DENY 401 invalid_api_key"));
}

#[test]
fn explain_classifies_the_azure_path_count_tokens_and_stored_responses_as_the_filter_does() {
    let at = |path: &str, model: Option<&str>| {
        let mut args = vec![
            "explain",
            "--config",
            EXAMPLE,
            "--key",
            "sk-demo-search-1",
            "--path",
            path,
        ];
        args.extend(model.map(|m| ["--model", m]).into_iter().flatten());
        tollgate(&args)
    };
    // The path names the model: "fast" is admitted whatever --model says, "smart" is not.
    let azure = at(
        "/openai/deployments/fast/chat/completions?api-version=2024-10-21",
        Some("smart"),
    );
    let text = stdout(&azure);
    assert_eq!(azure.status.code(), Some(0), "{text}");
    assert!(text.contains(r#"naming model "fast""#), "{text}");
    assert!(
        text.contains("upstream path: /v1/chat/completions"),
        "{text}"
    );
    let refused = at("/openai/deployments/smart/chat/completions", Some("fast"));
    assert_eq!(refused.status.code(), Some(1));
    assert!(stdout(&refused).contains("DENY 403 model_not_allowed: The model 'smart'"));
    let hostile = at("/openai/deployments/..%2Fx/embeddings", None);
    assert!(
        stdout(&hostile).contains("DENY 400 invalid_model"),
        "{}",
        stdout(&hostile)
    );
    let count = at("/v1/messages/count_tokens", Some("fast"));
    let text = stdout(&count);
    assert_eq!(count.status.code(), Some(0), "{text}");
    assert!(text.contains("nothing reserved or metered"), "{text}");
    // A stored response is a GET; explain has no marked id, so it is not found.
    let stored = at("/v1/responses/resp_123", None);
    assert!(
        stdout(&stored).contains("response_not_found") || stdout(&stored).contains("503"),
        "{}",
        stdout(&stored)
    );
    // models.retrieve is a GET too.
    let retrieve = at("/v1/models/fast", Some("fast"));
    assert_eq!(retrieve.status.code(), Some(0), "{}", stdout(&retrieve));
}

#[test]
fn hash_key_prints_the_sha256_to_store() {
    let out = tollgate(&["hash-key", "sk-demo-search-1"]);
    assert_eq!(
        stdout(&out).trim(),
        "25f9468a8e483cec0d2b2aa00cc559ac4d259d24936d21828fb64d2a4b3634f7"
    );
    assert_eq!(tollgate(&["hash-key", "not-a-key"]).status.code(), Some(2));
}

#[test]
fn build_config_turns_yaml_and_the_litellm_map_into_a_smaller_valid_plugin_config() {
    let out_path = std::env::temp_dir().join(format!("tollgate-build-{}.json", std::process::id()));
    let out = tollgate(&[
        "build-config",
        "--policy",
        "envoy/policy.example.yaml",
        "--cost-map",
        "tests/data/model_prices_and_context_window.json",
        "--output",
        out_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("4551 cost-map models"),
        "{}",
        stderr(&out)
    );
    let built = std::fs::read(&out_path).unwrap();
    let full = std::fs::metadata("tests/data/model_prices_and_context_window.json").unwrap();
    assert!(
        (built.len() as u64) < full.len() / 2,
        "the trimmed map is not smaller"
    );
    let value: serde_json::Value = serde_json::from_slice(&built).unwrap();
    let gpt = &value["cost_map"]["gpt-4o-mini"];
    assert_eq!(gpt["input_cost_per_token"], 1.5e-7);
    assert!(gpt.get("supports_vision").is_none() && gpt.get("mode").is_none());
    let validated = tollgate(&["validate", out_path.to_str().unwrap()]);
    assert_eq!(validated.status.code(), Some(0), "{}", stderr(&validated));
    std::fs::remove_file(&out_path).unwrap();

    let bad = std::env::temp_dir().join(format!("tollgate-bad-{}.yaml", std::process::id()));
    std::fs::write(
        &bad,
        "version: v1\nkeys:\n  - key_alias: a\n    key_hash: sk-plaintext\n",
    )
    .unwrap();
    let refused = tollgate(&["build-config", "--policy", bad.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1));
    // The error names the YAML line and column of the bad value, and its path.
    let at = format!("{}:4:15: keys[0].key_hash", bad.to_str().unwrap());
    assert!(stderr(&refused).contains(&at), "{}", stderr(&refused));
    std::fs::write(&bad, "version: v1\nkeys: [\n  {key_hash: x\n").unwrap();
    let unparsable = tollgate(&["build-config", "--policy", bad.to_str().unwrap()]);
    assert_ne!(unparsable.status.code(), Some(0));
    assert!(
        stderr(&unparsable).contains("not valid YAML") && stderr(&unparsable).contains("line "),
        "{}",
        stderr(&unparsable)
    );
    // YAML 1.1 numbers, as LiteLLM's PyYAML reads them.
    std::fs::write(
        &bad,
        "version: v1\nkeys:\n  - key_hash: sk-plaintext\n    max_budget: 20_000\n",
    )
    .unwrap();
    let numbered = tollgate(&["build-config", "--policy", bad.to_str().unwrap()]);
    assert!(
        !stderr(&numbered).contains("max_budget"),
        "20_000 is a number: {}",
        stderr(&numbered)
    );
    std::fs::remove_file(&bad).unwrap();
}

#[test]
fn import_litellm_writes_a_policy_that_build_config_accepts() {
    let dir = std::env::temp_dir().join(format!("tollgate-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        "model_list:\n  - model_name: claude\n    litellm_params: {model: anthropic/claude-sonnet-4-6, \
         api_key: os.environ/ANTHROPIC_API_KEY, tpm: 1000}\nrouter_settings:\n  model_group_alias: {smart: claude}\n  \
         routing_strategy: usage-based-routing-v2\n",
    )
    .unwrap();
    let keys = dir.join("keys.json");
    std::fs::write(
        &keys,
        format!(
            r#"{{"keys":[{{"token":"{}","key_alias":"k","models":["smart"]}}]}}"#,
            "b".repeat(64)
        ),
    )
    .unwrap();
    let policy = dir.join("policy.json");
    let out = tollgate(&[
        "import-litellm",
        config.to_str().unwrap(),
        "--keys",
        keys.to_str().unwrap(),
        "--output",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("litellm_params.tpm"),
        "the deployment's tpm is carried: {}",
        stderr(&out)
    );
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&policy).unwrap()).unwrap();
    assert_eq!(written["model_list"][0]["litellm_params"]["tpm"], 1000);
    let built = dir.join("plugin.json");
    let out = tollgate(&[
        "build-config",
        "--policy",
        policy.to_str().unwrap(),
        "--cost-map",
        "tests/data/model_prices_and_context_window.json",
        "--output",
        built.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let explained = tollgate(&[
        "explain",
        "--config",
        built.to_str().unwrap(),
        "--key",
        "sk-unknown",
        "--model",
        "smart",
    ]);
    assert_eq!(
        explained.status.code(),
        Some(1),
        "an unknown key is refused"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn explain_routes_a_group_grant_only_to_the_deployments_of_that_group() {
    // Issue 10, item 8, and issue 14, item 7: `openai/o1*` (premium) is more specific than
    // `openai/*` (basic) and decides alone, so a key granted only `basic` is refused o1 (as
    // LiteLLM refuses it) and routed to the basic deployment for what only `openai/*` serves.
    let hash = |key: &str| stdout(&tollgate(&["hash-key", key])).trim().to_string();
    let dir = std::env::temp_dir().join(format!("tollgate-explain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("policy.json");
    let policy = serde_json::json!({
        "version": "v1",
        "model_list": [
            {"model_name": "openai/*", "litellm_params": {"model": "openai/*", "api_key_env": "BASIC_KEY"},
             "cluster": "openai", "model_info": {"id": "basic", "access_groups": ["basic"]}},
            {"model_name": "openai/o1*", "litellm_params": {"model": "openai/o1*", "api_key_env": "PREMIUM_KEY"},
             "cluster": "openai", "model_info": {"id": "premium", "access_groups": ["premium"]}}],
        "teams": [{"team_id": "t", "models": ["basic"]}],
        "keys": [
            {"key_hash": hash("sk-basic"), "models": ["basic"]},
            {"key_hash": hash("sk-split"), "team_id": "t", "models": ["premium"]}]
    });
    std::fs::write(&config, policy.to_string()).unwrap();
    let path = config.to_str().unwrap();
    let run = |key: &str, model: &str| {
        tollgate(&["explain", "--config", path, "--key", key, "--model", model])
    };
    let basic = run("sk-basic", "openai/o1-pro");
    let text = stdout(&basic);
    assert_eq!(basic.status.code(), Some(1), "{text}");
    assert!(text.contains("DENY 403 model_not_allowed"), "{text}");
    let other = run("sk-basic", "openai/gpt-4.1");
    let text = stdout(&other);
    assert_eq!(other.status.code(), Some(0), "{text}");
    assert!(
        text.contains(r#"deployment "basic" -> cluster "openai""#),
        "{text}"
    );
    assert!(text.contains("access group \"basic\""), "{text}");
    let split = run("sk-split", "openai/o1-pro");
    assert_eq!(split.status.code(), Some(1));
    assert!(
        stdout(&split).contains("DENY 403 model_not_allowed"),
        "{}",
        stdout(&split)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_claude_newer_than_the_map_is_placed_by_its_fallback_rules_through_build_config() {
    // Phase 2 · 3/5 item 3: LiteLLM 1.109.1 admits claude-<family>-<n> for an anthropic/* key
    // through the cost map's fallback_generalizations; so does the built plugin config.
    let hash = |key: &str| stdout(&tollgate(&["hash-key", key])).trim().to_string();
    let dir = std::env::temp_dir().join(format!("tollgate-fallback-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.json");
    let doc = serde_json::json!({
        "version": "v1",
        "model_list": [
            {"model_name": "anthropic/*", "litellm_params": {"model": "anthropic/*", "api_key_env": "ANTHROPIC_API_KEY"},
             "cluster": "anthropic"},
            {"model_name": "bedrock/*", "litellm_params": {"model": "bedrock/*"}, "cluster": "bedrock"}],
        "keys": [
            {"key_hash": hash("sk-anthropic"), "models": ["anthropic/*"]},
            {"key_hash": hash("sk-bedrock"), "models": ["bedrock/*"]}]
    });
    std::fs::write(&policy, doc.to_string()).unwrap();
    let plugin = dir.join("plugin.json");
    let built = tollgate(&[
        "build-config",
        "--policy",
        policy.to_str().unwrap(),
        "--cost-map",
        "tests/data/model_prices_and_context_window.json",
        "--output",
        plugin.to_str().unwrap(),
    ]);
    assert_eq!(built.status.code(), Some(0), "{}", stderr(&built));
    let explain = |key: &str, model: &str| {
        tollgate(&[
            "explain",
            "--config",
            plugin.to_str().unwrap(),
            "--key",
            key,
            "--model",
            model,
        ])
    };
    let newer = explain("sk-anthropic", "claude-newfamily-9");
    assert_eq!(newer.status.code(), Some(0), "{}", stdout(&newer));
    assert!(
        stdout(&newer).contains(r#"cluster "anthropic""#),
        "{}",
        stdout(&newer)
    );
    let not_bedrock = explain("sk-bedrock", "claude-newfamily-9");
    assert_eq!(
        not_bedrock.status.code(),
        Some(1),
        "{}",
        stdout(&not_bedrock)
    );
    let bedrock_id = explain("sk-bedrock", "eu.anthropic.claude-newfamily-9");
    assert_eq!(bedrock_id.status.code(), Some(0), "{}", stdout(&bedrock_id));
    let not_claude = explain("sk-anthropic", "claude-newfamily-preview");
    assert_eq!(not_claude.status.code(), Some(1), "{}", stdout(&not_claude));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn base_model_prices_a_custom_deployment_and_build_config_names_the_unpriced_ones() {
    // Phase 2 · 3/5 item 6: an Azure deployment name is priced through model_info.base_model;
    // one without it would 403 every budgeted key, so build-config warns about it.
    let dir = std::env::temp_dir().join(format!("tollgate-base-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        "model_list:\n\
         - model_name: gpt-4o\n  litellm_params: {model: azure/my-prod, api_base: 'https://eu.openai.azure.com/', api_key: os.environ/EU}\n  model_info: {base_model: azure/gpt-4o}\n\
         - model_name: gpt-4o\n  litellm_params: {model: azure/my-us, api_base: 'https://us.openai.azure.com/', api_key: os.environ/US}\n\
         - model_name: own\n  litellm_params: {model: openai/own, api_base: 'http://127.0.0.1:8000/v1'}\n  model_info: {input_cost_per_token: 1.0e-6, output_cost_per_token: 2.0e-6}\n",
    )
    .unwrap();
    let keys = dir.join("keys.json");
    let export = format!(
        r#"{{"keys":[{{"token":"{}","models":[],"max_budget":10,"budget_duration":"monthly"}}]}}"#,
        "d".repeat(64)
    );
    std::fs::write(&keys, export).unwrap();
    let policy = dir.join("policy.json");
    let imported = tollgate(&[
        "import-litellm",
        config.to_str().unwrap(),
        "--keys",
        keys.to_str().unwrap(),
        "--output",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(imported.status.code(), Some(0), "{}", stderr(&imported));
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&policy).unwrap()).unwrap();
    assert_eq!(
        written["model_list"][0]["model_info"]["base_model"],
        "azure/gpt-4o"
    );
    assert_eq!(
        written["model_list"][2]["model_info"]["input_cost_per_token"],
        1.0e-6
    );
    let built = tollgate(&[
        "build-config",
        "--policy",
        policy.to_str().unwrap(),
        "--cost-map",
        "tests/data/model_prices_and_context_window.json",
        "--output",
        dir.join("plugin.json").to_str().unwrap(),
    ]);
    let log = stderr(&built);
    assert_eq!(built.status.code(), Some(0), "{log}");
    let warnings: Vec<&str> = log.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("model_list[1]") && warnings[0].contains("azure/my-us"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn litellm_timezone_is_carried_and_explain_shows_windows_at_local_midnight() {
    let dir = std::env::temp_dir().join(format!("tollgate-cli-tz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        "model_list:\n- model_name: gpt-4o\n  litellm_params: {model: openai/gpt-4o}\n\
         litellm_settings:\n  timezone: US/Eastern\n",
    )
    .unwrap();
    let hashed = tollgate(&["hash-key", "sk-tz-cli-1"]);
    let hash = stdout(&hashed).trim().to_string();
    let keys = dir.join("keys.json");
    let export = format!(
        r#"{{"keys":[{{"token":"{hash}","models":[],"max_budget":10,"budget_duration":"monthly"}}]}}"#
    );
    std::fs::write(&keys, export).unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let imported = tollgate(&[
        "import-litellm",
        &path("config.yaml"),
        "--keys",
        &path("keys.json"),
        "--output",
        &path("policy.json"),
        "--strict",
    ]);
    assert_eq!(imported.status.code(), Some(0), "{}", stderr(&imported));
    let built = tollgate(&[
        "build-config",
        "--policy",
        &path("policy.json"),
        "--cost-map",
        "tests/data/model_prices_and_context_window.json",
        "--output",
        &path("plugin.json"),
    ]);
    assert_eq!(built.status.code(), Some(0), "{}", stderr(&built));
    let out = tollgate(&[
        "explain",
        "--config",
        &path("plugin.json"),
        "--key",
        "sk-tz-cli-1",
        "--model",
        "gpt-4o",
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let window = text.lines().find(|l| l.contains("window:")).unwrap();
    assert!(
        window.ends_with("(windows counted in US/Eastern)"),
        "{window}"
    );
    // The first of a month at midnight in New York is 04:00 or 05:00 UTC, never 00:00.
    let starts = window.split(" from ").nth(1).unwrap();
    assert!(
        starts.get(7..20) == Some("-01T04:00:00Z") || starts.get(7..20) == Some("-01T05:00:00Z"),
        "{window}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn build_config_without_a_cost_map_uses_the_bundled_one() {
    // LiteLLM's Quick Start catch-all, imported then built as the importer's last line says
    // ("add the cost map with build-config"), without naming a map: the built policy used to
    // have no cost map at all, so no bare name reached any provider (404 for gpt-4o).
    let dir = std::env::temp_dir().join(format!("tollgate-bundled-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        "model_list:\n  - model_name: \"*\"\n    litellm_params:\n      model: \"*\"\n\
         general_settings:\n  master_key: sk-1234\n",
    )
    .unwrap();
    let policy = dir.join("policy.json");
    let out = tollgate(&[
        "import-litellm",
        config.to_str().unwrap(),
        "--output",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let built = dir.join("plugin.json");
    let out = tollgate(&[
        "build-config",
        "--policy",
        policy.to_str().unwrap(),
        "--output",
        built.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("bundled"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("4551 cost-map models"),
        "{}",
        stderr(&out)
    );
    let explained = tollgate(&[
        "explain",
        "--config",
        built.to_str().unwrap(),
        "--key",
        "sk-1234",
        "--model",
        "gpt-4o",
    ]);
    assert_eq!(explained.status.code(), Some(0), "{}", stdout(&explained));
    assert!(stdout(&explained).contains("cluster \"openai\""));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn explain_lists_the_rate_limits_a_request_counts_against() {
    let dir = std::env::temp_dir().join(format!("tollgate-cli-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hash = |key: &str| stdout(&tollgate(&["hash-key", key])).trim().to_string();
    let policy = format!(
        r#"{{"version":"v1",
         "settings":{{"budget_timezone":"Europe/Paris","token_rate_limit_type":"output"}},
         "cost_map":{{"gpt-4o":{{"litellm_provider":"openai","input_cost_per_token":1e-06,
                                 "output_cost_per_token":2e-06,"max_output_tokens":100}}}},
         "model_list":[{{"model_name":"gpt-4o","cluster":"openai","model_info":{{"id":"gpt4o-a"}},
                         "litellm_params":{{"model":"openai/gpt-4o","rpm":600,"tpm":90000}}}}],
         "teams":[{{"team_id":"t","team_alias":"Team","max_parallel_requests":4,
                    "model_tpm_limit":{{"gpt-4o":5000}}}}],
         "users":[{{"user_id":"alice","rpd_limit":1000}}],
         "keys":[{{"key_hash":"{}","key_alias":"k","team_id":"t","user_id":"alice",
                   "rpm_limit":10,"model_rpm_limit":{{"openai/gpt-4o":3}}}},
                 {{"key_hash":"{}","key_alias":"zero","rpm_limit":0}}]}}"#,
        hash("sk-limits-cli-1"),
        hash("sk-limits-cli-0")
    );
    let path = dir.join("policy.json");
    std::fs::write(&path, policy).unwrap();
    let path = path.to_str().unwrap();
    let run = |key: &str| {
        tollgate(&[
            "explain", "--config", path, "--key", key, "--model", "gpt-4o",
        ])
    };
    let out = run("sk-limits-cli-1");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(
            "  rate limits: counts against 7 (counters start empty here; this request's worst \
             case, 100 tokens, is held on each token limit (at most the limit) until the \
             response ends)"
        ),
        "{text}"
    );
    for line in [
        "    key \"k\": rpm 10 requests per minute",
        "    team \"Team\": parallel 4 requests in flight",
        "    key \"k\" on model \"openai/gpt-4o\": rpm 3 requests per minute",
        "    team \"Team\" on model \"gpt-4o\": tpm 5000 tokens per minute",
        "    deployment \"gpt4o-a\" (serving \"gpt-4o\"): rpm 600 requests per minute",
        "    deployment \"gpt4o-a\" (serving \"gpt-4o\"): tpm 90000 tokens per minute",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from:\n{text}"
        );
    }
    let day = text
        .lines()
        .find(|l| l.starts_with("    user \"alice\": rpd 1000 requests per day (from "))
        .unwrap();
    assert!(day.ends_with(", days in Europe/Paris)"), "{day}");
    // Midnight in Paris is 23:00 or 22:00 UTC, never 00:00.
    assert!(
        day.contains("T23:00:00Z until") || day.contains("T22:00:00Z until"),
        "{day}"
    );
    assert!(text.trim_end().ends_with("ALLOW"), "{text}");

    let refused = run("sk-limits-cli-0");
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stdout(&refused).contains(
            "DENY 429 rpm: Rate limit reached for key 'zero': 0 requests per minute (0 made this \
             minute); retry in "
        ),
        "{}",
        stdout(&refused)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
