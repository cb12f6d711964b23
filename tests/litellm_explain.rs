//! `tollgate explain` against LiteLLM's documented decisions: each row is a request one of
//! LiteLLM's docs pages shows (or states the answer for), on a config of the corpus
//! (`tests/data/litellm/docs/`) with the keys and teams that page creates. The config is imported
//! (`import-litellm --keys`), built with the cost map and explained; the row asserts Tollgate's
//! decision (exit code, status and error code, or the deployment reached), and whether that is
//! LiteLLM's documented answer. A row where they differ says why. The README's explain table is
//! checked against this one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tollgate::core::config::key_hash::{digest, to_hex};

mod litellm_common;
use litellm_common::{build_config, environment, tollgate};

/// What LiteLLM's docs say it does with the request (the text is the README's).
#[derive(Clone, Copy)]
enum Litellm {
    /// Admitted; where it goes, as the page says.
    Admits(&'static str),
    /// Refused; how, as the page says.
    Refuses(&'static str),
}

/// What `tollgate explain` decides.
#[derive(Clone, Copy)]
enum Ours {
    /// ALLOW, routed to one of these `(cluster, upstream model)`, all of them eligible.
    Admits(&'static [(&'static str, &'static str)]),
    /// DENY with this status and error code.
    Refuses(u16, &'static str),
}

struct Row {
    /// Under `tests/data/litellm/`.
    config: &'static str,
    /// The keys and teams the page creates, as a LiteLLM export (`""`: none); `{sk-…}` stands
    /// for the SHA-256 of that key, as LiteLLM stores it.
    export: &'static str,
    /// The key, and who it is (for the README).
    key: &'static str,
    who: &'static str,
    model: &'static str,
    /// `--path`, when not `/v1/chat/completions`.
    path: Option<&'static str>,
    litellm: Litellm,
    /// The page (markdown link) and what it says.
    source: &'static str,
    ours: Ours,
    /// Why we differ, or anything else worth saying about the row.
    note: &'static str,
}

const WILDCARD_KEY: &str =
    r#"{"keys":[{"token":"{sk-default-models}","models":["default-models"]}]}"#;
const BETA: &str = r#"{"keys":[{"token":"{sk-beta-models}","models":["beta-models"],"max_budget":0},
    {"token":"{sk-beta-team}","team_id":"0ac97648-c194-4c90-8cd6-40af7b0d2d2a"}],
  "teams":[{"team_id":"0ac97648-c194-4c90-8cd6-40af7b0d2d2a","models":["beta-models"]}]}"#;
const THREE_MODELS: &str = r#"{"keys":[{"token":"{sk-three-models}","models":["gpt-3.5-turbo","gpt-4","claude-2"],
    "metadata":{"user":"ishaan@berri.ai"}}]}"#;
const LOAD_BALANCING: &str = r#"{"keys":[{"token":"{sk-two-models}","models":["gpt-3.5-turbo","gpt-4"]},
    {"token":"{sk-zero-budget}","max_budget":0},
    {"token":"{sk-gpt-4o-budget}","model_max_budget":{"gpt-4o":{"budget_limit":"0.0000001","time_period":"1d"}}}]}"#;
const ANY_MODEL: &str = r#"{"keys":[{"token":"{sk-any-model}","models":[]}]}"#;
const TEAM_ALIAS: &str = r#"{"keys":[{"token":"{sk-team-key}","team_id":"my-team-id"}],
  "teams":[{"team_id":"my-team-id","team_alias":"my-new-team_4","model_aliases":{"gpt-3.5-turbo":"gpt-3.5-turbo-eu"}}]}"#;
const TEAM_MODEL: &str = r#"{"keys":[{"token":"{sk-team-key}","team_id":"e59e2671-a064-436a-a0fa-16ae96e5a0a1"},
    {"token":"{sk-any-model}","models":[]}],
  "teams":[{"team_id":"e59e2671-a064-436a-a0fa-16ae96e5a0a1","models":[]}]}"#;

