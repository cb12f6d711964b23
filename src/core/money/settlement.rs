//! From an admitted request to its spend event: what the response side keeps, and how a
//! finished request is priced, settled on its budgets, and described for the accounting cluster.

use std::borrow::Cow;

use crate::core::admission::decide::{Admission, MeteringPlan};
use crate::core::config::index::{DeploymentId, KeyId, Policy, VirtualKey};
use crate::core::config::key_hash::to_hex;
use crate::core::limits::hold::{
    counted_tokens, settle_limits, LimitHold, LimitsSettled, RateView,
};
use crate::core::metering::response_meter::Metered;
use crate::core::money::budget::BudgetLine;
use crate::core::money::charge::{charge, has_unpriced_tool_calls};
use crate::core::money::cost::Cost;
use crate::core::money::reservation::{settle, LedgerStore, Reservation};
use crate::core::spend::accounting_api::MAX_EVENT_COST_NANO;
use crate::core::spend::event::{BudgetRef, EventMetadata, SpendData, UsageData};
use crate::core::spend::threshold::ThresholdData;

/// What an admitted request carries until its response ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// The key.
    pub key_id: KeyId,
    /// The deployment that serves it.
    pub deployment: DeploymentId,
    /// The model the client asked for.
    pub requested_model: String,
    /// The model after aliases.
    pub resolved_model: String,
    /// The model the provider sees.
    pub upstream_model: String,
    /// How to meter the response.
    pub plan: MeteringPlan,
    /// The budget hold.
    pub reservation: Reservation,
    /// The rate-limit hold.
    pub limits: LimitHold,
    /// What the request saw of its tightest rate limits (the `x-ratelimit-*` answer headers).
    pub rate_view: RateView,
}

impl Settlement {
    /// Keeps what the response side needs from an admission (`None` if the deployment is not
    /// this policy's).
    pub fn new(
        policy: &Policy,
        key_id: KeyId,
        requested_model: String,
        admission: Admission<'_>,
    ) -> Option<Settlement> {
        let deployment = policy
            .deployments
            .iter()
            .position(|d| std::ptr::eq(d, admission.deployment))?;
        Some(Settlement {
            key_id,
            deployment: DeploymentId::try_from(deployment).ok()?,
            requested_model,
            resolved_model: admission.resolved_model,
            upstream_model: admission.upstream_model,
            plan: admission.metering,
            reservation: admission.reservation,
            limits: admission.limits,
            rate_view: admission.rate_view,
        })
    }

    /// Ends the request's rate-limit hold: its slot in flight is freed and its token
    /// reservation replaced by `usage` (the reservation itself when the request is charged its
    /// worst case).
    pub fn settle_limits(
        &self,
        policy: &Policy,
        ledgers: &dyn LedgerStore,
        usage: Option<(&Metered, u64)>,
        now: i64,
    ) -> LimitsSettled {
        if self.limits.is_empty() {
            return LimitsSettled {
                ok: true,
                counted: Vec::new(),
            };
        }
        let used = match usage {
            None => 0,
            Some((metered, reserved_tokens)) => {
                let seen = counted_tokens(
                    policy.token_count,
                    metered.usage.prompt_tokens,
                    metered.usage.completion_tokens,
                );
                if metered.charge_reserved.is_some() {
                    seen.max(reserved_tokens)
                } else {
                    seen
                }
            }
        };
        settle_limits(ledgers, &policy.budget_zone, &self.limits, used, now)
    }

