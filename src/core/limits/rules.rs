//! What a holder may do, compiled once per version: requests and tokens per minute and per
//! day, requests in flight, and per-model limits of keys and teams.

use std::sync::Arc;

use hashbrown::HashMap;

use crate::core::config::index::Deployment;

/// What a limit counts, and over which window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// Requests per minute (`rpm_limit`).
    Rpm,
    /// Tokens per minute (`tpm_limit`).
    Tpm,
    /// Requests per day (`rpd_limit`).
    Rpd,
    /// Tokens per day (`tpd_limit`).
    Tpd,
    /// Requests in flight (`max_parallel_requests`).
    Parallel,
}

impl LimitKind {
    /// Every kind, in the order a request is checked against them.
    pub const ALL: [LimitKind; 5] = [
        LimitKind::Parallel,
        LimitKind::Rpm,
        LimitKind::Rpd,
        LimitKind::Tpm,
        LimitKind::Tpd,
    ];

    /// The name in error codes, ledger keys, metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            LimitKind::Rpm => "rpm",
            LimitKind::Tpm => "tpm",
            LimitKind::Rpd => "rpd",
            LimitKind::Tpd => "tpd",
            LimitKind::Parallel => "parallel",
        }
    }

    /// Whether it counts tokens (reserved before the call, settled to the real usage after).
    pub fn counts_tokens(self) -> bool {
        matches!(self, LimitKind::Tpm | LimitKind::Tpd)
    }

    /// The window it counts over.
    pub fn period(self) -> Option<Period> {
        match self {
            LimitKind::Rpm | LimitKind::Tpm => Some(Period::Minute),
            LimitKind::Rpd | LimitKind::Tpd => Some(Period::Day),
            LimitKind::Parallel => None,
        }
    }

    /// What one unit is, for messages.
    pub fn unit(self) -> &'static str {
        match self {
            LimitKind::Rpm | LimitKind::Rpd => "requests",
            LimitKind::Tpm | LimitKind::Tpd => "tokens",
            LimitKind::Parallel => "requests in flight",
        }
    }
}

/// A fixed, clock-aligned window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Each UTC minute.
    Minute,
    /// Each local day in `settings.budget_timezone`.
    Day,
}

impl Period {
    /// How it is named in messages (`per minute`).
    pub fn name(self) -> &'static str {
        match self {
            Period::Minute => "minute",
            Period::Day => "day",
        }
    }
}

/// One holder's limits. Absent fields do not limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// The holder's stable name, `scope:id` (as budgets name it; per-model limits add
    /// `:model:<entry>`, as per-model budgets are named).
    pub id: Arc<str>,
    /// Name for messages: key alias, team alias, user id.
    pub label: Arc<str>,
    /// For a per-model limit, the entry it is written under.
    pub model: Option<Arc<str>>,
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens per minute.
    pub tpm: Option<u64>,
    /// Requests per day.
    pub rpd: Option<u64>,
    /// Tokens per day.
    pub tpd: Option<u64>,
    /// Requests in flight.
    pub parallel: Option<u64>,
}

impl RateLimits {
    /// The limit of `kind`, if set.
    pub fn of(&self, kind: LimitKind) -> Option<u64> {
        match kind {
            LimitKind::Rpm => self.rpm,
            LimitKind::Tpm => self.tpm,
            LimitKind::Rpd => self.rpd,
            LimitKind::Tpd => self.tpd,
            LimitKind::Parallel => self.parallel,
        }
    }

    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        LimitKind::ALL.iter().all(|&kind| self.of(kind).is_none())
    }
}

/// A key's or team's per-model limits (`model_rpm_limit`, `model_tpm_limit`), by the model as
/// a request reaches it (after aliases), in either spelling (`gpt-4o`, `openai/gpt-4o`).
#[derive(Debug, Default)]
pub struct ModelLimits {
    /// Entry name → its limits.
    pub exact: HashMap<String, RateLimits>,
}

impl ModelLimits {
    /// Whether the holder has no per-model limit.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
    }

    /// The entries a request counts against: those written under the model it reaches
    /// (`resolved`, after aliases) and under the name it asked for (`asked`, an alias), each in
    /// either spelling (with or without the serving deployment's provider prefix). At most four,
    /// each once.
    pub fn find_all<'a>(
        &'a self,
        asked: &str,
        resolved: &str,
        deployment: &Deployment,
    ) -> Vec<&'a RateLimits> {
        let mut found: Vec<&RateLimits> = Vec::new();
        if self.exact.is_empty() {
            return found;
        }
        let provider = deployment.provider.as_str();
        let names = [resolved, asked];
        for name in names {
            let other = match name.strip_prefix(provider) {
                Some(rest) if rest.starts_with('/') => rest.get(1..).map(str::to_string),
                _ => Some(format!("{provider}/{name}")),
            };
            let spellings = [Some(name), other.as_deref()];
            for spelling in spellings.into_iter().flatten() {
                if let Some(limits) = self.exact.get(spelling) {
                    if !found.iter().any(|f| std::ptr::eq(*f, limits)) {
                        found.push(limits);
                    }
                }
            }
        }
        found
    }
}
