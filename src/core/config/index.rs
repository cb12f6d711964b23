//! The compiled policy: one immutable, indexed snapshot of a config version.
//!
//! Everything a request needs is a hash lookup or a short scan of a pre-sorted list; nothing is
//! parsed per request. Derived tables (provider sets, alias maps, wildcard matchers, access
//! groups) are built in [`crate::core::config::compile`] from the same document, so they cannot drift.

use std::sync::Arc;

use hashbrown::{HashMap, HashSet};

use crate::core::admission::client_headers::ClientHeaderRules;
use crate::core::affinity::mark::AffinityTag;
use crate::core::config::config::TokenCount;
use crate::core::config::config::{AffinityFallback, UnpricedMode};
use crate::core::config::cost_map::CostMap;
use crate::core::config::key_hash::KeyDigest;
use crate::core::config::pattern::Pattern;
use crate::core::config::time::BudgetWindow;
pub use crate::core::limits::rules::{ModelLimits, RateLimits};
use crate::core::money::budget::Scope;
use crate::core::money::cost::Rates;
pub use crate::core::money::model_budgets::ModelBudgets;
use crate::core::spend::attribution::Attribution;

/// Index of a key in [`Policy::keys`].
pub type KeyId = u32;
/// Index of a team in [`Policy::teams`].
pub type TeamId = u32;
/// Index of a deployment in [`Policy::deployments`].
pub type DeploymentId = u32;
/// Index of an access-group name in [`Policy::group_names`].
pub type GroupId = u32;

/// One compiled config version.
#[derive(Debug)]
pub struct Policy {
    /// The operator's version label.
    pub version: String,
    /// Largest request body accepted, in bytes.
    pub max_request_body_bytes: u64,
    /// Key digest → key.
    pub(crate) key_index: HashMap<KeyDigest, KeyId>,
    /// Every virtual key.
    pub keys: Vec<VirtualKey>,
    /// Every team.
    pub teams: Vec<Team>,
    /// Every deployment, in config order.
    pub deployments: Vec<Deployment>,
    /// Exact public model name → deployments serving it.
    pub(crate) exact_deployments: HashMap<String, Vec<DeploymentId>>,
    /// Wildcard deployments, most specific pattern first.
    pub(crate) wildcard_deployments: Vec<DeploymentId>,
    /// `model_group_alias`: alias → target.
    pub global_aliases: HashMap<String, GlobalAlias>,
    /// Access-group names by id.
    pub group_names: Vec<String>,
    /// Access-group name → id.
    pub(crate) group_index: HashMap<String, GroupId>,
    /// Internal users with budgets, by user id.
    pub users: HashMap<String, Budget>,
    /// End users with budgets, by user id.
    pub end_users: HashMap<String, Budget>,
    /// Internal users' rate limits, by user id.
    pub user_limits: HashMap<String, RateLimits>,
    /// End users' rate limits, by user id.
    pub end_user_limits: HashMap<String, RateLimits>,
    /// Which tokens token limits count (`settings.token_rate_limit_type`).
    pub token_count: TokenCount,
    /// Every windowed rate limit of this version by name (`holder/kind`), with its window:
    /// totals the accounting cluster reports for any other name or window are ignored.
    pub(crate) limit_periods: HashMap<String, crate::core::limits::rules::Period>,
    /// The name (`scope:id`) of every budget above, with its window and anchor: totals the
    /// accounting cluster reports for any other name, or for a window the budget is not in, are
    /// ignored, so a peer cannot make the ledgers grow with made-up names nor move a budget's
    /// ledger out of its current window.
    pub(crate) budget_windows: HashMap<Arc<str>, (Option<BudgetWindow>, i64)>,
    /// Whether any budget of this version can refuse a request (soft budgets alone never do).
    pub(crate) enforces_budgets: bool,
    /// The budgets with a soft budget, by name (`scope:id`), with their scope.
    pub(crate) soft_budgets: HashMap<Arc<str>, (Scope, Budget)>,
    /// What compiled but may not do what its author expects (LiteLLM fields the filter does not
    /// use): every adapter logs them when it accepts the version, and the tools print them.
    pub warnings: Vec<crate::core::config::compile::ConfigError>,
    /// The cost map of this version (prices and provider sets).
    pub cost_map: CostMap,
    /// Distinct providers named by the cost map.
    pub provider_count: usize,
    /// The time zone budget windows are counted in (`settings.budget_timezone`, default UTC).
    pub budget_zone: crate::core::config::time_zone::BudgetZone,
    /// How money is counted: unpriced models, reservations.
    pub spending: Spending,
    /// Where spend events go (`None`: counted only inside this Envoy process).
    pub accounting: Option<Accounting>,
    /// What to do with a Responses follow-up whose encryption boundary is gone.
    pub affinity_fallback: AffinityFallback,
    /// Which client request headers are removed before forwarding.
    pub client_headers: ClientHeaderRules,
    /// The VM environment variable holding the affinity sealing secret.
    pub affinity_secret_env: String,
    /// Whether each request's access-log line is left in filter state.
    pub access_log: bool,
    /// Whether admitted requests carry Tollgate's descriptor headers for Envoy's rate-limit
    /// filters (`settings.rate_limit_descriptors`).
    pub rate_limit_descriptors: bool,
}

