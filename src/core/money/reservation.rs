//! Reserving a request's worst-case cost on every budget it counts against, and settling it.
//!
//! The ledgers live behind [`LedgerStore`], an atomic read-modify-write interface: the filter
//! backs it with proxy-wasm shared data and compare-and-swap (so every worker of one Envoy
//! process sees the same spend); tests and the CLI back it with a map.

use std::cell::RefCell;

use hashbrown::HashMap;

use crate::core::admission::denial::Denial;
use crate::core::money::budget::{BudgetLine, Ledger};

/// The ledger store could not be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreUnavailable;

/// Atomic access to budget-window ledgers by key.
pub trait LedgerStore {
    /// Applies `change` to the ledger under `key` atomically. `change` returns false to leave
    /// the ledger as it was; the result says whether it was changed.
    fn update(
        &self,
        key: &str,
        change: &mut dyn FnMut(&mut Ledger) -> bool,
    ) -> Result<bool, StoreUnavailable>;
}

/// An in-memory [`LedgerStore`] (tests, `tollgate explain`).
#[derive(Debug, Default)]
pub struct MemoryLedgers(pub RefCell<HashMap<String, Ledger>>);

impl LedgerStore for MemoryLedgers {
    fn update(
        &self,
        key: &str,
        change: &mut dyn FnMut(&mut Ledger) -> bool,
    ) -> Result<bool, StoreUnavailable> {
        let mut map = self.0.borrow_mut();
        let mut ledger = map.get(key).cloned().unwrap_or_default();
        let changed = change(&mut ledger);
        if changed {
            map.insert(key.to_string(), ledger);
        }
        Ok(changed)
    }
}

/// What an admitted request holds on its budgets until it settles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The budget windows it counts against.
    pub lines: Vec<BudgetLine>,
    /// The amount held on each, in nano-dollars.
    pub amount: u64,
    /// When the hold lapses if never settled (Unix seconds).
    pub expires_at: i64,
}

/// What a reservation of `amount` holds on `line`: at most the budget's limit. Holding the
/// limit refuses the next request as surely as holding more, and keeps the ledger's sums far
/// from saturation (a huge `n` asks for more than `u64` holds), so a release takes back exactly
/// what was added.
fn held(line: &BudgetLine, amount: u64) -> u64 {
    amount.min(line.limit_nano)
}

/// Reserves `amount` on every line, or none: the first budget already used up refuses the
/// request (with its spend in the message) and releases what was reserved before it.
pub fn reserve(
    store: &dyn LedgerStore,
    lines: Vec<BudgetLine>,
    amount: u64,
    ttl_seconds: u64,
    now: i64,
) -> Result<Reservation, Denial> {
    let expires_at = Ledger::expiry(now, ttl_seconds);
    for (i, line) in lines.iter().enumerate() {
        let mut seen = Ledger::default();
        let reserved = store.update(line.ledger_key(), &mut |ledger| {
            let admitted = ledger.try_reserve(line.limit_nano, held(line, amount), expires_at, now);
            seen = ledger.clone();
            admitted
        });
        match reserved {
            Ok(true) => {}
            Ok(false) => {
                release_lines(store, &lines[..i], amount, expires_at, now);
                return Err(line.refusal(&seen, now));
            }
            Err(StoreUnavailable) => {
                release_lines(store, &lines[..i], amount, expires_at, now);
                return Err(Denial::GatewayError {
                    code: "budget_store_unavailable",
                });
            }
        }
    }
    Ok(Reservation {
        lines,
        amount,
        expires_at,
    })
}

/// Refuses, as [`reserve`] would, when a budget is already used up (spent, or fully held by
/// requests in flight), without holding anything: for requests that cost nothing
/// (`count_tokens`, reading a stored response). Nothing is written.
pub fn check_room(store: &dyn LedgerStore, lines: &[BudgetLine], now: i64) -> Result<(), Denial> {
    for line in lines {
        let mut seen = Ledger::default();
        let read = store.update(line.ledger_key(), &mut |ledger| {
            seen = ledger.clone();
            false
        });
        match read {
            Ok(_) if seen.committed(now) >= line.limit_nano => return Err(line.refusal(&seen, now)),
            Ok(_) => {}
            Err(StoreUnavailable) => {
                return Err(Denial::GatewayError {
                    code: "budget_store_unavailable",
                })
            }
        }
    }
    Ok(())
}

/// An empty reservation: a request that holds nothing on any budget.
pub fn nothing_reserved() -> Reservation {
    Reservation {
        lines: Vec::new(),
        amount: 0,
        expires_at: 0,
    }
}

