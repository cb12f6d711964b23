//! Compiling `model_list`: deployments, their providers, ids, prices and access groups.

use hashbrown::HashMap;

use super::Compiler;
use crate::core::affinity::mark::AffinityTag;
use crate::core::config::config::DeploymentConfig;
use crate::core::config::index::{Deployment, DeploymentId, DeploymentPrices, GroupId, Policy};
use crate::core::config::key_hash;
use crate::core::config::pattern::Pattern;
use crate::core::limits::rules::RateLimits;

/// Longest `model_info.base_model` accepted.
const MAX_BASE_MODEL_BYTES: usize = 512;

impl Compiler {
    pub(super) fn add_deployments(
        &mut self,
        policy: &mut Policy,
        model_list: Vec<DeploymentConfig>,
    ) {
        let mut seen_ids: HashMap<String, usize> = HashMap::new();
        for (i, mut d) in model_list.into_iter().enumerate() {
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
            // LiteLLM's `api_key: os.environ/NAME` is `api_key_env: NAME`.
            let from_api_key = match &d.litellm_params.api_key {
                None => None,
                Some(serde_json::Value::String(v)) if v.starts_with("os.environ/") => {
                    v.strip_prefix("os.environ/").map(str::to_string)
                }
                Some(_) => {
                    self.error(
                        &format!("{path}.litellm_params.api_key"),
                        "plain-text upstream credentials are refused; name the VM environment \
                         variable that holds it in api_key_env (or write os.environ/NAME)"
                            .into(),
                    );
                    None
                }
            };
            if let Some(env) = from_api_key {
                match &d.litellm_params.api_key_env {
                    Some(own) if *own != env => self.error(
                        &format!("{path}.litellm_params.api_key"),
                        format!("names {env} but api_key_env names {own}; keep one"),
                    ),
                    _ => d.litellm_params.api_key_env = Some(env),
                }
            }
            for (field, meaning) in d.litellm_params.litellm_only() {
                self.warn(
                    &format!("{path}.litellm_params.{field}"),
                    format!("LiteLLM's field, not used by the filter ({meaning})"),
                );
            }
            let params = &d.litellm_params;
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
            let upstream_stars = upstream_model.matches('*').count();
            if let Some(pattern) = pattern.as_ref().filter(|_| upstream_stars > 0) {
                if upstream_stars > pattern.stars() {
                    self.error(
                        &format!("{path}.litellm_params.model"),
                        format!(
                            "has {upstream_stars} '*' but model_name {:?} has {}: each '*' of the \
                             upstream model is filled by a '*' of model_name, so it cannot have \
                             more",
                            d.model_name,
                            pattern.stars()
                        ),
                    );
                }
            }
            let info = &d.model_info;
            let prices = DeploymentPrices {
                input: self
                    .price(
                        &format!("{path}.model_info.input_cost_per_token"),
                        info.input_cost_per_token,
                    )
                    .or_else(|| {
                        self.price(
                            &format!("{path}.litellm_params.input_cost_per_token"),
                            d.litellm_params.input_cost_per_token,
                        )
                    }),
                output: self
                    .price(
                        &format!("{path}.model_info.output_cost_per_token"),
                        info.output_cost_per_token,
                    )
                    .or_else(|| {
                        self.price(
                            &format!("{path}.litellm_params.output_cost_per_token"),
                            d.litellm_params.output_cost_per_token,
                        )
                    }),
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
            if info.team_id.as_ref().is_some_and(String::is_empty) {
                self.error(
                    &format!("{path}.model_info.team_id"),
                    "must be non-empty".into(),
                );
            }
            if let (Some(base), Some(_)) = (&info.base_model, &pattern) {
                self.warn(
                    &format!("{path}.model_info.base_model"),
                    format!(
                        "on a wildcard deployment, every model it serves is priced as {base:?} \
                         (an unpriced one too)"
                    ),
                );
            }
            if let Some(base) = &info.base_model {
                if base.is_empty() || base.len() > MAX_BASE_MODEL_BYTES {
                    self.error(
                        &format!("{path}.model_info.base_model"),
                        format!("must be 1 to {MAX_BASE_MODEL_BYTES} bytes"),
                    );
                }
            }
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
            let boundary = match (&d.model_info.affinity_group, &d.litellm_params.api_key_env) {
                (Some(group), _) => format!("group:{group}"),
                (None, Some(env)) => format!("cred:{env}"),
                (None, None) => format!("deployment:{id}"),
            };
            let affinity = AffinityTag::new(&id, &boundary);
            let params = &d.litellm_params;
            let limits = (params.rpm.is_some() || params.tpm.is_some()).then(|| RateLimits {
                id: format!("deployment:{id}").into(),
                label: d.model_name.as_str().into(),
                rpm: params.rpm,
                tpm: params.tpm,
                ..RateLimits::default()
            });
            policy.deployments.push(Deployment {
                limits,
                affinity,
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
                base_model: d.model_info.base_model,
                team_id: d.model_info.team_id,
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
