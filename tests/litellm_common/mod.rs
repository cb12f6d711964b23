//! What the LiteLLM corpus tests (`litellm_corpus.rs`, `litellm_explain.rs`) share: running the
//! `tollgate` binary, building a policy with the cost map, and the importing shell's
//! environment (every `os.environ/` variable a config names, made up as an operator's shell
//! would have it).

use std::path::Path;
use std::process::{Command, Output};

/// The LiteLLM cost map the corpus is built with (relative to the crate's root).
pub const COST_MAP: &str = "tests/data/model_prices_and_context_window.json";

/// Runs `tollgate` from the crate's root with `args` and `env` added to the environment.
pub fn tollgate(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap()
}

/// `tollgate build-config` of `policy` with the cost map, written to `plugin`.
pub fn build_config(policy: &Path, plugin: &Path) -> Output {
    tollgate(
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
    )
}

/// Every `os.environ/NAME` the config names, each set to a made-up address.
pub fn environment(text: &str) -> Vec<(String, String)> {
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
