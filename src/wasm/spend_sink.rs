//! The VM's spend senders: the core's [`SpendSenders`], one set per VM (shared by its root
//! contexts, so a replaced version's unsent events are not lost, and two plugin configs in one
//! VM never send each other's events), sending with `dispatch_http_call`.

use std::cell::RefCell;
use std::rc::Rc;

use crate::core::exchange::host::LogLevel;
use crate::core::exchange::spend_sender::CalloutHost;
use crate::core::exchange::spend_senders::SpendSenders;
use crate::core::exchange::telemetry::Telemetry;
use crate::core::money::reservation::LedgerStore;
use crate::core::spend::accounting_api::BudgetTotal;
use crate::core::spend::threshold::{soft_threshold_of, ThresholdData};
use crate::core::Policy;
use crate::wasm::host;
use crate::wasm::ledgers::SharedLedgers;
use crate::wasm::metrics::VmTelemetry;

thread_local! {
    static VM_SINK: Rc<RefCell<SpendSenders>> =
        Rc::new(RefCell::new(SpendSenders::new(unique_nonce())));
}

/// The spend senders of this VM (one per accounting destination in use), shared by all its root
/// contexts.
pub fn vm_sink() -> Rc<RefCell<SpendSenders>> {
    VM_SINK.with(Rc::clone)
}

/// A per-VM nonce for spend-event ids. Clocks alone collide (workers of one process, and
/// replicas, start in the same instant), so it mixes in WASI randomness (`random_get`, the
/// seed of std's `RandomState`) with the time.
fn unique_nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(host::now_nanos());
    hasher.finish()
}

/// HTTP calls from a root context (their answers come back to it), with the policy of the
/// version it serves.
pub struct RootCallouts<'a>(pub Option<&'a Policy>);

impl CalloutHost for RootCallouts<'_> {
    fn dispatch(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Option<u64> {
        host::dispatch(cluster, headers, body, timeout_ms).map(u64::from)
    }

    fn log(&self, level: LogLevel, message: &str) {
        host::log(level.into(), message);
    }

    fn telemetry(&self) -> &dyn Telemetry {
        &VmTelemetry
    }

    fn ledgers(&self) -> &dyn LedgerStore {
        &SharedLedgers
    }

    fn budget_window_start(&self, budget: &str, now: i64) -> Option<i64> {
        self.0?.budget_window_start(budget, now)
    }

    fn limit_window_start(&self, limit: &str, now: i64) -> Option<i64> {
        self.0?.limit_window_start(limit, now)
    }

    fn soft_threshold(&self, total: &BudgetTotal) -> Option<ThresholdData> {
        soft_threshold_of(self.0?, total)
    }
}
