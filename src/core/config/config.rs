//! The plugin configuration exactly as operators write it, in LiteLLM's vocabulary.
//!
//! These structs only describe shape; every rule about values (hash format, references between
//! sections, servable aliases, prices) lives in [`crate::core::config::compile`], which turns a
//! [`Config`] into the immutable [`crate::core::Policy`]. Unknown fields are refused so that a
//! typo such as `max_budgte` is reported with its path instead of being silently ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use crate::core::config::cost_map::CostMap;

/// One plugin-config version: the whole policy, validated and swapped as a unit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Operator-chosen version label; echoed in `x-tollgate-policy-version` and in logs.
    pub version: String,
    /// Filter-wide settings.
    #[serde(default)]
    pub settings: Settings,
    /// The LiteLLM `model_prices_and_context_window.json` document, accepted as-is.
    #[serde(default)]
    pub cost_map: CostMap,
    /// Deployments: where each model name can be served.
    #[serde(default)]
    pub model_list: Vec<DeploymentConfig>,
    /// Global aliases, `{ "alias": "target" }` or `{ "alias": {"model": "target", "hidden": true} }`.
    #[serde(default)]
    pub model_group_alias: BTreeMap<String, AliasTarget>,
    /// Teams that keys belong to.
    #[serde(default)]
    pub teams: Vec<TeamConfig>,
    /// Virtual keys, stored only as SHA-256 hashes.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// Internal users (a key's `user_id`) with optional budgets.
    #[serde(default)]
    pub users: Vec<BudgetHolderConfig>,
    /// End users (the request body's `user` field) with optional budgets.
    #[serde(default)]
    pub end_users: Vec<BudgetHolderConfig>,
    /// Where spend events go; without it spend is only counted inside this Envoy process.
    pub accounting: Option<AccountingConfig>,
}

/// Filter-wide settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Largest request body the filter buffers; larger requests get 413. Default 4 MiB.
    #[serde(
        default = "default_max_request_body_bytes",
        deserialize_with = "whole_number"
    )]
    pub max_request_body_bytes: u64,
    /// What happens to requests for a model with no known price.
    #[serde(default)]
    pub unpriced_models: UnpricedModels,
    /// How long a budget reservation lives if its request never settles (seconds, default 900).
    #[serde(default = "default_reservation_ttl", deserialize_with = "whole_number")]
    pub reservation_ttl_seconds: u64,
    /// Output cap assumed for reservations when neither the request nor the model gives one.
    #[serde(
        default = "default_max_output_tokens",
        deserialize_with = "whole_number"
    )]
    pub default_max_output_tokens: u64,
    /// Input assumed for reservations of a request that continues stored state (Responses
    /// `previous_response_id` or `conversation`) when the model's `max_input_tokens` is unknown.
    #[serde(
        default = "default_max_input_tokens",
        deserialize_with = "whole_number"
    )]
    pub default_max_input_tokens: u64,
    /// What to do with a Responses follow-up whose encryption boundary is gone (default `strip`).
    #[serde(default)]
    pub affinity_fallback: AffinityFallback,
    /// Which client request headers go upstream besides the always-removed ones.
    #[serde(default)]
    pub client_headers: ClientHeadersConfig,
    /// The VM environment variable holding the secret that seals Responses affinity marks to
    /// their tenant (default `TOLLGATE_AFFINITY_SECRET`). Without it, follow-ups are refused.
    #[serde(default = "default_affinity_secret_env")]
    pub affinity_secret_env: String,
    /// Leave each request's one-line summary in Envoy filter state `wasm.tollgate` for access
    /// logs (default false: formatting and storing it costs every request a few microseconds).
    #[serde(default)]
    pub access_log: bool,
    /// The IANA time zone budget windows are counted in (LiteLLM's `litellm_settings.timezone`;
    /// default UTC): days start at its midnight, weeks on its Mondays, months on its firsts.
    #[serde(default)]
    pub budget_timezone: Option<String>,
    /// Which tokens `tpm_limit`/`tpd_limit` count: `total` (default, input + output), `input`
    /// or `output` (LiteLLM's `general_settings.token_rate_limit_type`).
    #[serde(default)]
    pub token_rate_limit_type: TokenCount,
    /// Set who and what an admitted request is (`x-tollgate-key`, `-team`, `-user`,
    /// `-end-user`, `-model`) on the request for Envoy's own rate-limit filters after Tollgate
    /// (route `rate_limits` actions `request_headers`); default false. The route must remove
    /// them before the upstream (`request_headers_to_remove`, as the shipped template does).
    #[serde(default)]
    pub rate_limit_descriptors: bool,
}

