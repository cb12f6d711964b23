//! Step 3: may this key (and its team) call the model the request will really reach?
//!
//! Both the key's and the team's allow-lists must admit the request. A list admits it when it
//! admits the *resolved* target, or when it names exactly the alias the client sent (admins
//! define every alias, so granting an alias grants exactly its target). A team alias never
//! bypasses the key's list: the key's list is checked on the same resolution.

use crate::policy::alias::Resolution;
use crate::policy::denial::Denial;
use crate::policy::index::{AllowList, GroupId, Policy, Team, VirtualKey};
use crate::policy::routing::ModelTarget;

/// Why an allow-list admitted a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant<'p> {
    /// Empty list, `*` or `all-proxy-models`.
    AllModels,
    /// A key list of `all-team-models`: the team's list decides.
    TeamDecides,
    /// The resolved model is listed by name.
    Exact(&'p str),
    /// The resolved model belongs to a listed access group.
    Group(&'p str),
    /// A listed wildcard matches the resolved model (or its provider-qualified name).
    Pattern(&'p str),
    /// The list names exactly the alias the client sent.
    AliasName(&'p str),
}

impl std::fmt::Display for Grant<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Grant::AllModels => write!(f, "all models (empty list, * or all-proxy-models)"),
            Grant::TeamDecides => write!(f, "all-team-models (the team's list decides)"),
            Grant::Exact(name) => write!(f, "entry {name:?}"),
            Grant::Group(group) => write!(f, "access group {group:?}"),
            Grant::Pattern(pattern) => write!(f, "wildcard {pattern:?}"),
            Grant::AliasName(alias) => write!(f, "alias name {alias:?}"),
        }
    }
}

/// The grants of both lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessGrants<'p> {
    /// Why the key's list admitted the request.
    pub key: Grant<'p>,
    /// Why the team's list admitted it (None when the key has no team).
    pub team: Option<Grant<'p>>,
}

/// Checks the key's and the team's lists; denies naming only the model the client sent.
pub fn check_access<'p>(
    policy: &'p Policy,
    key: &'p VirtualKey,
    team: Option<&'p Team>,
    resolution: &Resolution,
    target: &ModelTarget,
) -> Result<AccessGrants<'p>, Denial> {
    let deny = || Denial::ModelNotAllowed {
        model: resolution.requested.to_string(),
    };
    let key_grant = if key.allow.all_team_models {
        if team.is_some() {
            Grant::TeamDecides
        } else {
            Grant::AllModels
        }
    } else {
        admits(policy, &key.allow, resolution, target).ok_or_else(deny)?
    };
    let team_grant = match team {
        None => None,
        Some(team) => Some(admits(policy, &team.allow, resolution, target).ok_or_else(deny)?),
    };
    Ok(AccessGrants {
        key: key_grant,
        team: team_grant,
    })
}

/// Whether one allow-list admits the request, and why.
pub fn admits<'p>(
    policy: &'p Policy,
    list: &'p AllowList,
    resolution: &Resolution,
    target: &ModelTarget,
) -> Option<Grant<'p>> {
    if list.all {
        return Some(Grant::AllModels);
    }
    if let Some(name) = list.exact.get(target.name) {
        return Some(Grant::Exact(name));
    }
    if resolution.is_aliased() {
        if let Some(name) = list.exact.get(resolution.requested) {
            return Some(Grant::AliasName(name));
        }
    }
    if !list.groups.is_empty() {
        let member_of = groups_of(policy, target);
        if let Some(&group) = list.groups.iter().find(|g| member_of.contains(g)) {
            return policy
                .group_names
                .get(group as usize)
                .map(|name| Grant::Group(name.as_str()));
        }
    }
    list.patterns
        .iter()
        .find(|pattern| target.matched_by(pattern))
        .map(|pattern| Grant::Pattern(pattern.as_str()))
}

/// The access groups of a model: those of the deployments serving it, exact deployments first
/// (when a deployment is named exactly like the model, groups of wildcard deployments that
/// would also match do not count).
pub fn groups_of(policy: &Policy, target: &ModelTarget) -> Vec<GroupId> {
    let mut groups = Vec::new();
    for id in policy.candidates_for_groups(target) {
        if let Some(d) = policy.deployment(id) {
            groups.extend_from_slice(&d.groups);
        }
    }
    groups
}

