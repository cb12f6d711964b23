//! Config → Policy: parse one plugin-config document and validate it whole.
//!
//! Parsing errors stop at the first problem (the document is not valid JSON of our shape);
//! semantic errors are all collected, each with the JSON path of the bad field, so an operator
//! fixes a config in one round. Any error refuses the whole version.

use std::fmt;

use hashbrown::{HashMap, HashSet};

use crate::policy::config::{BudgetHolderConfig, Config, DeploymentConfig, KeyConfig, TeamConfig};
use crate::policy::cost_map::CostMap;
use crate::policy::index::{
    AllowList, Budget, Deployment, DeploymentId, DeploymentPrices, GlobalAlias, GroupId, Policy,
    Team, TeamId, VirtualKey,
};
use crate::policy::key_hash::{self, KeyDigest};
use crate::policy::pattern::Pattern;
use crate::policy::time::{parse_budget_window, parse_rfc3339};

/// Largest body limit an operator may configure (256 MiB).
const MAX_BODY_LIMIT: u64 = 256 * 1024 * 1024;

/// One problem in a config, at a JSON path such as `keys[3].key_hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the bad field is (`.`-separated, `[i]` for list items); empty for the document.
    pub path: String,
    /// What is wrong and, where useful, how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one config document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Parses and validates one plugin-config document into a [`Policy`].
pub fn compile(document: &[u8]) -> Result<Policy, ConfigErrors> {
    if document.first() == Some(&0x0a) && !document.starts_with(b"\n{") {
        // A google.protobuf.Struct in Envoy's typed config reaches the plugin as binary protobuf.
        return Err(ConfigErrors(vec![ConfigError {
            path: String::new(),
            message: "the configuration is binary protobuf (a google.protobuf.Struct), not JSON; \
                      deliver the policy as a google.protobuf.StringValue holding JSON (Istio \
                      already does this for a WasmPlugin's pluginConfig)"
                .into(),
        }]));
    }
    let de = &mut serde_json::Deserializer::from_slice(document);
    let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        ConfigErrors(vec![ConfigError {
            path: if path == "." { String::new() } else { path },
            message: e.into_inner().to_string(),
        }])
    })?;
    compile_config(config)
}

/// Validates an already-parsed [`Config`] into a [`Policy`].
pub fn compile_config(config: Config) -> Result<Policy, ConfigErrors> {
    let mut cx = Compiler::default();
    cx.check_version(&config.version);
    let max_request_body_bytes = config.settings.max_request_body_bytes;
    if max_request_body_bytes == 0 || max_request_body_bytes > MAX_BODY_LIMIT {
        cx.error(
            "settings.max_request_body_bytes",
            format!("must be between 1 and {MAX_BODY_LIMIT} bytes"),
        );
    }

    let mut policy = Policy {
        version: config.version,
        max_request_body_bytes,
        key_index: HashMap::new(),
        keys: Vec::new(),
        teams: Vec::new(),
        deployments: Vec::new(),
        exact_deployments: HashMap::new(),
        wildcard_deployments: Vec::new(),
        global_aliases: HashMap::new(),
        group_names: Vec::new(),
        group_index: HashMap::new(),
        users: HashMap::new(),
        end_users: HashMap::new(),
        provider_count: count_providers(&config.cost_map),
        cost_map: config.cost_map,
    };

    cx.add_deployments(&mut policy, config.model_list);
    for (alias, target) in config.model_group_alias {
        let path = format!("model_group_alias.{alias}");
        if alias.is_empty() || target.model().is_empty() {
            cx.error(&path, "alias and target must be non-empty".into());
            continue;
        }
        policy.global_aliases.insert(
            alias,
            GlobalAlias {
                target: target.model().to_string(),
                hidden: target.hidden(),
            },
        );
    }
    cx.check_global_aliases(&policy);

    let team_ids = cx.add_teams(&mut policy, config.teams);
    cx.add_keys(&mut policy, config.keys, &team_ids);
    policy.users = cx.budget_holders("users", config.users);
    policy.end_users = cx.budget_holders("end_users", config.end_users);

    if cx.errors.is_empty() {
        Ok(policy)
    } else {
        Err(ConfigErrors(cx.errors))
    }
}