/// `settings.token_rate_limit_type`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenCount {
    /// Input + output tokens.
    #[default]
    Total,
    /// Input (prompt) tokens only.
    Input,
    /// Output (completion) tokens only.
    Output,
}

/// `settings.client_headers`: credentials and `x-tollgate-*` are always removed; provider
/// tenant selectors (`openai-organization`, `openai-project`) are removed unless forwarded.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientHeadersConfig {
    /// Tenant selectors to let through (only names from the selector list are accepted).
    #[serde(default)]
    pub forward: Vec<String>,
    /// More header names to remove from every client request (lowercase).
    #[serde(default)]
    pub remove: Vec<String>,
}

/// `settings.affinity_fallback`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AffinityFallback {
    /// Drop the input items whose encrypted content no deployment can decrypt, keep the readable
    /// content, and route normally.
    #[default]
    Strip,
    /// Refuse with 409 `affinity_unavailable`.
    Fail,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_request_body_bytes: default_max_request_body_bytes(),
            unpriced_models: UnpricedModels::default(),
            reservation_ttl_seconds: default_reservation_ttl(),
            default_max_output_tokens: default_max_output_tokens(),
            default_max_input_tokens: default_max_input_tokens(),
            affinity_fallback: AffinityFallback::default(),
            client_headers: ClientHeadersConfig::default(),
            affinity_secret_env: default_affinity_secret_env(),
            access_log: false,
            budget_timezone: None,
            token_rate_limit_type: TokenCount::default(),
            rate_limit_descriptors: false,
        }
    }
}

fn default_affinity_secret_env() -> String {
    "TOLLGATE_AFFINITY_SECRET".to_string()
}

fn default_reservation_ttl() -> u64 {
    900
}

fn default_max_output_tokens() -> u64 {
    4096
}

fn default_max_input_tokens() -> u64 {
    200_000
}

/// `settings.unpriced_models`: the treatment of models with no known price.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnpricedModels {
    /// `deny` (default), `default_price` or `track`.
    #[serde(default)]
    pub mode: UnpricedMode,
    /// Input price in USD per token charged in `default_price` mode.
    pub input_cost_per_token: Option<f64>,
    /// Output price in USD per token charged in `default_price` mode.
    pub output_cost_per_token: Option<f64>,
}

/// How an unpriced model is treated.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnpricedMode {
    /// Refuse with 403 when any budget applies to the request (the safe default).
    #[default]
    Deny,
    /// Charge the configured default per-token prices.
    DefaultPrice,
    /// Allow, record zero cost flagged `unpriced`; budgets already spent still refuse.
    Track,
}

