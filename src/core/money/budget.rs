//! Budgets: which ones apply to a request, and the per-window ledger they are checked against.
//!
//! A budget window's ledger holds three amounts in nano-dollars: spend the accounting cluster has
//! confirmed (authoritative, across replicas), spend this Envoy process recorded but the cluster
//! has not acknowledged yet, and reservations of requests in flight. A request is refused when
//! any applicable budget's `confirmed + unconfirmed + reserved` has reached its limit; otherwise
//! its worst-case cost is reserved until it settles. Reservations carry an expiry so a request
//! that never settles (a crashed VM) cannot hold budget for ever.
//!
//! The ledger is plain data with a compact binary encoding; the adapter keeps it in proxy-wasm
//! shared data (one value per budget window, updated with compare-and-swap).

use std::sync::Arc;

use crate::core::admission::denial::Denial;
use crate::core::config::index::{Budget, Deployment, Policy, Team, VirtualKey};
use crate::core::config::time::{format_rfc3339, window_bounds};

/// Whose budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The virtual key.
    Key,
    /// The key's team.
    Team,
    /// The key's `user_id`.
    User,
    /// The request body's `user`.
    EndUser,
}

impl Scope {
    /// The name used in events, ledger keys and messages.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Key => "key",
            Scope::Team => "team",
            Scope::User => "user",
            Scope::EndUser => "end_user",
        }
    }

    /// Parses [`Scope::name`].
    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "key" => Some(Scope::Key),
            "team" => Some(Scope::Team),
            "user" => Some(Scope::User),
            "end_user" => Some(Scope::EndUser),
            _ => None,
        }
    }
}

/// One budget window a request counts against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetLine {
    /// Whose budget.
    pub scope: Scope,
    /// The budget's stable name across versions and replicas, `scope:id` (made once per version).
    budget_id: Arc<str>,
    /// Name for messages: key alias, team alias, user id.
    pub label: Arc<str>,
    /// Limit in nano-dollars (`u64::MAX` for a soft budget alone).
    pub limit_nano: u64,
    /// False for a soft budget alone: it never refuses, and no unpriced model is refused for it.
    pub enforced: bool,
    /// The soft budget in nano-dollars: reaching it raises one threshold event per window.
    pub soft_limit_nano: Option<u64>,
    /// For a per-model budget, the entry it is written under.
    pub model: Option<Arc<str>>,
    /// Window start, Unix seconds (0 for a budget that never resets).
    pub window_start: i64,
    /// Window end, Unix seconds (`None` for a budget that never resets).
    pub window_end: Option<i64>,
    /// The shared-data key of this window's ledger.
    ledger_key: String,
}

impl BudgetLine {
    /// The window `[window_start, window_end)` of `budget`.
    pub fn new(
        scope: Scope,
        budget: &Budget,
        window_start: i64,
        window_end: Option<i64>,
    ) -> BudgetLine {
        BudgetLine {
            scope,
            ledger_key: format!("tollgate/budget/{}/{window_start}", budget.id),
            budget_id: Arc::clone(&budget.id),
            label: Arc::clone(&budget.label),
            limit_nano: budget.limit_nano,
            enforced: budget.enforced,
            soft_limit_nano: budget.soft_limit_nano,
            model: budget.model.clone(),
            window_start,
            window_end,
        }
    }

    /// The budget's stable name across versions and replicas: `scope:id`.
    pub fn budget_id(&self) -> &str {
        &self.budget_id
    }

    /// The shared-data key of this window's ledger.
    pub fn ledger_key(&self) -> &str {
        &self.ledger_key
    }

    /// The refusal for a ledger that has reached the limit.
    pub fn refusal(&self, ledger: &Ledger, now: i64) -> Denial {
        Denial::BudgetExceeded {
            scope: self.scope.name(),
            name: self.label.to_string(),
            model: self.model.clone(),
            limit_nano: self.limit_nano,
            spend_nano: ledger.spent(),
            reserved_nano: ledger.reserved(now),
            resets_at: self.window_end.map(format_rfc3339),
            resets_in_seconds: self
                .window_end
                .map(|end| u64::try_from(end.saturating_sub(now)).unwrap_or(0)),
        }
    }
}

