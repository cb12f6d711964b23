//! The VM's spend sender: the core's [`SpendSender`], one per VM (shared by its root contexts,
//! so a replaced version's unsent events are not lost), sending with `dispatch_http_call`.

use std::cell::RefCell;
use std::rc::Rc;

use crate::core::exchange::host::LogLevel;
use crate::core::exchange::spend_sender::{CalloutHost, SpendSender};
use crate::core::exchange::telemetry::Telemetry;
use crate::core::money::reservation::LedgerStore;
use crate::wasm::host;
use crate::wasm::ledgers::SharedLedgers;
use crate::wasm::metrics::VmTelemetry;

thread_local! {
    static VM_SINK: Rc<RefCell<SpendSender>> =
        Rc::new(RefCell::new(SpendSender::new(unique_nonce())));
}

/// The spend sender of this VM, shared by all its root contexts.
pub fn vm_sink() -> Rc<RefCell<SpendSender>> {
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

/// HTTP calls from a root context (their answers come back to it).
pub struct RootCallouts;

impl CalloutHost for RootCallouts {
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
}