/// Gives back a reservation whose request was not forwarded after all.
pub fn release(store: &dyn LedgerStore, reservation: &Reservation, now: i64) {
    release_lines(
        store,
        &reservation.lines,
        reservation.amount,
        reservation.expires_at,
        now,
    );
}

fn release_lines(
    store: &dyn LedgerStore,
    lines: &[BudgetLine],
    amount: u64,
    expires_at: i64,
    now: i64,
) {
    for line in lines {
        let _ = store.update(line.ledger_key(), &mut |ledger| {
            ledger.release(held(line, amount), expires_at, now);
            true
        });
    }
}

/// What settling a reservation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settled {
    /// False if a ledger could not be written.
    pub ledger_ok: bool,
    /// The lines whose soft budget this settlement found reached, first in this process and
    /// window, with the spend seen (indices into the reservation's lines).
    pub soft_reached: Vec<(usize, u64)>,
}

/// Replaces the reservation with the request's real cost (unconfirmed until the accounting
/// cluster acknowledges the spend event), and notes each soft budget it finds reached.
pub fn settle(
    store: &dyn LedgerStore,
    reservation: &Reservation,
    cost_nano: u64,
    now: i64,
) -> Settled {
    let mut settled = Settled {
        ledger_ok: true,
        soft_reached: Vec::new(),
    };
    for (i, line) in reservation.lines.iter().enumerate() {
        let mut reached = None;
        settled.ledger_ok &= store
            .update(line.ledger_key(), &mut |ledger| {
                ledger.release(held(line, reservation.amount), reservation.expires_at, now);
                ledger.record(cost_nano);
                reached = ledger
                    .reach_soft(line.soft_limit_nano)
                    .then(|| ledger.spent());
                true
            })
            .is_ok();
        if let Some(spent) = reached {
            settled.soft_reached.push((i, spent));
        }
    }
    settled
}

/// Applies the accounting cluster's acknowledgement of one event (its cost leaves
/// `unconfirmed`) and, where known, the authoritative total of each window.
pub fn confirm(
    store: &dyn LedgerStore,
    ledger_key: &str,
    acknowledged_nano: u64,
    authoritative_nano: Option<u64>,
) -> bool {
    store
        .update(ledger_key, &mut |ledger| {
            ledger.confirm(acknowledged_nano, authoritative_nano);
            true
        })
        .is_ok()
}

