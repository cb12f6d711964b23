//! Money: exact integer prices, budgets and their ledgers, and the settlement of a request.
//!
//! `cost_fields` + `cost` (what tokens cost; no known price is never free) → `charge` (what a
//! request reserves before it goes and is charged after) → `budget` (which budgets apply, the
//! per-window ledger) → `reservation` (reserve on every budget, settle, release) over a
//! `LedgerStore` (`ledger_slots`: a compare-and-swap slot store) → `settlement` (from an
//! admitted request to its priced, finished record). `unpriced` finds, at compile time, the
//! deployments budgeted keys could never call for want of a price.

pub mod budget;
pub mod charge;
pub mod cost;
pub mod cost_fields;
pub mod ledger_slots;
pub mod model_budgets;
pub mod process_ledgers;
pub mod reservation;
pub mod settlement;
pub mod unpriced;
