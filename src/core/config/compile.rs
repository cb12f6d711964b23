//! Config → Policy: parse one plugin-config document and validate it whole.
//!
//! Parsing errors stop at the first problem (the document is not valid JSON of our shape);
//! semantic errors are all collected, each with the JSON path of the bad field, so an operator
//! fixes a config in one round. Any error refuses the whole version.

use std::fmt;
use std::sync::Arc;

use hashbrown::{HashMap, HashSet};

use crate::core::admission::client_headers::{
    valid_header_name, ClientHeaderRules, TENANT_SELECTORS,
};
use crate::core::config::config::{
    AccountingConfig, BudgetHolderConfig, ClientHeadersConfig, Config, KeyConfig, Settings,
    TeamConfig, UnpricedMode,
};
use crate::core::config::cost_map::{CostMap, MAX_RATE_USD_PER_TOKEN};
use crate::core::config::index::{
    Accounting, AllowList, Budget, GlobalAlias, Policy, Spending, Team, TeamId, VirtualKey,
};
use crate::core::config::key_hash::{self, KeyDigest};
use crate::core::config::pattern::Pattern;
use crate::core::config::time::{parse_rfc3339, BudgetWindow};
use crate::core::config::time_zone::BudgetZone;
use crate::core::limits::rules::{LimitKind, Period, RateLimits};
use crate::core::money::budget::Scope;
use crate::core::money::cost::{atto_per_token, Rates};

/// Largest body limit an operator may configure (256 MiB).
const MAX_BODY_LIMIT: u64 = 256 * 1024 * 1024;
/// Largest budget (USD) that fits the nano-dollar counters with room for spend beyond it.
const MAX_BUDGET_USD: f64 = 1e9;

/// One problem in a config, at a JSON path such as `keys[3].key_hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the bad field is (`.`-separated, `[i]` for list items); empty for the document.
    pub path: String,
    /// What is wrong and, where useful, how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one config document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Parses and validates one plugin-config document into a [`Policy`].
pub fn compile(document: &[u8]) -> Result<Policy, ConfigErrors> {
    // JSON text never holds raw control bytes other than whitespace; protobuf almost always does
    // within its first bytes (field tags and length varints).
    let binary = document
        .iter()
        .take(64)
        .any(|&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'));
    if binary {
        // A google.protobuf.Struct in Envoy's typed config reaches the plugin as binary protobuf.
        return Err(ConfigErrors(vec![ConfigError {
            path: String::new(),
            message: "the configuration is binary protobuf (a google.protobuf.Struct), not JSON; \
                      deliver the policy as a google.protobuf.StringValue holding JSON (Istio \
                      already does this for a WasmPlugin's pluginConfig)"
                .into(),
        }]));
    }
    let de = &mut serde_json::Deserializer::from_slice(document);
    let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        ConfigErrors(vec![ConfigError {
            path: if path == "." { String::new() } else { path },
            message: e.into_inner().to_string(),
        }])
    })?;
    compile_config(config)
}

