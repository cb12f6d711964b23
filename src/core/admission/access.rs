//! Step 3: may this key (and its team) call the model the request will really reach, and on
//! which deployments?
//!
//! Admission is decided on exactly the deployments that can be routed. The deployments serving
//! the resolved model come in tiers: the exact-named ones alone when there are any, else the
//! matching wildcards, most specific first. A list grants a deployment when it admits the model
//! itself (all models, its name, a wildcard over it, or the alias the client sent) or names an
//! access group *of that deployment*. Only the most specific tier decides (as LiteLLM decides
//! on the most specific pattern): the request is admitted when that tier holds a deployment both
//! the key's and the team's lists grant, and is routed only among those; otherwise it is
//! refused, even when a broader tier's deployments are granted.
//!
//! A deployment with `model_info.team_id` (LiteLLM's team-scoped model) is left out for every
//! key outside that team, whatever its lists say: another team's key, or one with no team, is
//! refused (or served by other deployments of the model) as if it did not exist. For the team's
//! own keys, a tier holding one of its deployments is served by the team's deployments alone.
//! Outsiders asking for a name only team deployments serve get the answer for a name nothing
//! serves (404), so the answer does not tell them the name exists.
//!
//! A list that names exactly the alias the client sent admits it only when every alias hop was
//! defined at that list's own level or globally (`model_group_alias`): a key's list is not
//! widened by a team alias, and a team's list is not widened by a key alias. So a team alias
//! never bypasses the key's allow-list, even one that shadows a name on it.

use crate::core::admission::alias::{AliasLayer, Resolution};
use crate::core::admission::denial::Denial;
use crate::core::admission::routing::ModelTarget;
use crate::core::config::index::{AllowList, Deployment, DeploymentId, Policy, Team, VirtualKey};

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

/// The level of the configuration an allow-list belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListLevel {
    /// A key's `models`.
    Key,
    /// A team's `models`.
    Team,
}

impl ListLevel {
    /// Whether an alias defined at `layer` may widen a list of this level.
    fn trusts(self, layer: AliasLayer) -> bool {
        matches!(
            (self, layer),
            (_, AliasLayer::Global)
                | (ListLevel::Key, AliasLayer::Key)
                | (ListLevel::Team, AliasLayer::Team)
        )
    }
}

/// The outcome of an admitted access check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access<'p> {
    /// Why each list admitted the request.
    pub grants: AccessGrants<'p>,
    /// The deployments the request may be routed to: the granted deployments of the most
    /// specific tier. Empty only when no deployment serves the model at all (the
    /// router then answers 404).
    pub deployments: Vec<DeploymentId>,
}