impl Policy {
    /// Deployments whose groups apply to `target`: the exact ones, else every matching wildcard.
    fn candidates_for_groups(&self, target: &ModelTarget) -> Vec<u32> {
        if let Some(exact) = self.exact_deployments.get(target.name) {
            return exact.clone();
        }
        self.wildcard_deployments
            .iter()
            .copied()
            .filter(|&id| {
                self.deployment(id)
                    .and_then(|d| d.pattern.as_ref())
                    .is_some_and(|p| target.matched_by(p))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::policy::alias::resolve;
    use crate::policy::compile;
    use crate::policy::key_hash::{digest, to_hex};

    /// A policy with one key per allow-list given, all in team `t` (allow-list `team_models`).
    fn policy(key_models: &[&str], team_models: &[&str], extra: &str) -> Policy {
        let keys: Vec<String> = key_models
            .iter()
            .enumerate()
            .map(|(i, models)| {
                format!(
                    r#"{{"key_hash":"{}","team_id":"t","models":{models}}}"#,
                    to_hex(&digest(&format!("sk-{i}")))
                )
            })
            .collect();
        let json = format!(
            r#"{{"version":"v1",
              "cost_map":{{"claude-sonnet-4-6":{{"litellm_provider":"anthropic"}},"gpt-4o":{{"litellm_provider":"openai"}}}},
              "model_list":[
                {{"model_name":"openai/*","litellm_params":{{"model":"openai/*"}},"cluster":"o","model_info":{{"access_groups":["public"]}}}},
                {{"model_name":"openai/gpt-4o","litellm_params":{{"model":"openai/gpt-4o"}},"cluster":"o","model_info":{{"access_groups":["private"]}}}},
                {{"model_name":"anthropic/*","litellm_params":{{"model":"anthropic/*"}},"cluster":"a"}},
                {{"model_name":"openrouter/*","litellm_params":{{"model":"openrouter/*"}},"cluster":"r"}}],
              "model_group_alias":{{"AgentX-LLM":"openrouter/qwen/qwen3.5-flash-02-23"}},
              "teams":[{{"team_id":"t","models":{},"model_aliases":{{"team-fast":"anthropic/claude-haiku"}}}}],
              "keys":[{}] {extra}}}"#,
            team_models.first().copied().unwrap_or("[]"),
            keys.join(",")
        );
        compile(json.as_bytes()).unwrap()
    }

    fn check<'p>(p: &'p Policy, key: usize, model: &str) -> Result<AccessGrants<'p>, Denial> {
        let key_ref = &p.keys[key];
        let team = key_ref.team.and_then(|t| p.team(t));
        let resolution = resolve(p, key_ref, team, model);
        let target = ModelTarget::new(p, resolution.resolved());
        check_access(p, key_ref, team, &resolution, &target)
    }

    #[test]
    fn provider_wildcard_admits_bare_model_known_to_cost_map() {
        let p = policy(&[r#"["anthropic/*"]"#], &[], "");
        assert_eq!(
            check(&p, 0, "claude-sonnet-4-6").unwrap().key,
            Grant::Pattern("anthropic/*")
        );
    }

    #[test]
    fn provider_wildcard_refuses_bare_model_unknown_to_cost_map() {
        let p = policy(&[r#"["anthropic/*"]"#], &[], "");
        assert_eq!(
            check(&p, 0, "claude-opus-9"),
            Err(Denial::ModelNotAllowed {
                model: "claude-opus-9".into()
            })
        );
    }

    #[test]
    fn alias_target_on_allow_list_grants_the_alias() {
        let p = policy(&[r#"["openrouter/qwen/qwen3.5-flash-02-23"]"#], &[], "");
        assert_eq!(
            check(&p, 0, "AgentX-LLM").unwrap().key,
            Grant::Exact("openrouter/qwen/qwen3.5-flash-02-23")
        );
    }

    #[test]
    fn alias_name_on_allow_list_grants_exactly_its_target() {
        let p = policy(&[r#"["AgentX-LLM"]"#], &[], "");
        assert_eq!(
            check(&p, 0, "AgentX-LLM").unwrap().key,
            Grant::AliasName("AgentX-LLM")
        );
        // Naming the alias does not grant the target when asked for directly.
        assert!(check(&p, 0, "openrouter/qwen/qwen3.5-flash-02-23").is_err());
    }

    #[test]
    fn key_allowed_neither_alias_nor_target_is_refused_naming_the_alias() {
        let p = policy(&[r#"["gpt-4o"]"#], &[], "");
        assert_eq!(
            check(&p, 0, "AgentX-LLM"),
            Err(Denial::ModelNotAllowed {
                model: "AgentX-LLM".into()
            })
        );
    }

    #[test]
    fn team_alias_does_not_bypass_the_key_list() {
        let p = policy(&[r#"["gpt-4o"]"#, r#"["anthropic/*"]"#], &[], "");
        assert!(check(&p, 0, "team-fast").is_err());
        assert_eq!(
            check(&p, 1, "team-fast").unwrap().key,
            Grant::Pattern("anthropic/*")
        );
    }

    #[test]
    fn key_and_team_lists_must_both_admit() {
        let p = policy(
            &[r#"["gpt-4o","claude-sonnet-4-6"]"#],
            &[r#"["gpt-4o"]"#],
            "",
        );
        assert!(check(&p, 0, "gpt-4o").is_ok());
        assert!(check(&p, 0, "claude-sonnet-4-6").is_err());
    }

    #[test]
    fn all_team_models_defers_to_the_team() {
        let p = policy(&[r#"["all-team-models"]"#], &[r#"["gpt-4o"]"#], "");
        let grants = check(&p, 0, "gpt-4o").unwrap();
        assert_eq!(
            (grants.key, grants.team),
            (Grant::TeamDecides, Some(Grant::Exact("gpt-4o")))
        );
        assert!(check(&p, 0, "claude-sonnet-4-6").is_err());
    }

    #[test]
    fn empty_list_and_star_allow_everything() {
        let p = policy(&["[]", r#"["*"]"#, r#"["all-proxy-models"]"#], &[], "");
        for key in 0..3 {
            assert_eq!(check(&p, key, "anything").unwrap().key, Grant::AllModels);
        }
    }

    #[test]
    fn access_groups_use_exact_deployment_groups_first() {
        let p = policy(&[r#"["public"]"#], &[], "");
        assert_eq!(
            check(&p, 0, "openai/gpt-4o-mini").unwrap().key,
            Grant::Group("public")
        );
        // openai/gpt-4o has its own deployment in group "private" only.
        assert!(check(&p, 0, "openai/gpt-4o").is_err());
    }

    #[test]
    fn wildcard_dot_is_literal() {
        let p = policy(&[r#"["openai/gpt-4.*"]"#], &[], "");
        assert!(check(&p, 0, "openai/gpt-4.1").is_ok());
        assert!(check(&p, 0, "openai/gpt-4o").is_err());
    }
}