/// Validates an already-parsed [`Config`] into a [`Policy`].
pub fn compile_config(config: Config) -> Result<Policy, ConfigErrors> {
    let mut cx = Compiler::default();
    cx.check_version(&config.version);
    let max_request_body_bytes = config.settings.max_request_body_bytes;
    if max_request_body_bytes == 0 || max_request_body_bytes > MAX_BODY_LIMIT {
        cx.error(
            "settings.max_request_body_bytes",
            format!("must be between 1 and {MAX_BODY_LIMIT} bytes"),
        );
    }

    let spending = cx.spending(&config.settings);
    if let Some(name) = &config.settings.budget_timezone {
        match BudgetZone::named(name) {
            Ok(zone) => cx.zone = zone,
            Err(message) => cx.error("settings.budget_timezone", message),
        }
    }
    let accounting = config.accounting.map(|a| cx.accounting(a));
    let client_headers = cx.client_headers(&config.settings.client_headers);
    let mut policy = Policy {
        version: config.version,
        max_request_body_bytes,
        key_index: HashMap::new(),
        keys: Vec::new(),
        teams: Vec::new(),
        deployments: Vec::new(),
        exact_deployments: HashMap::new(),
        wildcard_deployments: Vec::new(),
        global_aliases: HashMap::new(),
        group_names: Vec::new(),
        group_index: HashMap::new(),
        users: HashMap::new(),
        end_users: HashMap::new(),
        user_limits: HashMap::new(),
        end_user_limits: HashMap::new(),
        token_count: config.settings.token_rate_limit_type,
        limit_periods: HashMap::new(),
        budget_windows: HashMap::new(),
        enforces_budgets: false,
        soft_budgets: HashMap::new(),
        warnings: Vec::new(),
        provider_count: count_providers(&config.cost_map),
        cost_map: config.cost_map,
        spending,
        accounting,
        affinity_fallback: config.settings.affinity_fallback,
        client_headers,
        affinity_secret_env: config.settings.affinity_secret_env,
        access_log: config.settings.access_log,
        rate_limit_descriptors: config.settings.rate_limit_descriptors,
        budget_zone: BudgetZone::default(),
    };

    cx.add_deployments(&mut policy, config.model_list);
    for (alias, target) in config.model_group_alias {
        let path = format!("model_group_alias.{alias}");
        if alias.is_empty() || target.model().is_empty() {
            cx.error(&path, "alias and target must be non-empty".into());
            continue;
        }
        policy.global_aliases.insert(
            alias,
            GlobalAlias {
                target: target.model().to_string(),
                hidden: target.hidden(),
            },
        );
    }
    cx.check_global_aliases(&policy);

    let team_ids = cx.add_teams(&mut policy, config.teams);
    cx.add_keys(&mut policy, config.keys, &team_ids);
    policy.budget_zone = cx.zone.clone();
    policy.user_limits = cx.limit_holders(Scope::User, &config.users);
    policy.end_user_limits = cx.limit_holders(Scope::EndUser, &config.end_users);
    policy.users = cx.budget_holders("users", Scope::User, config.users);
    policy.end_users = cx.budget_holders("end_users", Scope::EndUser, config.end_users);
    policy.budget_windows = budget_windows(&policy);
    policy.limit_periods = limit_periods(&policy);
    let enforces_budgets = all_budgets(&policy).any(|b| b.enforced);
    policy.enforces_budgets = enforces_budgets;
    policy.soft_budgets = all_budgets(&policy)
        .filter(|b| b.soft_limit_nano.is_some())
        .filter_map(|b| {
            let scope = Scope::parse(b.id.split(':').next().unwrap_or_default())?;
            Some((Arc::clone(&b.id), (scope, b.clone())))
        })
        .collect();
    for skipped in policy.cost_map.fallback_rules().skipped() {
        cx.warn("cost_map.fallback_generalizations", skipped.clone());
    }
    policy.warnings = std::mem::take(&mut cx.warnings);

    if cx.errors.is_empty() {
        Ok(policy)
    } else {
        Err(ConfigErrors(cx.errors))
    }
}

/// The names of every budget in `policy` (keys', teams', users', end users'), with their
/// windows.
fn budget_windows(policy: &Policy) -> HashMap<Arc<str>, (Option<BudgetWindow>, i64)> {
    all_budgets(policy)
        .map(|budget| (Arc::clone(&budget.id), (budget.window, budget.anchor)))
        .collect()
}

/// Every windowed rate limit of `policy` by name (`holder/kind`), with its window.
fn limit_periods(policy: &Policy) -> HashMap<String, Period> {
    let keys = policy
        .keys
        .iter()
        .flat_map(|k| k.limits.iter().chain(k.model_limits.exact.values()));
    let teams = policy
        .teams
        .iter()
        .flat_map(|t| t.limits.iter().chain(t.model_limits.exact.values()));
    let deployments = policy.deployments.iter().flat_map(|d| d.limits.iter());
    let holders = keys
        .chain(teams)
        .chain(deployments)
        .chain(policy.user_limits.values())
        .chain(policy.end_user_limits.values());
    let mut out = HashMap::new();
    for limits in holders {
        for kind in LimitKind::ALL {
            if let (Some(_), Some(period)) = (limits.of(kind), kind.period()) {
                out.insert(format!("{}/{}", limits.id, kind.name()), period);
            }
        }
    }
    out
}

/// Every budget of `policy`: keys' and teams' (with their per-model budgets), users', end
/// users'.
fn all_budgets(policy: &Policy) -> impl Iterator<Item = &Budget> {
    let keys = policy
        .keys
        .iter()
        .flat_map(|k| k.budget.iter().chain(k.model_budgets.all()));
    let teams = policy
        .teams
        .iter()
        .flat_map(|t| t.budget.iter().chain(t.model_budgets.all()));
    keys.chain(teams)
        .chain(policy.users.values())
        .chain(policy.end_users.values())
}