/// Checks the key's and the team's lists on the deployments that serve the resolved model;
/// denies naming only the model the client sent.
pub fn check_access<'p>(
    policy: &'p Policy,
    key: &'p VirtualKey,
    team: Option<&'p Team>,
    resolution: &Resolution,
    target: &ModelTarget,
) -> Result<Access<'p>, Denial> {
    let deny = || Denial::ModelNotAllowed {
        model: resolution.requested.to_string(),
    };
    let key_grant = |d: Option<&'p Deployment>| {
        if key.allow.all_team_models {
            return Some(if team.is_some() {
                Grant::TeamDecides
            } else {
                Grant::AllModels
            });
        }
        list_grant(policy, &key.allow, ListLevel::Key, resolution, target, d)
    };
    let team_grant = |d: Option<&'p Deployment>| match team {
        None => Some(None),
        Some(team) => {
            list_grant(policy, &team.allow, ListLevel::Team, resolution, target, d).map(Some)
        }
    };
    // A team-scoped deployment exists only for its team's keys.
    let in_scope = |d: &Deployment| {
        d.team_id
            .as_deref()
            .is_none_or(|owner| team.is_some_and(|t| t.id == owner))
    };
    // Out-of-scope deployments are dropped before anything is decided, so a name only another
    // team's deployments serve answers as a name nothing serves (no 403 telling it exists).
    let tiers: Vec<Vec<DeploymentId>> = policy
        .serving_tiers(target)
        .into_iter()
        .map(|tier| {
            tier.into_iter()
                .filter(|&id| policy.deployment(id).is_some_and(in_scope))
                .collect::<Vec<_>>()
        })
        .filter(|tier| !tier.is_empty())
        .collect();
    if tiers.is_empty() {
        // Nothing serves the model: only a grant of the model itself admits it (then 404).
        let grants = AccessGrants {
            key: key_grant(None).ok_or_else(deny)?,
            team: team_grant(None).ok_or_else(deny)?,
        };
        return Ok(Access {
            grants,
            deployments: Vec::new(),
        });
    }
    let own_team = |d: &Deployment| {
        d.team_id
            .as_deref()
            .is_some_and(|owner| team.is_some_and(|t| t.id == owner))
    };
    // Only the most specific tier decides, as LiteLLM decides on the deployments of the most
    // specific pattern: a grant of a broader pattern's deployments does not reach a model its
    // operator carved out for a narrower one (`openai/o1-*` in `restricted-models`).
    if let Some(tier) = tiers.into_iter().next() {
        let mut grants = None;
        let mut granted = Vec::new();
        // A tier holding the key's team's own deployments serves the team from them alone, as
        // LiteLLM routes a team's model name to that team's deployments only.
        let team_owned = tier
            .iter()
            .any(|&id| policy.deployment(id).is_some_and(own_team));
        for id in tier {
            let deployment = policy.deployment(id);
            if deployment.is_some_and(|d| team_owned && !own_team(d)) {
                continue;
            }
            if let (Some(k), Some(t)) = (key_grant(deployment), team_grant(deployment)) {
                grants.get_or_insert(AccessGrants { key: k, team: t });
                granted.push(id);
            }
        }
        if let Some(grants) = grants {
            return Ok(Access {
                grants,
                deployments: granted,
            });
        }
    }
    Err(deny())
}

/// Whether one allow-list (of `level`) admits the request on `deployment` (`None`: on the model
/// alone, without a deployment's access groups), and why.
pub fn list_grant<'p>(
    policy: &'p Policy,
    list: &'p AllowList,
    level: ListLevel,
    resolution: &Resolution,
    target: &ModelTarget,
    deployment: Option<&Deployment>,
) -> Option<Grant<'p>> {
    if list.all {
        return Some(Grant::AllModels);
    }
    if let Some(name) = list.exact.get(target.name) {
        return Some(Grant::Exact(name));
    }
    let own_alias = resolution.is_aliased()
        && resolution
            .hops
            .iter()
            .all(|&(layer, _)| level.trusts(layer));
    if own_alias {
        if let Some(name) = list.exact.get(resolution.requested) {
            return Some(Grant::AliasName(name));
        }
    }
    if let Some(pattern) = list.patterns.iter().find(|p| target.matched_by(p)) {
        return Some(Grant::Pattern(pattern.as_str()));
    }
    let groups = &deployment?.groups;
    let &group = list.groups.iter().find(|g| groups.contains(g))?;
    policy
        .group_names
        .get(group as usize)
        .map(|name| Grant::Group(name.as_str()))
}