fn count_providers(cost_map: &CostMap) -> usize {
    cost_map
        .iter()
        .filter_map(|(_, entry)| entry.provider.as_deref())
        .collect::<HashSet<_>>()
        .len()
}

#[derive(Default)]
struct Compiler {
    errors: Vec<ConfigError>,
}

impl Compiler {
    fn error(&mut self, path: &str, message: String) {
        self.errors.push(ConfigError {
            path: path.to_string(),
            message,
        });
    }

    fn check_version(&mut self, version: &str) {
        if version.is_empty() || version.len() > 128 {
            self.error("version", "must be 1 to 128 characters".into());
        } else if !version.bytes().all(|b| b.is_ascii_graphic()) {
            self.error(
                "version",
                "must be printable ASCII without spaces (it is sent as a response header)".into(),
            );
        }
    }

    fn price(&mut self, path: &str, value: Option<f64>) -> Option<f64> {
        let value = value?;
        if value.is_finite() && value >= 0.0 {
            Some(value)
        } else {
            self.error(
                path,
                format!("must be a finite, non-negative number, found {value}"),
            );
            None
        }
    }

    fn budget(
        &mut self,
        path: &str,
        max_budget: Option<f64>,
        duration: Option<&str>,
    ) -> Option<Budget> {
        let window = match duration {
            None => None,
            Some(text) => match parse_budget_window(text) {
                Ok(window) => Some(window),
                Err(message) => {
                    self.error(&format!("{path}.budget_duration"), message);
                    None
                }
            },
        };
        match max_budget {
            None => {
                if duration.is_some() {
                    self.error(
                        &format!("{path}.budget_duration"),
                        "a budget window needs max_budget".into(),
                    );
                }
                None
            }
            Some(max) if max.is_finite() && max >= 0.0 => Some(Budget {
                max_usd: max,
                window,
            }),
            Some(max) => {
                self.error(
                    &format!("{path}.max_budget"),
                    format!("must be a finite, non-negative number of USD, found {max}"),
                );
                None
            }
        }
    }

