//! The rate-limit counters one request counts against, each in its current window.

use std::sync::Arc;

use crate::core::config::index::{Deployment, Policy, Team, VirtualKey};
use crate::core::config::time_zone::BudgetZone;
use crate::core::limits::rules::{LimitKind, Period, RateLimits};
use crate::core::money::budget::Reached;

/// Whose limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    /// The virtual key.
    Key,
    /// The key's team.
    Team,
    /// The key's `user_id`.
    User,
    /// The request body's `user`.
    EndUser,
    /// The deployment serving the request (shared capacity, never shown to a tenant in detail).
    Deployment,
}

impl LimitScope {
    /// The name in messages, metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            LimitScope::Key => "key",
            LimitScope::Team => "team",
            LimitScope::User => "user",
            LimitScope::EndUser => "end_user",
            LimitScope::Deployment => "deployment",
        }
    }
}

/// The window `period` is in at `now`: `[start, end)`, Unix seconds.
pub fn window_of(period: Period, zone: &BudgetZone, now: i64) -> (i64, i64) {
    match period {
        Period::Minute => {
            let start = now - now.rem_euclid(60);
            (start, start.saturating_add(60))
        }
        Period::Day => {
            let (today, _) = zone.local(now);
            let start = zone.instant(today, 0);
            let end = zone.instant(today + 1, 0);
            if start <= now && now < end {
                (start, end)
            } else {
                // A zone whose midnight does not exist that day: fall back to the UTC day.
                let start = now - now.rem_euclid(86_400);
                (start, start.saturating_add(86_400))
            }
        }
    }
}

/// One counter a request counts against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitLine {
    /// Whose limit.
    pub scope: LimitScope,
    /// What it counts.
    pub kind: LimitKind,
    /// The limit.
    pub limit: u64,
    /// The holder's stable name (`scope:id`, or `deployment:<id>`).
    pub holder: Arc<str>,
    /// Name for messages (for a deployment: the model the request asked for).
    pub label: Arc<str>,
    /// For a per-model limit, the entry it is written under.
    pub model: Option<Arc<str>>,
    /// Window start (0 for requests in flight, which have no window).
    pub window_start: i64,
    /// Window end (`None` for requests in flight).
    pub window_end: Option<i64>,
    /// The ledger key of this window's counter.
    ledger_key: String,
}

impl LimitLine {
    /// The counter of `kind` for `holder` in the window of `now`.
    pub fn new(
        scope: LimitScope,
        kind: LimitKind,
        limit: u64,
        (holder, label, model): (&Arc<str>, &Arc<str>, Option<&Arc<str>>),
        zone: &BudgetZone,
        now: i64,
    ) -> LimitLine {
        let (window_start, window_end) = match kind.period() {
            Some(period) => {
                let (start, end) = window_of(period, zone, now);
                (start, Some(end))
            }
            None => (0, None),
        };
        LimitLine {
            scope,
            kind,
            limit,
            ledger_key: ledger_key(holder, kind, window_start),
            holder: Arc::clone(holder),
            label: Arc::clone(label),
            model: model.cloned(),
            window_start,
            window_end,
        }
    }

    /// The ledger key of this window's counter.
    pub fn ledger_key(&self) -> &str {
        &self.ledger_key
    }

    /// The ledger key and bounds of the same counter's window at `now` (where a long
    /// request's real tokens are recorded when it ends in a later window).
    pub fn window_at(&self, zone: &BudgetZone, now: i64) -> (String, (i64, i64)) {
        match self.kind.period() {
            Some(period) => {
                let (start, end) = window_of(period, zone, now);
                (ledger_key(&self.holder, self.kind, start), (start, end))
            }
            None => (self.ledger_key.clone(), (0, 0)),
        }
    }

    /// The counter's name across versions and replicas: `holder/kind`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.holder, self.kind.name())
    }

    /// Seconds until the window ends (at least 1; 1 for requests in flight, which free up as
    /// they end).
    pub fn resets_in(&self, now: i64) -> u64 {
        match self.window_end {
            Some(end) => u64::try_from(end.saturating_sub(now)).unwrap_or(0).max(1),
            None => 1,
        }
    }
}

/// `tollgate/limit/<holder>/<kind>/<window start>`: one slot per holder and kind, holding its
/// current window (as budget ledgers do).
pub fn ledger_key(holder: &str, kind: LimitKind, window_start: i64) -> String {
    format!("tollgate/limit/{holder}/{}/{window_start}", kind.name())
}

/// Pushes a line for each limit `limits` sets.
fn push_all(
    lines: &mut Vec<LimitLine>,
    scope: LimitScope,
    limits: &RateLimits,
    zone: &BudgetZone,
    now: i64,
) {
    for kind in LimitKind::ALL {
        if let Some(limit) = limits.of(kind) {
            let names = (&limits.id, &limits.label, limits.model.as_ref());
            lines.push(LimitLine::new(scope, kind, limit, names, zone, now));
        }
    }
}

/// The tenant limits a request of `key` (in `team`) for `end_user`, asking for `asked` and
/// reaching `reached`, counts against at `now`: the key's, the team's, the user's, the end
/// user's, then the key's and the team's per-model limits written under the model it reaches or
/// the name it asked for.
pub fn applicable_limits(
    policy: &Policy,
    (key, team): (&VirtualKey, Option<&Team>),
    end_user: Option<&str>,
    (asked, reached): (&str, Option<Reached<'_>>),
    now: i64,
) -> Vec<LimitLine> {
    let mut lines = Vec::new();
    let zone = &policy.budget_zone;
    if let Some(limits) = &key.limits {
        push_all(&mut lines, LimitScope::Key, limits, zone, now);
    }
    if let Some(limits) = team.and_then(|t| t.limits.as_ref()) {
        push_all(&mut lines, LimitScope::Team, limits, zone, now);
    }
    if let Some(limits) = key.user_id.as_ref().and_then(|u| policy.user_limits.get(u)) {
        push_all(&mut lines, LimitScope::User, limits, zone, now);
    }
    if let Some(limits) = end_user.and_then(|u| policy.end_user_limits.get(u)) {
        push_all(&mut lines, LimitScope::EndUser, limits, zone, now);
    }
    if let Some(reached) = reached {
        let (model, deployment) = (reached.model, reached.deployment);
        for limits in key.model_limits.find_all(asked, model, deployment) {
            push_all(&mut lines, LimitScope::Key, limits, zone, now);
        }
        if let Some(team) = team {
            for limits in team.model_limits.find_all(asked, model, deployment) {
                push_all(&mut lines, LimitScope::Team, limits, zone, now);
            }
        }
    }
    lines
}

/// The capacity lines of `deployment` (its `rpm`/`tpm`), labelled with the model the request
/// asked for.
pub fn deployment_limits(
    policy: &Policy,
    deployment: &Deployment,
    asked: &str,
    now: i64,
) -> Vec<LimitLine> {
    let Some(limits) = &deployment.limits else {
        return Vec::new();
    };
    let label: Arc<str> = Arc::from(asked);
    let mut lines = Vec::new();
    for kind in [LimitKind::Rpm, LimitKind::Tpm] {
        if let Some(limit) = limits.of(kind) {
            let names = (&limits.id, &label, None);
            let zone = &policy.budget_zone;
            lines.push(LimitLine::new(
                LimitScope::Deployment,
                kind,
                limit,
                names,
                zone,
                now,
            ));
        }
    }
    lines
}
