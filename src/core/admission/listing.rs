//! `GET /v1/models`: the models this key may use, in OpenAI list format.
//!
//! Listed: exact deployment names, every alias visible to the key (key, team and non-hidden
//! global aliases), and, for provider wildcard deployments such as `anthropic/*`, each bare model
//! the cost map puts under that provider. Each name is listed only if the same access and routing
//! rules that admit a request would admit it.

use std::collections::BTreeMap;

use serde_json::json;

use crate::core::admission::access::check_access;
use crate::core::admission::alias::resolve;
use crate::core::admission::routing::ModelTarget;
use crate::core::config::index::{Policy, Team, VirtualKey};

/// The OpenAI model object for `GET /v1/models/{id}` (the SDKs' `models.retrieve`), when this
/// key may call `id` (the same rule as a request and the listing); `None` answers 404, as for a
/// model that does not exist, so the answer never tells which models others may use.
pub fn retrieve_model(
    policy: &Policy,
    key: &VirtualKey,
    team: Option<&Team>,
    id: &str,
) -> Option<String> {
    let resolution = resolve(policy, key, team, id);
    let target = ModelTarget::new(policy, resolution.resolved());
    let access = check_access(policy, key, team, &resolution, &target).ok()?;
    let owner = access
        .deployments
        .first()
        .and_then(|&d| policy.deployment(d))
        .map(|d| {
            if resolution.resolved() == id {
                d.provider.as_str()
            } else {
                "tollgate"
            }
        })?;
    Some(json!({"id": id, "object": "model", "created": 0, "owned_by": owner}).to_string())
}

/// The OpenAI `{"object":"list","data":[...]}` body for this key.
pub fn list_models(policy: &Policy, key: &VirtualKey, team: Option<&Team>) -> String {
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut consider = |name: &str, owner: &str| {
        if names.contains_key(name) {
            return;
        }
        let resolution = resolve(policy, key, team, name);
        let target = ModelTarget::new(policy, resolution.resolved());
        let routable = check_access(policy, key, team, &resolution, &target)
            .is_ok_and(|access| !access.deployments.is_empty());
        if routable {
            names.insert(name.to_string(), owner.to_string());
        }
    };
    for d in &policy.deployments {
        match &d.pattern {
            None => consider(&d.model_name, &d.provider),
            Some(_) => {
                let Some(provider) = d.model_name.strip_suffix("/*") else {
                    continue;
                };
                if provider.contains('*') {
                    continue;
                }
                for (model, entry) in policy.cost_map.iter() {
                    if entry.provider.as_deref() == Some(provider) && !model.contains('/') {
                        consider(model, provider);
                    }
                }
            }
        }
    }
    for alias in key.aliases.keys() {
        consider(alias, "tollgate");
    }
    if let Some(team) = team {
        for alias in team.aliases.keys() {
            consider(alias, "tollgate");
        }
    }
    for (alias, global) in &policy.global_aliases {
        if !global.hidden {
            consider(alias, "tollgate");
        }
    }
    let data: Vec<serde_json::Value> = names
        .iter()
        .map(|(id, owner)| json!({"id": id, "object": "model", "created": 0, "owned_by": owner}))
        .collect();
    json!({"object": "list", "data": data}).to_string()
}
