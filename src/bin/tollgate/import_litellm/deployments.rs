//! LiteLLM's `model_list` as Tollgate deployments: the provider inferred as LiteLLM infers it,
//! one Envoy cluster per distinct upstream, and a deployment id derived from everything that
//! tells two deployments apart (model, upstream, credential, every other parameter), so that a
//! load-balanced group (one model in several regions, keys or ports) stays several deployments.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use tollgate::core::config::key_hash;

use super::providers::Providers;
use super::reach::{reach, Reach};
use super::upstream::{resolve_env, Upstream};
use super::{text, Import};

/// What an import reads besides the config: the providers LiteLLM knows and the environment
/// its `os.environ/` references name.
pub struct Context<'a> {
    /// Provider inference (LiteLLM's provider names and this cost map).
    pub providers: &'a Providers,
    /// The importing shell's environment.
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

/// Prices Tollgate reads from `litellm_params` or `model_info` (carried into `model_info`).
const PRICE_FIELDS: [&str; 5] = [
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
    "output_cost_per_reasoning_token",
];

/// A derived id: a short hash of the deployment's public name, its cluster and its every
/// parameter (canonical JSON: `serde_json` maps are sorted), so distinct deployments never share
/// one and the same deployment keeps its id across imports.
fn derived_id(name: &str, cluster: &str, params: &Map<String, Value>) -> String {
    let material = format!("{name}\n{cluster}\n{}", Value::Object(params.clone()));
    let hex = key_hash::to_hex(&key_hash::digest(&material));
    format!("d-{}", &hex[..12])
}

/// Routing weights as LiteLLM's default router (`simple_shuffle`) picks: within one
/// `model_name`, the first of `litellm_params.weight`, `rpm`, `tpm` that any deployment sets
/// decides, each deployment weighted by its own value of it (0 when it has none); `None` for
/// the deployments of a group that sets none (all equal). Scaled so the largest is 1000.
fn shuffle_weights(deployments: &[Value]) -> Vec<Option<f64>> {
    let metric = |d: &Value, name: &str| {
        d["litellm_params"][name]
            .as_f64()
            .filter(|v| v.is_finite() && *v > 0.0)
    };
    let mut weights = vec![None; deployments.len()];
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, d) in deployments.iter().enumerate() {
        if let Some(name) = d["model_name"].as_str() {
            groups.entry(name).or_default().push(i);
        }
    }
    for members in groups.values() {
        for name in ["weight", "rpm", "tpm"] {
            let largest = members
                .iter()
                .filter_map(|&i| deployments.get(i).and_then(|d| metric(d, name)))
                .fold(0.0_f64, f64::max);
            if largest <= 0.0 {
                continue;
            }
            for &i in members {
                let own = deployments
                    .get(i)
                    .and_then(|d| metric(d, name))
                    .unwrap_or(0.0);
                if let Some(slot) = weights.get_mut(i) {
                    *slot = Some((own / largest * 1000.0 * 1000.0).round() / 1000.0);
                }
            }
            break;
        }
    }
    weights
}