    fn add_deployments(&mut self, policy: &mut Policy, model_list: Vec<DeploymentConfig>) {
        let mut seen_ids: HashMap<String, usize> = HashMap::new();
        for (i, d) in model_list.into_iter().enumerate() {
            let path = format!("model_list[{i}]");
            let before = self.errors.len();
            if d.model_name.is_empty() {
                self.error(&format!("{path}.model_name"), "must be non-empty".into());
            }
            if d.cluster.is_empty() || !d.cluster.bytes().all(|b| b.is_ascii_graphic()) {
                self.error(
                    &format!("{path}.cluster"),
                    "must name an Envoy cluster (printable ASCII, no spaces)".into(),
                );
            }
            let params = &d.litellm_params;
            if params.api_key.is_some() {
                self.error(
                    &format!("{path}.litellm_params.api_key"),
                    "plain-text upstream credentials are refused; name the VM environment \
                     variable that holds it in api_key_env"
                        .into(),
                );
            }
            if let Some(env) = &params.api_key_env {
                let valid = env.bytes().enumerate().all(|(j, b)| {
                    b == b'_' || b.is_ascii_alphabetic() || (j > 0 && b.is_ascii_digit())
                });
                if env.is_empty() || !valid {
                    self.error(
                        &format!("{path}.litellm_params.api_key_env"),
                        "must be an environment variable name such as OPENAI_API_KEY".into(),
                    );
                }
            }
            let weight = params.weight.unwrap_or(1.0);
            if !(weight.is_finite() && (0.0..=1_000_000.0).contains(&weight)) {
                self.error(
                    &format!("{path}.litellm_params.weight"),
                    "must be a number from 0 to 1000000".into(),
                );
            }
            let (provider, upstream_model) = match params.model.split_once('/') {
                Some((provider, rest)) if !provider.is_empty() && !rest.is_empty() => {
                    (provider.to_string(), rest.to_string())
                }
                Some(_) => {
                    self.error(
                        &format!("{path}.litellm_params.model"),
                        "must look like provider/model".into(),
                    );
                    (String::new(), String::new())
                }
                None => match policy.cost_map.provider_of_bare(&params.model) {
                    Some(provider) => (provider.to_string(), params.model.clone()),
                    None => {
                        self.error(
                            &format!("{path}.litellm_params.model"),
                            format!(
                                "{:?} has no provider prefix and the cost map does not know it; \
                                 write it as provider/model",
                                params.model
                            ),
                        );
                        (String::new(), String::new())
                    }
                },
            };
            let pattern = Pattern::parse(&d.model_name);
            if upstream_model.contains('*') && pattern.is_none() {
                self.error(
                    &format!("{path}.litellm_params.model"),
                    "a wildcard upstream model needs a wildcard model_name to fill it".into(),
                );
            }
            let info = &d.model_info;
            let prices = DeploymentPrices {
                input: self.price(
                    &format!("{path}.model_info.input_cost_per_token"),
                    info.input_cost_per_token,
                ),
                output: self.price(
                    &format!("{path}.model_info.output_cost_per_token"),
                    info.output_cost_per_token,
                ),
                cache_read: self.price(
                    &format!("{path}.model_info.cache_read_input_token_cost"),
                    info.cache_read_input_token_cost,
                ),
                cache_creation: self.price(
                    &format!("{path}.model_info.cache_creation_input_token_cost"),
                    info.cache_creation_input_token_cost,
                ),
                reasoning: self.price(
                    &format!("{path}.model_info.output_cost_per_reasoning_token"),
                    info.output_cost_per_reasoning_token,
                ),
                max_output_tokens: info.max_output_tokens,
            };
            let id = match &info.id {
                Some(id) if id.is_empty() => {
                    self.error(&format!("{path}.model_info.id"), "must be non-empty".into());
                    String::new()
                }
                Some(id) => id.clone(),
                None => derived_deployment_id(&d),
            };
            if let Some(first) = seen_ids.insert(id.clone(), i) {
                let hint = if info.id.is_some() {
                    String::new()
                } else {
                    "; set distinct model_info.id values".into()
                };
                self.error(
                    &format!("{path}.model_info.id"),
                    format!("deployment id {id:?} is already used by model_list[{first}]{hint}"),
                );
            }
            let mut groups = Vec::with_capacity(info.access_groups.len());
            for (g, name) in info.access_groups.iter().enumerate() {
                if name.is_empty() {
                    self.error(
                        &format!("{path}.model_info.access_groups[{g}]"),
                        "must be non-empty".into(),
                    );
                    continue;
                }
                groups.push(intern_group(policy, name));
            }
            if self.errors.len() > before {
                continue;
            }
            let deployment_id = policy.deployments.len() as DeploymentId;
            if pattern.is_some() {
                policy.wildcard_deployments.push(deployment_id);
            } else {
                policy
                    .exact_deployments
                    .entry(d.model_name.clone())
                    .or_default()
                    .push(deployment_id);
            }
            policy.deployments.push(Deployment {
                id,
                model_name: d.model_name,
                pattern,
                upstream_model,
                provider,
                cluster: d.cluster,
                credential_env: d.litellm_params.api_key_env,
                weight_milli: (weight * 1000.0).round() as u64,
                groups,
                prices,
                affinity_group: d.model_info.affinity_group,
            });
        }
        let deployments = &policy.deployments;
        policy.wildcard_deployments.sort_by_key(|&id| {
            let specificity = deployments
                .get(id as usize)
                .and_then(|d| d.pattern.as_ref())
                .map_or(0, Pattern::specificity);
            std::cmp::Reverse(specificity)
        });
    }

