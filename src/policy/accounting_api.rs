//! The accounting cluster's replies, shared by the filter (reader) and the reference server
//! (writer). The full protocol is in `docs/accounting-api.md`.

use serde::{Deserialize, Serialize};

/// Path (after `accounting.path_prefix`) that takes a batch of spend events.
pub const BATCH_PATH: &str = "/v1/spend/batch";

/// Path (after `accounting.path_prefix`) that answers authoritative budget totals.
pub const BUDGETS_PATH: &str = "/v1/spend/budgets";

/// Spend of one budget window, across every replica that reported to the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetTotal {
    /// `scope:id`, as in the events' `data.budgets[].budget`.
    pub budget: String,
    /// Window start, Unix seconds.
    pub window_start: i64,
    /// Window end, Unix seconds (absent: never resets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_end: Option<i64>,
    /// Total spend in nano-dollars.
    pub spend_nano_usd: u64,
}

impl BudgetTotal {
    /// The shared-data key of this window's ledger (see [`crate::policy::budget::BudgetLine`]).
    pub fn ledger_key(&self) -> String {
        format!("tollgate/budget/{}/{}", self.budget, self.window_start)
    }
}

/// An event the server refused (malformed); it is not retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedEvent {
    /// The event id, if it had one.
    pub id: Option<String>,
    /// Why.
    pub reason: String,
}

/// The answer to `POST /v1/spend/batch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReply {
    /// Events stored now.
    pub accepted: u64,
    /// Events already stored earlier (same id); not counted again.
    pub duplicates: u64,
    /// Events refused as malformed.
    #[serde(default)]
    pub rejected: Vec<RejectedEvent>,
    /// Current totals of every budget window the batch touched.
    #[serde(default)]
    pub budgets: Vec<BudgetTotal>,
}

/// The answer to `GET /v1/spend/budgets?since=<cursor>&now=<unix seconds>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetsReply {
    /// Pass back as `since` to get only windows that changed after this answer.
    pub cursor: u64,
    /// Windows still open at `now` that changed after `since`.
    pub budgets: Vec<BudgetTotal>,
}