const WILDCARD_ACCESS: &str = "[proxy/model_access_groups](https://docs.litellm.ai/docs/proxy/model_access_groups#-control-access-on-wildcard-models)";

const ROWS: &[Row] = &[
    Row {
        config: "docs/proxy_model_access_groups__wildcard_models.yaml",
        export: WILDCARD_KEY,
        key: "sk-default-models",
        who: "key `models: [default-models]`",
        model: "openai/gpt-4",
        path: None,
        litellm: Litellm::Admits("to `openai/*`"),
        source: WILDCARD_ACCESS,
        ours: Ours::Admits(&[("openai", "gpt-4")]),
        note: "",
    },
    Row {
        config: "docs/proxy_model_access_groups__wildcard_models.yaml",
        export: WILDCARD_KEY,
        key: "sk-default-models",
        who: "key `models: [default-models]`",
        model: "openai/o1-mini",
        path: None,
        litellm: Litellm::Refuses("\"Rejected Request\""),
        source: WILDCARD_ACCESS,
        ours: Ours::Refuses(403, "model_not_allowed"),
        note: "Only the most specific pattern's deployments decide, in both: `openai/o1-*` is in \
               `restricted-models`, so the key's grant of `openai/*` does not reach o1 (Decisions, \
               \"Allow-lists\"). LiteLLM answers 401, Tollgate 403.",
    },
    Row {
        config: "docs/proxy_model_access_groups__access_groups.yaml",
        export: BETA,
        key: "sk-beta-models",
        who: "key `models: [beta-models]`, `max_budget: 0`",
        model: "gpt-4",
        path: None,
        litellm: Litellm::Admits("\"Allowed Access\", to `openai/fake`"),
        source: "[proxy/model_access_groups](https://docs.litellm.ai/docs/proxy/model_access_groups), Key Access Groups",
        ours: Ours::Refuses(403, "model_unpriced"),
        note: "The page creates this key with `\"max_budget\": 0`. LiteLLM's own budget check \
               (`spend >= max_budget`) refuses a $0 budget at spend 0 as well, so the tab does \
               not hold for the key as written. Tollgate refuses before the budget: \
               `openai/fake` has no price and the key has a budget (price it, or see \
               `settings.unpriced_models`).",
    },
    Row {
        config: "docs/proxy_model_access_groups__access_groups.yaml",
        export: BETA,
        key: "sk-beta-models",
        who: "key `models: [beta-models]`, `max_budget: 0`",
        model: "gpt-4o",
        path: None,
        litellm: Litellm::Refuses("\"gpt-4o is not in the `beta-models` access group\""),
        source: "[proxy/model_access_groups](https://docs.litellm.ai/docs/proxy/model_access_groups), Key Access Groups",
        ours: Ours::Refuses(403, "model_not_allowed"),
        note: "",
    },
    Row {
        config: "docs/proxy_model_access_groups__access_groups.yaml",
        export: BETA,
        key: "sk-beta-team",
        who: "key of a team with `models: [beta-models]`",
        model: "gpt-4",
        path: None,
        litellm: Litellm::Admits("\"Allowed Access\", to `openai/fake`"),
        source: "[proxy/model_access_groups](https://docs.litellm.ai/docs/proxy/model_access_groups), Team Access Groups",
        ours: Ours::Admits(&[(
            "openai-exampleopenaiendpoint-production-up-railway-app",
            "fake",
        )]),
        note: "",
    },
    Row {
        config: "docs/proxy_model_access_groups__access_groups.yaml",
        export: BETA,
        key: "sk-beta-team",
        who: "key of a team with `models: [beta-models]`",
        model: "gpt-4o",
        path: None,
        litellm: Litellm::Refuses("\"gpt-4o is not in the `beta-models` access group\""),
        source: "[proxy/model_access_groups](https://docs.litellm.ai/docs/proxy/model_access_groups), Team Access Groups",
        ours: Ours::Refuses(403, "model_not_allowed"),
        note: "",
    },
    Row {
        config: "docs/proxy_virtual_keys__setup.yaml",
        export: THREE_MODELS,
        key: "sk-three-models",
        who: "key `models: [gpt-3.5-turbo, gpt-4, claude-2]`",
        model: "gpt-4",
        path: None,
        litellm: Litellm::Admits("to `ollama/llama2` (\"`models`: Model_name's a user is allowed to call\")"),
        source: "[proxy/virtual_keys](https://docs.litellm.ai/docs/proxy/virtual_keys#keygenerate)",
        ours: Ours::Admits(&[("ollama", "llama2")]),
        note: "",
    },
    Row {
        config: "docs/proxy_virtual_keys__setup.yaml",
        export: "",
        key: "sk-1234",
        who: "master key `sk-1234`",
        model: "gpt-3.5-turbo",
        path: None,
        litellm: Litellm::Admits("to `ollama/llama2`"),
        source: "[proxy/virtual_keys#setup](https://docs.litellm.ai/docs/proxy/virtual_keys#setup): \"all calls to proxy will require either this key or a valid generated token\"",
        ours: Ours::Admits(&[("ollama", "llama2")]),
        note: "",
    },
    Row {
        config: "docs/proxy_virtual_keys__setup.yaml",
        export: "",
        key: "sk-never-issued",
        who: "a key never issued",
        model: "gpt-4",
        path: None,
        litellm: Litellm::Refuses("\"all calls to proxy will require either this key or a valid generated token\""),
        source: "[proxy/virtual_keys#setup](https://docs.litellm.ai/docs/proxy/virtual_keys#setup)",
        ours: Ours::Refuses(401, "invalid_api_key"),
        note: "",
    },
    Row {
        config: "docs/proxy_configs__load_balancing.yaml",
        export: LOAD_BALANCING,
        key: "sk-two-models",
        who: "key `models: [gpt-3.5-turbo, gpt-4]`",
        model: "gpt-4",
        path: None,
        litellm: Litellm::Admits("\"Allowed Access\"; \"all requests with `gpt-4` will be routed to models with `gpt-4o`\" (bare `gpt-4o`: OpenAI)"),
        source: "[proxy/model_access](https://docs.litellm.ai/docs/proxy/model_access) (the key), [proxy/configs#load-balancing](https://docs.litellm.ai/docs/proxy/configs#load-balancing) (the alias)",
        ours: Ours::Admits(&[("openai", "gpt-4o")]),
        note: "",
    },
    Row {
        config: "docs/proxy_configs__load_balancing.yaml",
        export: LOAD_BALANCING,
        key: "sk-two-models",
        who: "key `models: [gpt-3.5-turbo, gpt-4]`",
        model: "gpt-4o",
        path: None,
        litellm: Litellm::Refuses("\"Expect this to fail since gpt-4o is not in the `models` for the key generated\""),
        source: "[proxy/model_access](https://docs.litellm.ai/docs/proxy/model_access), Disallowed Access",
        ours: Ours::Refuses(403, "model_not_allowed"),
        note: "Though the key's `gpt-4` reaches `gpt-4o`: access is checked on the name asked \
               for and on what it resolves to, never on what another name resolves to.",
    },
    Row {
        config: "docs/proxy_configs__load_balancing.yaml",
        export: LOAD_BALANCING,
        key: "sk-zero-budget",
        who: "key `max_budget: 0`",
        model: "gpt-4",
        path: None,
        litellm: Litellm::Refuses("\"After the key crosses it's `max_budget`, requests fail\" (ExceededTokenBudget)"),
        source: "[proxy/users](https://docs.litellm.ai/docs/proxy/users#virtual-key)",
        ours: Ours::Refuses(429, "budget_exceeded"),
        note: "A $0 budget is crossed at spend 0 in both (LiteLLM: `spend >= max_budget`); \
               `explain` checks against empty ledgers, so a used-up budget is shown this way.",
    },
    Row {
        config: "docs/proxy_configs__load_balancing.yaml",
        export: LOAD_BALANCING,
        key: "sk-gpt-4o-budget",
        who: "key `model_max_budget: {gpt-4o: $0.0000001 / 1d}`",
        model: "gpt-4o",
        path: None,
        litellm: Litellm::Admits("\"We expect the first request to succeed\""),
        source: "[proxy/users](https://docs.litellm.ai/docs/proxy/users#-virtual-key-model-specific)",
        ours: Ours::Admits(&[("openai", "gpt-4o")]),
        note: "The second request fails in both; `explain` shows the first (empty ledgers).",
    },
    Row {
        config: "docs/proxy_configs__quick_start.yaml",
        export: "",
        key: "sk-1234",
        who: "master key `sk-1234`",
        model: "gpt-4o",
        path: None,
        litellm: Litellm::Admits("\"load balance between `azure/gpt-4o-eu` and `azure/gpt-4o-ca`\""),
        source: "[proxy/configs#quick-start](https://docs.litellm.ai/docs/proxy/configs#quick-start)",
        ours: Ours::Admits(&[
            ("azure-my-endpoint-europe-berri-992-openai-azure-com", "gpt-4o-eu"),
            ("azure-my-endpoint-canada-berri992-openai-azure-com", "gpt-4o-ca"),
        ]),
        note: "",
    },
    Row {
        config: "docs/proxy_configs__quick_start.yaml",
        export: "",
        key: "sk-1234",
        who: "master key `sk-1234`",
        model: "vllm-models",
        path: None,
        litellm: Litellm::Admits("\"will route to `openai/facebook/opt-125m`\""),
        source: "[proxy/configs#quick-start](https://docs.litellm.ai/docs/proxy/configs#quick-start)",
        ours: Ours::Admits(&[("openai-0-0-0-0-4000", "facebook/opt-125m")]),
        note: "",
    },
    Row {
        config: "docs/proxy_configs__quick_start.yaml",
        export: "",
        key: "sk-1234",
        who: "master key `sk-1234`",
        model: "claude-3-haiku-20240307",
        path: None,
        litellm: Litellm::Admits("through `*`, to Anthropic: \"Use this if you want to make requests to `claude-3-haiku-20240307` … without defining them\""),
        source: "[proxy/configs#quick-start](https://docs.litellm.ai/docs/proxy/configs#quick-start)",
        ours: Ours::Refuses(404, "model_not_found"),
        note: "The comment predates this version's cost map: litellm 1.109.1's map no longer \
               lists `claude-3-haiku-20240307`, and its fallback rule for bare Claude ids \
               (`^claude-[a-z]+-\\d+…`) wants a family name after `claude-`, so LiteLLM 1.109.1 \
               cannot place it either (\"LLM Provider NOT provided\"). A name the map places goes \
               through (row 17).",
    },
    Row {
        config: "docs/proxy_configs__quick_start.yaml",
        export: "",
        key: "sk-1234",
        who: "master key `sk-1234`",
        model: "gpt-4o-mini",
        path: None,
        litellm: Litellm::Admits("through `*`, to OpenAI: \"Works for ALL Providers and needs the default provider credentials in .env\""),
        source: "[proxy/configs#quick-start](https://docs.litellm.ai/docs/proxy/configs#quick-start)",
        ours: Ours::Admits(&[("openai", "gpt-4o-mini")]),
        note: "The page names no model of this map: the request is ours, the answer the \
               comment's.",
    },
    Row {
        config: "docs/providers_bedrock__proxy.yaml",
        export: ANY_MODEL,
        key: "sk-any-model",
        who: "key, no `models`",
        model: "bedrock-claude-v1",
        path: None,
        litellm: Litellm::Admits("to `bedrock/anthropic.claude-instant-v1`"),
        source: "[providers/bedrock](https://docs.litellm.ai/docs/providers/bedrock#litellm-proxy-usage), \"3. Test it\"",
        ours: Ours::Refuses(404, "model_not_found"),
        note: "Tollgate cannot call Bedrock (AWS SigV4, its own API): the import lists the \
               deployment as not imported, with what it would need, and `--strict` fails on it \
               (\"Providers Tollgate cannot call are named, not imported\", above).",
    },
    Row {
        config: "docs/wildcard_routing.yaml",
        export: ANY_MODEL,
        key: "sk-any-model",
        who: "key, no `models`",
        model: "anthropic/claude-3-sonnet-20240229",
        path: None,
        litellm: Litellm::Admits("\"all models with `anthropic/` prefix will get routed to `anthropic/*`\""),
        source: "[wildcard_routing](https://docs.litellm.ai/docs/wildcard_routing)",
        ours: Ours::Admits(&[("anthropic", "claude-3-sonnet-20240229")]),
        note: "",
    },
    Row {
        config: "docs/wildcard_routing.yaml",
        export: ANY_MODEL,
        key: "sk-any-model",
        who: "key, no `models`",
        model: "groq/llama3-8b-8192",
        path: None,
        litellm: Litellm::Admits("\"all models with `groq/` prefix will get routed to `groq/*`\""),
        source: "[wildcard_routing](https://docs.litellm.ai/docs/wildcard_routing)",
        ours: Ours::Admits(&[("groq", "llama3-8b-8192")]),
        note: "",
    },
    Row {
        config: "docs/wildcard_routing.yaml",
        export: ANY_MODEL,
        key: "sk-any-model",
        who: "key, no `models`",
        model: "fo::hi::static::hi",
        path: None,
        litellm: Litellm::Admits("\"will be routed to `openai/fo::*:static::*`\""),
        source: "[wildcard_routing](https://docs.litellm.ai/docs/wildcard_routing)",
        ours: Ours::Admits(&[("openai", "fo::hi::static::hi")]),
        note: "",
    },
    Row {
        config: "docs/proxy_team_based_routing.yaml",
        export: TEAM_ALIAS,
        key: "sk-team-key",
        who: "key of team `my-new-team_4` (alias `gpt-3.5-turbo` → `gpt-3.5-turbo-eu`)",
        model: "gpt-3.5-turbo",
        path: None,
        litellm: Litellm::Admits("to model group `gpt-3.5-turbo-eu` (`AZURE_API_BASE_EU`)"),
        source: "[proxy/team_based_routing](https://docs.litellm.ai/docs/proxy/team_based_routing), \"Call Model with alias\"",
        ours: Ours::Admits(&[("azure-azure-api-base-eu-example-test", "chatgpt-v-2")]),
        note: "",
    },
    Row {
        config: "docs/proxy_team_model_add__stored_model.yaml",
        export: TEAM_MODEL,
        key: "sk-team-key",
        who: "key of team `e59e2671-…`",
        model: "my-team-model",
        path: None,
        litellm: Litellm::Admits("to the team's `openai/gpt-4o` at its `api_base`"),
        source: "[proxy/team_model_add](https://docs.litellm.ai/docs/proxy/team_model_add), \"Test it!\"",
        ours: Ours::Admits(&[(
            "openai-my-endpoint-sweden-berri992-openai-azure-com",
            "gpt-4o",
        )]),
        note: "",
    },
    Row {
        config: "docs/proxy_team_model_add__stored_model.yaml",
        export: TEAM_MODEL,
        key: "sk-any-model",
        who: "key of no team, no `models`",
        model: "my-team-model",
        path: None,
        litellm: Litellm::Refuses("\"'model_name' not found\" (the name exists only in the team's table)"),
        source: "[proxy/team_model_add](https://docs.litellm.ai/docs/proxy/team_model_add), \"Debugging\"",
        ours: Ours::Refuses(404, "model_not_found"),
        note: "",
    },
    Row {
        config: "docs/providers_azure__proxy.yaml",
        export: ANY_MODEL,
        key: "sk-any-model",
        who: "key, no `models`",
        model: "gpt-3.5-turbo",
        path: None,
        litellm: Litellm::Admits("to `azure/chatgpt-v-2`"),
        source: "[providers/azure](https://docs.litellm.ai/docs/providers/azure#usage---litellm-proxy-server), \"3. Test it\"",
        ours: Ours::Admits(&[(
            "azure-openai-gpt-4-test-v-1-openai-azure-com",
            "chatgpt-v-2",
        )]),
        note: "",
    },
    Row {
        config: "docs/proxy_docker_quick_start__virtual_key.yaml",
        export: "",
        key: "sk-1234",
        who: "master key `sk-1234`",
        model: "gpt-4o",
        path: None,
        litellm: Litellm::Admits("to `azure/my_azure_deployment` (`AZURE_API_BASE`)"),
        source: "[proxy/docker_quick_start](https://docs.litellm.ai/docs/proxy/docker_quick_start), \"2.2 Make Call\"",
        ours: Ours::Admits(&[("azure-azure-api-base-example-test", "my_azure_deployment")]),
        note: "",
    },
    Row {
        config: "docs/proxy_docker_quick_start__common_patterns.yaml",
        export: ANY_MODEL,
        key: "sk-any-model",
        who: "key, no `models`",
        model: "my-llama-model",
        path: None,
        litellm: Litellm::Admits("\"Everything after the first `/` is passed as-is to the provider's API\": `meta/llama-3-8b` at `my-vllm-server:8000`"),
        source: "[proxy/docker_quick_start](https://docs.litellm.ai/docs/proxy/docker_quick_start#understanding-model-configuration)",
        ours: Ours::Admits(&[("openai-my-vllm-server-8000", "meta/llama-3-8b")]),
        note: "",
    },
];

