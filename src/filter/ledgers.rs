//! Budget ledgers in proxy-wasm shared data: one value per budget window, updated with
//! compare-and-swap so that every worker VM of this Envoy process sees the same spend.

use crate::filter::host::{self, SharedWrite};
use crate::policy::budget::Ledger;
use crate::policy::reservation::{LedgerStore, StoreUnavailable};

/// Attempts before an update gives up under contention (each attempt is two host calls).
const MAX_ATTEMPTS: u32 = 64;

/// The shared-data ledger store.
pub struct SharedLedgers;

impl LedgerStore for SharedLedgers {
    fn update(
        &self,
        key: &str,
        change: &mut dyn FnMut(&mut Ledger) -> bool,
    ) -> Result<bool, StoreUnavailable> {
        for _ in 0..MAX_ATTEMPTS {
            let (bytes, cas) = host::shared_data(key).ok_or(StoreUnavailable)?;
            let mut ledger = Ledger::decode(&bytes);
            if !change(&mut ledger) {
                return Ok(false);
            }
            match host::set_shared_data(key, &ledger.encode(), cas) {
                SharedWrite::Written => return Ok(true),
                SharedWrite::Conflict => continue,
                SharedWrite::Failed => return Err(StoreUnavailable),
            }
        }
        host::log(
            host::Level::Error,
            &format!("tollgate: budget ledger {key} stayed contended; update abandoned"),
        );
        Err(StoreUnavailable)
    }
}
