//! The accounting server's stores behind one interface: SQLite (one process, the embedded
//! default) and PostgreSQL (several accounting instances sharing one database).
//!
//! Both answer the same protocol (`docs/accounting-api.md`) with the same numbers: events stored
//! once per id, window totals grown in the same transaction, and change cursors a poller can
//! follow without missing or repeating a total.

mod batch;
mod postgres;
mod postgres_alerts;
mod postgres_connect;
mod postgres_reads;
mod postgres_retention;
mod postgres_schema;
pub mod report;
pub mod retention;
mod sqlite;
mod sqlite_alerts;
mod sqlite_limits;
mod sqlite_retention;

use serde_json::Value;
use tollgate::core::spend::accounting_api::{BatchReply, BudgetsReply};
use tollgate::core::spend::threshold::ThresholdEvent;

use crate::accounting::alerts::delivery::{Delivery, MAX_ATTEMPTS};
use crate::accounting::alerts::Alerting;

pub use self::postgres::PostgresStore;
pub use self::sqlite::SqliteStore;

/// What the HTTP handler asks of a store. Every method is blocking and may be called from
/// several threads at once.
pub trait SpendStore: Send + Sync {
    /// Stores a batch (a JSON array of CloudEvents) and answers, for batch `batch_id`, which
    /// events are stored and which refused, with the touched totals. `Err((400, _))` only when
    /// the body as a whole is not a JSON array; `Err((503, _))` when the store cannot be reached.
    fn ingest(&self, body: &[u8], batch_id: &str, now: i64) -> Result<BatchReply, (u16, String)>;

    /// Totals of windows still open at `now` that changed after `since`.
    fn budgets_since(&self, since: u64, now: i64) -> Result<BudgetsReply, String>;

    /// Spend grouped for people: totals by key, team, model and status, windows and alerts.
    fn report(&self) -> Result<Value, String>;

    /// Whether the store answers now (readiness).
    fn ready(&self) -> Result<(), String>;

    /// The groups of a grouped report.
    fn grouped(&self, query: &report::ReportQuery) -> Result<Vec<report::GroupRow>, String>;

    /// The budget windows still open at `now` (most spent first, at most `limit`) and the
    /// latest `limit` alerts, for the spend page.
    fn page_data(&self, now: i64, limit: usize) -> Result<(Vec<WindowRow>, Vec<Value>), String>;

    /// Takes up to `limit` alert deliveries to `webhooks` that are due at `now`, reserving
    /// them (another instance does not take them while this one tries).
    fn due_deliveries(
        &self,
        now: i64,
        webhooks: &[String],
        limit: usize,
    ) -> Result<Vec<Delivery>, String>;

    /// Records the outcome of one delivery attempt.
    fn record_delivery(
        &self,
        delivery: &Delivery,
        now: i64,
        outcome: Result<(), String>,
    ) -> Result<(), String>;

    /// Folds up to `limit` events that ended before `before` into their daily rollups and
    /// deletes them, keeping their ids (one transaction; see [`retention`]).
    fn prune(&self, before: i64, limit: usize) -> Result<retention::Pruned, String>;

    /// The connection pool now: connections open and of them idle (`None`: no pool).
    fn pool_state(&self) -> Option<(u32, u32)> {
        None
    }
}

/// One row of a report group: requests, tokens and cost of one key, team, model or status.
pub fn group_entry(
    name: String,
    requests: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    cost_nano_usd: i64,
    estimated: i64,
) -> Value {
    serde_json::json!({
        "name": name,
        "requests": requests,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "cost_nano_usd": cost_nano_usd,
        "cost_usd": cost_nano_usd as f64 / 1e9,
        "estimated": estimated,
    })
}

/// A budget window as the spend page shows it.
#[derive(Debug, Clone)]
pub struct WindowRow {
    /// `scope:id`.
    pub budget: String,
    /// Window start, Unix seconds.
    pub window_start: i64,
    /// When it resets, Unix seconds (`None`: never).
    pub window_end: Option<i64>,
    /// Spent, nano-dollars.
    pub spend_nano_usd: i64,
    /// The budget, nano-dollars, as the latest events carried it.
    pub max_nano_usd: Option<i64>,
}

/// The SQL of the page's windows (`?1`/`$1` now, `?2`/`$2` the limit) and alerts (`?1`/`$1`).
pub const PAGE_WINDOWS_SQL: &str = "SELECT budget, window_start, window_end, spend_nano_usd,
    max_nano_usd FROM budget_windows WHERE window_end IS NULL OR window_end > {now}
    ORDER BY spend_nano_usd DESC, budget LIMIT {limit}";

/// One alert delivery as the report shows it: the webhook by id (its URL may hold a secret).
pub fn delivery_json(
    alert_id: String,
    webhook: String,
    attempts: i64,
    delivered_at: Option<i64>,
    last_error: Option<String>,
) -> Value {
    let state = match (delivered_at, attempts >= MAX_ATTEMPTS) {
        (Some(_), _) => "delivered",
        (None, true) => "failed",
        (None, false) => "pending",
    };
    serde_json::json!({
        "alert_id": alert_id,
        "webhook": webhook.get(..12).unwrap_or(&webhook),
        "state": state,
        "attempts": attempts,
        "delivered_at": delivered_at,
        "last_error": last_error,
    })
}

