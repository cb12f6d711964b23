//! `GET /v1/models`: the models this key may use, in OpenAI list format.
//!
//! Listed: exact deployment names, every alias visible to the key (key, team and non-hidden
//! global aliases), and, for provider wildcard deployments such as `anthropic/*`, each bare model
//! the cost map puts under that provider. Each name is listed only if the same access and routing
//! rules that admit a request would admit it.

use std::collections::BTreeMap;

use serde_json::json;

use crate::core::admission::access::check_access;
use crate::core::admission::alias::{resolve, AliasLayer};
use crate::core::admission::routing::ModelTarget;
use crate::core::config::index::{Policy, Team, VirtualKey};

/// The OpenAI model object for `GET /v1/models/{id}` (the SDKs' `models.retrieve`), when this
/// key may call `id` (the same rule as a request and the listing, so a hidden global alias is
/// not found either); `None` answers 404, as for a model that does not exist, so the answer
/// never tells which models others may use.
pub fn retrieve_model(
    policy: &Policy,
    key: &VirtualKey,
    team: Option<&Team>,
    id: &str,
) -> Option<String> {
    let resolution = resolve(policy, key, team, id);
    // A hidden global alias stays callable but is not advertised: not listed, not retrieved.
    let hidden = resolution
        .hops
        .first()
        .is_some_and(|&(layer, _)| layer == AliasLayer::Global)
        && policy.global_aliases.get(id).is_some_and(|g| g.hidden);
    if hidden {
        return None;
    }
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

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::core::compile;
    use crate::core::config::key_hash::{digest, to_hex};

    #[test]
    fn a_hidden_global_alias_is_neither_listed_nor_retrieved() {
        let json = format!(
            r#"{{"version":"v1",
              "model_list":[{{"model_name":"gpt-4o","litellm_params":{{"model":"openai/gpt-4o"}},"cluster":"o"}}],
              "model_group_alias":{{"open":"gpt-4o","quiet":{{"model":"gpt-4o","hidden":true}}}},
              "keys":[{{"key_hash":"{}","models":[]}}]}}"#,
            to_hex(&digest("sk-0"))
        );
        let p = compile(json.as_bytes()).unwrap();
        let key = &p.keys[0];
        let listed = list_models(&p, key, None);
        assert!(
            listed.contains("\"open\"") && !listed.contains("quiet"),
            "{listed}"
        );
        assert!(retrieve_model(&p, key, None, "open").is_some());
        assert!(retrieve_model(&p, key, None, "gpt-4o").is_some());
        assert_eq!(retrieve_model(&p, key, None, "quiet"), None);
    }
}