/// `accounting`: the cluster that receives spend events and answers with authoritative spend.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountingConfig {
    /// The Envoy cluster name (must exist in the Envoy config).
    pub cluster: String,
    /// The `:authority` sent to it (default: the cluster name).
    pub authority: Option<String>,
    /// Path prefix before `/v1/spend/...` (default empty).
    #[serde(default)]
    pub path_prefix: String,
    /// CloudEvents `source` of the events (default `tollgate`).
    pub source: Option<String>,
    /// How often buffered events are sent (milliseconds, default 1000).
    #[serde(default = "default_flush_interval", deserialize_with = "whole_number")]
    pub flush_interval_ms: u64,
    /// Events per batch; a full batch is sent at once (default 100).
    #[serde(default = "default_batch_max", deserialize_with = "whole_number")]
    pub batch_max_events: u64,
    /// Events held per worker while the cluster is unreachable; beyond this the oldest are dropped
    /// and counted (default 10000).
    #[serde(default = "default_max_buffered", deserialize_with = "whole_number")]
    pub max_buffered_events: u64,
    /// Bytes of events held per worker; beyond this the oldest are dropped and counted
    /// (default 16 MiB).
    #[serde(
        default = "default_max_buffered_bytes",
        deserialize_with = "whole_number"
    )]
    pub max_buffered_bytes: u64,
    /// The VM environment variable holding the bearer token presented to the accounting
    /// cluster on batches and polls (absent: no `authorization` header is sent).
    pub token_env: Option<String>,
    /// How often authoritative spend is polled (milliseconds, default 5000; 0 disables).
    #[serde(default = "default_poll_interval", deserialize_with = "whole_number")]
    pub poll_interval_ms: u64,
    /// Timeout of one call (milliseconds, default 5000).
    #[serde(default = "default_call_timeout", deserialize_with = "whole_number")]
    pub timeout_ms: u64,
}

fn default_flush_interval() -> u64 {
    1000
}

fn default_batch_max() -> u64 {
    100
}

fn default_max_buffered() -> u64 {
    10_000
}

fn default_max_buffered_bytes() -> u64 {
    16 * 1024 * 1024
}

fn default_poll_interval() -> u64 {
    5000
}

fn default_call_timeout() -> u64 {
    5000
}

fn default_max_request_body_bytes() -> u64 {
    4 * 1024 * 1024
}

/// A global alias target: a bare string, or LiteLLM's object form with `hidden`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum AliasTarget {
    /// `"alias": "target"`.
    Name(String),
    /// `"alias": {"model": "target", "hidden": true}`: hidden aliases route but are not listed.
    Detailed {
        /// The model the alias resolves to.
        model: String,
        /// Leave the alias out of `GET /v1/models`.
        #[serde(default)]
        hidden: bool,
    },
}

impl AliasTarget {
    /// The model this alias resolves to.
    pub fn model(&self) -> &str {
        match self {
            AliasTarget::Name(model) => model,
            AliasTarget::Detailed { model, .. } => model,
        }
    }

    /// Whether the alias is left out of model listings.
    pub fn hidden(&self) -> bool {
        matches!(self, AliasTarget::Detailed { hidden: true, .. })
    }
}

/// One deployment of `model_list`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// The public model name clients ask for; may be a wildcard such as `anthropic/*` or `*`.
    pub model_name: String,
    /// How to call the provider.
    pub litellm_params: LitellmParams,
    /// The Envoy cluster that reaches this deployment.
    pub cluster: String,
    /// Identity, access groups and optional prices of this deployment.
    #[serde(default)]
    pub model_info: ModelInfo,
}

/// `litellm_params` of a deployment.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LitellmParams {
    /// `provider/upstream-name`, e.g. `anthropic/claude-sonnet-4-6` or `openai/*`.
    pub model: String,
    /// Name of the VM environment variable holding the upstream credential.
    pub api_key_env: Option<String>,
    /// LiteLLM's spelling: `os.environ/NAME` is `api_key_env: NAME`; a plain-text credential is
    /// refused (the error says why).
    pub api_key: Option<serde_json::Value>,
    /// Relative routing weight among equally specific deployments (default 1, 0 drains).
    pub weight: Option<f64>,
    /// Prices written where LiteLLM also reads them (`model_info`'s win).
    pub input_cost_per_token: Option<f64>,
    /// See `input_cost_per_token`.
    pub output_cost_per_token: Option<f64>,
    /// LiteLLM fields that mean nothing to the filter (the Envoy cluster and route carry the
    /// address, path, timeouts and retries): accepted so a LiteLLM deployment reads as written,
    /// each with a warning naming where its meaning lives ([`LitellmParams::litellm_only`]).
    pub api_base: Option<serde::de::IgnoredAny>,
    /// See `api_base`: Azure's API version (a query parameter on the Envoy route).
    pub api_version: Option<serde::de::IgnoredAny>,
    /// Requests per minute this deployment takes: routing skips it once the minute's count
    /// reaches this, and prefers the deployment with the most headroom.
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub rpm: Option<u64>,
    /// Tokens per minute this deployment takes (see `rpm`).
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub tpm: Option<u64>,
    /// See `api_base`: the route's timeout.
    pub timeout: Option<serde::de::IgnoredAny>,
    /// See `api_base`: the route's timeout for streams.
    pub stream_timeout: Option<serde::de::IgnoredAny>,
    /// See `api_base`: the route's retry policy.
    pub max_retries: Option<serde::de::IgnoredAny>,
    /// See `api_base`: LiteLLM-side parameter handling.
    pub drop_params: Option<serde::de::IgnoredAny>,
    /// See `api_base`: OpenAI's organization header (a header on the Envoy route).
    pub organization: Option<serde::de::IgnoredAny>,
}