/// One stored alert (a threshold reached in a budget window), as the report shows it.
#[derive(Debug, Clone)]
pub struct AlertRow {
    /// `soft_budget`.
    pub threshold: String,
    /// `scope:id`.
    pub budget: String,
    /// `key`, `team`, `user` or `end_user`.
    pub scope: String,
    /// The holder's name.
    pub holder: String,
    /// For a per-model budget, its model.
    pub model: Option<String>,
    /// Window start, Unix seconds.
    pub window_start: i64,
    /// Window end, Unix seconds.
    pub window_end: Option<i64>,
    /// The threshold, nano-dollars.
    pub threshold_nano_usd: i64,
    /// The hard budget, nano-dollars.
    pub limit_nano_usd: Option<i64>,
    /// The spend its sender saw, nano-dollars.
    pub spend_nano_usd: i64,
    /// When it was raised (the event's time).
    pub time: String,
    /// The replica that raised it first.
    pub source: String,
}

impl AlertRow {
    /// The columns of a filter's threshold event.
    pub fn from_threshold(alert: &ThresholdEvent) -> AlertRow {
        let d = &alert.data;
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        AlertRow {
            threshold: d.threshold.to_string(),
            budget: d.budget.clone(),
            scope: d.scope.to_string(),
            holder: d.holder.clone(),
            model: d.model.clone(),
            window_start: d.window_start,
            window_end: d.window_end,
            threshold_nano_usd: n(d.threshold_nano_usd),
            limit_nano_usd: d.limit_nano_usd.map(n),
            spend_nano_usd: n(d.spend_nano_usd),
            time: alert.time.clone(),
            source: alert.source.clone(),
        }
    }

    /// The report's JSON for this alert.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "threshold": self.threshold,
            "budget": self.budget,
            "scope": self.scope,
            "holder": self.holder,
            "model": self.model,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "threshold_nano_usd": self.threshold_nano_usd,
            "limit_nano_usd": self.limit_nano_usd,
            "spend_nano_usd": self.spend_nano_usd,
            "time": self.time,
            "source": self.source,
        })
    }
}

/// The Unix second of an event's `time` (RFC 3339), if it reads as one.
pub fn ended_at(time: &str) -> Option<i64> {
    time.parse::<jiff::Timestamp>().ok().map(|t| t.as_second())
}

/// Whether `db` names a PostgreSQL database rather than a SQLite file: a `postgres://` or
/// `postgresql://` URL (any case), or a key=value connection string (`host=… dbname=…`).
pub fn is_postgres_url(db: &str) -> bool {
    let lower = db.trim_start().to_ascii_lowercase();
    lower.starts_with("postgres://")
        || lower.starts_with("postgresql://")
        || ["host=", "dbname=", "user="]
            .iter()
            .any(|key| lower.starts_with(key) || lower.contains(&format!(" {key}")))
}

/// How to use a PostgreSQL database (SQLite ignores these).
#[derive(Debug, Clone, Default)]
pub struct DbOptions {
    /// Connections kept at most.
    pub pool_size: u32,
    /// PEM roots the server's certificate must chain to (`sslmode=require`).
    pub ca_file: Option<String>,
}

/// Opens the store `db` names: a PostgreSQL URL (a pool as `options` say, migrations applied)
/// or a SQLite file path.
pub fn open(
    db: &str,
    options: &DbOptions,
    alerting: &Alerting,
) -> Result<std::sync::Arc<dyn SpendStore>, String> {
    if is_postgres_url(db) {
        Ok(std::sync::Arc::new(PostgresStore::open(
            db, options, alerting,
        )?))
    } else {
        Ok(std::sync::Arc::new(SqliteStore::open(db, alerting)?))
    }
}

/// `db` for log lines: a SQLite path as given, a PostgreSQL database as `user@host:port/name`
/// built from the parsed string, so a password never shows, however it is written.
pub fn describe(db: &str) -> String {
    if is_postgres_url(db) {
        PostgresStore::describe(db)
    } else {
        db.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_a_log_line() {
        for (db, shown) in [
            (
                "postgres://tollgate:s3cr/et@db:5432/spend?sslmode=disable",
                "postgres://tollgate@db:5432/spend",
            ),
            (
                "postgresql://db/spend?user=u&password=s3cret",
                "postgres://u@db:5432/spend",
            ),
            (
                "host=db user=u password=s3cret dbname=x",
                "postgres://u@db:5432/x",
            ),
            ("POSTGRES://u:s3cret@h/x", "postgres://u@h:5432/x"),
        ] {
            assert!(is_postgres_url(db), "{db}");
            assert_eq!(describe(db), shown);
        }
        assert_eq!(describe("/var/lib/spend.db"), "/var/lib/spend.db");
        assert!(!is_postgres_url("/var/lib/spend.db"));
        assert!(!is_postgres_url("./spend-host.db"));
    }
}