fn count_providers(cost_map: &CostMap) -> usize {
    cost_map
        .iter()
        .filter_map(|(_, entry)| entry.provider.as_deref())
        .collect::<HashSet<_>>()
        .len()
}

#[derive(Default)]
struct Compiler {
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
    /// `settings.budget_timezone`, read before any budget: default anchors are its midnights.
    zone: BudgetZone,
}

impl Compiler {
    /// Something accepted that does not do what its author may expect: logged on accept.
    fn warn(&mut self, path: &str, message: String) {
        self.warnings.push(ConfigError {
            path: path.to_string(),
            message,
        });
    }

    fn error(&mut self, path: &str, message: String) {
        self.errors.push(ConfigError {
            path: path.to_string(),
            message,
        });
    }

    fn check_version(&mut self, version: &str) {
        if version.is_empty() || version.len() > 128 {
            self.error("version", "must be 1 to 128 characters".into());
        } else if !version.bytes().all(|b| b.is_ascii_graphic()) {
            self.error(
                "version",
                "must be printable ASCII without spaces (it is sent as a response header)".into(),
            );
        }
    }

    fn price(&mut self, path: &str, value: Option<f64>) -> Option<f64> {
        let value = value?;
        if value.is_finite() && (0.0..=MAX_RATE_USD_PER_TOKEN).contains(&value) {
            Some(value)
        } else {
            self.error(
                path,
                format!(
                    "must be a number of USD per token from 0 to {MAX_RATE_USD_PER_TOKEN}, found {value}"
                ),
            );
            None
        }
    }

    fn spending(&mut self, settings: &Settings) -> Spending {
        let unpriced = &settings.unpriced_models;
        let path = "settings.unpriced_models";
        let input = self.price(
            &format!("{path}.input_cost_per_token"),
            unpriced.input_cost_per_token,
        );
        let output = self.price(
            &format!("{path}.output_cost_per_token"),
            unpriced.output_cost_per_token,
        );
        if unpriced.mode == UnpricedMode::DefaultPrice && (input.is_none() || output.is_none()) {
            self.error(
                &format!("{path}.mode"),
                "default_price needs input_cost_per_token and output_cost_per_token".into(),
            );
        }
        if settings.reservation_ttl_seconds == 0 {
            self.error(
                "settings.reservation_ttl_seconds",
                "must be at least 1 second".into(),
            );
        }
        Spending {
            unpriced: unpriced.mode,
            default_rates: Rates {
                input: input.and_then(atto_per_token),
                output: output.and_then(atto_per_token),
                ..Rates::default()
            },
            reservation_ttl_seconds: settings.reservation_ttl_seconds,
            default_max_output_tokens: settings.default_max_output_tokens,
            default_max_input_tokens: settings.default_max_input_tokens,
        }
    }

    fn client_headers(&mut self, config: &ClientHeadersConfig) -> ClientHeaderRules {
        let path = "settings.client_headers";
        for (i, name) in config.forward.iter().enumerate() {
            if !TENANT_SELECTORS.contains(&name.as_str()) {
                self.error(
                    &format!("{path}.forward[{i}]"),
                    format!(
                        "only {} can be forwarded; credentials and x-tollgate-* headers are always removed, found {name:?}",
                        TENANT_SELECTORS.join(", ")
                    ),
                );
            }
        }
        for (i, name) in config.remove.iter().enumerate() {
            if !valid_header_name(name) {
                self.error(
                    &format!("{path}.remove[{i}]"),
                    format!(
                        "must be a lowercase header name (not a pseudo-header), found {name:?}"
                    ),
                );
            }
        }
        ClientHeaderRules::new(&config.forward, &config.remove)
    }