/// LiteLLM's catch-all (`model: "*"`, its Quick Start): any model, its provider inferred from
/// the requested name, called with that provider's own key. It becomes one `<provider>/*`
/// deployment per provider Tollgate reaches at a known address, each with the key variable
/// LiteLLM reads for that provider (or the catch-all's own `api_key`): a bare name such as
/// `gpt-4o` or `claude-newfamily-9` matches `openai/*` or `anthropic/*` through this version's
/// cost map and its fallback rules, as LiteLLM infers it. Providers whose key is not set in the
/// Envoy environment are skipped by routing, as LiteLLM fails without one.
fn catch_all(
    at: &str,
    name: &str,
    params: &Map<String, Value>,
    model_info: Option<&Value>,
    model_list: &mut Vec<Value>,
    out: &mut Import,
) {
    if name != "*" {
        out.not_carried.push(format!(
            "{at}: model \"*\" under model_name {name:?} is not carried (only the \"*\" \
             catch-all is)"
        ));
        return;
    }
    // A catch-all that names its own upstream (an OpenAI-compatible server) is not expanded:
    // sending its prompts to the providers' public APIs instead would be a leak, not a move.
    if params.contains_key("api_base") {
        out.not_carried.push(format!(
            "{at}: not imported: a \"*\" catch-all with its own api_base sends every model to \
             that server; write it as model_name \"*\", model \"openai/*\" with that api_base \
             if it speaks OpenAI's API"
        ));
        return;
    }
    let key = params.get("api_key").and_then(Value::as_str);
    let shared_key = key.and_then(|v| v.strip_prefix("os.environ/"));
    if key.is_some() && shared_key.is_none() {
        out.not_carried.push(format!(
            "{at}.litellm_params.api_key: a literal key is never copied; the catch-all uses each \
             provider's own variable instead"
        ));
    }
    // Who may use it and how it is grouped carry to every expanded deployment; prices and
    // anything else do not (one price for every model of every provider is not a price).
    let mut shared_info = Map::new();
    if let Some(info) = model_info.and_then(Value::as_object) {
        for (field, value) in info {
            match field.as_str() {
                "team_id" | "access_groups" => {
                    shared_info.insert(field.clone(), value.clone());
                }
                other => out.not_carried.push(format!(
                    "{at}.model_info.{other}: not carried to the catch-all's per-provider \
                     deployments"
                )),
            }
        }
    }
    for key in params
        .keys()
        .filter(|k| !matches!(k.as_str(), "model" | "api_key"))
    {
        out.not_carried.push(format!(
            "{at}.litellm_params.{key}: not carried to the catch-all"
        ));
    }
    for (provider, base, key_env) in super::reach::DEFAULT_BASES {
        if provider == "text-completion-openai" {
            continue;
        }
        let default = Upstream::parse(base).ok();
        let cluster = out.clusters.cluster_for(provider, None, default.as_ref());
        let mut info = shared_info.clone();
        info.insert("id".into(), json!(format!("catch-all-{provider}")));
        model_list.push(json!({
            "model_name": format!("{provider}/*"),
            "litellm_params": {
                "model": format!("{provider}/*"),
                "api_key_env": shared_key.unwrap_or(key_env),
            },
            "cluster": cluster,
            "model_info": Value::Object(info),
        }));
    }
    out.notes.push(format!(
        "{at}: the \"*\" catch-all is one <provider>/* deployment per provider with a known \
         address ({}); a bare model name reaches the provider the cost map names",
        super::reach::DEFAULT_BASES
            .iter()
            .filter(|(p, _, _)| *p != "text-completion-openai")
            .map(|(p, _, _)| *p)
            .collect::<Vec<_>>()
            .join(", ")
    ));
}

/// Converts `model_list` into `out.policy["model_list"]`.
/// Whether LiteLLM's router holds deployments to their `rpm`/`tpm`: under usage-based routing,
/// or with `enable_pre_call_checks`. Its default (`simple-shuffle`) only weighs by them.
fn enforces_capacity(config: &Value) -> bool {
    let router = &config["router_settings"];
    let strategy = router["routing_strategy"]
        .as_str()
        .unwrap_or("simple-shuffle");
    strategy.starts_with("usage-based-routing")
        || router["enable_pre_call_checks"].as_bool() == Some(true)
}

