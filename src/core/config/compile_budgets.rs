//! Compiling budgets: `max_budget`, `soft_budget`, their windows, and per-model budgets
//! (`model_max_budget`), each named once per version for ledgers, events and messages.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Compiler, MAX_BUDGET_USD};
use crate::core::config::config::ModelBudgetConfig;
use crate::core::config::index::{Budget, ModelBudgets, Policy};
use crate::core::config::pattern::Pattern;
use crate::core::config::time::{default_anchor, parse_budget_window, parse_rfc3339, BudgetWindow};
use crate::core::money::budget::Scope;

/// Most per-model budgets one key or team may have.
const MAX_MODEL_BUDGETS: usize = 256;
/// Longest name a per-model budget may be written under.
const MAX_MODEL_BUDGET_NAME_BYTES: usize = 256;

/// What a holder's config says about one budget.
#[derive(Debug, Clone, Copy)]
pub(super) struct BudgetSpec<'a> {
    /// `max_budget` (USD): refuses once reached.
    pub max_usd: Option<f64>,
    /// `soft_budget` (USD): one threshold event per window once reached.
    pub soft_usd: Option<f64>,
    /// `budget_duration`.
    pub duration: Option<&'a str>,
    /// `budget_reset_at`.
    pub reset_at: Option<&'a str>,
    /// How the limit and window fields are spelled where this budget is written.
    pub fields: [&'static str; 2],
}

/// The field names of a key's, team's or user's budget.
pub(super) const HOLDER_FIELDS: [&str; 2] = ["max_budget", "budget_duration"];
/// The field names of a `model_max_budget` entry (LiteLLM's `BudgetConfig`).
const MODEL_FIELDS: [&str; 2] = ["budget_limit", "time_period"];

/// Who holds a budget: scope, id (key hash in hex, team id, user id) and a name for messages.
pub(super) type Holder<'a> = (Scope, &'a str, &'a str);

impl Compiler {
    /// The budget of `holder`, or `None` when it has neither `max_budget` nor `soft_budget`.
    pub(super) fn budget(
        &mut self,
        path: &str,
        spec: BudgetSpec<'_>,
        (scope, id, label): Holder<'_>,
    ) -> Option<Budget> {
        self.named_budget(path, spec, format!("{}:{id}", scope.name()), label, None)
    }

    fn named_budget(
        &mut self,
        path: &str,
        spec: BudgetSpec<'_>,
        id: String,
        label: &str,
        model: Option<&str>,
    ) -> Option<Budget> {
        let (window, anchor) = self.window(path, spec);
        let [max_field, window_field] = spec.fields;
        let max = self.usd(&format!("{path}.{max_field}"), spec.max_usd);
        let soft = self.usd(&format!("{path}.soft_budget"), spec.soft_usd);
        if max.is_none() && soft.is_none() {
            if spec.duration.is_some() && spec.max_usd.is_none() && spec.soft_usd.is_none() {
                self.error(
                    &format!("{path}.{window_field}"),
                    format!("a budget window needs {max_field} or soft_budget"),
                );
            }
            return None;
        }
        if let (Some(max), Some(soft)) = (max, soft) {
            if soft >= max {
                self.warn(
                    &format!("{path}.soft_budget"),
                    format!(
                        "{soft} is not below {max_field} {max}: the budget refuses before its \
                         soft threshold could be reported"
                    ),
                );
            }
        }
        let nano = |usd: f64| (usd * 1e9).round() as u64;
        Some(Budget {
            id: id.into(),
            label: label.into(),
            max_usd: max.unwrap_or(f64::INFINITY),
            limit_nano: max.map_or(u64::MAX, nano),
            window,
            anchor,
            enforced: max.is_some(),
            soft_limit_nano: soft.map(nano),
            model: model.map(Arc::from),
        })
    }

    /// A USD amount from 0 to [`MAX_BUDGET_USD`].
    fn usd(&mut self, path: &str, value: Option<f64>) -> Option<f64> {
        let value = value?;
        if value.is_finite() && (0.0..=MAX_BUDGET_USD).contains(&value) {
            return Some(value);
        }
        self.error(
            path,
            format!("must be a finite number of USD from 0 to {MAX_BUDGET_USD:e}, found {value}"),
        );
        None
    }

    /// The window and its anchor: local midnight in `settings.budget_timezone` (of a Monday for
    /// weeks) unless `budget_reset_at` says otherwise.
    fn window(&mut self, path: &str, spec: BudgetSpec<'_>) -> (Option<BudgetWindow>, i64) {
        let window = match spec.duration {
            None => None,
            Some(text) => match parse_budget_window(text) {
                Ok(window) => Some(window),
                Err(message) => {
                    self.error(&format!("{path}.{}", spec.fields[1]), message);
                    None
                }
            },
        };
        let anchor = match spec.reset_at {
            None => default_anchor(window, &self.zone),
            Some(_) if spec.duration.is_none() => {
                self.error(
                    &format!("{path}.budget_reset_at"),
                    format!("a window boundary needs {}", spec.fields[1]),
                );
                0
            }
            Some(text) => parse_rfc3339(text).unwrap_or_else(|message| {
                self.error(&format!("{path}.budget_reset_at"), message);
                0
            }),
        };
        (window, anchor)
    }

    /// A key's or team's `model_max_budget`, indexed: exact names, access groups (as this
    /// version defines them) and wildcards, most specific first.
    pub(super) fn model_budgets(
        &mut self,
        policy: &Policy,
        path: &str,
        entries: &BTreeMap<String, ModelBudgetConfig>,
        (scope, id, label): Holder<'_>,
    ) -> ModelBudgets {
        let mut out = ModelBudgets::default();
        if entries.len() > MAX_MODEL_BUDGETS {
            self.error(
                &format!("{path}.model_max_budget"),
                format!(
                    "has {} entries; at most {MAX_MODEL_BUDGETS} are accepted",
                    entries.len()
                ),
            );
            return out;
        }
        for (name, entry) in entries {
            let at = format!("{path}.model_max_budget.{name}");
            if name.is_empty() || name.len() > MAX_MODEL_BUDGET_NAME_BYTES {
                self.error(
                    &format!("{path}.model_max_budget"),
                    format!("a model name must be 1 to {MAX_MODEL_BUDGET_NAME_BYTES} bytes"),
                );
                continue;
            }
            let spec = BudgetSpec {
                max_usd: Some(entry.budget_limit),
                soft_usd: None,
                duration: entry.time_period.as_deref(),
                reset_at: entry.budget_reset_at.as_deref(),
                fields: MODEL_FIELDS,
            };
            let budget_id = format!("{}:{id}:model:{name}", scope.name());
            let Some(budget) = self.named_budget(&at, spec, budget_id, label, Some(name)) else {
                continue;
            };
            if let Some(group) = policy.group_id(name) {
                out.groups.push((group, budget));
            } else if let Some(pattern) = Pattern::parse(name) {
                out.patterns.push((pattern, budget));
            } else {
                out.exact.insert(name.clone(), budget);
            }
        }
        out.patterns
            .sort_by_key(|(pattern, _)| std::cmp::Reverse(pattern.specificity()));
        out
    }
}
