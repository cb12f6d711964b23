//! Budget ledgers kept in a compare-and-swap store with Envoy's shared-data semantics: one
//! slot per budget holding only its current window, and no lost first write.
//!
//! Envoy's shared data (proxy-wasm-cpp-host `shared_data.cc`) has no "create if absent": a `set`
//! on a missing key creates it whatever the CAS token, a `set` with token 0 on an existing key
//! overwrites it, and only a non-zero token that differs from the key's current one is refused.
//! Two workers that both read "missing" and both wrote with token 0 used to lose the first
//! write (a reservation or a settled cost). A missing slot is therefore created with
//! [`CREATE_CAS`], a token no key holds while the host's counter is below it: if another worker
//! created the slot in between, the write is refused and the update starts over on its value.
//!
//! A budget's ledger used to be one key per window, kept for ever (unbounded with `30s`
//! windows). Now the slot of a budget holds the window it describes; an update for a newer
//! window starts that window afresh in the same slot, and an update for a window the slot has
//! already left applies to nothing (that window is over, and its total is the accounting
//! cluster's). So memory is one slot per budget that was ever used, whatever the window length.
//!
//! The ledger *names* stay per window (`tollgate/budget/<scope:id>/<window_start>`, as in the
//! accounting protocol's totals); the slot is that name without its window.

use crate::core::money::budget::Ledger;
use crate::core::money::reservation::{LedgerStore, StoreUnavailable};

/// The token a missing slot is created with. Envoy's tokens come from one counter that starts
/// at 1 and skips 0, so no key holds this token before four billion writes; a key created by
/// another worker in between holds a smaller one, and the write is refused.
pub const CREATE_CAS: u32 = u32::MAX;

/// Attempts before an update gives up under contention (each attempt is two host calls).
pub const MAX_ATTEMPTS: u32 = 64;

/// What a conditional write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotWrite {
    /// Written.
    Written,
    /// The token no longer matches: read again and retry.
    Conflict,
    /// The host refused.
    Failed,
}

/// A key-value store with compare-and-swap tokens (proxy-wasm shared data).
pub trait SharedSlots {
    /// The value and CAS token under `key`, `None` when the key does not exist.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreUnavailable>;
    /// Writes `value` under `key` if its token is still `cas` (with Envoy's rules above).
    fn set(&self, key: &str, value: &[u8], cas: u32) -> SlotWrite;
}

