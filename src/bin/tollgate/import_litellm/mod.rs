//! `tollgate import-litellm CONFIG.yaml [--keys EXPORT.json] [--cost-map MAP] [--output POLICY]
//! [--strict]`: a Tollgate policy from a LiteLLM proxy `config.yaml` (`model_list`,
//! `router_settings.model_group_alias`, access groups) and an export of its keys and teams, with
//! the Envoy clusters to define and a list of what could not be carried.
//!
//! `deployments` converts `model_list` (provider inference in `providers`, clusters and
//! `os.environ/` addresses in `upstream`); `export` the keys and teams (their rate limits in
//! `limits`). A bare model name gets
//! its provider from the cost map, as LiteLLM's does: the one given with `--cost-map`, else the
//! LiteLLM map Tollgate ships (`tests/data/model_prices_and_context_window.json`, litellm 1.109.1).

mod attribution;
mod deployments;
mod export;
mod limits;
mod providers;
mod reach;
mod upstream;

use std::process::ExitCode;

use clap::Parser;
use serde_json::{json, Map, Value};

use tollgate::core::compile;

use deployments::{import_model_list, Context};
use providers::Providers;
use upstream::Clusters;

/// The LiteLLM cost map Tollgate is tested with (litellm 1.109.1; see tests/data/README.md):
/// what `import-litellm` and `build-config` read without `--cost-map`.
pub(crate) const BUNDLED_COST_MAP: &str =
    include_str!("../../../../tests/data/model_prices_and_context_window.json");

#[derive(Parser, Debug)]
#[command(
    name = "tollgate import-litellm",
    about = "A Tollgate policy from a LiteLLM proxy config and an export of its keys and teams"
)]
struct Args {
    /// LiteLLM's proxy config (`config.yaml`).
    config: String,
    /// LiteLLM's keys and teams as JSON: `{"keys": [...], "teams": [...]}`.
    #[arg(long)]
    keys: Option<String>,
    /// The LiteLLM cost map that infers providers of bare model names (default: the one
    /// Tollgate ships, litellm 1.109.1's).
    #[arg(long)]
    cost_map: Option<String>,
    /// Where to write the policy (default: standard output).
    #[arg(long)]
    output: Option<String>,
    /// Exit 1 when anything could not be carried over.
    #[arg(long)]
    strict: bool,
}

/// What the import produced and what it left behind.
#[derive(Debug, Default)]
pub struct Import {
    /// The Tollgate policy (without a cost map: add one with `build-config`).
    pub policy: Map<String, Value>,
    /// Settings that have no Tollgate equivalent, each with where it was.
    pub not_carried: Vec<String>,
    /// What was carried with a change worth knowing (an inferred provider, merged copies).
    pub notes: Vec<String>,
    /// What makes the import unusable (an unknown provider, an unset variable): exit 1.
    pub errors: Vec<String>,
    /// The Envoy clusters the policy routes to, with the address each must point to.
    pub clusters: Clusters,
}

fn text(value: Option<&Value>) -> Option<String> {
    value.and_then(Value::as_str).map(str::to_string)
}

/// `litellm_settings.timezone` (the zone LiteLLM counts budget resets in) becomes
/// `settings.budget_timezone`. A name the IANA database does not know is left out with a
/// word: LiteLLM falls back to UTC for it, and so does the policy.
fn import_timezone(timezone: Option<&Value>, out: &mut Import) {
    let Some(timezone) = timezone else { return };
    let Some(name) = timezone.as_str() else {
        out.not_carried.push(format!(
            "litellm_settings.timezone: {timezone} is not a zone name; LiteLLM falls back to \
             UTC, and so does the policy"
        ));
        return;
    };
    match tollgate::core::config::time_zone::BudgetZone::named(name) {
        Ok(_) => {
            let settings = out.policy.entry("settings").or_insert_with(|| json!({}));
            if let Some(settings) = settings.as_object_mut() {
                settings.insert("budget_timezone".into(), json!(name));
            }
        }
        Err(message) => out.not_carried.push(format!(
            "litellm_settings.timezone: {message}; LiteLLM falls back to UTC for it, and so \
             does the policy"
        )),
    }
}

