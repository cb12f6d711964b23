//! Which deployments a budgeted key could never call for want of a price (what `tollgate
//! validate` and `build-config` warn about); a compile-time check, never run per request.

use crate::core::config::config::UnpricedMode;
use crate::core::config::index::{Deployment, Policy};
use crate::core::money::cost::{rates_for, PriceSource, ServiceTier};

/// Deployments (by index in `model_list`) that budgeted keys could not call because no price
/// is known for them: the policy has a budget, refuses unpriced models (`unpriced_models.mode:
/// deny`), and the deployment (not a wildcard, which is priced per request) has neither its own
/// prices nor a cost-map entry for its model or `base_model`. Tools warn about each.
pub fn unpriced_under_budget(policy: &Policy) -> Vec<(usize, &Deployment)> {
    if !policy.enforces_budgets || policy.spending.unpriced != UnpricedMode::Deny {
        return Vec::new();
    }
    policy
        .deployments
        .iter()
        .enumerate()
        .filter(|(_, d)| d.pattern.is_none())
        .filter(|(_, d)| {
            let (_, source) = rates_for(policy, d, &d.upstream_model, 0, ServiceTier::Standard);
            source == PriceSource::Unpriced
        })
        .collect()
}