    fn check_global_aliases(&mut self, policy: &Policy) {
        let mut names: Vec<&String> = policy.global_aliases.keys().collect();
        names.sort();
        for alias in names {
            let target = policy.resolve_global(alias);
            if !policy.is_servable(target) {
                self.error(
                    &format!("model_group_alias.{alias}"),
                    format!("target {target:?} is not served by any deployment in model_list"),
                );
            }
        }
    }

    fn allow_list(&mut self, policy: &Policy, path: &str, models: &[String]) -> AllowList {
        let mut list = AllowList {
            all: models.is_empty(),
            ..AllowList::default()
        };
        for (i, entry) in models.iter().enumerate() {
            match entry.as_str() {
                "" => self.error(&format!("{path}[{i}]"), "must be non-empty".into()),
                "*" | "all-proxy-models" => list.all = true,
                "all-team-models" => list.all_team_models = true,
                name => {
                    if let Some(group) = policy.group_id(name) {
                        list.groups.push(group);
                    } else if let Some(pattern) = Pattern::parse(name) {
                        list.patterns.push(pattern);
                    } else {
                        list.exact.insert(name.to_string());
                    }
                }
            }
        }
        list
    }

    fn aliases(
        &mut self,
        policy: &Policy,
        path: &str,
        aliases: std::collections::BTreeMap<String, String>,
        resolve_rest: impl Fn(&str) -> String,
    ) -> HashMap<String, String> {
        let mut out = HashMap::with_capacity(aliases.len());
        for (alias, target) in aliases {
            let entry_path = format!("{path}.{alias}");
            if alias.is_empty() || target.is_empty() {
                self.error(&entry_path, "alias and target must be non-empty".into());
                continue;
            }
            let resolved = resolve_rest(&target);
            if !policy.is_servable(&resolved) {
                let via = if resolved == target {
                    String::new()
                } else {
                    format!(" (resolved to {resolved:?})")
                };
                self.error(
                    &entry_path,
                    format!("target {target:?}{via} is not served by any deployment in model_list"),
                );
                continue;
            }
            out.insert(alias, target);
        }
        out
    }

    fn add_teams(
        &mut self,
        policy: &mut Policy,
        teams: Vec<TeamConfig>,
    ) -> HashMap<String, TeamId> {
        let mut ids = HashMap::with_capacity(teams.len());
        for (i, t) in teams.into_iter().enumerate() {
            let path = format!("teams[{i}]");
            if t.team_id.is_empty() {
                self.error(&format!("{path}.team_id"), "must be non-empty".into());
                continue;
            }
            if ids.contains_key(&t.team_id) {
                self.error(
                    &format!("{path}.team_id"),
                    format!("team {:?} is defined twice", t.team_id),
                );
                continue;
            }
            let allow = self.allow_list(policy, &format!("{path}.models"), &t.models);
            let aliases = self.aliases(
                policy,
                &format!("{path}.model_aliases"),
                t.model_aliases,
                |target| policy.resolve_global(target).to_string(),
            );
            let budget = self.budget(&path, t.max_budget, t.budget_duration.as_deref());
            ids.insert(t.team_id.clone(), policy.teams.len() as TeamId);
            policy.teams.push(Team {
                id: t.team_id,
                alias: t.team_alias,
                allow,
                aliases,
                blocked: t.blocked,
                budget,
            });
        }
        ids
    }

