//! Compiling rate limits: `rpm_limit`, `tpm_limit`, `rpd_limit`, `tpd_limit`,
//! `max_parallel_requests`, and the per-model `model_rpm_limit` / `model_tpm_limit` of keys and
//! teams, each named once per version for ledger keys and messages.

use std::collections::BTreeMap;

use hashbrown::HashMap;

use super::Compiler;
use crate::core::limits::rules::{ModelLimits, RateLimits};

/// Most per-model limits one key or team may have.
const MAX_MODEL_LIMITS: usize = 256;
/// Longest model name a per-model limit may be written under.
const MAX_MODEL_LIMIT_NAME_BYTES: usize = 256;

/// What a holder's config says about its rate limits.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct LimitSpec {
    /// `rpm_limit`.
    pub rpm: Option<u64>,
    /// `tpm_limit`.
    pub tpm: Option<u64>,
    /// `rpd_limit`.
    pub rpd: Option<u64>,
    /// `tpd_limit`.
    pub tpd: Option<u64>,
    /// `max_parallel_requests`.
    pub parallel: Option<u64>,
}

impl Compiler {
    /// The limits of the holder named `id` (`scope:id`), `None` when it sets none.
    pub(super) fn rate_limits(
        &mut self,
        spec: LimitSpec,
        id: &str,
        label: &str,
    ) -> Option<RateLimits> {
        let limits = RateLimits {
            id: id.into(),
            label: label.into(),
            model: None,
            rpm: spec.rpm,
            tpm: spec.tpm,
            rpd: spec.rpd,
            tpd: spec.tpd,
            parallel: spec.parallel,
        };
        (!limits.is_empty()).then_some(limits)
    }

    /// A key's or team's per-model limits, from `model_rpm_limit` and `model_tpm_limit`. An
    /// entry no request can name or reach (`known` says which names can be: a served model, with
    /// or without its provider prefix, or an alias the holder's requests may use) is warned about:
    /// it would never count.
    pub(super) fn model_limits(
        &mut self,
        path: &str,
        (rpm, tpm): (&BTreeMap<String, u64>, &BTreeMap<String, u64>),
        (id, label): (&str, &str),
        known: &dyn Fn(&str) -> bool,
    ) -> ModelLimits {
        let mut exact: HashMap<String, RateLimits> = HashMap::new();
        for (field, table) in [("model_rpm_limit", rpm), ("model_tpm_limit", tpm)] {
            if table.len() > MAX_MODEL_LIMITS {
                self.error(
                    &format!("{path}.{field}"),
                    format!("at most {MAX_MODEL_LIMITS} models, found {}", table.len()),
                );
                continue;
            }
            for (model, &limit) in table {
                if model.is_empty() || model.len() > MAX_MODEL_LIMIT_NAME_BYTES {
                    self.error(
                        &format!("{path}.{field}"),
                        format!(
                            "model names must be 1 to {MAX_MODEL_LIMIT_NAME_BYTES} bytes, found \
                             {} bytes",
                            model.len()
                        ),
                    );
                    continue;
                }
                let bare = model.split_once('/').map(|(_, rest)| rest);
                if !known(model) && !bare.is_some_and(known) {
                    self.warn(
                        &format!("{path}.{field}.{model}"),
                        "no request can name or reach this model (no deployment serves it and \
                         it is no alias): this limit never counts"
                            .into(),
                    );
                }
                let entry = exact.entry(model.clone()).or_insert_with(|| RateLimits {
                    id: format!("{id}:model:{model}").into(),
                    label: label.into(),
                    model: Some(model.as_str().into()),
                    ..RateLimits::default()
                });
                if field == "model_rpm_limit" {
                    entry.rpm = Some(limit);
                } else {
                    entry.tpm = Some(limit);
                }
            }
        }
        ModelLimits { exact }
    }
}