/// Compiled money settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Spending {
    /// Treatment of models with no known price.
    pub unpriced: UnpricedMode,
    /// The rates charged in `default_price` mode.
    pub default_rates: Rates,
    /// Lifetime of a reservation whose request never settles, in seconds.
    pub reservation_ttl_seconds: u64,
    /// Output cap assumed for reservations when nothing else gives one.
    pub default_max_output_tokens: u64,
    /// Input assumed for reservations of a follow-up whose model has no `max_input_tokens`.
    pub default_max_input_tokens: u64,
}

/// Compiled `accounting` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accounting {
    /// Envoy cluster.
    pub cluster: String,
    /// `:authority` header.
    pub authority: String,
    /// Path prefix (no trailing slash).
    pub path_prefix: String,
    /// CloudEvents `source`.
    pub source: String,
    /// Flush period in milliseconds.
    pub flush_interval_ms: u64,
    /// Events per batch.
    pub batch_max_events: usize,
    /// Events buffered per worker before the oldest are dropped.
    pub max_buffered_events: usize,
    /// Bytes of events buffered per worker before the oldest are dropped.
    pub max_buffered_bytes: usize,
    /// VM environment variable holding the bearer token sent to the accounting cluster.
    pub token_env: Option<String>,
    /// Poll period in milliseconds (0: never).
    pub poll_interval_ms: u64,
    /// Call timeout in milliseconds.
    pub timeout_ms: u64,
}

/// A virtual key.
#[derive(Debug)]
pub struct VirtualKey {
    /// SHA-256 of the full key.
    pub digest: KeyDigest,
    /// Human-readable name.
    pub alias: Option<String>,
    /// The team the key belongs to.
    pub team: Option<TeamId>,
    /// The internal user the key belongs to.
    pub user_id: Option<String>,
    /// What the key may call.
    pub allow: AllowList,
    /// Key-level aliases.
    pub aliases: HashMap<String, String>,
    /// Expiry instant in Unix seconds.
    pub expires_at: Option<i64>,
    /// Refused when true.
    pub blocked: bool,
    /// The key's own budget.
    pub budget: Option<Budget>,
    /// The key's per-model budgets (`model_max_budget`).
    pub model_budgets: ModelBudgets,
    /// The key's rate limits.
    pub limits: Option<RateLimits>,
    /// The key's per-model rate limits (`model_rpm_limit`, `model_tpm_limit`).
    pub model_limits: ModelLimits,
    /// Tags and metadata for spend attribution.
    pub attribution: Attribution,
}

/// A team.
#[derive(Debug)]
pub struct Team {
    /// Team id from config.
    pub id: String,
    /// Human-readable name.
    pub alias: Option<String>,
    /// What the team's keys may call.
    pub allow: AllowList,
    /// Team-level aliases.
    pub aliases: HashMap<String, String>,
    /// All keys of a blocked team are refused.
    pub blocked: bool,
    /// The team's budget.
    pub budget: Option<Budget>,
    /// The team's per-model budgets (`model_max_budget`).
    pub model_budgets: ModelBudgets,
    /// The team's rate limits.
    pub limits: Option<RateLimits>,
    /// The team's per-model rate limits.
    pub model_limits: ModelLimits,
    /// Tags and metadata for spend attribution.
    pub attribution: Attribution,
}