pub fn import_model_list(config: &Value, cx: &Context<'_>, out: &mut Import) {
    let mut model_list: Vec<Value> = Vec::new();
    // Derived id → (index in model_list, the config entry it came from).
    let mut by_id: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let deployments = config
        .get("model_list")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let weights = shuffle_weights(deployments);
    let caps = enforces_capacity(config);
    let mut weight_only = Vec::new();
    for (i, deployment) in deployments.iter().enumerate() {
        let at = format!("model_list[{i}]");
        let params = deployment.get("litellm_params").and_then(Value::as_object);
        let (Some(name), Some(params)) = (text(deployment.get("model_name")), params) else {
            out.not_carried
                .push(format!("{at}: no model_name or litellm_params; skipped"));
            continue;
        };
        // A team's model is called by its team-public name (LiteLLM keeps a unique internal
        // model_name for it).
        let name = text(deployment["model_info"].get("team_public_model_name")).unwrap_or(name);
        let Some(model) = text(params.get("model")) else {
            out.not_carried
                .push(format!("{at}.litellm_params: no model; skipped"));
            continue;
        };
        if model == "*" {
            catch_all(
                &at,
                &name,
                params,
                deployment.get("model_info"),
                &mut model_list,
                out,
            );
            continue;
        }
        let (provider, upstream_model) = match cx.providers.split(&model) {
            Ok(split) => split,
            Err(why) => {
                out.errors.push(format!("{at}.litellm_params.model: {why}"));
                continue;
            }
        };
        if !model.starts_with(&format!("{provider}/")) {
            out.notes.push(format!(
                "{at}: {model:?} is {provider}/{upstream_model} (provider from the cost map, as \
                 LiteLLM infers it)"
            ));
        }
        let upstream = match params.get("api_base").and_then(Value::as_str) {
            None => None,
            Some(base) => {
                let resolved = resolve_env(
                    base,
                    cx.env,
                    &format!("{at}.litellm_params.api_base"),
                    crate::import_litellm::upstream::ADDRESS_HINT,
                )
                .and_then(|b| {
                    Upstream::parse(&b).map_err(|e| format!("{at}.litellm_params.api_base: {e}"))
                });
                match resolved {
                    Ok(upstream) => Some(upstream),
                    Err(why) => {
                        out.errors.push(why);
                        continue;
                    }
                }
            }
        };
        let default = match reach(&provider, &upstream_model) {
            Reach::Needs(what) => {
                out.not_carried
                    .push(format!("{at}: not imported: {provider}: {what}"));
                continue;
            }
            Reach::Known(base) => Upstream::parse(base).ok(),
            Reach::Unknown => None,
        };
        let cluster = out
            .clusters
            .cluster_for(&provider, upstream.as_ref(), default.as_ref());
        let mut tg_params = json!({ "model": format!("{provider}/{upstream_model}") });
        let mut model_info = Map::new();
        for (key, value) in params {
            match key.as_str() {
                "model" | "api_base" => {}
                "api_key" => match value.as_str().and_then(|v| v.strip_prefix("os.environ/")) {
                    Some(env) => tg_params["api_key_env"] = json!(env),
                    None => out.not_carried.push(format!(
                        "{at}.litellm_params.api_key: a literal key is never copied; set \
                         api_key_env to a variable holding it in the Envoy VM"
                    )),
                },
                "weight" => {}
                // The routing weight (`shuffle_weights`), as LiteLLM's default router uses it;
                // the deployment's capacity (routing skips it when full) only where LiteLLM
                // enforces it too.
                "rpm" | "tpm" if !value.is_null() && caps => {
                    let path = format!("{at}.litellm_params.{key}");
                    if let Some(n) = super::limits::whole(value, &path, out) {
                        tg_params[key] = json!(n);
                    }
                }
                "rpm" | "tpm" if !value.is_null() => weight_only.push(format!("{at}.{key}")),
                "rpm" | "tpm" => {}
                field if PRICE_FIELDS.contains(&field) => {
                    model_info.insert(key.clone(), value.clone());
                }
                other => out.not_carried.push(format!(
                    "{at}.litellm_params.{other}: no Tollgate equivalent"
                )),
            }
        }
        if let Some(info) = deployment.get("model_info").and_then(Value::as_object) {
            for (key, value) in info {
                match key.as_str() {
                    "id" | "access_groups" | "max_output_tokens" | "base_model" | "team_id" => {
                        model_info.insert(key.clone(), value.clone());
                    }
                    field if PRICE_FIELDS.contains(&field) => {
                        model_info.insert(key.clone(), value.clone());
                    }
                    "team_public_model_name" => {}
                    other => out
                        .not_carried
                        .push(format!("{at}.model_info.{other}: no Tollgate equivalent")),
                }
            }
        }
        for key in deployment
            .as_object()
            .into_iter()
            .flat_map(|d| d.keys())
            .filter(|k| !matches!(k.as_str(), "model_name" | "litellm_params" | "model_info"))
        {
            out.not_carried
                .push(format!("{at}.{key}: no Tollgate equivalent"));
        }
        // Without an api_key LiteLLM reads the provider's own variable (OPENAI_API_KEY, ...).
        if !params.contains_key("api_key") {
            if let Some((_, _, env)) = super::reach::DEFAULT_BASES
                .iter()
                .find(|(p, _, _)| *p == provider)
            {
                tg_params["api_key_env"] = json!(env);
                out.notes.push(format!(
                    "{at}: no api_key: the key is read from {env}, as LiteLLM reads it"
                ));
            }
        }
        if let Some(weight) = weights.get(i).copied().flatten() {
            tg_params["weight"] = json!(weight);
        }
        if !model_info.contains_key("id") {
            let id = derived_id(&name, &cluster, params);
            if let Some(&(index, first)) = by_id.get(&id) {
                // The same deployment twice: LiteLLM balances over both copies, which is one
                // upstream with twice the weight.
                let weight = |v: &Value| v["litellm_params"]["weight"].as_f64().unwrap_or(1.0);
                let added = weight(&tg_params);
                if let Some(kept) = model_list.get_mut(index) {
                    let sum = weight(kept) + added;
                    kept["litellm_params"]["weight"] = json!(sum);
                    // Each copy has its own capacity: together, twice as much.
                    for limit in ["rpm", "tpm"] {
                        let (Some(a), Some(b)) = (
                            kept["litellm_params"][limit].as_u64(),
                            tg_params[limit].as_u64(),
                        ) else {
                            continue;
                        };
                        kept["litellm_params"][limit] = json!(a.saturating_add(b));
                    }
                    out.notes.push(format!(
                        "{at} is the same deployment as model_list[{first}] (LiteLLM balances \
                         over both): merged into one with weight {sum}"
                    ));
                }
                continue;
            }
            by_id.insert(id.clone(), (model_list.len(), i));
            model_info.insert("id".into(), json!(id));
        }
        let mut entry =
            json!({ "model_name": name, "litellm_params": tg_params, "cluster": cluster });
        entry["model_info"] = Value::Object(model_info);
        model_list.push(entry);
    }
    if !weight_only.is_empty() {
        out.notes.push(format!(
            "{}: routing weights only, as LiteLLM's default router (simple-shuffle) uses them; \
             LiteLLM holds a deployment to its rpm/tpm only under usage-based routing or \
             enable_pre_call_checks, and so does this import. Add rpm/tpm to a Tollgate \
             deployment's litellm_params to make them its capacity",
            weight_only.join(", ")
        ));
    }
    out.policy
        .insert("model_list".into(), Value::Array(model_list));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `config`'s model_list imported with an empty cost map and no environment.
    fn imported(config: &Value) -> Import {
        let providers = super::super::providers::Providers::new(Default::default());
        let cx = Context {
            providers: &providers,
            env: &|_| None,
        };
        let mut out = Import::default();
        import_model_list(config, &cx, &mut out);
        out
    }

    #[test]
    fn weights_follow_litellm_simple_shuffle() {
        let list: Vec<Value> = serde_json::from_str(
            r#"[{"model_name":"a","litellm_params":{"rpm":300}},
                {"model_name":"a","litellm_params":{"rpm":100,"tpm":5}},
                {"model_name":"a","litellm_params":{}},
                {"model_name":"b","litellm_params":{"tpm":20}},
                {"model_name":"b","litellm_params":{"tpm":10,"weight":0}},
                {"model_name":"c","litellm_params":{"weight":2}},
                {"model_name":"c","litellm_params":{"weight":1,"rpm":1000}},
                {"model_name":"d","litellm_params":{}}]"#,
        )
        .unwrap();
        let w = shuffle_weights(&list);
        assert_eq!(
            &w[..3],
            &[Some(1000.0), Some(333.333), Some(0.0)],
            "rpm decides in a"
        );
        assert_eq!(
            &w[3..5],
            &[Some(1000.0), Some(500.0)],
            "tpm in b: weight 0 is no weight"
        );
        assert_eq!(
            &w[5..7],
            &[Some(1000.0), Some(500.0)],
            "weight wins over rpm in c"
        );
        assert_eq!(w[7], None, "no metric: all equal");
    }

    #[test]
    fn a_team_model_keeps_its_team_and_is_called_by_its_public_name() {
        let config: Value = serde_json::from_str(
            r#"{"model_list":[{"model_name":"gpt-4o_team-a_3f2c","litellm_params":{"model":"openai/gpt-4o"},
                "model_info":{"team_id":"team-a","team_public_model_name":"gpt-4o"}}]}"#,
        )
        .unwrap();
        let out = imported(&config);
        let d = &out.policy["model_list"][0];
        assert_eq!(d["model_name"], "gpt-4o");
        assert_eq!(d["model_info"]["team_id"], "team-a");
        assert!(out.not_carried.is_empty(), "{:?}", out.not_carried);
    }

    #[test]
    fn the_catch_all_becomes_one_wildcard_per_reachable_provider() {
        let config: Value = serde_json::from_str(
            r#"{"model_list":[{"model_name":"*","litellm_params":{"model":"*"}}]}"#,
        )
        .unwrap();
        let out = imported(&config);
        let list = out.policy["model_list"].as_array().unwrap();
        let anthropic = list
            .iter()
            .find(|d| d["model_name"] == "anthropic/*")
            .unwrap();
        assert_eq!(
            anthropic["litellm_params"]["api_key_env"],
            "ANTHROPIC_API_KEY"
        );
        assert_eq!(anthropic["cluster"], "anthropic");
        assert!(list.iter().any(|d| d["model_name"] == "openai/*"));
        assert_eq!(out.clusters.by_name["openai"], "https://api.openai.com:443");
        assert!(out.notes.iter().any(|n| n.contains("catch-all")));
    }
}