impl LitellmParams {
    /// `(field, where its meaning lives)` for each LiteLLM-only field present.
    pub fn litellm_only(&self) -> Vec<(&'static str, &'static str)> {
        [
            (
                self.api_base.is_some(),
                "api_base",
                "the Envoy cluster's address",
            ),
            (
                self.api_version.is_some(),
                "api_version",
                "a query parameter on the Envoy route",
            ),
            (
                self.timeout.is_some(),
                "timeout",
                "the Envoy route's timeout",
            ),
            (
                self.stream_timeout.is_some(),
                "stream_timeout",
                "the Envoy route's timeout",
            ),
            (
                self.max_retries.is_some(),
                "max_retries",
                "the Envoy route's retry policy",
            ),
            (
                self.drop_params.is_some(),
                "drop_params",
                "nothing: requests go as sent",
            ),
            (
                self.organization.is_some(),
                "organization",
                "a header on the Envoy route",
            ),
        ]
        .into_iter()
        .filter(|(set, _, _)| *set)
        .map(|(_, name, meaning)| (name, meaning))
        .collect()
    }
}

/// `model_info` of a deployment.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    /// Stable deployment id; derived from the deployment's fields when absent.
    pub id: Option<String>,
    /// Access groups this deployment belongs to; keys and teams may list group names.
    #[serde(default)]
    pub access_groups: Vec<String>,
    /// Deployment-specific input price in USD per token (wins over the cost map).
    pub input_cost_per_token: Option<f64>,
    /// Deployment-specific output price in USD per token (wins over the cost map).
    pub output_cost_per_token: Option<f64>,
    /// Deployment-specific cached-read price in USD per token.
    pub cache_read_input_token_cost: Option<f64>,
    /// Deployment-specific cache-creation price in USD per token.
    pub cache_creation_input_token_cost: Option<f64>,
    /// Deployment-specific reasoning-output price in USD per token.
    pub output_cost_per_reasoning_token: Option<f64>,
    /// Upper bound on output tokens used for budget reservations.
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub max_output_tokens: Option<u64>,
    /// Deployments naming the same group share an encryption boundary (Responses affinity).
    pub affinity_group: Option<String>,
    /// The team whose keys alone may use this deployment (LiteLLM's team-scoped models).
    pub team_id: Option<String>,
    /// The cost-map model whose prices this deployment is charged at (LiteLLM's
    /// `model_info.base_model`: an Azure deployment name priced as `azure/gpt-4o`).
    pub base_model: Option<String>,
}