/// A spending limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    /// The budget's stable name, `scope:id` (key hash in hex, team id, user id, end-user id).
    pub id: Arc<str>,
    /// Name for messages: key alias, team alias, user id.
    pub label: Arc<str>,
    /// Limit in USD, as configured.
    pub max_usd: f64,
    /// Limit in nano-dollars (what is compared).
    pub limit_nano: u64,
    /// Reset window; `None` means the budget never resets.
    pub window: Option<BudgetWindow>,
    /// Unix seconds a window boundary falls on (`budget_reset_at`; 0: the Unix epoch).
    pub anchor: i64,
    /// False for a soft budget alone (`soft_budget` without `max_budget`): it never refuses,
    /// and `limit_nano` is `u64::MAX`.
    pub enforced: bool,
    /// The soft budget (`soft_budget`) in nano-dollars: reaching it raises one threshold event
    /// per window, never a refusal.
    pub soft_limit_nano: Option<u64>,
    /// For a per-model budget (`model_max_budget`), the entry it was written under (a model,
    /// an access group or a wildcard).
    pub model: Option<Arc<str>>,
}

/// A global alias.
#[derive(Debug)]
pub struct GlobalAlias {
    /// The model it resolves to.
    pub target: String,
    /// Left out of model listings.
    pub hidden: bool,
}

/// A compiled allow-list (`models` of a key or team).
#[derive(Debug, Default)]
pub struct AllowList {
    /// Empty list, `*` or `all-proxy-models`: everything is allowed.
    pub all: bool,
    /// `all-team-models` (keys only): defer to the team's list.
    pub all_team_models: bool,
    /// Exact model names.
    pub exact: HashSet<String>,
    /// Access groups.
    pub groups: Vec<GroupId>,
    /// Wildcard entries.
    pub patterns: Vec<Pattern>,
}

/// A deployment: one way to serve a public model name.
#[derive(Debug, PartialEq)]
pub struct Deployment {
    /// Stable id (`model_info.id`, or derived from the deployment's fields).
    pub id: String,
    /// Public name clients use (may be a wildcard).
    pub model_name: String,
    /// The compiled wildcard when `model_name` has a `*`.
    pub pattern: Option<Pattern>,
    /// `litellm_params.model` without the provider prefix (may hold a `*`).
    pub upstream_model: String,
    /// Provider, from the `provider/` prefix or the cost map.
    pub provider: String,
    /// Envoy cluster that reaches the deployment.
    pub cluster: String,
    /// VM environment variable holding the upstream credential.
    pub credential_env: Option<String>,
    /// Routing weight in thousandths.
    pub weight_milli: u64,
    /// Access groups this deployment belongs to.
    pub groups: Vec<GroupId>,
    /// Deployment-specific prices (win over the cost map).
    pub prices: DeploymentPrices,
    /// Explicit encryption-boundary group (Responses affinity).
    pub affinity_group: Option<String>,
    /// The team whose keys alone may use it (`model_info.team_id`); `None`: any key its lists
    /// admit.
    pub team_id: Option<String>,
    /// The cost-map model it is priced as (`model_info.base_model`), instead of its upstream
    /// model.
    pub base_model: Option<String>,
    /// This deployment's affinity tag (its id and encryption boundary), computed once.
    pub affinity: AffinityTag,
    /// Its capacity (`litellm_params.rpm`/`tpm`), named `deployment:<id>`.
    pub limits: Option<RateLimits>,
}

/// Prices set on a deployment's `model_info`, in USD per token.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct DeploymentPrices {
    /// Input price.
    pub input: Option<f64>,
    /// Output price.
    pub output: Option<f64>,
    /// Cached-read price.
    pub cache_read: Option<f64>,
    /// Cache-creation price.
    pub cache_creation: Option<f64>,
    /// Reasoning price.
    pub reasoning: Option<f64>,
    /// Output cap used for reservations.
    pub max_output_tokens: Option<u64>,
}