    fn add_keys(
        &mut self,
        policy: &mut Policy,
        keys: Vec<KeyConfig>,
        team_ids: &HashMap<String, TeamId>,
    ) {
        let mut seen: HashMap<KeyDigest, usize> = HashMap::with_capacity(keys.len());
        policy.keys.reserve(keys.len());
        for (i, k) in keys.into_iter().enumerate() {
            let path = format!("keys[{i}]");
            let before = self.errors.len();
            let digest = if k.key_hash.starts_with("sk-") {
                self.error(
                    &format!("{path}.key_hash"),
                    "looks like a plain-text key; store only its SHA-256 (`tollgate hash-key sk-...`)"
                        .into(),
                );
                None
            } else {
                let parsed = key_hash::from_hex(&k.key_hash);
                if parsed.is_none() {
                    self.error(
                        &format!("{path}.key_hash"),
                        "must be the 64-character hex SHA-256 of the key".into(),
                    );
                }
                parsed
            };
            if let Some(digest) = digest {
                if let Some(first) = seen.insert(digest, i) {
                    self.error(
                        &format!("{path}.key_hash"),
                        format!("the same key is already defined at keys[{first}]"),
                    );
                }
            }
            let team = match &k.team_id {
                None => None,
                Some(id) => {
                    let team = team_ids.get(id).copied();
                    if team.is_none() {
                        self.error(
                            &format!("{path}.team_id"),
                            format!("team {id:?} is not defined in teams"),
                        );
                    }
                    team
                }
            };
            let expires_at = match &k.expires {
                None => None,
                Some(text) => match parse_rfc3339(text) {
                    Ok(t) => Some(t),
                    Err(message) => {
                        self.error(&format!("{path}.expires"), message);
                        None
                    }
                },
            };
            let allow = self.allow_list(policy, &format!("{path}.models"), &k.models);
            let team_aliases = team.and_then(|t| policy.team(t)).map(|t| &t.aliases);
            let aliases = self.aliases(policy, &format!("{path}.aliases"), k.aliases, |target| {
                let after_team = team_aliases
                    .and_then(|a| a.get(target))
                    .map_or(target, String::as_str);
                policy.resolve_global(after_team).to_string()
            });
            let budget = self.budget(&path, k.max_budget, k.budget_duration.as_deref());
            let Some(digest) = digest else { continue };
            if self.errors.len() > before {
                continue;
            }
            policy.key_index.insert(digest, policy.keys.len() as u32);
            policy.keys.push(VirtualKey {
                digest,
                alias: k.key_alias,
                team,
                user_id: k.user_id,
                allow,
                aliases,
                expires_at,
                blocked: k.blocked,
                budget,
            });
        }
    }

    fn budget_holders(
        &mut self,
        section: &str,
        holders: Vec<BudgetHolderConfig>,
    ) -> HashMap<String, Budget> {
        let mut out = HashMap::with_capacity(holders.len());
        for (i, h) in holders.into_iter().enumerate() {
            let path = format!("{section}[{i}]");
            if h.user_id.is_empty() {
                self.error(&format!("{path}.user_id"), "must be non-empty".into());
                continue;
            }
            if out.contains_key(&h.user_id) {
                self.error(
                    &format!("{path}.user_id"),
                    format!("{:?} is defined twice", h.user_id),
                );
                continue;
            }
            if let Some(budget) = self.budget(&path, h.max_budget, h.budget_duration.as_deref()) {
                out.insert(h.user_id, budget);
            }
        }
        out
    }
}

fn intern_group(policy: &mut Policy, name: &str) -> GroupId {
    if let Some(&id) = policy.group_index.get(name) {
        return id;
    }
    let id = policy.group_names.len() as GroupId;
    policy.group_names.push(name.to_string());
    policy.group_index.insert(name.to_string(), id);
    id
}

/// A stable id for a deployment without `model_info.id`: a short hash of what defines it.
fn derived_deployment_id(d: &DeploymentConfig) -> String {
    let material = format!(
        "{}\n{}\n{}\n{}",
        d.model_name,
        d.litellm_params.model,
        d.cluster,
        d.litellm_params.api_key_env.as_deref().unwrap_or("")
    );
    let hex = key_hash::to_hex(&key_hash::digest(&material));
    format!("d-{}", &hex[..12])
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::policy::key_hash::{digest, to_hex};

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
            [
                r#"model_group_alias.fast: target "gpt-5" is not served by any deployment in model_list"#
            ]
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
        let e =
            errors(r#"{"version":"v1","cost_map":{"gpt-4o":{"input_cost_per_token":"cheap"}}}"#);
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
}