/// The model a request reaches: the name after aliases and the deployment that serves it
/// (what per-model budgets are matched on).
#[derive(Debug, Clone, Copy)]
pub struct Reached<'a> {
    /// The model after aliases.
    pub model: &'a str,
    /// The deployment chosen to serve it.
    pub deployment: &'a Deployment,
}

/// The budgets that apply to a request of `key` (in `team`) for `end_user`, reaching
/// `reached`, at `now`: the key's, the team's, the user's, the end user's, then the key's and
/// the team's per-model budgets for what it reaches.
pub fn applicable_budgets(
    policy: &Policy,
    (key, team): (&VirtualKey, Option<&Team>),
    end_user: Option<&str>,
    reached: Option<Reached<'_>>,
    now: i64,
) -> Vec<BudgetLine> {
    let mut lines = Vec::new();
    let mut push = |scope: Scope, budget: &Budget| {
        let (window_start, window_end) =
            window_bounds(budget.window, budget.anchor, &policy.budget_zone, now);
        lines.push(BudgetLine::new(scope, budget, window_start, window_end));
    };
    if let Some(budget) = &key.budget {
        push(Scope::Key, budget);
    }
    if let Some(budget) = team.and_then(|team| team.budget.as_ref()) {
        push(Scope::Team, budget);
    }
    if let Some(budget) = key.user_id.as_ref().and_then(|u| policy.users.get(u)) {
        push(Scope::User, budget);
    }
    if let Some(budget) = end_user.and_then(|u| policy.end_users.get(u)) {
        push(Scope::EndUser, budget);
    }
    if let Some(reached) = reached {
        let (model, deployment) = (reached.model, reached.deployment);
        if let Some(budget) = key.model_budgets.find(model, deployment) {
            push(Scope::Key, budget);
        }
        if let Some(budget) = team.and_then(|team| team.model_budgets.find(model, deployment)) {
            push(Scope::Team, budget);
        }
    }
    lines
}

/// Reservations expire on whole-minute boundaries so that they aggregate into few buckets.
const BUCKET_SECONDS: i64 = 60;

/// The money state of one budget window (nano-dollars).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Spend the accounting cluster reported for this window (all replicas).
    pub confirmed: u64,
    /// Spend recorded here and not yet acknowledged by the accounting cluster.
    pub unconfirmed: u64,
    /// Open reservations: `(expires_at, amount)`, one bucket per expiry minute.
    pub reservations: Vec<(i64, u64)>,
    /// This process already reported the window's soft budget reached (once per window).
    pub soft_reported: bool,
    /// Spend of this process that the accounting cluster acknowledged in this window: a floor
    /// under `confirmed`, so an answer that acknowledges events without their totals (or with
    /// lower ones) cannot make their spend disappear from the window.
    pub acknowledged: u64,
}

/// An encoded ledger's flags travel as a last record with this expiry (no reservation lives
/// that long); bit 0 of its amount is [`Ledger::soft_reported`].
const FLAGS_RECORD: i64 = i64::MAX;
/// The flag bit of [`Ledger::soft_reported`].
const SOFT_REPORTED: u64 = 1;
/// [`Ledger::acknowledged`] travels as a record with this expiry (no reservation lives that
/// long either).
const ACKNOWLEDGED_RECORD: i64 = i64::MAX - 1;

impl Ledger {
    /// Decodes a shared-data value; an empty or damaged value is an empty ledger.
    pub fn decode(bytes: &[u8]) -> Ledger {
        let word = |i: usize| -> Option<u64> {
            let raw: [u8; 8] = bytes.get(i * 8..i * 8 + 8)?.try_into().ok()?;
            Some(u64::from_le_bytes(raw))
        };
        if bytes.len() < 16 || !bytes.len().is_multiple_of(16) {
            return Ledger::default();
        }
        let mut ledger = Ledger {
            confirmed: word(0).unwrap_or(0),
            unconfirmed: word(1).unwrap_or(0),
            ..Ledger::default()
        };
        for i in 1..bytes.len() / 16 {
            if let (Some(at), Some(amount)) = (word(2 * i), word(2 * i + 1)) {
                if at as i64 == FLAGS_RECORD {
                    ledger.soft_reported = amount & SOFT_REPORTED != 0;
                } else if at as i64 == ACKNOWLEDGED_RECORD {
                    ledger.acknowledged = amount;
                } else {
                    ledger.reservations.push((at as i64, amount));
                }
            }
        }
        ledger
    }

