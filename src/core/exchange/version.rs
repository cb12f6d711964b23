//! What every stream of one config version shares, and how a version is taken in: the
//! compiled policy, the upstream credentials and secrets read from the environment once, and
//! the log lines an adapter writes when it accepts or rejects a version.

use std::sync::Arc;

use hashbrown::HashMap;

use crate::core::affinity::mark::MIN_AFFINITY_SECRET_BYTES;
use crate::core::config::index::Accounting;
use crate::core::{ConfigErrors, Policy};

/// Reads one environment variable (the adapter's environment: the VM's, or Envoy's process).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// What every stream of one config version shares.
#[derive(Default)]
pub struct Version {
    /// The compiled policy; `None` when the configuration was empty (fail closed with 503).
    pub policy: Option<Arc<Policy>>,
    /// Upstream credentials (and the affinity secret) by environment-variable name.
    pub credentials: HashMap<String, String>,
    /// Whether per-request debug lines are wanted (formatting them is not free).
    pub debug: bool,
}

impl Version {
    /// The version of `policy`, with what it names read from `env`. Returns the warnings to
    /// log (a missing credential or secret is not fatal: only what needs it fails).
    pub fn new(policy: Policy, env: EnvLookup<'_>, debug: bool) -> (Version, Vec<String>) {
        let (credentials, mut warnings) = read_credentials(&policy, env);
        warnings.extend(
            policy
                .warnings
                .iter()
                .map(|w| format!("tollgate: warning: {w}")),
        );
        let version = Version {
            policy: Some(Arc::new(policy)),
            credentials,
            debug,
        };
        (version, warnings)
    }

    /// The version label, if a policy is loaded.
    pub fn label(&self) -> Option<&str> {
        self.policy.as_deref().map(|p| p.version.as_str())
    }
}

/// Reads each deployment's `api_key_env`, and the affinity secret, once per version.
fn read_credentials(policy: &Policy, env: EnvLookup<'_>) -> (HashMap<String, String>, Vec<String>) {
    let mut out = HashMap::new();
    let mut warnings = Vec::new();
    let secret = &policy.affinity_secret_env;
    match env(secret) {
        Some(value) if value.len() >= MIN_AFFINITY_SECRET_BYTES => {
            out.insert(secret.clone(), value);
        }
        _ => warnings.push(format!(
            "tollgate: environment variable {secret} (settings.affinity_secret_env) is not set \
             or shorter than {MIN_AFFINITY_SECRET_BYTES} bytes; Responses answers are not \
             marked and follow-ups get 503 affinity_secret_unavailable"
        )),
    }
    for deployment in &policy.deployments {
        let Some(name) = &deployment.credential_env else {
            continue;
        };
        if out.contains_key(name) {
            continue;
        }
        match env(name) {
            Some(value) if !value.is_empty() => {
                out.insert(name.clone(), value);
            }
            _ => warnings.push(format!(
                "tollgate: environment variable {name} (deployment {}) is not set; requests \
                 routed only to it get 503",
                deployment.id
            )),
        }
    }
    (out, warnings)
}

/// Reads `accounting.token_env` once per version: the token, or the error line to log.
pub fn accounting_token(
    accounting: Option<&Accounting>,
    env: EnvLookup<'_>,
) -> Result<Option<String>, String> {
    let Some(name) = accounting.and_then(|a| a.token_env.as_ref()) else {
        return Ok(None);
    };
    match env(name) {
        Some(value) if !value.is_empty() => Ok(Some(value)),
        _ => Err(format!(
            "tollgate: environment variable {name} (accounting.token_env) is not set; spend \
             batches are sent without a token and will be refused"
        )),
    }
}

/// The log line for a rejected version: every error with the path of its bad field.
pub fn rejection_message(errors: &ConfigErrors) -> String {
    let count = errors.0.len();
    let mut message = format!(
        "tollgate: rejected config version ({count} error{}); the previous version, if one was serving, keeps serving:",
        if count == 1 { "" } else { "s" }
    );
    for error in &errors.0 {
        message.push_str("\n  ");
        message.push_str(&error.to_string());
    }
    message
}

/// The log line for an empty configuration.
pub const EMPTY_CONFIG_MESSAGE: &str = "tollgate: empty configuration; every request is refused \
     with 503 policy_unavailable until a policy version is delivered";

/// The log line for a version without an accounting cluster.
pub const NO_ACCOUNTING_MESSAGE: &str = "tollgate: no accounting cluster configured; spend is \
     counted only inside this Envoy process";

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"{"version":"v1","keys":[],"model_list":[{"model_name":"m",
        "cluster":"c","litellm_params":{"model":"openai/gpt-4o","api_key_env":"UPSTREAM_KEY"}}]}"#;

    #[test]
    fn credentials_are_read_once_and_missing_ones_warn() {
        let policy = crate::core::compile(POLICY.as_bytes()).unwrap();
        let env = |name: &str| (name == "UPSTREAM_KEY").then(|| "sk-up".to_string());
        let (version, warnings) = Version::new(policy, &env, false);
        assert_eq!(
            version.credentials.get("UPSTREAM_KEY").map(String::as_str),
            Some("sk-up")
        );
        assert_eq!(version.label(), Some("v1"));
        // The affinity secret is not set: one warning naming it.
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("affinity_secret_env"));
    }

    #[test]
    fn a_missing_accounting_token_is_an_error_line() {
        let none = |_: &str| None;
        assert_eq!(accounting_token(None, &none), Ok(None));
    }
}