    /// Prices the finished request, settles its budget hold to the real cost, and returns the
    /// spend event's data. `ledger_ok` is false when a ledger could not be written.
    pub fn finish(
        &self,
        policy: &Policy,
        metered: &Metered,
        ledgers: &dyn LedgerStore,
        now: i64,
    ) -> Finished {
        let key = policy.keys.get(self.key_id as usize);
        let deployment = policy.deployment(self.deployment);
        let cost = match deployment {
            Some(d) => charge(
                policy,
                d,
                &self.upstream_model,
                &metered.usage,
                self.plan.service_tier,
            ),
            None => Cost {
                nano_usd: 0,
                source: crate::core::money::cost::PriceSource::Unpriced,
            },
        };
        // An answer the filter could not read, or one the request did not wait for, costs what
        // was reserved for it (the uncapped worst case, within what one event may carry), never
        // less.
        let cost = if metered.charge_reserved.is_some() {
            let reserved = self.reservation.amount.min(MAX_EVENT_COST_NANO);
            Cost {
                nano_usd: cost.nano_usd.max(reserved),
                ..cost
            }
        } else {
            cost
        };
        let unpriced_tool_calls = deployment.is_some_and(|d| {
            has_unpriced_tool_calls(
                policy,
                d,
                &self.upstream_model,
                &metered.usage,
                self.plan.service_tier,
            )
        });
        let settled = settle(ledgers, &self.reservation, cost.nano_usd, now);
        let limits = self.settle_limits(policy, ledgers, Some((metered, self.limits.tokens)), now);
        let limits_ok = limits.ok;
        let (limit_refs, limit_counts): (Vec<_>, Vec<_>) = limits
            .counted
            .into_iter()
            .map(|c| {
                let count = c.limit.count;
                (c.limit, (c.ledger_key, count))
            })
            .unzip();
        let soft_reached = settled
            .soft_reached
            .iter()
            .filter_map(|(i, spent)| {
                let line = self.reservation.lines.get(*i)?;
                Some(threshold_data(policy, line, *spent))
            })
            .collect();
        let usage = metered.usage;
        let data = SpendData {
            policy_version: policy.version.clone(),
            key_hash: key.map(|k| to_hex(&k.digest)).unwrap_or_default(),
            key_alias: key.and_then(|k| k.alias.clone()),
            team_id: key
                .and_then(|k| k.team)
                .and_then(|t| policy.team(t))
                .map(|t| t.id.clone()),
            user_id: key.and_then(|k| k.user_id.clone()),
            end_user: self.plan.end_user.clone(),
            endpoint: Cow::Borrowed(self.plan.endpoint.name()),
            requested_model: self.requested_model.clone(),
            resolved_model: self.resolved_model.clone(),
            deployment: deployment.map(|d| d.id.clone()).unwrap_or_default(),
            provider: deployment.map(|d| d.provider.clone()).unwrap_or_default(),
            upstream_model: self.upstream_model.clone(),
            stream: self.plan.stream,
            usage: UsageData {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                cached_tokens: usage.cached_tokens,
                cache_creation_tokens: usage.cache_creation_tokens,
                reasoning_tokens: usage.reasoning_tokens,
                estimated: metered.estimated || unpriced_tool_calls,
            },
            cost_nano_usd: cost.nano_usd,
            cost_source: Cow::Borrowed(cost.source.name()),
            status: Cow::Borrowed(metered.status.name()),
            http_status: metered.http_status,
            budgets: self.reservation.lines.iter().map(budget_ref).collect(),
            limits: limit_refs,
            tags: self.plan.tags.clone(),
            metadata: event_metadata(policy, key),
        };
        Finished {
            data,
            cost,
            ledger_keys: self
                .reservation
                .lines
                .iter()
                .map(|line| line.ledger_key().to_string())
                .collect(),
            ledger_ok: settled.ledger_ok && limits_ok,
            limit_counts,
            unpriced_tool_calls,
            soft_reached,
        }
    }
}

/// The threshold event's data for `line`, whose soft budget was found reached at `spent`.
fn threshold_data(policy: &Policy, line: &BudgetLine, spent: u64) -> ThresholdData {
    ThresholdData {
        policy_version: policy.version.clone(),
        threshold: Cow::Borrowed("soft_budget"),
        budget: line.budget_id().to_string(),
        scope: Cow::Borrowed(line.scope.name()),
        holder: line.label.to_string(),
        model: line.model.as_deref().map(str::to_string),
        window_start: line.window_start,
        window_end: line.window_end,
        threshold_nano_usd: line.soft_limit_nano.unwrap_or(0),
        limit_nano_usd: line.enforced.then_some(line.limit_nano),
        spend_nano_usd: spent,
    }
}

/// A finished, settled request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The spend event's data.
    pub data: SpendData,
    /// What it cost.
    pub cost: Cost,
    /// Ledger keys of its budget windows.
    pub ledger_keys: Vec<String>,
    /// What it counted on each rate-limit window, by ledger key.
    pub limit_counts: Vec<(String, u64)>,
    /// False when a ledger could not be written.
    pub ledger_ok: bool,
    /// The answer reports server-side tool calls (web searches) without a known price: the
    /// cost leaves them out and the event is flagged estimated.
    pub unpriced_tool_calls: bool,
    /// Soft budgets this request found reached (first in this process and window): each is
    /// reported with a threshold event.
    pub soft_reached: Vec<ThresholdData>,
}