/// One team.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamConfig {
    /// Unique team id referenced by keys.
    pub team_id: String,
    /// Human-readable team name used in messages.
    pub team_alias: Option<String>,
    /// Allow-list for the team's keys (empty allows every model).
    #[serde(default)]
    pub models: Vec<String>,
    /// Team-level aliases, applied after key aliases.
    #[serde(default)]
    pub model_aliases: BTreeMap<String, String>,
    /// A blocked team's keys are all refused.
    #[serde(default)]
    pub blocked: bool,
    /// Budget in USD for the whole team.
    pub max_budget: Option<f64>,
    /// Budget window, e.g. `30d` or `1mo`.
    pub budget_duration: Option<String>,
    /// An instant a window boundary falls on (LiteLLM's `budget_reset_at`; RFC 3339): windows
    /// run from the budget's own start instead of the Unix epoch.
    pub budget_reset_at: Option<String>,
    /// Soft budget in USD over the same window: reaching it raises one threshold event per
    /// window on the spend channel; it never refuses.
    pub soft_budget: Option<f64>,
    /// Per-model budgets (LiteLLM's `model_max_budget`), by model, access group or wildcard.
    #[serde(default)]
    pub model_max_budget: BTreeMap<String, ModelBudgetConfig>,
    /// Requests per minute (LiteLLM's `rpm_limit`).
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub rpm_limit: Option<u64>,
    /// Tokens per minute, counted as `settings.token_rate_limit_type` says (LiteLLM's
    /// `tpm_limit`).
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub tpm_limit: Option<u64>,
    /// Requests per day (Tollgate's; days start at midnight in `settings.budget_timezone`).
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub rpd_limit: Option<u64>,
    /// Tokens per day (Tollgate's; see `rpd_limit`).
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub tpd_limit: Option<u64>,
    /// Requests in flight at once (LiteLLM's `max_parallel_requests`).
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub max_parallel_requests: Option<u64>,
    /// Requests per minute per model (LiteLLM's `model_rpm_limit`), by the model name as the
    /// request reaches it (after aliases), with or without its provider prefix.
    #[serde(default, deserialize_with = "whole_number_map")]
    pub model_rpm_limit: BTreeMap<String, u64>,
    /// Tokens per minute per model (LiteLLM's `model_tpm_limit`; see `model_rpm_limit`).
    #[serde(default, deserialize_with = "whole_number_map")]
    pub model_tpm_limit: BTreeMap<String, u64>,
    /// Tags for spend attribution, added to every request (LiteLLM's `tags`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Metadata carried into spend events (LiteLLM's `metadata`; its `tags` join `tags`).
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

/// One virtual key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// SHA-256 hex of the full key string (`tollgate hash-key sk-...`).
    pub key_hash: String,
    /// Human-readable key name used in messages and logs.
    pub key_alias: Option<String>,
    /// The team this key belongs to.
    pub team_id: Option<String>,
    /// The internal user this key belongs to.
    pub user_id: Option<String>,
    /// Allow-list (empty allows every model, LiteLLM-style).
    #[serde(default)]
    pub models: Vec<String>,
    /// Key-level aliases, applied first.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// RFC 3339 expiry instant.
    pub expires: Option<String>,
    /// A blocked key is refused.
    #[serde(default)]
    pub blocked: bool,
    /// Budget in USD for this key.
    pub max_budget: Option<f64>,
    /// Budget window, e.g. `1d`.
    pub budget_duration: Option<String>,
    /// An instant a window boundary falls on (see [`TeamConfig::budget_reset_at`]).
    pub budget_reset_at: Option<String>,
    /// Soft budget in USD (see [`TeamConfig::soft_budget`]).
    pub soft_budget: Option<f64>,
    /// Per-model budgets (see [`TeamConfig::model_max_budget`]).
    #[serde(default)]
    pub model_max_budget: BTreeMap<String, ModelBudgetConfig>,
    /// Requests per minute (LiteLLM's `rpm_limit`).
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub rpm_limit: Option<u64>,
    /// Tokens per minute, counted as `settings.token_rate_limit_type` says (LiteLLM's
    /// `tpm_limit`).
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub tpm_limit: Option<u64>,
    /// Requests per day (Tollgate's; days start at midnight in `settings.budget_timezone`).
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub rpd_limit: Option<u64>,
    /// Tokens per day (Tollgate's; see `rpd_limit`).
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub tpd_limit: Option<u64>,
    /// Requests in flight at once (LiteLLM's `max_parallel_requests`).
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub max_parallel_requests: Option<u64>,
    /// Requests per minute per model (LiteLLM's `model_rpm_limit`), by the model name as the
    /// request reaches it (after aliases), with or without its provider prefix.
    #[serde(default, deserialize_with = "whole_number_map")]
    pub model_rpm_limit: BTreeMap<String, u64>,
    /// Tokens per minute per model (LiteLLM's `model_tpm_limit`; see `model_rpm_limit`).
    #[serde(default, deserialize_with = "whole_number_map")]
    pub model_tpm_limit: BTreeMap<String, u64>,
    /// Tags for spend attribution, added to every request (LiteLLM's `tags`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Metadata carried into spend events (LiteLLM's `metadata`; its `tags` join `tags`).
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