    fn accounting(&mut self, config: AccountingConfig) -> Accounting {
        let token = |text: &str| {
            !text.is_empty() && text.len() <= 256 && text.bytes().all(|b| b.is_ascii_graphic())
        };
        if !token(&config.cluster) {
            self.error(
                "accounting.cluster",
                "must be an Envoy cluster name (1 to 256 printable characters)".into(),
            );
        }
        let authority = config.authority.unwrap_or_else(|| config.cluster.clone());
        if !token(&authority) {
            self.error("accounting.authority", "must be a host name".into());
        }
        let prefix = config.path_prefix.trim_end_matches('/').to_string();
        if !prefix.is_empty() && (!prefix.starts_with('/') || !token(&prefix)) {
            self.error(
                "accounting.path_prefix",
                "must start with '/' and hold no spaces".into(),
            );
        }
        for (field, value, min) in [
            ("flush_interval_ms", config.flush_interval_ms, 10),
            ("batch_max_events", config.batch_max_events, 1),
            ("max_buffered_events", config.max_buffered_events, 1),
            ("timeout_ms", config.timeout_ms, 1),
        ] {
            if value < min {
                self.error(
                    &format!("accounting.{field}"),
                    format!("must be at least {min}"),
                );
            }
        }
        let min_bytes = crate::core::spend::accounting_api::MAX_EVENT_BYTES as u64;
        if !(min_bytes..=1 << 30).contains(&config.max_buffered_bytes) {
            self.error(
                "accounting.max_buffered_bytes",
                format!("must be between {min_bytes} (one largest event) and 1073741824 (1 GiB)"),
            );
        }
        let env_name = |name: &str| {
            !name.is_empty()
                && name.len() <= 256
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        };
        if config
            .token_env
            .as_deref()
            .is_some_and(|name| !env_name(name))
        {
            self.error(
                "accounting.token_env",
                "must be an environment variable name (letters, digits, '_')".into(),
            );
        }
        if config.batch_max_events > 10_000 {
            self.error(
                "accounting.batch_max_events",
                "must be at most 10000".into(),
            );
        }
        Accounting {
            cluster: config.cluster,
            authority,
            path_prefix: prefix,
            source: config.source.unwrap_or_else(|| "tollgate".to_string()),
            flush_interval_ms: config.flush_interval_ms,
            batch_max_events: usize::try_from(config.batch_max_events).unwrap_or(usize::MAX),
            max_buffered_events: usize::try_from(config.max_buffered_events).unwrap_or(usize::MAX),
            max_buffered_bytes: usize::try_from(config.max_buffered_bytes).unwrap_or(usize::MAX),
            token_env: config.token_env,
            poll_interval_ms: config.poll_interval_ms,
            timeout_ms: config.timeout_ms,
        }
    }

    fn check_global_aliases(&mut self, policy: &Policy) {
        let mut names: Vec<&String> = policy.global_aliases.keys().collect();
        names.sort();
        for alias in names {
            let target = policy.resolve_global(alias);
            if !policy.is_servable(target) {
                self.error(
                    &format!("model_group_alias.{alias}"),
                    format!("target {target:?} is not served by any deployment in model_list"),
                );
            }
        }
    }

    fn allow_list(&mut self, policy: &Policy, path: &str, models: &[String]) -> AllowList {
        let mut list = AllowList {
            all: models.is_empty(),
            ..AllowList::default()
        };
        for (i, entry) in models.iter().enumerate() {
            match entry.as_str() {
                "" => self.error(&format!("{path}[{i}]"), "must be non-empty".into()),
                "*" | "all-proxy-models" => list.all = true,
                "all-team-models" => list.all_team_models = true,
                name => {
                    if let Some(group) = policy.group_id(name) {
                        list.groups.push(group);
                    } else if let Some(pattern) = Pattern::parse(name) {
                        list.patterns.push(pattern);
                    } else {
                        list.exact.insert(name.to_string());
                    }
                }
            }
        }
        list
    }

    fn aliases(
        &mut self,
        policy: &Policy,
        path: &str,
        aliases: std::collections::BTreeMap<String, String>,
        resolve_rest: impl Fn(&str) -> String,
    ) -> HashMap<String, String> {
        let mut out = HashMap::with_capacity(aliases.len());
        for (alias, target) in aliases {
            let entry_path = format!("{path}.{alias}");
            if alias.is_empty() || target.is_empty() {
                self.error(&entry_path, "alias and target must be non-empty".into());
                continue;
            }
            let resolved = resolve_rest(&target);
            if !policy.is_servable(&resolved) {
                let via = if resolved == target {
                    String::new()
                } else {
                    format!(" (resolved to {resolved:?})")
                };
                self.error(
                    &entry_path,
                    format!("target {target:?}{via} is not served by any deployment in model_list"),
                );
                continue;
            }
            out.insert(alias, target);
        }
        out
    }