fn budget_ref(line: &BudgetLine) -> BudgetRef {
    BudgetRef {
        budget: line.budget_id().to_string(),
        window_start: line.window_start,
        window_end: line.window_end,
        max_nano_usd: line.enforced.then_some(line.limit_nano),
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::core::admission::decide::{decide_body, decide_head, HeadOutcome, Surroundings};
    use crate::core::admission::request::{Endpoint, RequestHead};
    use crate::core::compile;
    use crate::core::config::key_hash::digest;
    use crate::core::metering::response_meter::{EarlyEnd, ResponseMeter};
    use crate::core::money::reservation::MemoryLedgers;
    use hashbrown::HashMap;

    #[test]
    fn a_request_is_priced_settled_and_described() {
        let json = format!(
            r#"{{"version":"v9",
              "cost_map":{{"claude-sonnet-4-6":{{"litellm_provider":"anthropic","input_cost_per_token":3e-06,
                 "output_cost_per_token":1.5e-05,"cache_read_input_token_cost":3e-07,"max_output_tokens":64000}}}},
              "model_list":[{{"model_name":"anthropic/*","litellm_params":{{"model":"anthropic/*"}},"cluster":"a"}}],
              "teams":[{{"team_id":"t","max_budget":100,"budget_duration":"1d"}}],
              "keys":[{{"key_hash":"{}","key_alias":"k","team_id":"t","user_id":"u"}}]}}"#,
            to_hex(&digest("sk-k"))
        );
        let policy = compile(json.as_bytes()).unwrap();
        let head = RequestHead {
            method: "POST",
            path: "/v1/messages",
            x_api_key: Some("sk-k"),
            ..RequestHead::default()
        };
        let HeadOutcome::ReadBody(ticket) = decide_head(Some(&policy), &head, 0) else {
            panic!("not admitted")
        };
        let ledgers = MemoryLedgers::default();
        let none: HashMap<String, String> = HashMap::new();
        let around = Surroundings {
            credentials: &none,
            ledgers: &ledgers,
            random: 0,
            now: 100,
        };
        let body = br#"{"model":"claude-sonnet-4-6","max_tokens":100,"stream":true}"#;
        let verdict = decide_body(&policy, &ticket, body, &around).unwrap();
        let requested = verdict.trace.requested.clone().unwrap();
        let admission = verdict.outcome.unwrap();
        let settlement = Settlement::new(&policy, ticket.key_id, requested, admission).unwrap();
        let key = settlement.reservation.lines[0].ledger_key().to_string();
        assert!(ledgers.0.borrow()[&key].reserved(100) > 0);

        let mut meter = ResponseMeter::new(Endpoint::Messages, 200, Some("text/event-stream"));
        meter.feed(
            concat!(
                "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":",
                "{\"input_tokens\":100,\"cache_read_input_tokens\":1000,\"output_tokens\":1}}}\n\n",
                "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":50}}\n\n",
                "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
            )
            .as_bytes(),
            true,
        );
        let metered = meter.finish(settlement.plan.prompt_estimate, EarlyEnd::Upstream);
        let finished = settlement.finish(&policy, &metered, &ledgers, 101);
        // 100 × 3e-6 + 1000 × 3e-7 + 50 × 1.5e-5 = 0.0003 + 0.0003 + 0.00075 USD
        assert_eq!(finished.cost.nano_usd, 1_350_000);
        assert!(finished.ledger_ok);
        let ledger = ledgers.0.borrow()[&key].clone();
        assert_eq!((ledger.unconfirmed, ledger.reserved(101)), (1_350_000, 0));
        let data = finished.data;
        assert_eq!(data.status, "ok");
        assert_eq!(data.usage.prompt_tokens, 1100);
        assert_eq!(data.usage.cached_tokens, 1000);
        assert_eq!(
            (data.team_id.as_deref(), data.user_id.as_deref()),
            (Some("t"), Some("u"))
        );
        assert_eq!(data.provider, "anthropic");
        assert_eq!(data.cost_source, "cost_map");
        assert_eq!(data.budgets[0].budget, "team:t");
        assert_eq!(data.budgets[0].window_end, Some(86_400));
        assert_eq!(finished.ledger_keys, vec![key]);
    }

    #[test]
    fn a_request_the_client_left_is_charged_its_uncapped_worst_case() {
        // A $0.01 budget; the request's worst case is 100 000 output tokens at $1.5e-5 = $1.5,
        // held on the ledger as the budget's limit only.
        let json = format!(
            r#"{{"version":"v9",
              "cost_map":{{"claude-sonnet-4-6":{{"litellm_provider":"anthropic","input_cost_per_token":3e-06,
                 "output_cost_per_token":1.5e-05,"max_output_tokens":128000}}}},
              "model_list":[{{"model_name":"anthropic/*","litellm_params":{{"model":"anthropic/*"}},"cluster":"a"}}],
              "keys":[{{"key_hash":"{}","key_alias":"k","max_budget":0.01,"budget_duration":"1d"}}]}}"#,
            to_hex(&digest("sk-k"))
        );
        let policy = compile(json.as_bytes()).unwrap();
        let head = RequestHead {
            method: "POST",
            path: "/v1/messages",
            x_api_key: Some("sk-k"),
            ..RequestHead::default()
        };
        let HeadOutcome::ReadBody(ticket) = decide_head(Some(&policy), &head, 0) else {
            panic!("not admitted")
        };
        let ledgers = MemoryLedgers::default();
        let none: HashMap<String, String> = HashMap::new();
        let around = Surroundings {
            credentials: &none,
            ledgers: &ledgers,
            random: 0,
            now: 100,
        };
        let body = br#"{"model":"claude-sonnet-4-6","max_tokens":100000}"#;
        let verdict = decide_body(&policy, &ticket, body, &around).unwrap();
        let requested = verdict.trace.requested.clone().unwrap();
        let admission = verdict.outcome.unwrap();
        let settlement = Settlement::new(&policy, ticket.key_id, requested, admission).unwrap();
        let worst = settlement.reservation.amount;
        assert_eq!(worst, 13 * 3_000 + 1_500_000_000, "uncapped");
        let key = settlement.reservation.lines[0].ledger_key().to_string();
        assert_eq!(
            ledgers.0.borrow()[&key].reserved(100),
            10_000_000,
            "held: the limit"
        );

        // The client closes the connection before the answer's headers arrive.
        let meter = ResponseMeter::new(Endpoint::Messages, 0, None);
        let metered = meter.finish(settlement.plan.prompt_estimate, EarlyEnd::Client);
        let finished = settlement.finish(&policy, &metered, &ledgers, 101);
        assert_eq!(finished.cost.nano_usd, worst);
        assert!(finished.data.usage.estimated);
        assert_eq!(finished.data.status, "client_disconnect");
        let ledger = ledgers.0.borrow()[&key].clone();
        assert_eq!((ledger.unconfirmed, ledger.reserved(101)), (worst, 0));

        // The same request cut by an upstream connect failure costs only its prompt.
        let metered = meter.finish(settlement.plan.prompt_estimate, EarlyEnd::Upstream);
        let finished = settlement.finish(&policy, &metered, &ledgers, 102);
        assert_eq!(finished.cost.nano_usd, 13 * 3_000);
    }
}