/// One per-model budget, in LiteLLM's spelling (`budget_limit`, `time_period`) or Tollgate's
/// (`max_budget`, `budget_duration`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelBudgetConfig {
    /// Budget in USD for this model.
    #[serde(alias = "max_budget")]
    pub budget_limit: f64,
    /// Budget window, e.g. `1d`; absent: the budget never resets.
    #[serde(default, alias = "budget_duration")]
    pub time_period: Option<String>,
    /// An instant a window boundary falls on (see [`TeamConfig::budget_reset_at`]).
    pub budget_reset_at: Option<String>,
}

/// A user or end user that may carry a budget.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetHolderConfig {
    /// The user id (a key's `user_id`, or the request body's `user`).
    pub user_id: String,
    /// Budget in USD.
    pub max_budget: Option<f64>,
    /// Budget window.
    pub budget_duration: Option<String>,
    /// An instant a window boundary falls on (see [`TeamConfig::budget_reset_at`]).
    pub budget_reset_at: Option<String>,
    /// Requests per minute (LiteLLM's `rpm_limit`).
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub rpm_limit: Option<u64>,
    /// Tokens per minute, counted as `settings.token_rate_limit_type` says (LiteLLM's
    /// `tpm_limit`).
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub tpm_limit: Option<u64>,
    /// Requests per day (Tollgate's; days start at midnight in `settings.budget_timezone`).
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub rpd_limit: Option<u64>,
    /// Tokens per day (Tollgate's; see `rpd_limit`).
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub tpd_limit: Option<u64>,
    /// Requests in flight at once (LiteLLM's `max_parallel_requests`).
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub max_parallel_requests: Option<u64>,
}

/// Accepts a whole number written as an integer or as an integral float.
///
/// Istio delivers `pluginConfig` as a protobuf `Struct`, where every number is a double, so
/// `4194304` arrives as `4194304.0`.
pub fn whole_number<'de, D: Deserializer<'de>>(de: D) -> Result<u64, D::Error> {
    let value = f64::deserialize(de)?;
    as_whole_number(value).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "expected a whole number from 0 to 2^53, found {value}"
        ))
    })
}

/// [`whole_number`] for optional fields (`null` or absent is `None`).
pub fn optional_whole_number<'de, D: Deserializer<'de>>(de: D) -> Result<Option<u64>, D::Error> {
    match Option::<f64>::deserialize(de)? {
        None => Ok(None),
        Some(value) => as_whole_number(value).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "expected a whole number from 0 to 2^53, found {value}"
            ))
        }),
    }
}

/// A map of names to whole numbers (see [`whole_number`]).
pub fn whole_number_map<'de, D: Deserializer<'de>>(
    de: D,
) -> Result<BTreeMap<String, u64>, D::Error> {
    let values = BTreeMap::<String, f64>::deserialize(de)?;
    values
        .into_iter()
        .map(|(name, value)| {
            as_whole_number(value)
                .map(|n| (name.clone(), n))
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "{name:?}: expected a whole number from 0 to 2^53, found {value}"
                    ))
                })
        })
        .collect()
}

/// The integral value of `value` when it is a whole number in `0..=2^53`.
pub fn as_whole_number(value: f64) -> Option<u64> {
    const MAX_EXACT: f64 = 9_007_199_254_740_992.0;
    if (0.0..=MAX_EXACT).contains(&value) && value.fract() == 0.0 {
        Some(value as u64)
    } else {
        None
    }
}