impl Row {
    fn litellm_admits(&self) -> bool {
        matches!(self.litellm, Litellm::Admits(_))
    }

    fn ours_admits(&self) -> bool {
        matches!(self.ours, Ours::Admits(_))
    }

    /// The request, as the README shows it.
    fn request(&self) -> String {
        match self.path {
            Some(path) => format!("`{path}`"),
            None => format!("`{}`", self.model),
        }
    }

    /// The README's row for this request, the `n`-th.
    fn markdown(&self, n: usize) -> String {
        let litellm = match self.litellm {
            Litellm::Admits(how) => format!("admits: {how}"),
            Litellm::Refuses(how) => format!("refuses: {how}"),
        };
        let ours = match self.ours {
            Ours::Admits(&[(cluster, upstream)]) => {
                format!("ALLOW → cluster `{cluster}`, model `{upstream}`")
            }
            Ours::Admits(to) => format!(
                "ALLOW → one of {}",
                to.iter()
                    .map(|(c, u)| format!("`{c}` (`{u}`)"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Ours::Refuses(status, code) => format!("DENY {status} `{code}`"),
        };
        let same = if self.litellm_admits() == self.ours_admits() {
            "yes"
        } else {
            "**no**"
        };
        format!(
            "| {n} | `{}` | {} | {} | {litellm} ({}) | {ours} | {same} |",
            self.config.trim_start_matches("docs/"),
            self.who,
            self.request(),
            self.source
        )
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// The export with each `{sk-…}` replaced by that key's SHA-256 hex.
fn hashed(export: &str) -> String {
    let mut out = String::new();
    let mut rest = export;
    while let Some(start) = rest.find("{sk-") {
        let end = start + rest[start..].find('}').unwrap();
        out.push_str(&rest[..start]);
        out.push_str(&to_hex(&digest(&rest[start + 1..end])));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Imports `config` with `export` and builds it with the cost map: the plugin config's path.
fn build(config: &str, export: &str, scratch: &Path, n: usize) -> PathBuf {
    let path = root().join("tests/data/litellm").join(config);
    let env = environment(&std::fs::read_to_string(&path).unwrap());
    let policy = scratch.join(format!("policy-{n}.json"));
    let plugin = scratch.join(format!("plugin-{n}.json"));
    let mut args = vec![
        "import-litellm".to_string(),
        path.to_string_lossy().into_owned(),
        "--output".to_string(),
        policy.to_string_lossy().into_owned(),
    ];
    if !export.is_empty() {
        let keys = scratch.join(format!("keys-{n}.json"));
        std::fs::write(&keys, hashed(export)).unwrap();
        args.push("--keys".to_string());
        args.push(keys.to_string_lossy().into_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let imported = tollgate(&args, &env);
    let log = String::from_utf8_lossy(&imported.stderr);
    assert_eq!(imported.status.code(), Some(0), "{config}: {log}");
    let built = build_config(&policy, &plugin);
    assert_eq!(
        built.status.code(),
        Some(0),
        "{config}: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    plugin
}

/// `(cluster, upstream model, eligible deployments)` of an ALLOW.
fn route(text: &str) -> Option<(String, String, usize)> {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("route:"))?;
    let quoted: Vec<&str> = line.split('"').collect();
    let cluster = quoted.get(3)?.to_string();
    let upstream = quoted.get(5)?.to_string();
    let eligible = quoted
        .get(6)?
        .trim_start_matches(" (")
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    Some((cluster, upstream, eligible))
}

/// Checks one row against `tollgate explain`; the failures, if any.
fn check(row: &Row, plugin: &Path) -> Vec<String> {
    let mut args = vec![
        "explain",
        "--config",
        plugin.to_str().unwrap(),
        "--key",
        row.key,
    ];
    if !row.model.is_empty() {
        args.extend(["--model", row.model]);
    }
    if let Some(path) = row.path {
        args.extend(["--path", path]);
    }
    let out = tollgate(&args, &[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let what = format!("{} {} {}", row.config, row.key, row.request());
    let mut failures = Vec::new();
    match row.ours {
        Ours::Admits(to) => match (out.status.code(), route(&text)) {
            (Some(0), Some((cluster, upstream, eligible))) => {
                let reached = to
                    .iter()
                    .any(|(c, u)| *c == cluster.as_str() && *u == upstream.as_str());
                if !reached || eligible != to.len() {
                    failures.push(format!(
                        "{what}: routed to {cluster:?} {upstream:?} among {eligible}, expected \
                         one of {to:?}\n{text}"
                    ));
                }
            }
            _ => failures.push(format!("{what}: expected ALLOW\n{text}")),
        },
        Ours::Refuses(status, code) => {
            let denial = format!("DENY {status} {code}:");
            if out.status.code() != Some(1) || !text.contains(&denial) {
                failures.push(format!("{what}: expected {denial}\n{text}"));
            }
        }
    }
    // A row that disagrees with LiteLLM says why.
    if row.litellm_admits() != row.ours_admits() && row.note.is_empty() {
        failures.push(format!("{what}: differs from LiteLLM without a note"));
    }
    failures
}

#[test]
fn explain_decides_as_litellms_docs_say_and_the_readme_table_says_so() {
    let scratch = std::env::temp_dir().join(format!("tollgate-explain-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut plugins: HashMap<(&str, &str), PathBuf> = HashMap::new();
    let mut failures = Vec::new();
    let mut missing = Vec::new();
    for (i, row) in ROWS.iter().enumerate() {
        let n = plugins.len();
        let plugin = plugins
            .entry((row.config, row.export))
            .or_insert_with(|| build(row.config, row.export, &scratch, n))
            .clone();
        failures.extend(check(row, &plugin));
        let line = row.markdown(i + 1);
        if !readme.contains(&line) {
            missing.push(line);
        }
        if !row.note.is_empty() {
            let note = format!("- **{}**: {}", i + 1, row.note);
            if !readme.contains(&note) {
                missing.push(note);
            }
        }
    }
    std::fs::remove_dir_all(&scratch).unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        missing.is_empty(),
        "the README's explain table should have these lines:\n{}",
        missing.join("\n")
    );
    // Every docs config that imports has a row: the table covers the corpus.
    let covered: Vec<&str> = ROWS.iter().map(|r| r.config).collect();
    for entry in std::fs::read_dir(root().join("tests/data/litellm/docs")).unwrap() {
        let name = format!("docs/{}", entry.unwrap().file_name().to_string_lossy());
        let refused = [
            "docs/providers_anthropic__proxy.yaml",
            "docs/proxy_configs__model_specific_params.yaml",
            "docs/proxy_load_balancing__quick_start.yaml",
            "docs/proxy_virtual_keys__upgrade_downgrade_models.yaml",
        ];
        assert!(
            covered.contains(&name.as_str()) || refused.contains(&name.as_str()),
            "{name} has no row in ROWS"
        );
    }
}