/// Converts a parsed LiteLLM config (and optional keys export) into a policy.
pub fn import(config: &Value, export: Option<&Value>, version: &str, cx: &Context<'_>) -> Import {
    let mut out = Import::default();
    out.policy.insert("version".into(), json!(version));
    // LiteLLM sets the config's `environment_variables` into its environment at start, over
    // what the shell had: `os.environ/` references resolve against them first.
    let own_env = config
        .get("environment_variables")
        .and_then(Value::as_object);
    for name in own_env.into_iter().flat_map(|vars| vars.keys()) {
        out.not_carried.push(format!(
            "environment_variables.{name}: used to resolve os.environ/{name} here; Tollgate \
             reads credentials from the Envoy environment, so set it there if a credential names it"
        ));
    }
    let env = |name: &str| {
        own_env
            .and_then(|vars| vars.get(name))
            .and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .or_else(|| (cx.env)(name))
    };
    let cx = &Context {
        providers: cx.providers,
        env: &env,
    };
    // Models kept in LiteLLM's database (the export's /model/info data) serve as the config's do.
    let stored = export.map(export::stored_models).unwrap_or_default();
    let merged;
    let config = if stored.is_empty() {
        config
    } else {
        let mut copy = config.clone();
        let from = copy
            .get("model_list")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let (stored, repeated) = export::database_models(stored);
        if repeated > 0 {
            out.notes.push(format!(
                "{repeated} models of the export are the config's own (db_model: false): read \
                 from the config"
            ));
        }
        if !stored.is_empty() {
            out.notes.push(format!(
                "{} models from the export (LiteLLM's database) read as model_list[{from}..{}]",
                stored.len(),
                from + stored.len()
            ));
        }
        if let Some(object) = copy.as_object_mut() {
            let list = object.entry("model_list").or_insert_with(|| json!([]));
            if !list.is_array() {
                *list = json!([]); // `model_list:` left empty in the YAML
            }
            if let Some(list) = list.as_array_mut() {
                list.extend(stored);
            }
        }
        merged = copy;
        &merged
    };
    import_model_list(config, cx, &mut out);
    let router = config.get("router_settings");
    if let Some(aliases) = router.and_then(|r| r.get("model_group_alias")) {
        out.policy
            .insert("model_group_alias".into(), aliases.clone());
    }
    if let Some(settings) = router.and_then(Value::as_object) {
        for key in settings.keys().filter(|k| *k != "model_group_alias") {
            out.not_carried
                .push(format!("router_settings.{key}: no Tollgate equivalent"));
        }
    }
    import_general_settings(config, cx, &mut out);
    let settings = config.get("litellm_settings").and_then(Value::as_object);
    import_timezone(settings.and_then(|s| s.get("timezone")), &mut out);
    // Every other top-level section is named (LiteLLM grows new ones; none is read).
    const READ: [&str; 4] = [
        "model_list",
        "router_settings",
        "general_settings",
        "environment_variables",
    ];
    for section in config
        .as_object()
        .into_iter()
        .flat_map(|c| c.keys())
        .filter(|k| !READ.contains(&k.as_str()))
    {
        let only_timezone = section == "litellm_settings"
            && settings.is_some_and(|s| s.keys().all(|k| k == "timezone"));
        if !only_timezone {
            out.not_carried.push(format!(
                "{section}: not read (only model_list, aliases, the master key, \
                 environment_variables and litellm_settings.timezone are)"
            ));
        }
    }
    if let Some(export) = export {
        export::import_teams(export, &mut out);
        export::import_keys(export, &mut out);
        export::import_budget_holders(export, &mut out);
    }
    let no_keys = out
        .policy
        .get("keys")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if no_keys {
        out.notes.push(
            "the policy has no keys, so every request is refused (401) until it has some: pass \
             LiteLLM's key export with --keys, or set general_settings.master_key"
                .into(),
        );
    }
    out
}