/// Counts shown by `tollgate validate` and logged when a version is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySummary {
    /// Version label.
    pub version: String,
    /// Virtual keys.
    pub keys: usize,
    /// Teams.
    pub teams: usize,
    /// Deployments.
    pub deployments: usize,
    /// Cost-map model entries.
    pub cost_map_models: usize,
    /// Distinct providers in the cost map.
    pub providers: usize,
}

impl std::fmt::Display for PolicySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "version {}: {} keys, {} teams, {} deployments, {} cost-map models, {} providers",
            self.version,
            self.keys,
            self.teams,
            self.deployments,
            self.cost_map_models,
            self.providers
        )
    }
}

impl Policy {
    /// Counts of what this version holds.
    pub fn summary(&self) -> PolicySummary {
        PolicySummary {
            version: self.version.clone(),
            keys: self.keys.len(),
            teams: self.teams.len(),
            deployments: self.deployments.len(),
            cost_map_models: self.cost_map.len(),
            providers: self.provider_count,
        }
    }

    /// Whether `id` (`scope:id`, as in spend events and ledger keys) names a budget of this
    /// version.
    pub fn has_budget(&self, id: &str) -> bool {
        self.budget_windows.contains_key(id)
    }

    /// The start of the window budget `id` (`scope:id`) is in at `now` (Unix seconds; 0 for a
    /// budget that never resets), `None` when this version has no such budget.
    pub fn budget_window_start(&self, id: &str, now: i64) -> Option<i64> {
        let &(window, anchor) = self.budget_windows.get(id)?;
        let zone = &self.budget_zone;
        Some(crate::core::config::time::window_bounds(window, anchor, zone, now).0)
    }

    /// The start of the window rate limit `name` (`holder/kind`) is in at `now`, `None` when
    /// this version has no such windowed limit.
    pub fn limit_window_start(&self, name: &str, now: i64) -> Option<i64> {
        let period = *self.limit_periods.get(name)?;
        Some(crate::core::limits::lines::window_of(period, &self.budget_zone, now).0)
    }

    /// The budget named `id` and its scope, when it has a soft budget.
    pub fn soft_budget(&self, id: &str) -> Option<(Scope, &Budget)> {
        self.soft_budgets
            .get(id)
            .map(|(scope, budget)| (*scope, budget))
    }

    /// The key with this digest.
    pub fn key_by_digest(&self, digest: &KeyDigest) -> Option<&VirtualKey> {
        let id = *self.key_index.get(digest)?;
        self.keys.get(id as usize)
    }

    /// The team with this index.
    pub fn team(&self, id: TeamId) -> Option<&Team> {
        self.teams.get(id as usize)
    }

    /// The deployment with this index.
    pub fn deployment(&self, id: DeploymentId) -> Option<&Deployment> {
        self.deployments.get(id as usize)
    }

    /// The model name metrics carry for a request that reached `resolved` on `deployment`:
    /// `resolved` when this config names it (an exact deployment, or a model of the cost map),
    /// else the deployment's public name (`anthropic/*`). Under a wildcard the client picks the
    /// model name, and made-up names must not become new metric series.
    pub fn metric_model<'a>(&'a self, resolved: &'a str, deployment: DeploymentId) -> &'a str {
        if self.exact_deployments.contains_key(resolved) || self.cost_map.get(resolved).is_some() {
            return resolved;
        }
        self.deployment(deployment)
            .map_or("other", |d| d.model_name.as_str())
    }

    /// The access-group id of a name.
    pub fn group_id(&self, name: &str) -> Option<GroupId> {
        self.group_index.get(name).copied()
    }
}

impl VirtualKey {
    /// A name for messages: the key alias, else an abbreviated hash.
    pub fn display_name(&self) -> String {
        match &self.alias {
            Some(alias) => alias.clone(),
            None => {
                let hex = crate::core::config::key_hash::to_hex(&self.digest);
                format!("key {}…", &hex[..12])
            }
        }
    }
}

impl Team {
    /// A name for messages: the team alias, else the id.
    pub fn display_name(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.id)
    }
}
