//! The LiteLLM corpus (`tests/data/litellm/`): every real config imports, builds and validates,
//! or is refused with a message naming what to do; the README's corpus table says the same.
//!
//! Each config runs twice: with its `os.environ/` references set (to made-up addresses, as an
//! operator's shell would have them), and, where an `api_base` names one, without them: then
//! the import must fail naming the variable.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const COST_MAP: &str = "tests/data/model_prices_and_context_window.json";

/// What importing a corpus config does: `None` for success, else a piece of the refusal.
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
];

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/litellm")
}

/// Every `os.environ/NAME` the config names, each set to a made-up address.
fn environment(text: &str) -> Vec<(String, String)> {
    let mut names: Vec<String> = text
        .split("os.environ/")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let host = name.to_ascii_lowercase().replace('_', "-");
            let value = if name.ends_with("MASTER_KEY") {
                format!("sk-made-up-{host}")
            } else {
                format!("https://{host}.example.test")
            };
            (name, value)
        })
        .collect()
}

fn tollgate(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap()
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
            assert_eq!(
                out.status.code(),
                Some(1),
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
    let built = tollgate(
        &[
            "build-config",
            "--policy",
            policy.to_str().unwrap(),
            "--cost-map",
            COST_MAP,
            "--output",
            plugin.to_str().unwrap(),
        ],
        &[],
    );
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
    let mut files: Vec<String> = std::fs::read_dir(corpus().join("wheel"))
        .unwrap()
        .map(|e| format!("wheel/{}", e.unwrap().file_name().to_string_lossy()))
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
