//! Budget ledgers in process memory, shared by every thread of one process behind a lock, one slot per budget: the
//! native adapter's store (all Envoy workers see the same spend at once, so limits are exact
//! within the process, with no compare-and-swap retries).

use std::sync::Mutex;

use hashbrown::HashMap;

use crate::core::money::budget::Ledger;
use crate::core::money::ledger_slots::slot_of;
use crate::core::money::reservation::{LedgerStore, StoreUnavailable};

/// A [`LedgerStore`] for many threads. A poisoned lock (a thread panicked while holding it)
/// answers [`StoreUnavailable`], which refuses requests that count against budgets (fail closed).
///
/// As in the Wasm form's [`crate::core::money::ledger_slots`], a budget holds one slot with only
/// its current window: an update for a newer window starts it afresh in the same slot, and one
/// for a window the slot has already left applies to nothing (so `30s` windows do not grow the
/// map for ever).
#[derive(Debug, Default)]
pub struct ProcessLedgers(Mutex<HashMap<String, (i64, Ledger)>>);

impl ProcessLedgers {
    /// How many ledgers are held (memory accounting, tests).
    pub fn len(&self) -> usize {
        self.0.lock().map_or(0, |map| map.len())
    }

    /// Whether no ledger is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl LedgerStore for ProcessLedgers {
    fn update(
        &self,
        key: &str,
        change: &mut dyn FnMut(&mut Ledger) -> bool,
    ) -> Result<bool, StoreUnavailable> {
        let (slot, window) = slot_of(key);
        let mut map = self.0.lock().map_err(|_| StoreUnavailable)?;
        match map.get_mut(slot) {
            Some((start, ledger)) if *start == window => Ok(change(ledger)),
            // The slot has moved on to a later window: this one is over, nothing to keep.
            Some((start, _)) if *start > window => Ok(change(&mut Ledger::default())),
            current => {
                let mut ledger = Ledger::default();
                let changed = change(&mut ledger);
                if changed {
                    match current {
                        Some(entry) => *entry = (window, ledger),
                        None => {
                            map.insert(slot.to_string(), (window, ledger));
                        }
                    }
                }
                Ok(changed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn an_unchanged_ledger_is_not_stored_and_a_changed_one_is() {
        let store = ProcessLedgers::default();
        assert_eq!(store.update("k", &mut |_| false), Ok(false));
        assert!(store.is_empty());
        let add = &mut |l: &mut Ledger| {
            l.confirmed += 5;
            true
        };
        assert_eq!(store.update("k", add), Ok(true));
        assert_eq!(store.update("k", add), Ok(true));
        let mut seen = 0;
        store
            .update("k", &mut |l| {
                seen = l.confirmed;
                false
            })
            .unwrap();
        assert_eq!(seen, 10);
    }

    #[test]
    fn a_budget_keeps_one_ledger_whatever_the_number_of_windows() {
        // `30s` windows for a day would otherwise keep 2,880 ledgers per budget for ever.
        let store = ProcessLedgers::default();
        let add = &mut |l: &mut Ledger| {
            l.confirmed += 1;
            true
        };
        for window in 0..100 {
            let key = format!("tollgate/budget/key:k/{}", window * 30);
            assert_eq!(store.update(&key, add), Ok(true));
        }
        assert_eq!(store.len(), 1);
        let mut seen = u64::MAX;
        store
            .update("tollgate/budget/key:k/2970", &mut |l| {
                seen = l.confirmed;
                false
            })
            .unwrap();
        assert_eq!(seen, 1, "a new window starts afresh");
        // A window the slot has left applies to nothing.
        store
            .update("tollgate/budget/key:k/0", &mut |l| {
                seen = l.confirmed;
                l.confirmed += 50;
                true
            })
            .unwrap();
        assert_eq!(seen, 0);
        store
            .update("tollgate/budget/key:k/2970", &mut |l| {
                seen = l.confirmed;
                false
            })
            .unwrap();
        assert_eq!(
            seen, 1,
            "the late update to an old window left the current one alone"
        );
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn threads_never_lose_an_update() {
        let store = std::sync::Arc::new(ProcessLedgers::default());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        store
                            .update("k", &mut |l| {
                                l.confirmed += 1;
                                true
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        let mut total = 0;
        store
            .update("k", &mut |l| {
                total = l.confirmed;
                false
            })
            .unwrap();
        assert_eq!(total, 4000);
    }
}