    fn add_teams(
        &mut self,
        policy: &mut Policy,
        teams: Vec<TeamConfig>,
    ) -> HashMap<String, TeamId> {
        let mut ids = HashMap::with_capacity(teams.len());
        for (i, t) in teams.into_iter().enumerate() {
            let path = format!("teams[{i}]");
            if t.team_id.is_empty() {
                self.error(&format!("{path}.team_id"), "must be non-empty".into());
                continue;
            }
            if ids.contains_key(&t.team_id) {
                self.error(
                    &format!("{path}.team_id"),
                    format!("team {:?} is defined twice", t.team_id),
                );
                continue;
            }
            let allow = self.allow_list(policy, &format!("{path}.models"), &t.models);
            let aliases = self.aliases(
                policy,
                &format!("{path}.model_aliases"),
                t.model_aliases,
                |target| policy.resolve_global(target).to_string(),
            );
            let label = t.team_alias.as_deref().unwrap_or(&t.team_id);
            let holder = (Scope::Team, t.team_id.as_str(), label);
            let spec = BudgetSpec {
                max_usd: t.max_budget,
                soft_usd: t.soft_budget,
                duration: t.budget_duration.as_deref(),
                reset_at: t.budget_reset_at.as_deref(),
                fields: HOLDER_FIELDS,
            };
            let budget = self.budget(&path, spec, holder);
            let model_budgets = self.model_budgets(policy, &path, &t.model_max_budget, holder);
            let limit_id = format!("team:{}", t.team_id);
            let spec = LimitSpec {
                rpm: t.rpm_limit,
                tpm: t.tpm_limit,
                rpd: t.rpd_limit,
                tpd: t.tpd_limit,
                parallel: t.max_parallel_requests,
            };
            let limits = self.rate_limits(spec, &limit_id, label);
            let tables = (&t.model_rpm_limit, &t.model_tpm_limit);
            let known = |name: &str| {
                policy.is_servable(name)
                    || policy.global_aliases.contains_key(name)
                    || aliases.contains_key(name)
            };
            let model_limits = self.model_limits(&path, tables, (&limit_id, label), &known);
            let attribution = self.attribution(&path, t.tags, t.metadata);
            ids.insert(t.team_id.clone(), policy.teams.len() as TeamId);
            policy.teams.push(Team {
                id: t.team_id,
                alias: t.team_alias,
                allow,
                aliases,
                blocked: t.blocked,
                budget,
                model_budgets,
                limits,
                model_limits,
                attribution,
            });
        }
        ids
    }

    fn add_keys(
        &mut self,
        policy: &mut Policy,
        keys: Vec<KeyConfig>,
        team_ids: &HashMap<String, TeamId>,
    ) {
        let mut seen: HashMap<KeyDigest, usize> = HashMap::with_capacity(keys.len());
        policy.keys.reserve(keys.len());
        for (i, k) in keys.into_iter().enumerate() {
            let path = format!("keys[{i}]");
            let before = self.errors.len();
            let digest = if k.key_hash.starts_with("sk-") {
                self.error(
                    &format!("{path}.key_hash"),
                    "looks like a plain-text key; store only its SHA-256 (`tollgate hash-key sk-...`)"
                        .into(),
                );
                None
            } else {
                let parsed = key_hash::from_hex(&k.key_hash);
                if parsed.is_none() {
                    self.error(
                        &format!("{path}.key_hash"),
                        "must be the 64-character hex SHA-256 of the key".into(),
                    );
                }
                parsed
            };
            if let Some(digest) = digest {
                if let Some(first) = seen.insert(digest, i) {
                    self.error(
                        &format!("{path}.key_hash"),
                        format!("the same key is already defined at keys[{first}]"),
                    );
                }
            }
            let team = match &k.team_id {
                None => None,
                Some(id) => {
                    let team = team_ids.get(id).copied();
                    if team.is_none() {
                        self.error(
                            &format!("{path}.team_id"),
                            format!("team {id:?} is not defined in teams"),
                        );
                    }
                    team
                }
            };
            let expires_at = match &k.expires {
                None => None,
                Some(text) => match parse_rfc3339(text) {
                    Ok(t) => Some(t),
                    Err(message) => {
                        self.error(&format!("{path}.expires"), message);
                        None
                    }
                },
            };
            let allow = self.allow_list(policy, &format!("{path}.models"), &k.models);
            let team_aliases = team.and_then(|t| policy.team(t)).map(|t| &t.aliases);
            let aliases = self.aliases(policy, &format!("{path}.aliases"), k.aliases, |target| {
                let after_team = team_aliases
                    .and_then(|a| a.get(target))
                    .map_or(target, String::as_str);
                policy.resolve_global(after_team).to_string()
            });
            let hex = digest.as_ref().map(key_hash::to_hex).unwrap_or_default();
            let label = match &k.key_alias {
                Some(alias) => alias.clone(),
                None => format!("key {}…", hex.get(..12).unwrap_or_default()),
            };
            let holder = (Scope::Key, hex.as_str(), label.as_str());
            let spec = BudgetSpec {
                max_usd: k.max_budget,
                soft_usd: k.soft_budget,
                duration: k.budget_duration.as_deref(),
                reset_at: k.budget_reset_at.as_deref(),
                fields: HOLDER_FIELDS,
            };
            let budget = self.budget(&path, spec, holder);
            let model_budgets = self.model_budgets(policy, &path, &k.model_max_budget, holder);
            let limit_id = format!("key:{hex}");
            let spec = LimitSpec {
                rpm: k.rpm_limit,
                tpm: k.tpm_limit,
                rpd: k.rpd_limit,
                tpd: k.tpd_limit,
                parallel: k.max_parallel_requests,
            };
            let limits = self.rate_limits(spec, &limit_id, &label);
            let tables = (&k.model_rpm_limit, &k.model_tpm_limit);
            let known = |name: &str| {
                policy.is_servable(name)
                    || policy.global_aliases.contains_key(name)
                    || aliases.contains_key(name)
                    || team_aliases.is_some_and(|a| a.contains_key(name))
            };
            let model_limits = self.model_limits(&path, tables, (&limit_id, &label), &known);
            let attribution = self.attribution(&path, k.tags, k.metadata);
            let Some(digest) = digest else { continue };
            if self.errors.len() > before {
                continue;
            }
            policy.key_index.insert(digest, policy.keys.len() as u32);
            policy.keys.push(VirtualKey {
                digest,
                alias: k.key_alias,
                team,
                user_id: k.user_id,
                allow,
                aliases,
                expires_at,
                blocked: k.blocked,
                budget,
                model_budgets,
                limits,
                model_limits,
                attribution,
            });
        }
    }