impl<S: SharedSlots + ?Sized> SharedSlots for &S {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreUnavailable> {
        (**self).get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> SlotWrite {
        (**self).set(key, value, cas)
    }
}

/// Splits a window's ledger name into its budget slot and window start. A name without a
/// numeric window suffix is its own slot (window 0).
pub fn slot_of(ledger_key: &str) -> (&str, i64) {
    match ledger_key.rsplit_once('/') {
        Some((slot, window)) => match window.parse::<i64>() {
            Ok(start) => (slot, start),
            Err(_) => (ledger_key, 0),
        },
        None => (ledger_key, 0),
    }
}

/// Decodes a slot: its window start and that window's ledger (`None` when damaged).
pub fn decode_slot(bytes: &[u8]) -> Option<(i64, Ledger)> {
    let (window, ledger) = bytes.split_first_chunk::<8>()?;
    if ledger.len() < 16 || !ledger.len().is_multiple_of(16) {
        return None;
    }
    Some((i64::from_le_bytes(*window), Ledger::decode(ledger)))
}

/// Encodes a slot.
pub fn encode_slot(window_start: i64, ledger: &Ledger) -> Vec<u8> {
    let mut out = window_start.to_le_bytes().to_vec();
    out.extend_from_slice(&ledger.encode());
    out
}

/// The ledgers of every budget, one slot each, in a [`SharedSlots`] store.
#[derive(Debug, Default)]
pub struct SlotLedgers<S>(pub S);

impl<S: SharedSlots> LedgerStore for SlotLedgers<S> {
    fn update(
        &self,
        key: &str,
        change: &mut dyn FnMut(&mut Ledger) -> bool,
    ) -> Result<bool, StoreUnavailable> {
        let (slot, window) = slot_of(key);
        for _ in 0..MAX_ATTEMPTS {
            let (stored, cas) = match self.0.get(slot)? {
                None => (None, CREATE_CAS),
                Some((bytes, cas)) => (decode_slot(&bytes), cas),
            };
            let (mut ledger, over) = match stored {
                Some((start, ledger)) if start == window => (ledger, false),
                Some((start, _)) if start > window => (Ledger::default(), true),
                _ => (Ledger::default(), false),
            };
            if !change(&mut ledger) {
                return Ok(false);
            }
            if over {
                // The slot has moved on to a later window: this one is over, nothing to keep.
                return Ok(true);
            }
            match self.0.set(slot, &encode_slot(window, &ledger), cas) {
                SlotWrite::Written => return Ok(true),
                SlotWrite::Conflict => continue,
                SlotWrite::Failed => return Err(StoreUnavailable),
            }
        }
        Err(StoreUnavailable)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use std::cell::{Cell, RefCell};

    use hashbrown::HashMap;

    use super::*;
    use crate::core::config::index::Budget;
    use crate::core::money::budget::{BudgetLine, Scope};
    use crate::core::money::reservation::{reserve, settle};

    /// Another worker's step, run inside the next `set` (after this worker's read).
    type Interleave = Box<dyn FnOnce(&EnvoySharedData)>;

    /// Envoy's shared data exactly (proxy-wasm-cpp-host `src/shared_data.cc`): one counter for
    /// all tokens, starting at 1 and skipping 0; a set on an existing key with a non-zero token
    /// other than its current one is a mismatch; token 0 overwrites; a missing key is created
    /// whatever the token.
    #[derive(Default)]
    struct EnvoySharedData {
        map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        counter: Cell<u32>,
        interleave: RefCell<Option<Interleave>>,
    }

    impl EnvoySharedData {
        fn next_cas(&self) -> u32 {
            let mut cas = self.counter.get();
            if cas == 0 {
                cas = 1;
            }
            let next = cas.wrapping_add(1);
            self.counter.set(if next == 0 { 1 } else { next });
            cas
        }
    }

    impl SharedSlots for EnvoySharedData {
        fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreUnavailable> {
            Ok(self.map.borrow().get(key).cloned())
        }

        fn set(&self, key: &str, value: &[u8], cas: u32) -> SlotWrite {
            let hook = self.interleave.borrow_mut().take();
            if let Some(hook) = hook {
                hook(self);
            }
            let current = self.map.borrow().get(key).map(|(_, c)| *c);
            if let Some(current) = current {
                if cas != 0 && cas != current {
                    return SlotWrite::Conflict;
                }
            }
            let token = self.next_cas();
            self.map
                .borrow_mut()
                .insert(key.to_string(), (value.to_vec(), token));
            SlotWrite::Written
        }
    }

    fn budget_line(limit: u64, window_start: i64) -> BudgetLine {
        let budget = Budget {
            id: "key:k".into(),
            label: "k".into(),
            max_usd: limit as f64 / 1e9,
            limit_nano: limit,
            enforced: true,
            soft_limit_nano: None,
            model: None,
            window: None,
            anchor: 0,
        };
        BudgetLine::new(Scope::Key, &budget, window_start, Some(window_start + 30))
    }

    fn ledger_in(store: &EnvoySharedData, slot: &str) -> (i64, Ledger) {
        let bytes = store.map.borrow()[slot].0.clone();
        decode_slot(&bytes).unwrap()
    }

    #[test]
    fn two_workers_creating_the_same_ledger_both_keep_their_reservation() {
        let store = EnvoySharedData::default();
        let line = budget_line(1_000, 0);
        let slot = slot_of(line.ledger_key()).0.to_string();
        let other = line.clone();
        // Worker B reads "missing" and reserves 300 while worker A, which also read
        // "missing", is about to write its own 200.
        *store.interleave.borrow_mut() = Some(Box::new(move |store: &EnvoySharedData| {
            reserve(&SlotLedgers(store), vec![other], 300, 900, 10).unwrap();
        }));
        reserve(&SlotLedgers(&store), vec![line], 200, 900, 10).unwrap();
        let (_, ledger) = ledger_in(&store, &slot);
        assert_eq!(ledger.reserved(10), 500, "neither first write was lost");
    }

    #[test]
    fn two_workers_settling_into_a_new_ledger_both_count() {
        let store = EnvoySharedData::default();
        let line = budget_line(1_000, 0);
        let (slot, _) = slot_of(line.ledger_key());
        let record = |store: &EnvoySharedData, cost: u64| {
            SlotLedgers(store)
                .update(line.ledger_key(), &mut |l| {
                    l.record(cost);
                    true
                })
                .unwrap();
        };
        let key = line.ledger_key().to_string();
        *store.interleave.borrow_mut() = Some(Box::new(move |store: &EnvoySharedData| {
            SlotLedgers(store)
                .update(&key, &mut |l| {
                    l.record(7);
                    true
                })
                .unwrap();
        }));
        record(&store, 5);
        assert_eq!(ledger_in(&store, slot).1.unconfirmed, 12);
    }

    #[test]
    fn a_new_window_replaces_the_old_one_in_the_same_slot() {
        let store = EnvoySharedData::default();
        let ledgers = SlotLedgers(&store);
        let first = budget_line(100, 0);
        let reservation = reserve(&ledgers, vec![first.clone()], 40, 900, 5).unwrap();
        assert!(settle(&ledgers, &reservation, 90, 6).ledger_ok);
        assert!(reserve(&ledgers, vec![first.clone()], 40, 900, 7).is_ok());
        assert!(reserve(&ledgers, vec![first.clone()], 40, 900, 7).is_err());
        // Windows of 30 s, a hundred of them: still one slot.
        for window in 1..=100 {
            let line = budget_line(100, window * 30);
            let held = reserve(&ledgers, vec![line], 40, 900, window * 30).unwrap();
            assert!(settle(&ledgers, &held, 10, window * 30 + 1).ledger_ok);
        }
        assert_eq!(store.map.borrow().len(), 1);
        let (start, ledger) = ledger_in(&store, slot_of(first.ledger_key()).0);
        assert_eq!((start, ledger.unconfirmed), (3_000, 10));
        // A late settle of the first window leaves the current window alone.
        assert!(settle(&ledgers, &reservation, 90, 3_001).ledger_ok);
        assert_eq!(
            ledger_in(&store, slot_of(first.ledger_key()).0)
                .1
                .unconfirmed,
            10
        );
    }

    #[test]
    fn slot_names_and_values_round_trip() {
        assert_eq!(
            slot_of("tollgate/budget/user:a/b/1700"),
            ("tollgate/budget/user:a/b", 1700)
        );
        assert_eq!(slot_of("plain"), ("plain", 0));
        assert_eq!(slot_of("x/y"), ("x/y", 0));
        let ledger = Ledger {
            confirmed: 1,
            unconfirmed: 2,
            reservations: vec![(60, 3)],
            soft_reported: false,
            acknowledged: 0,
        };
        assert_eq!(
            decode_slot(&encode_slot(-5, &ledger)),
            Some((-5, ledger.clone()))
        );
        assert_eq!(decode_slot(&ledger.encode()), None, "a pre-slot value");
        assert_eq!(decode_slot(b"short"), None);
    }
}