/// `general_settings`: the `master_key` becomes an all-models key (its hash only),
/// `token_rate_limit_type` becomes `settings.token_rate_limit_type`; the rest is named as not
/// carried.
fn import_general_settings(config: &Value, cx: &Context<'_>, out: &mut Import) {
    let Some(settings) = config.get("general_settings").and_then(Value::as_object) else {
        return;
    };
    for (key, value) in settings {
        if key == "token_rate_limit_type" {
            limits::token_rate_limit_type(value, out);
            continue;
        }
        if key != "master_key" {
            out.not_carried
                .push(format!("general_settings.{key}: no Tollgate equivalent"));
            continue;
        }
        let at = "general_settings.master_key";
        let Some(written) = value.as_str() else {
            out.not_carried.push(format!("{at}: not a string; skipped"));
            continue;
        };
        let master = match upstream::resolve_env(written, cx.env, at, "or write the key itself") {
            Ok(master) => master,
            Err(why) => {
                out.not_carried
                    .push(format!("{why}; the master key was not carried"));
                continue;
            }
        };
        if !master.starts_with("sk-") {
            out.not_carried.push(format!(
                "{at}: does not start with sk- (LiteLLM requires that too); not carried"
            ));
            continue;
        }
        let hash = tollgate::core::config::key_hash::to_hex(
            &tollgate::core::config::key_hash::digest(&master),
        );
        let keys = out
            .policy
            .entry("keys")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(keys) = keys {
            keys.push(json!({
                "key_hash": hash,
                "key_alias": "litellm-master-key",
                "models": ["all-proxy-models"],
            }));
        }
        out.notes.push(format!(
            "{at}: carried (its SHA-256 only) as key \"litellm-master-key\", which may call \
             every model with no budget; Tollgate has no admin API, so it is only a calling \
             key: give it a budget or retire it"
        ));
    }
}