    /// The shared-data value.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 16 * self.reservations.len());
        out.extend_from_slice(&self.confirmed.to_le_bytes());
        out.extend_from_slice(&self.unconfirmed.to_le_bytes());
        for (at, amount) in &self.reservations {
            out.extend_from_slice(&(*at as u64).to_le_bytes());
            out.extend_from_slice(&amount.to_le_bytes());
        }
        if self.acknowledged > 0 {
            out.extend_from_slice(&(ACKNOWLEDGED_RECORD as u64).to_le_bytes());
            out.extend_from_slice(&self.acknowledged.to_le_bytes());
        }
        if self.soft_reported {
            out.extend_from_slice(&(FLAGS_RECORD as u64).to_le_bytes());
            out.extend_from_slice(&SOFT_REPORTED.to_le_bytes());
        }
        out
    }

    /// Spend counted so far: the cluster's total (never below what it acknowledged of this
    /// process's spend) plus what it has not acknowledged yet.
    pub fn spent(&self) -> u64 {
        self.confirmed
            .max(self.acknowledged)
            .saturating_add(self.unconfirmed)
    }

    /// Reservations still open at `now`.
    pub fn reserved(&self, now: i64) -> u64 {
        self.reservations
            .iter()
            .filter(|(at, _)| *at > now)
            .fold(0u64, |sum, (_, amount)| sum.saturating_add(*amount))
    }

    /// Everything a new request must fit beside.
    pub fn committed(&self, now: i64) -> u64 {
        self.spent().saturating_add(self.reserved(now))
    }

    /// Drops expired reservations.
    pub fn prune(&mut self, now: i64) {
        self.reservations
            .retain(|(at, amount)| *at > now && *amount > 0);
    }

    /// The expiry bucket of a reservation made at `now` that lives `ttl` seconds.
    pub fn expiry(now: i64, ttl: u64) -> i64 {
        let at = now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX / 2));
        at - at.rem_euclid(BUCKET_SECONDS) + BUCKET_SECONDS
    }

    /// Reserves `amount` until `expires_at`, unless the budget is already used up.
    /// Returns false (and changes nothing) when `committed >= limit`.
    pub fn try_reserve(&mut self, limit: u64, amount: u64, expires_at: i64, now: i64) -> bool {
        self.prune(now);
        if self.committed(now) >= limit {
            return false;
        }
        self.hold(amount, expires_at);
        true
    }

    /// Adds `amount` to the reservations expiring at `expires_at`, without checking any limit
    /// (moving a hold that was already admitted to a later expiry).
    pub fn hold(&mut self, amount: u64, expires_at: i64) {
        match self
            .reservations
            .iter_mut()
            .find(|(at, _)| *at == expires_at)
        {
            Some((_, held)) => *held = held.saturating_add(amount),
            None => self.reservations.push((expires_at, amount)),
        }
    }

    /// Releases a reservation made with [`Ledger::try_reserve`] (nothing if it already expired).
    pub fn release(&mut self, amount: u64, expires_at: i64, now: i64) {
        if let Some((_, held)) = self
            .reservations
            .iter_mut()
            .find(|(at, _)| *at == expires_at)
        {
            *held = held.saturating_sub(amount);
        }
        self.prune(now);
    }

    /// Counts `amount` at once as unconfirmed (a rate limit's requests), unless the counter
    /// has already reached `limit`. Returns false (and changes nothing) when it has.
    pub fn try_count(&mut self, limit: u64, amount: u64, now: i64) -> bool {
        self.prune(now);
        if self.committed(now) >= limit {
            return false;
        }
        self.unconfirmed = self.unconfirmed.saturating_add(amount);
        true
    }

    /// Takes back what [`Ledger::try_count`] counted.
    pub fn uncount(&mut self, amount: u64) {
        self.unconfirmed = self.unconfirmed.saturating_sub(amount);
    }

    /// Records a settled request's real cost as unconfirmed spend.
    pub fn record(&mut self, cost: u64) {
        self.unconfirmed = self.unconfirmed.saturating_add(cost);
    }

    /// True, once per window, when the spend counted here has reached `soft_limit`: the caller
    /// reports the threshold (and this ledger remembers that it was reported).
    pub fn reach_soft(&mut self, soft_limit: Option<u64>) -> bool {
        let reached = soft_limit.is_some_and(|soft| self.spent() >= soft);
        if reached && !self.soft_reported {
            self.soft_reported = true;
            return true;
        }
        false
    }

    /// The accounting cluster acknowledged `acknowledged` of our unconfirmed spend and reports
    /// `authoritative` for the window. Spend never decreases within a window, so an older
    /// report arriving late cannot lower it.
    /// The acknowledged spend stays counted even when no total (or a lower one) comes with it:
    /// the cluster's total includes it, so the larger of the two is the window's spend.
    pub fn confirm(&mut self, acknowledged: u64, authoritative: Option<u64>) {
        let moved = acknowledged.min(self.unconfirmed);
        self.unconfirmed -= moved;
        self.acknowledged = self.acknowledged.saturating_add(moved);
        if let Some(total) = authoritative {
            self.confirmed = self.confirmed.max(total);
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::core::compile;
    use crate::core::config::key_hash::{digest, to_hex};

    fn policy() -> Policy {
        let json = format!(
            r#"{{"version":"v1",
              "teams":[{{"team_id":"t1","team_alias":"search","max_budget":10,"budget_duration":"1mo"}}],
              "keys":[{{"key_hash":"{}","key_alias":"k","team_id":"t1","user_id":"u1","max_budget":1.5,"budget_duration":"1d"}},
                      {{"key_hash":"{}","team_id":"t1"}}],
              "users":[{{"user_id":"u1","max_budget":3}}],
              "end_users":[{{"user_id":"cust","max_budget":0.25,"budget_duration":"1h"}}]}}"#,
            to_hex(&digest("sk-k")),
            to_hex(&digest("sk-plain"))
        );
        compile(json.as_bytes()).unwrap()
    }

    #[test]
    fn every_applicable_budget_is_listed_with_its_window() {
        let policy = policy();
        let key = &policy.keys[0];
        let team = policy.team(0);
        let now = 1_795_000_000; // 2026-11-18T...
        let lines = applicable_budgets(&policy, (key, team), Some("cust"), None, now);
        let scopes: Vec<_> = lines.iter().map(|l| (l.scope, l.limit_nano)).collect();
        assert_eq!(
            scopes,
            vec![
                (Scope::Key, 1_500_000_000),
                (Scope::Team, 10_000_000_000),
                (Scope::User, 3_000_000_000),
                (Scope::EndUser, 250_000_000)
            ]
        );
        assert_eq!(lines[0].window_start % 86_400, 0);
        assert_eq!(lines[2].window_start, 0);
        assert_eq!(lines[2].window_end, None);
        assert_eq!(lines[1].budget_id(), "team:t1");
        assert_eq!(&*lines[1].label, "search");
        assert!(lines[0].ledger_key().starts_with("tollgate/budget/key:"));
        assert!(applicable_budgets(&policy, (key, team), Some("stranger"), None, now).len() == 3);
        let plain = &policy.keys[1];
        assert_eq!(
            applicable_budgets(&policy, (plain, None), None, None, now),
            vec![]
        );
    }

    #[test]
    fn ledger_round_trips_and_damage_reads_as_empty() {
        let ledger = Ledger {
            confirmed: 7,
            unconfirmed: 3,
            reservations: vec![(120, 5), (180, 9)],
            soft_reported: false,
            acknowledged: 0,
        };
        assert_eq!(Ledger::decode(&ledger.encode()), ledger);
        let reported = Ledger {
            soft_reported: true,
            ..ledger.clone()
        };
        assert_eq!(reported.encode().len(), ledger.encode().len() + 16);
        assert_eq!(Ledger::decode(&reported.encode()), reported);
        let acknowledged = Ledger {
            acknowledged: 11,
            ..reported.clone()
        };
        assert_eq!(Ledger::decode(&acknowledged.encode()), acknowledged);
        assert_eq!(Ledger::decode(b""), Ledger::default());
        assert_eq!(Ledger::decode(&[1, 2, 3]), Ledger::default());
    }

    #[test]
    fn a_nearly_spent_budget_admits_one_request_then_refuses() {
        let mut ledger = Ledger {
            confirmed: 90,
            ..Ledger::default()
        };
        let expiry = Ledger::expiry(1000, 900);
        assert!(ledger.try_reserve(100, 50, expiry, 1000));
        assert_eq!(ledger.committed(1000), 140);
        assert!(!ledger.try_reserve(100, 1, expiry, 1000), "fully reserved");
        ledger.release(50, expiry, 1001);
        ledger.record(4);
        assert_eq!(ledger.committed(1001), 94);
        assert!(ledger.try_reserve(100, 1, expiry, 1001));
    }

    #[test]
    fn reservations_that_never_settle_expire() {
        let mut ledger = Ledger::default();
        let expiry = Ledger::expiry(1000, 900);
        assert!((1900..=1960).contains(&expiry) && expiry % 60 == 0);
        assert!(ledger.try_reserve(10, 10, expiry, 1000));
        assert!(!ledger.try_reserve(10, 1, expiry, 1500));
        assert!(ledger.try_reserve(10, 1, Ledger::expiry(expiry, 900), expiry));
        assert_eq!(ledger.reservations.len(), 1);
        ledger.release(10, expiry, expiry + 1);
        assert_eq!(ledger.reserved(expiry + 1), 1);
    }

    #[test]
    fn a_soft_budget_is_reported_once_per_window() {
        let mut ledger = Ledger::default();
        ledger.record(40);
        assert!(!ledger.reach_soft(Some(50)));
        assert!(!ledger.reach_soft(None));
        ledger.record(10);
        assert!(
            ledger.reach_soft(Some(50)),
            "reached at exactly the threshold"
        );
        ledger.record(10);
        assert!(!ledger.reach_soft(Some(50)), "once");
        let mut decoded = Ledger::decode(&ledger.encode());
        assert!(
            !decoded.reach_soft(Some(50)),
            "the flag survives the shared-data value"
        );
    }

    #[test]
    fn confirmation_moves_spend_and_never_lowers_it() {
        let mut ledger = Ledger::default();
        ledger.record(30);
        ledger.confirm(30, Some(130));
        assert_eq!((ledger.confirmed, ledger.unconfirmed), (130, 0));
        ledger.confirm(0, Some(100));
        assert_eq!(ledger.confirmed, 130);
        ledger.confirm(5, None);
        assert_eq!(ledger.unconfirmed, 0);
    }

    #[test]
    fn refusal_reports_spend_and_reservations() {
        let policy = policy();
        let lines = applicable_budgets(&policy, (&policy.keys[0], policy.team(0)), None, None, 0);
        let ledger = Ledger {
            confirmed: 1_000_000_000,
            unconfirmed: 600_000_000,
            reservations: vec![(60, 5)],
            soft_reported: false,
            acknowledged: 0,
        };
        match lines[0].refusal(&ledger, 0) {
            Denial::BudgetExceeded {
                scope,
                name,
                spend_nano,
                reserved_nano,
                resets_at,
                ..
            } => {
                assert_eq!((scope, name.as_str()), ("key", "k"));
                assert_eq!((spend_nano, reserved_nano), (1_600_000_000, 5));
                assert_eq!(resets_at.as_deref(), Some("1970-01-02T00:00:00Z"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn acknowledged_spend_stays_counted_whatever_total_comes_with_it() {
        let mut ledger = Ledger::default();
        ledger.record(100);
        // Acknowledged without a total (or with a lower one): still spent.
        ledger.confirm(100, None);
        assert_eq!((ledger.unconfirmed, ledger.spent()), (0, 100));
        ledger.record(50);
        ledger.confirm(50, Some(10));
        assert_eq!(ledger.spent(), 150);
        // The cluster's total includes this process's spend: not counted twice.
        ledger.confirm(0, Some(400));
        assert_eq!(ledger.spent(), 400);
        // An acknowledgement beyond what is unconfirmed moves only what there is.
        ledger.record(5);
        ledger.confirm(1_000, None);
        assert_eq!((ledger.unconfirmed, ledger.acknowledged), (0, 155));
    }
}
