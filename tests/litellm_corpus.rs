//! The LiteLLM corpus (`tests/data/litellm/`: `wheel/`, the configs of the litellm wheel, and
//! `docs/`, the configs of LiteLLM's docs pages): every real config imports, builds and
//! validates, or is refused with a message naming what to do; the README's corpus table says
//! the same.
//!
//! Each config runs twice: with its `os.environ/` references set (to made-up addresses, as an
//! operator's shell would have them), and, where an `api_base` names one, without them: then
//! the import must fail naming the variable.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Output;

mod litellm_common;
use litellm_common::{build_config, environment, tollgate};

/// What importing a corpus config does: `None` for success, else a piece of the refusal (exit 1
/// for a config that cannot be imported as it is, 2 for one that is not even valid YAML).
const EXPECTED: &[(&str, Option<&str>)] = &[
    ("wheel/dev_config.yaml", None),
    (
        "wheel/example_config_yaml___health_check_test_config.yaml",
        None,
    ),
    (
        "wheel/example_config_yaml__adaptive_router_example.yaml",
        None,
    ),
    (
        "wheel/example_config_yaml__agentcore_websearch_config.yaml",
        None,
    ),
    ("wheel/example_config_yaml__aliases_config.yaml", None),
    ("wheel/example_config_yaml__azure_config.yaml", None),
    (
        "wheel/example_config_yaml__bing_grounding_websearch_config.yaml",
        None,
    ),
    (
        "wheel/example_config_yaml__code_interpreter_interception_config.yaml",
        None,
    ),
    (
        "wheel/example_config_yaml__disable_schema_update.yaml",
        None,
    ),
    ("wheel/example_config_yaml__enterprise_config.yaml", None),
    ("wheel/example_config_yaml__langfuse_config.yaml", None),
    (
        "wheel/example_config_yaml__load_balancer.yaml",
        Some("\"mistralai\" is not a LiteLLM provider and the cost map does not know the model"),
    ),
    (
        "wheel/example_config_yaml__multi_instance_simple_config.yaml",
        None,
    ),
    ("wheel/example_config_yaml__oai_misc_config.yaml", None),
    ("wheel/example_config_yaml__opentelemetry_config.yaml", None),
    ("wheel/example_config_yaml__otel_test_config.yaml", None),
    ("wheel/example_config_yaml__pass_through_config.yaml", None),
    (
        "wheel/example_config_yaml__reject_clientside_metadata_tags_config.yaml",
        None,
    ),
    ("wheel/example_config_yaml__simple_config.yaml", None),
    (
        "wheel/example_config_yaml__spend_tracking_config.yaml",
        None,
    ),
    (
        "wheel/example_config_yaml__store_model_db_config.yaml",
        None,
    ),
    ("wheel/example_config_yaml__test_pipeline_config.yaml", None),
    (
        "wheel/example_config_yaml__tool_permission_example.yaml",
        None,
    ),
    (
        "wheel/example_config_yaml__websearch_interception_config.yaml",
        None,
    ),
    (
        "wheel/guardrails__guardrail_hooks__generic_guardrail_api__example_config.yaml",
        None,
    ),
    (
        "wheel/guardrails__guardrail_hooks__llm_shield_proxy__example_config.yaml",
        None,
    ),
    ("wheel/model_config.yaml", None),
    ("wheel/proxy_config.yaml", None),
    ("wheel/wildcard_config.yaml", None),
    (
        "docs/providers_anthropic__proxy.yaml",
        Some("\"claude-3-opus-20240229\" has no provider prefix and the cost map does not know it"),
    ),
    ("docs/providers_azure__proxy.yaml", None),
    ("docs/providers_bedrock__proxy.yaml", None),
    ("docs/proxy_configs__load_balancing.yaml", None),
    (
        "docs/proxy_configs__model_specific_params.yaml",
        Some("api_base: \"your_ollama_api_base\" is not a URL"),
    ),
    ("docs/proxy_configs__quick_start.yaml", None),
    ("docs/proxy_docker_quick_start__common_patterns.yaml", None),
    ("docs/proxy_docker_quick_start__virtual_key.yaml", None),
    (
        "docs/proxy_load_balancing__quick_start.yaml",
        Some("api_base: \"<your-azure-endpoint>\" is not a URL (it looks like a placeholder"),
    ),
    ("docs/proxy_model_access_groups__access_groups.yaml", None),
    ("docs/proxy_model_access_groups__wildcard_models.yaml", None),
    ("docs/proxy_team_based_routing.yaml", None),
    ("docs/proxy_team_model_add__stored_model.yaml", None),
    ("docs/proxy_virtual_keys__setup.yaml", None),
    (
        "docs/proxy_virtual_keys__upgrade_downgrade_models.yaml",
        Some(
            "not valid YAML: error: line 18 column 19: while scanning a plain scalar, found a tab",
        ),
    ),
    ("docs/wildcard_routing.yaml", None),
];

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/litellm")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `(config, result, number of settings not carried)` of one corpus config.
fn run(name: &str, scratch: &Path) -> (String, usize) {
    let path = corpus().join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let env = environment(&text);
    let policy = scratch.join("policy.json");
    let args = [
        "import-litellm",
        path.to_str().unwrap(),
        "--output",
        policy.to_str().unwrap(),
    ];
    let out = tollgate(&args, &env);
    let log = stderr(&out);
    let expected = EXPECTED.iter().find(|(n, _)| *n == name).map(|(_, e)| *e);
    let expected = expected.unwrap_or_else(|| panic!("{name} is not in EXPECTED"));
    match expected {
        Some(refusal) => {
            assert!(
                matches!(out.status.code(), Some(1 | 2)),
                "{name} should be refused: {log}"
            );
            assert!(log.contains(refusal), "{name}: {log}");
            return ("refused".into(), 0);
        }
        None => assert_eq!(out.status.code(), Some(0), "{name}: {log}"),
    }
    let not_carried = log
        .lines()
        .skip_while(|l| !l.starts_with("not carried over"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .count();
    let plugin = scratch.join("plugin.json");
    let built = build_config(&policy, &plugin);
    assert_eq!(built.status.code(), Some(0), "{name}: {}", stderr(&built));
    let validated = tollgate(&["validate", plugin.to_str().unwrap()], &[]);
    assert_eq!(
        validated.status.code(),
        Some(0),
        "{name}: {}",
        stderr(&validated)
    );
    // Without its environment, an `api_base: os.environ/X` stops the import, naming X.
    let config: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let base_var = config["model_list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["litellm_params"]["api_base"].as_str())
        .find_map(|base| base.strip_prefix("os.environ/"));
    if let Some(var) = base_var {
        let bare = tollgate(&args, &[]);
        let log = stderr(&bare);
        assert_eq!(bare.status.code(), Some(1), "{name} without {var}: {log}");
        assert!(
            log.contains(&format!("set {var} before importing")),
            "{name}: {log}"
        );
    }
    ("ok".into(), not_carried)
}

#[test]
fn every_corpus_config_imports_builds_and_validates_or_says_why_not() {
    let scratch = std::env::temp_dir().join(format!("tollgate-corpus-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut files: Vec<String> = ["wheel", "docs"]
        .into_iter()
        .flat_map(|dir| {
            std::fs::read_dir(corpus().join(dir))
                .unwrap()
                .map(move |e| format!("{dir}/{}", e.unwrap().file_name().to_string_lossy()))
        })
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        EXPECTED.len(),
        "every corpus file has an expected outcome"
    );
    let mut wrong_rows = Vec::new();
    for name in &files {
        let (result, not_carried) = run(name, &scratch);
        let row = format!("| `{name}` | {result} | {not_carried} |");
        if !readme.contains(&row) {
            wrong_rows.push(row);
        }
    }
    std::fs::remove_dir_all(&scratch).unwrap();
    assert!(
        wrong_rows.is_empty(),
        "the README's corpus table should have these rows:\n{}",
        wrong_rows.join("\n")
    );
}
