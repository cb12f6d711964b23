//! Budget ledgers in proxy-wasm shared data: the core's [`SlotLedgers`] (one slot per budget,
//! compare-and-swap, no lost first write) over the host's shared-data calls.

use crate::core::money::ledger_slots::{SharedSlots, SlotLedgers, SlotWrite};
use crate::core::money::reservation::{LedgerStore, StoreUnavailable};
use crate::wasm::host::{self, SharedWrite};

/// Proxy-wasm shared data as a [`SharedSlots`] store.
pub struct HostSlots;

impl SharedSlots for HostSlots {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreUnavailable> {
        // The host answers a missing key as `(empty, 0)`; an existing key never has token 0.
        let (bytes, cas) = host::shared_data(key).ok_or(StoreUnavailable)?;
        Ok((cas != 0).then_some((bytes, cas)))
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> SlotWrite {
        match host::set_shared_data(key, value, cas) {
            SharedWrite::Written => SlotWrite::Written,
            SharedWrite::Conflict => SlotWrite::Conflict,
            SharedWrite::Failed => SlotWrite::Failed,
        }
    }
}

/// The shared-data ledger store.
pub struct SharedLedgers;

impl LedgerStore for SharedLedgers {
    fn update(
        &self,
        key: &str,
        change: &mut dyn FnMut(&mut crate::core::money::budget::Ledger) -> bool,
    ) -> Result<bool, StoreUnavailable> {
        let result = crate::wasm::timing::time("host.ledger_update", || {
            SlotLedgers(HostSlots).update(key, change)
        });
        if result.is_err() {
            host::log(
                host::Level::Error,
                &format!("tollgate: budget ledger {key} could not be updated (host refused or stayed contended)"),
            );
        }
        result
    }
}