    /// The rate limits of users or end users, by user id (problems with the ids themselves are
    /// reported by [`Compiler::budget_holders`]).
    fn limit_holders(
        &mut self,
        scope: Scope,
        holders: &[BudgetHolderConfig],
    ) -> HashMap<String, RateLimits> {
        let mut out = HashMap::new();
        for h in holders {
            let spec = LimitSpec {
                rpm: h.rpm_limit,
                tpm: h.tpm_limit,
                rpd: h.rpd_limit,
                tpd: h.tpd_limit,
                parallel: h.max_parallel_requests,
            };
            let id = format!("{}:{}", scope.name(), h.user_id);
            if h.user_id.is_empty() || out.contains_key(&h.user_id) {
                continue;
            }
            if let Some(limits) = self.rate_limits(spec, &id, &h.user_id) {
                out.insert(h.user_id.clone(), limits);
            }
        }
        out
    }

    fn budget_holders(
        &mut self,
        section: &str,
        scope: Scope,
        holders: Vec<BudgetHolderConfig>,
    ) -> HashMap<String, Budget> {
        let mut out = HashMap::with_capacity(holders.len());
        for (i, h) in holders.into_iter().enumerate() {
            let path = format!("{section}[{i}]");
            if h.user_id.is_empty() {
                self.error(&format!("{path}.user_id"), "must be non-empty".into());
                continue;
            }
            if out.contains_key(&h.user_id) {
                self.error(
                    &format!("{path}.user_id"),
                    format!("{:?} is defined twice", h.user_id),
                );
                continue;
            }
            let holder = (scope, h.user_id.as_str(), h.user_id.as_str());
            let spec = BudgetSpec {
                max_usd: h.max_budget,
                soft_usd: None,
                duration: h.budget_duration.as_deref(),
                reset_at: h.budget_reset_at.as_deref(),
                fields: HOLDER_FIELDS,
            };
            if let Some(budget) = self.budget(&path, spec, holder) {
                out.insert(h.user_id, budget);
            }
        }
        out
    }
}

#[path = "compile_deployments.rs"]
mod deployments;

#[path = "compile_budgets.rs"]
mod budgets;

#[path = "compile_limits.rs"]
mod limits;

#[path = "compile_attribution.rs"]
mod attribution;
use budgets::{BudgetSpec, HOLDER_FIELDS};
use limits::LimitSpec;

#[cfg(test)]
#[path = "compile_tests.rs"]
mod tests;
