//! `tollgate`: the native command-line tool built from the same policy core as the filter.
//!
//! - `tollgate validate CONFIG`: every error with its JSON path, or a one-line summary.
//! - `tollgate explain --config CONFIG --key sk-... --model M [--path P]`: the decision and why;
//!   exits 0 when the request would be admitted, 1 when refused (`--model` may be left out when
//!   the path names the model, as Azure's `/openai/deployments/<name>/…` does).
//! - `tollgate hash-key sk-...` (or `-` to read the key from stdin): the SHA-256 to store.
//! - `tollgate accounting --listen ADDR --db PATH --writer-token-file F [--reader-token-file F]`:
//!   the reference accounting server.
//! - `tollgate build-config --policy P [--cost-map MAP] [--output OUT]`: the plugin-config JSON.
//! - `tollgate import-litellm CONFIG.yaml [--keys EXPORT.json] [--cost-map MAP] [--strict]`: a
//!   policy from a LiteLLM setup.

mod accounting;
mod build_config;
mod explain;
mod import_litellm;
mod yaml_doc;

use std::process::ExitCode;

use tollgate::core::config::key_hash;
use tollgate::core::{compile, Policy};

const USAGE: &str = "usage:
  tollgate validate CONFIG
  tollgate explain --config CONFIG --key sk-... --model MODEL [--path /v1/chat/completions]
                   (--model may be left out when the path names it: /openai/deployments/<name>/...)
  tollgate hash-key sk-...      (or '-' to read the key from standard input)
  tollgate accounting --listen 127.0.0.1:PORT --db PATH --writer-token-file F [--reader-token-file F] [--no-auth]
  tollgate build-config --policy POLICY.(yaml|json) [--cost-map MAP.json] [--output OUT.json]
  tollgate import-litellm CONFIG.yaml [--keys EXPORT.json] [--cost-map MAP.json] [--output POLICY.json] [--strict]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("validate") => validate(&args[1..]),
        Some("explain") => explain::run(&args[1..]),
        Some("hash-key") => hash_key(&args[1..]),
        Some("accounting") => accounting::run(&args[1..]),
        Some("build-config") => build_config::run(&args[1..]),
        Some("import-litellm") => import_litellm::run(&args[1..]),
        Some("--version") => {
            println!("tollgate {}", tollgate::BUILD_INFO);
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
    }
}

/// Reads and compiles a config file; on errors prints each to stderr.
pub fn load(path: &str) -> Result<Result<Policy, ()>, String> {
    let document = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    match compile(&document) {
        Ok(policy) => Ok(Ok(policy)),
        Err(errors) => {
            for error in &errors.0 {
                eprintln!("error: {error}");
            }
            eprintln!(
                "{path}: refused ({} error{})",
                errors.0.len(),
                if errors.0.len() == 1 { "" } else { "s" }
            );
            if !document.trim_ascii_start().starts_with(b"{") {
                eprintln!(
                    "hint: this reads the plugin-config JSON; turn a YAML policy into it with \
                     `tollgate build-config --policy {path} --cost-map <map> --output <json>`"
                );
            }
            Ok(Err(()))
        }
    }
}

/// Prints the policy's warnings: what compiled but is not used (LiteLLM-only fields), and every
/// deployment budgeted keys could not call for want of a price.
pub fn warn_unpriced(policy: &Policy) {
    for warning in &policy.warnings {
        eprintln!("warning: {warning}");
    }
    for (i, d) in tollgate::core::money::unpriced::unpriced_under_budget(policy) {
        eprintln!(
            "warning: model_list[{i}] ({:?} -> {}/{}): no price is known, so keys, teams or \
             users with a budget get 403 model_unpriced on it; set model_info.base_model to the \
             cost-map model it runs, or its prices",
            d.model_name, d.provider, d.upstream_model
        );
    }
}

fn validate(args: &[String]) -> Result<ExitCode, String> {
    let [path] = args else {
        return Err(USAGE.to_string());
    };
    Ok(match load(path)? {
        Ok(policy) => {
            warn_unpriced(&policy);
            println!("ok: {}", policy.summary());
            ExitCode::SUCCESS
        }
        Err(()) => ExitCode::FAILURE,
    })
}

fn hash_key(args: &[String]) -> Result<ExitCode, String> {
    let [key] = args else {
        return Err(USAGE.to_string());
    };
    let key = if key == "-" {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        line.trim().to_string()
    } else {
        key.clone()
    };
    if !key.starts_with("sk-") {
        return Err("virtual keys start with sk-".to_string());
    }
    println!("{}", key_hash::to_hex(&key_hash::digest(&key)));
    Ok(ExitCode::SUCCESS)
}