fn read_cost_map(path: Option<&str>) -> Result<Providers, String> {
    let (name, text) = match path {
        Some(path) => (
            path,
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?,
        ),
        None => ("the bundled cost map", BUNDLED_COST_MAP.to_string()),
    };
    let map = serde_json::from_str(&text).map_err(|e| format!("{name}: not a cost map: {e}"))?;
    Ok(Providers::new(map))
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Runs the command.
pub fn run(args: &[String]) -> Result<ExitCode, String> {
    let args = Args::try_parse_from(
        std::iter::once("tollgate import-litellm".to_string()).chain(args.iter().cloned()),
    )
    .map_err(|e| e.to_string())?;
    let config_text = std::fs::read_to_string(&args.config)
        .map_err(|e| format!("cannot read {}: {e}", args.config))?;
    let config = crate::yaml_doc::YamlDoc::parse(&config_text, &args.config)?.value;
    let export: Option<Value> = match &args.keys {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            Some(serde_json::from_str(&text).map_err(|e| format!("{path}: not valid JSON: {e}"))?)
        }
        None => None,
    };
    let providers = read_cost_map(args.cost_map.as_deref())?;
    let cx = Context {
        providers: &providers,
        env: &process_env,
    };
    let imported = import(&config, export.as_ref(), "imported-from-litellm", &cx);
    if !imported.errors.is_empty() {
        eprintln!("{}: cannot be imported as it is:", args.config);
        for error in &imported.errors {
            eprintln!("  error: {error}");
        }
        return Ok(ExitCode::FAILURE);
    }
    let document =
        serde_json::to_string_pretty(&Value::Object(imported.policy)).map_err(|e| e.to_string())?;
    match &args.output {
        Some(path) => {
            std::fs::write(path, &document).map_err(|e| format!("cannot write {path}: {e}"))?
        }
        None => println!("{document}"),
    }
    eprintln!("Envoy clusters the policy routes to (define them in the Envoy config):");
    for (cluster, target) in &imported.clusters.by_name {
        eprintln!("  {cluster}: {target}");
    }
    for note in &imported.notes {
        eprintln!("note: {note}");
    }
    if imported.not_carried.is_empty() {
        eprintln!("everything was carried over");
    } else {
        eprintln!("not carried over ({}):", imported.not_carried.len());
        for item in &imported.not_carried {
            eprintln!("  {item}");
        }
    }
    match compile(document.as_bytes()) {
        Ok(policy) => eprintln!(
            "ok: {} (add the cost map with build-config)",
            policy.summary()
        ),
        Err(errors) => {
            eprintln!("the imported policy does not compile yet; fix these before use:");
            for error in &errors.0 {
                eprintln!("  error: {error}");
            }
            return Ok(ExitCode::FAILURE);
        }
    }
    if args.strict && !imported.not_carried.is_empty() {
        eprintln!(
            "--strict: {} setting(s) not carried over",
            imported.not_carried.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY
      rpm: 100
    model_info:
      id: gpt4o-main
      access_groups: [general]
  - model_name: gpt-4o
    litellm_params:
      model: azure/gpt-4o-eu
      api_base: https://eu.openai.azure.com/
      api_key: sk-plaintext-never-copied
      weight: 2
router_settings:
  model_group_alias: {"fast": "gpt-4o"}
  routing_strategy: usage-based-routing-v2
litellm_settings:
  drop_params: true
"#;

    #[test]
    fn a_litellm_config_and_keys_export_become_a_policy_with_a_report() {
        let config = crate::yaml_doc::YamlDoc::parse(CONFIG, "test.yaml")
            .unwrap()
            .value;
        let export = json!({
            "keys": [
                {"token": "A".repeat(64), "key_alias": "k", "team_id": "t", "models": ["fast"],
                 "max_budget": 5.0, "budget_duration": "30d", "expires": "2027-01-01T00:00:00",
                 "rpm_limit": 10, "spend": 1.5, "metadata": {"tags": ["prod"]}, "permissions": {}},
                {"token": "sk-raw", "key_alias": "raw"}
            ],
            "teams": [{"team_id": "t", "team_alias": "Team", "models": [], "tpm_limit": null}]
        });
        let providers = read_cost_map(None).unwrap();
        let no_env = |_: &str| None;
        let cx = Context {
            providers: &providers,
            env: &no_env,
        };
        let imported = import(&config, Some(&export), "v1", &cx);
        assert!(imported.errors.is_empty(), "{:?}", imported.errors);
        let policy = Value::Object(imported.policy.clone());
        assert_eq!(
            policy["model_list"][0]["litellm_params"]["api_key_env"],
            "OPENAI_API_KEY"
        );
        assert_eq!(policy["model_list"][0]["cluster"], "openai");
        assert_eq!(
            policy["model_list"][1]["cluster"],
            "azure-eu-openai-azure-com"
        );
        assert!(policy["model_list"][1]["litellm_params"]
            .get("api_key")
            .is_none());
        assert_eq!(policy["model_group_alias"]["fast"], "gpt-4o");
        assert_eq!(policy["keys"][0]["key_hash"], "a".repeat(64));
        assert_eq!(policy["keys"][0]["expires"], "2027-01-01T00:00:00Z");
        assert_eq!(policy["keys"].as_array().unwrap().len(), 1);
        assert_eq!(policy["keys"][0]["rpm_limit"], 10);
        assert_eq!(
            policy["keys"][0]["tags"],
            json!(["prod"]),
            "metadata.tags are carried"
        );
        assert!(
            policy["teams"][0].get("tpm_limit").is_none(),
            "null is unset"
        );
        assert_eq!(policy["model_list"][0]["litellm_params"]["rpm"], 100);
        let report = imported.not_carried.join("\n");
        assert!(
            !report.contains("permissions"),
            "empty is not set: {report}"
        );
        for carried in ["litellm_params.rpm", "rpm_limit", "tpm_limit"] {
            assert!(!report.contains(carried), "{carried} is carried:\n{report}");
        }
        for expected in [
            "literal key is never copied",
            "router_settings.routing_strategy",
            "litellm_settings",
            "keys[0].spend",
            "keys[1]: no SHA-256",
        ] {
            assert!(
                report.contains(expected),
                "{expected} missing from:\n{report}"
            );
        }
        let document = serde_json::to_vec(&policy).unwrap();
        let compiled = compile(&document).unwrap();
        assert_eq!(compiled.keys[0].limits.as_ref().unwrap().rpm, Some(10));
        let capacity = compiled.deployments[0].limits.as_ref().unwrap();
        assert_eq!((capacity.rpm, capacity.tpm), (Some(100), None));
    }

    #[test]
    fn deployment_rpm_is_a_cap_only_where_litellm_enforces_it() {
        let providers = read_cost_map(None).unwrap();
        let no_env = |_: &str| None;
        let cx = Context {
            providers: &providers,
            env: &no_env,
        };
        let shuffle = CONFIG.replace("usage-based-routing-v2", "simple-shuffle");
        let config = crate::yaml_doc::YamlDoc::parse(&shuffle, "test.yaml")
            .unwrap()
            .value;
        let imported = import(&config, None, "v1", &cx);
        let policy = Value::Object(imported.policy.clone());
        assert!(policy["model_list"][0]["litellm_params"]
            .get("rpm")
            .is_none());
        let notes = imported.notes.join("\n");
        assert!(
            notes.contains("model_list[0].rpm: routing weights only"),
            "{notes}"
        );
        let checks = CONFIG.replace(
            "routing_strategy: usage-based-routing-v2",
            "enable_pre_call_checks: true",
        );
        let config = crate::yaml_doc::YamlDoc::parse(&checks, "test.yaml")
            .unwrap()
            .value;
        let imported = import(&config, None, "v1", &cx);
        assert_eq!(
            imported.policy["model_list"][0]["litellm_params"]["rpm"],
            100
        );
    }

    #[test]
    fn litellm_settings_timezone_becomes_the_budget_time_zone() {
        let providers = Providers::new(Default::default());
        let cx = Context {
            providers: &providers,
            env: &|_| None,
        };
        let read = |yaml: &str| {
            let config = crate::yaml_doc::YamlDoc::parse(yaml, "c.yaml")
                .unwrap()
                .value;
            import(&config, None, "v1", &cx)
        };
        let carried = read("model_list: []\nlitellm_settings:\n  timezone: US/Eastern\n");
        assert_eq!(carried.policy["settings"]["budget_timezone"], "US/Eastern");
        assert!(carried.not_carried.is_empty(), "{:?}", carried.not_carried);
        compile(&serde_json::to_vec(&Value::Object(carried.policy)).unwrap()).unwrap();
        let with_more =
            read("model_list: []\nlitellm_settings:\n  timezone: UTC\n  drop_params: true\n");
        assert_eq!(with_more.policy["settings"]["budget_timezone"], "UTC");
        assert_eq!(
            with_more.not_carried.len(),
            1,
            "the rest of litellm_settings"
        );
        let unknown = read("model_list: []\nlitellm_settings:\n  timezone: Mars/Olympus\n");
        assert!(unknown.policy.get("settings").is_none());
        assert!(
            unknown.not_carried[0].contains("LiteLLM falls back to UTC"),
            "{:?}",
            unknown.not_carried
        );
    }

    #[test]
    fn a_policy_without_keys_says_that_nobody_can_call() {
        let config = crate::yaml_doc::YamlDoc::parse(
            "model_list:\n  - model_name: gpt-4o\n    litellm_params: {model: openai/gpt-4o}\n",
            "c.yaml",
        )
        .unwrap()
        .value;
        let providers = Providers::new(Default::default());
        let cx = Context {
            providers: &providers,
            env: &|_: &str| None,
        };
        let imported = import(&config, None, "v1", &cx);
        assert!(
            imported.notes.iter().any(|n| n.contains("no keys")),
            "{:?}",
            imported.notes
        );
        let export = json!({"keys": [{"token": "c".repeat(64), "key_alias": "k"}]});
        let imported = import(&config, Some(&export), "v1", &cx);
        assert!(!imported.notes.iter().any(|n| n.contains("no keys")));
    }

    #[test]
    fn an_unset_master_key_variable_is_named_without_talking_of_addresses() {
        let config = crate::yaml_doc::YamlDoc::parse(
            "model_list: []\ngeneral_settings:\n  master_key: os.environ/LITELLM_MASTER_KEY\n",
            "c.yaml",
        )
        .unwrap()
        .value;
        let providers = Providers::new(Default::default());
        let cx = Context {
            providers: &providers,
            env: &|_: &str| None,
        };
        let imported = import(&config, None, "v1", &cx);
        let [why] = imported.not_carried.as_slice() else {
            panic!("{:?}", imported.not_carried);
        };
        assert!(
            why.contains("set LITELLM_MASTER_KEY before importing"),
            "{why}"
        );
        assert!(
            !why.contains("address") && !why.contains("cluster"),
            "{why}"
        );
    }

    #[test]
    fn models_kept_in_litellms_database_join_the_configs() {
        let config = crate::yaml_doc::YamlDoc::parse(
            "model_list:\n  - model_name: gpt-4o\n    litellm_params: {model: openai/gpt-4o}\n",
            "c.yaml",
        )
        .unwrap()
        .value;
        let providers = Providers::new(Default::default());
        let cx = Context {
            providers: &providers,
            env: &|_: &str| None,
        };
        let stored = json!([
            {"model_name": "claude-db", "litellm_params": {"model": "anthropic/claude-sonnet-4-5"},
             "model_info": {"id": "3f0c", "db_model": true, "mode": "chat", "max_tokens": 64000,
                            "supports_vision": true, "access_groups": ["beta"]}},
            {"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o"},
             "model_info": {"id": "cfg", "db_model": false}}
        ]);
        // As /model/info answers, and as one bare list.
        for export in [json!({ "data": stored.clone() }), stored.clone()] {
            let imported = import(&config, Some(&export), "v1", &cx);
            let models = imported.policy["model_list"].as_array().unwrap();
            assert_eq!(
                models.len(),
                2,
                "the config's, then the database's: {models:?}"
            );
            assert_eq!(models[1]["model_name"], "claude-db");
            assert_eq!(models[1]["model_info"]["access_groups"], json!(["beta"]));
            assert!(
                imported.not_carried.is_empty(),
                "cost-map facts are not settings left behind: {:?}",
                imported.not_carried
            );
            assert!(imported.notes.iter().any(|n| n.contains("db_model: false")));
            compile(&serde_json::to_vec(&Value::Object(imported.policy)).unwrap()).unwrap();
        }
    }

    #[test]
    fn the_master_key_becomes_an_all_models_key_known_by_its_hash_only() {
        let config = crate::yaml_doc::YamlDoc::parse(
            "model_list: []\ngeneral_settings:\n  master_key: os.environ/LITELLM_MASTER_KEY\n  \
             database_url: os.environ/DATABASE_URL\n",
            "c.yaml",
        )
        .unwrap()
        .value;
        let providers = Providers::new(Default::default());
        let env = |name: &str| (name == "LITELLM_MASTER_KEY").then(|| "sk-master-1".to_string());
        let cx = Context {
            providers: &providers,
            env: &env,
        };
        let export = json!({"keys": [{"token": "c".repeat(64), "key_alias": "k"}]});
        let imported = import(&config, Some(&export), "v1", &cx);
        let keys = imported.policy["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2, "the master key and the export's key");
        let digest = tollgate::core::config::key_hash::digest("sk-master-1");
        assert_eq!(
            keys[0]["key_hash"],
            tollgate::core::config::key_hash::to_hex(&digest)
        );
        assert_eq!(keys[0]["models"], json!(["all-proxy-models"]));
        assert!(!serde_json::to_string(&imported.policy)
            .unwrap()
            .contains("sk-master-1"));
        assert!(imported
            .notes
            .iter()
            .any(|n| n.contains("litellm-master-key")));
        assert!(imported
            .not_carried
            .iter()
            .any(|n| n.starts_with("general_settings.database_url")));
        compile(&serde_json::to_vec(&Value::Object(imported.policy)).unwrap()).unwrap();
        let unset = import(
            &config,
            None,
            "v1",
            &Context {
                providers: &providers,
                env: &|_| None,
            },
        );
        assert!(unset.policy.get("keys").is_none());
        assert!(unset
            .not_carried
            .iter()
            .any(|n| n.contains("set LITELLM_MASTER_KEY")));
    }

    #[test]
    fn the_configs_own_environment_variables_resolve_its_references_first() {
        let config = crate::yaml_doc::YamlDoc::parse(
            "model_list:\n  - model_name: m\n    litellm_params: {model: openai/m, api_base: \
             os.environ/BASE}\nenvironment_variables:\n  BASE: http://127.0.0.1:9000\n\
             include: [other.yaml]\n",
            "c.yaml",
        )
        .unwrap()
        .value;
        let providers = Providers::new(Default::default());
        let shell = |name: &str| (name == "BASE").then(|| "https://shell.example".to_string());
        let cx = Context {
            providers: &providers,
            env: &shell,
        };
        let imported = import(&config, None, "v1", &cx);
        assert!(imported.errors.is_empty(), "{:?}", imported.errors);
        assert_eq!(
            imported.policy["model_list"][0]["cluster"],
            "openai-127-0-0-1-9000"
        );
        let report = imported.not_carried.join("\n");
        assert!(report.contains("environment_variables.BASE"), "{report}");
        assert!(report.contains("include: not read"), "{report}");
    }
}

#[cfg(test)]
mod limits_tests;