/// Confirms the events of an acknowledged batch: each event's cost moves from unconfirmed to
/// confirmed on every ledger it counted against, and `totals` (the cluster's authoritative spend
/// per ledger key) raise the confirmed amounts. One ledger update per budget window, however
/// many events of the batch it holds: a batch of 500 events on two budgets is two updates, not
/// a thousand on the worker thread. Returns the number of updates made.
pub fn confirm_acknowledged<'e>(
    store: &dyn LedgerStore,
    events: impl IntoIterator<Item = (&'e [String], u64)>,
    totals: &HashMap<String, u64>,
) -> usize {
    let mut per_ledger: HashMap<&'e str, u64> = HashMap::new();
    for (keys, cost) in events {
        for key in keys {
            let sum = per_ledger.entry(key.as_str()).or_insert(0);
            *sum = sum.saturating_add(cost);
        }
    }
    for (key, sum) in &per_ledger {
        confirm(store, key, *sum, totals.get(*key).copied());
    }
    per_ledger.len()
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::core::config::index::Budget;
    use crate::core::money::budget::Scope;

    #[test]
    fn an_acknowledged_batch_updates_each_ledger_once_with_the_sum() {
        let store = MemoryLedgers::default();
        let (a, b) = ("a".to_string(), "b".to_string());
        for key in [&a, &b] {
            store
                .update(key, &mut |l| {
                    l.record(100);
                    true
                })
                .unwrap();
        }
        let both = [a.clone(), b.clone()];
        let only_a = [a.clone()];
        let events = [(&both[..], 30), (&only_a[..], 20), (&both[..], 5)];
        let totals: HashMap<String, u64> = [(b.clone(), 900)].into_iter().collect();
        assert_eq!(confirm_acknowledged(&store, events, &totals), 2);
        let ledgers = store.0.borrow();
        assert_eq!((ledgers[&a].unconfirmed, ledgers[&a].confirmed), (45, 0));
        assert_eq!((ledgers[&b].unconfirmed, ledgers[&b].confirmed), (65, 900));
    }

    fn line(scope: Scope, id: &str, limit: u64) -> BudgetLine {
        let budget = Budget {
            id: format!("{}:{id}", scope.name()).into(),
            label: id.into(),
            max_usd: limit as f64 / 1e9,
            limit_nano: limit,
            enforced: true,
            soft_limit_nano: None,
            model: None,
            window: None,
            anchor: 0,
        };
        BudgetLine::new(scope, &budget, 0, None)
    }

    #[test]
    fn room_is_checked_without_holding_anything() {
        let store = MemoryLedgers::default();
        let lines = vec![line(Scope::Key, "k", 100)];
        assert_eq!(check_room(&store, &lines, 1000), Ok(()));
        assert!(store.0.borrow().is_empty(), "nothing written");
        let held = reserve(&store, lines.clone(), 100, 900, 1000).unwrap();
        let denial = check_room(&store, &lines, 1000).unwrap_err();
        assert!(matches!(
            denial,
            Denial::BudgetExceeded {
                reserved_nano: 100,
                ..
            }
        ));
        release(&store, &held, 1000);
        assert_eq!(check_room(&store, &lines, 1000), Ok(()));
        store
            .update(lines[0].ledger_key(), &mut |l| {
                l.record(100);
                true
            })
            .unwrap();
        assert!(matches!(
            check_room(&store, &lines, 1000),
            Err(Denial::BudgetExceeded {
                spend_nano: 100,
                ..
            })
        ));
    }

    #[test]
    fn a_refused_reservation_releases_the_budgets_before_it() {
        let store = MemoryLedgers::default();
        let lines = vec![line(Scope::Key, "k", 100), line(Scope::Team, "t", 10)];
        let team_key = lines[1].ledger_key();
        store
            .update(team_key, &mut |l| {
                l.confirmed = 10;
                true
            })
            .unwrap();
        let denial = reserve(&store, lines.clone(), 5, 900, 1000).unwrap_err();
        assert!(matches!(
            denial,
            Denial::BudgetExceeded {
                scope: "team",
                spend_nano: 10,
                ..
            }
        ));
        let key_ledger = store
            .0
            .borrow()
            .get(lines[0].ledger_key())
            .cloned()
            .unwrap();
        assert_eq!(
            key_ledger.reserved(1000),
            0,
            "the key's hold was given back"
        );
    }

    #[test]
    fn a_saturated_worst_case_holds_the_limit_and_gives_back_only_its_own_hold() {
        let store = MemoryLedgers::default();
        let lines = vec![line(Scope::Key, "k", 1_000)];
        let small = reserve(&store, lines.clone(), 10, 900, 1000).unwrap();
        let huge = reserve(&store, lines.clone(), u64::MAX, 900, 1000).unwrap();
        let ledger = |store: &MemoryLedgers| store.0.borrow()[lines[0].ledger_key()].clone();
        assert_eq!(ledger(&store).reserved(1000), 1_010);
        assert!(reserve(&store, lines.clone(), 1, 900, 1000).is_err());
        assert!(settle(&store, &huge, 80, 1001).ledger_ok);
        assert_eq!(
            ledger(&store).reserved(1001),
            10,
            "the other request's hold survives"
        );
        assert!(settle(&store, &small, 5, 1002).ledger_ok);
        assert_eq!(ledger(&store).committed(1002), 85);
    }

    #[test]
    fn concurrent_requests_cannot_all_pass_a_nearly_spent_budget() {
        let store = MemoryLedgers::default();
        let lines = vec![line(Scope::Key, "k", 100)];
        store
            .update(lines[0].ledger_key(), &mut |l| {
                l.confirmed = 95;
                true
            })
            .unwrap();
        let admitted: Vec<_> = (0..10)
            .filter_map(|_| reserve(&store, lines.clone(), 20, 900, 1000).ok())
            .collect();
        assert_eq!(admitted.len(), 1);
        assert!(settle(&store, &admitted[0], 3, 1001).ledger_ok);
        let ledger = store
            .0
            .borrow()
            .get(lines[0].ledger_key())
            .cloned()
            .unwrap();
        assert_eq!(
            (ledger.confirmed, ledger.unconfirmed, ledger.reserved(1001)),
            (95, 3, 0)
        );
        assert!(confirm(&store, lines[0].ledger_key(), 3, Some(98)));
        let ledger = store
            .0
            .borrow()
            .get(lines[0].ledger_key())
            .cloned()
            .unwrap();
        assert_eq!((ledger.confirmed, ledger.unconfirmed), (98, 0));
    }
}