#[cfg(test)]
mod soft_and_model_budget_tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::core::admission::decide::{decide_body, decide_head, HeadOutcome, Surroundings};
    use crate::core::admission::denial::Denial;
    use crate::core::admission::request::{Endpoint, RequestHead};
    use crate::core::compile;
    use crate::core::config::key_hash::digest;
    use crate::core::metering::response_meter::{EarlyEnd, ResponseMeter};
    use crate::core::money::reservation::MemoryLedgers;
    use hashbrown::HashMap;

    /// One Messages request for `model` that reports 1000 output tokens at $1e-6 ($0.001).
    fn call(policy: &Policy, ledgers: &MemoryLedgers, model: &str) -> Result<Finished, Denial> {
        let head = RequestHead {
            method: "POST",
            path: "/v1/messages",
            x_api_key: Some("sk-k"),
            ..RequestHead::default()
        };
        let HeadOutcome::ReadBody(ticket) = decide_head(Some(policy), &head, 0) else {
            panic!("not admitted")
        };
        let none: HashMap<String, String> = HashMap::new();
        let around = Surroundings {
            credentials: &none,
            ledgers,
            random: 0,
            now: 100,
        };
        let body = format!(r#"{{"model":"{model}","max_tokens":1000}}"#);
        let verdict = decide_body(policy, &ticket, body.as_bytes(), &around);
        let verdict = verdict.ok_or(Denial::UnknownEndpoint)?;
        let requested = verdict.trace.requested.clone().unwrap();
        let admission = verdict.outcome?;
        let settlement = Settlement::new(policy, ticket.key_id, requested, admission).unwrap();
        let mut meter = ResponseMeter::new(Endpoint::Messages, 200, Some("application/json"));
        meter.feed(
            br#"{"type":"message","usage":{"input_tokens":0,"output_tokens":1000}}"#,
            true,
        );
        let metered = meter.finish(settlement.plan.prompt_estimate, EarlyEnd::Upstream);
        Ok(settlement.finish(policy, &metered, ledgers, 101))
    }

    fn policy(key_budgets: &str) -> Policy {
        let json = format!(
            r#"{{"version":"v1",
              "cost_map":{{
                "claude-sonnet-4-6":{{"litellm_provider":"anthropic","input_cost_per_token":1e-06,"output_cost_per_token":1e-06}},
                "claude-haiku-4-5":{{"litellm_provider":"anthropic","input_cost_per_token":1e-06,"output_cost_per_token":1e-06}}}},
              "model_list":[{{"model_name":"anthropic/*","litellm_params":{{"model":"anthropic/*"}},"cluster":"a"}}],
              "model_group_alias":{{"fast":"claude-sonnet-4-6"}},
              "keys":[{{"key_hash":"{}","key_alias":"k",{key_budgets}}}]}}"#,
            to_hex(&digest("sk-k"))
        );
        compile(json.as_bytes()).unwrap()
    }

    #[test]
    fn a_soft_budget_is_reported_once_and_never_refuses() {
        // $0.0025 soft: the third $0.001 request reaches it; none is refused.
        let policy = policy(r#""soft_budget":0.0025,"budget_duration":"1d""#);
        let ledgers = MemoryLedgers::default();
        let mut reported = Vec::new();
        for _ in 0..5 {
            let finished = call(&policy, &ledgers, "claude-sonnet-4-6").unwrap();
            reported.push(finished.soft_reached.len());
            if let Some(data) = finished.soft_reached.first() {
                assert_eq!(data.threshold_nano_usd, 2_500_000);
                assert_eq!(data.spend_nano_usd, 3_000_000);
                assert_eq!(data.limit_nano_usd, None);
                assert_eq!((data.window_start, data.window_end), (0, Some(86_400)));
                assert_eq!(data.holder, "k");
            }
        }
        assert_eq!(reported, [0, 0, 1, 0, 0]);
    }

    #[test]
    fn a_per_model_budget_counts_what_an_alias_reaches() {
        let policy = policy(
            r#""model_max_budget":{"claude-sonnet-4-6":{"budget_limit":0.002,"time_period":"1d"}}"#,
        );
        let ledgers = MemoryLedgers::default();
        call(&policy, &ledgers, "claude-sonnet-4-6").unwrap();
        // The alias reaches the budgeted model: it counts, and the third call is refused.
        call(&policy, &ledgers, "fast").unwrap();
        match call(&policy, &ledgers, "fast") {
            Err(Denial::BudgetExceeded { model, scope, .. }) => {
                assert_eq!(
                    (scope, model.as_deref()),
                    ("key", Some("claude-sonnet-4-6"))
                );
            }
            other => panic!("{other:?}"),
        }
        // Another model has no per-model budget.
        let other = call(&policy, &ledgers, "claude-haiku-4-5").unwrap();
        assert!(other.data.budgets.is_empty());
        assert!(call(&policy, &ledgers, "anthropic/claude-sonnet-4-6").is_err());
    }
}

/// The metadata configured on `key` and its team, for its spend event.
fn event_metadata(policy: &Policy, key: Option<&VirtualKey>) -> EventMetadata {
    let Some(key) = key else {
        return EventMetadata::default();
    };
    let team = key.team.and_then(|t| policy.team(t));
    EventMetadata {
        key: key.attribution.metadata.clone(),
        team: team
            .map(|t| t.attribution.metadata.clone())
            .unwrap_or_default(),
    }
}