/// Whether a list admits the request on any deployment that serves it (for explanations).
pub fn admits_anywhere(
    policy: &Policy,
    list: &AllowList,
    level: ListLevel,
    resolution: &Resolution,
    target: &ModelTarget,
) -> bool {
    list_grant(policy, list, level, resolution, target, None).is_some()
        || policy.serving_tiers(target).iter().flatten().any(|&id| {
            list_grant(
                policy,
                list,
                level,
                resolution,
                target,
                policy.deployment(id),
            )
            .is_some()
        })
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::core::admission::alias::resolve;
    use crate::core::compile;
    use crate::core::config::key_hash::{digest, to_hex};

    /// One key `sk-<i>` per allow-list given, all in team `t`.
    fn team_keys(key_models: &[&str]) -> Vec<String> {
        key_models
            .iter()
            .enumerate()
            .map(|(i, models)| {
                format!(
                    r#"{{"key_hash":"{}","team_id":"t","models":{models}}}"#,
                    to_hex(&digest(&format!("sk-{i}")))
                )
            })
            .collect()
    }

    /// A policy with one key per allow-list given, all in team `t` (allow-list `team_models`).
    fn policy(key_models: &[&str], team_models: &[&str], extra: &str) -> Policy {
        let keys = team_keys(key_models);
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
        check_access(p, key_ref, team, &resolution, &target).map(|a| a.grants)
    }

    /// The ids of the deployments the access check lets `key` reach for `model`.
    fn routed(p: &Policy, key: usize, model: &str) -> Result<Vec<String>, Denial> {
        let key_ref = &p.keys[key];
        let team = key_ref.team.and_then(|t| p.team(t));
        let resolution = resolve(p, key_ref, team, model);
        let target = ModelTarget::new(p, resolution.resolved());
        let access = check_access(p, key_ref, team, &resolution, &target)?;
        Ok(access
            .deployments
            .iter()
            .filter_map(|&id| p.deployment(id).map(|d| d.id.clone()))
            .collect())
    }

    /// Item 8 of issue 10: `openai/*` in group basic, `openai/o1*` in group premium.
    fn tiered(key_models: &[&str], team_models: &str, team_aliases: &str) -> Policy {
        let keys = team_keys(key_models);
        let json = format!(
            r#"{{"version":"v1",
              "model_list":[
                {{"model_name":"openai/*","litellm_params":{{"model":"openai/*"}},"cluster":"basic","model_info":{{"id":"basic","access_groups":["basic"]}}}},
                {{"model_name":"openai/o1*","litellm_params":{{"model":"openai/*"}},"cluster":"premium","model_info":{{"id":"premium","access_groups":["premium"]}}}},
                {{"model_name":"openai/o1*","litellm_params":{{"model":"openai/*"}},"cluster":"premium-2","model_info":{{"id":"premium-2","access_groups":["premium","partner"]}}}},
                {{"model_name":"gpt-4o-mini","litellm_params":{{"model":"openai/gpt-4o-mini"}},"cluster":"o"}},
                {{"model_name":"gpt-4o","litellm_params":{{"model":"openai/gpt-4o"}},"cluster":"o"}}],
              "model_group_alias":{{"cheap":"gpt-4o-mini"}},
              "teams":[{{"team_id":"t","models":{team_models},"model_aliases":{team_aliases}}}],
              "keys":[{}]}}"#,
            keys.join(",")
        );
        compile(json.as_bytes()).unwrap()
    }

    #[test]
    fn a_team_scoped_deployment_serves_only_its_teams_keys() {
        // Phase 2 · 3/5 item 7: LiteLLM's model_info.team_id.
        let json = format!(
            r#"{{"version":"v1",
              "model_list":[
                {{"model_name":"gpt-4o","litellm_params":{{"model":"openai/gpt-4o","api_key_env":"T_KEY"}},"cluster":"t-only","model_info":{{"id":"t-only","team_id":"t"}}}},
                {{"model_name":"secret","litellm_params":{{"model":"openai/gpt-4o"}},"cluster":"t-only","model_info":{{"id":"secret","team_id":"t"}}}},
                {{"model_name":"gpt-4o","litellm_params":{{"model":"openai/gpt-4o"}},"cluster":"shared","model_info":{{"id":"shared"}}}}],
              "teams":[{{"team_id":"t","models":[]}},{{"team_id":"u","models":[]}}],
              "keys":[{{"key_hash":"{}","team_id":"t","models":[]}},
                      {{"key_hash":"{}","team_id":"u","models":[]}},
                      {{"key_hash":"{}","models":[]}}]}}"#,
            to_hex(&digest("sk-0")),
            to_hex(&digest("sk-1")),
            to_hex(&digest("sk-2"))
        );
        let p = compile(json.as_bytes()).unwrap();
        assert_eq!(
            routed(&p, 0, "gpt-4o").unwrap(),
            ["t-only"],
            "the team's own, alone"
        );
        assert_eq!(routed(&p, 1, "gpt-4o").unwrap(), ["shared"], "another team");
        assert_eq!(routed(&p, 2, "gpt-4o").unwrap(), ["shared"], "no team");
        assert_eq!(routed(&p, 0, "secret").unwrap(), ["secret"]);
        for outsider in [1, 2] {
            // As for a name nothing serves: admitted on the name, with nothing to route to (404).
            assert_eq!(
                routed(&p, outsider, "secret").unwrap(),
                Vec::<String>::new()
            );
        }
        let team_u = p.team(1);
        let listed = crate::core::admission::listing::list_models(&p, &p.keys[1], team_u);
        assert!(!listed.contains("secret"), "{listed}");
    }

    #[test]
    fn a_group_grants_only_its_own_deployments_and_routing_stays_inside_them() {
        let p = tiered(
            &[r#"["basic"]"#, r#"["premium"]"#, r#"["partner"]"#],
            "[]",
            "{}",
        );
        // The premium tier is more specific and decides: the key's group grants only the basic
        // one, so o1 is refused (issue 14 item 7: LiteLLM's access-groups example).
        let refused = Err(Denial::ModelNotAllowed {
            model: "openai/o1-pro".into(),
        });
        assert_eq!(routed(&p, 0, "openai/o1-pro"), refused);
        assert_eq!(routed(&p, 0, "openai/gpt-4.1").unwrap(), ["basic"]);
        assert_eq!(
            routed(&p, 1, "openai/o1-pro").unwrap(),
            ["premium", "premium-2"]
        );
        assert_eq!(routed(&p, 2, "openai/o1-pro").unwrap(), ["premium-2"]);
        // partner covers no deployment of gpt-4.1: refused, not routed to the basic tier.
        assert_eq!(
            routed(&p, 2, "openai/gpt-4.1"),
            Err(Denial::ModelNotAllowed {
                model: "openai/gpt-4.1".into()
            })
        );
        assert!(routed(&p, 1, "openai/gpt-4.1").is_err());
    }

    #[test]
    fn key_and_team_must_grant_the_same_deployment() {
        // The key may use premium deployments, the team only basic ones: o1 is served only by
        // premium (the most specific tier), which the team does not grant.
        let p = tiered(
            &[r#"["premium","basic"]"#, r#"["premium"]"#],
            r#"["basic"]"#,
            "{}",
        );
        assert!(routed(&p, 0, "openai/o1-pro").is_err());
        assert_eq!(routed(&p, 0, "openai/gpt-4.1").unwrap(), ["basic"]);
        assert!(routed(&p, 1, "openai/o1-pro").is_err());
    }

    #[test]
    fn a_model_level_grant_routes_to_the_most_specific_tier() {
        let p = tiered(&[r#"["openai/*"]"#, r#"["openai/o1-pro"]"#], "[]", "{}");
        assert_eq!(
            routed(&p, 0, "openai/o1-pro").unwrap(),
            ["premium", "premium-2"]
        );
        assert_eq!(
            routed(&p, 1, "openai/o1-pro").unwrap(),
            ["premium", "premium-2"]
        );
    }

    #[test]
    fn a_team_alias_shadowing_a_listed_name_does_not_redirect_the_key() {
        let p = tiered(
            &[r#"["gpt-4o-mini"]"#, r#"["gpt-4o-mini","gpt-4o"]"#],
            "[]",
            r#"{"gpt-4o-mini":"gpt-4o"}"#,
        );
        assert_eq!(
            check(&p, 0, "gpt-4o-mini"),
            Err(Denial::ModelNotAllowed {
                model: "gpt-4o-mini".into()
            })
        );
        assert!(check(&p, 0, "gpt-4o").is_err());
        // A key allowed the target itself is admitted through the team alias.
        assert_eq!(
            check(&p, 1, "gpt-4o-mini").unwrap().key,
            Grant::Exact("gpt-4o")
        );
    }

    #[test]
    fn only_aliases_of_the_lists_level_or_global_widen_it() {
        // The team's list names "cheap"; the global alias resolves it: granted.
        let p = tiered(&["[]"], r#"["cheap"]"#, "{}");
        assert_eq!(
            check(&p, 0, "cheap").unwrap().team,
            Some(Grant::AliasName("cheap"))
        );
        // A team alias chained in front of a global alias is not the key's to trust.
        let p = tiered(&[r#"["cheap"]"#], "[]", r#"{"cheap":"gpt-4o"}"#);
        assert!(check(&p, 0, "cheap").is_err());
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
