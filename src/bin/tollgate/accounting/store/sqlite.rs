//! Durable spend storage in SQLite (the embedded default): events deduplicated by id, running totals per budget window,
//! and a change counter so that filters can poll only what changed.
//!
//! Each batch is one transaction, committed (WAL, `synchronous=FULL`) before it is answered, so
//! an acknowledged event survives a crash or restart, and a retried batch is never counted twice.

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde_json::Value;

use std::sync::{Mutex, MutexGuard};

use super::report::{Dialect, Dimension, GroupRow, Param, ReportQuery};
use super::retention::Pruned;
use super::sqlite_alerts;
use super::sqlite_limits as limit_windows;
use super::sqlite_retention;
use super::{AlertRow, SpendStore, WindowRow};
use crate::accounting::alerts::delivery::Delivery;
use crate::accounting::alerts::{percent_alerts, Alerting, WindowAdd};
use tollgate::core::spend::accounting_api::{
    read_batch, BatchReply, BudgetTotal, BudgetsReply, Incoming,
};

/// One SQLite connection (the writer, or a read-only reader).
pub struct Store {
    db: Connection,
    /// Shares of a budget whose crossing raises an alert.
    percents: Vec<u32>,
    /// Ids of the webhooks each new alert is delivered to.
    webhooks: Vec<String>,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    time TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    key_hash TEXT NOT NULL,
    key_alias TEXT,
    team_id TEXT,
    user_id TEXT,
    end_user TEXT,
    requested_model TEXT NOT NULL,
    resolved_model TEXT NOT NULL,
    deployment TEXT NOT NULL,
    provider TEXT NOT NULL,
    status TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    estimated INTEGER NOT NULL,
    cost_nano_usd INTEGER NOT NULL,
    cost_source TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS budget_windows (
    budget TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    window_end INTEGER,
    spend_nano_usd INTEGER NOT NULL,
    changed INTEGER NOT NULL,
    PRIMARY KEY (budget, window_start)
);
CREATE INDEX IF NOT EXISTS budget_windows_changed ON budget_windows (changed);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    time TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    threshold TEXT NOT NULL,
    budget TEXT NOT NULL,
    scope TEXT NOT NULL,
    holder TEXT NOT NULL,
    model TEXT,
    window_start INTEGER NOT NULL,
    window_end INTEGER,
    threshold_nano_usd INTEGER NOT NULL,
    limit_nano_usd INTEGER,
    spend_nano_usd INTEGER NOT NULL,
    json TEXT NOT NULL
);
";

/// The SQLite store: one writer connection, and one read-only connection for polls and reports.
pub struct SqliteStore {
    writer: Mutex<Store>,
    reader: Mutex<Store>,
}

impl SqliteStore {
    /// Opens (or creates) the database file at `path`, raising and delivering alerts as
    /// `alerting` says.
    pub fn open(path: &str, alerting: &Alerting) -> Result<SqliteStore, String> {
        let mut writer = Store::open(path)?;
        writer.percents = alerting.percents.clone();
        writer.webhooks = alerting.webhook_ids();
        let reader = Store::open_reader(path)?;
        Ok(SqliteStore {
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
        })
    }
}

fn lock(connection: &Mutex<Store>) -> Result<MutexGuard<'_, Store>, String> {
    connection
        .lock()
        .map_err(|_| "the store is unavailable".to_string())
}

impl SpendStore for SqliteStore {
    fn ingest(&self, body: &[u8], batch_id: &str, now: i64) -> Result<BatchReply, (u16, String)> {
        lock(&self.writer)
            .map_err(|e| (500, e))?
            .ingest(body, batch_id, now)
    }

    fn budgets_since(&self, since: u64, now: i64) -> Result<BudgetsReply, String> {
        lock(&self.reader)?.budgets_since(since, now)
    }

    fn report(&self) -> Result<Value, String> {
        lock(&self.reader)?.report()
    }

    fn grouped(&self, query: &ReportQuery) -> Result<Vec<GroupRow>, String> {
        grouped_on(&lock(&self.reader)?.db, query)
    }

    fn page_data(&self, now: i64, limit: usize) -> Result<(Vec<WindowRow>, Vec<Value>), String> {
        let reader = lock(&self.reader)?;
        let sql = super::PAGE_WINDOWS_SQL
            .replace("{now}", "?1")
            .replace("{limit}", "?2");
        let mut statement = reader.db.prepare(&sql).map_err(|e| e.to_string())?;
        let windows = statement
            .query_map(params![now, limit as i64], |r| {
                Ok(WindowRow {
                    budget: r.get(0)?,
                    window_start: r.get(1)?,
                    window_end: r.get(2)?,
                    spend_nano_usd: r.get(3)?,
                    max_nano_usd: r.get(4)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| e.to_string())?;
        let mut alerts = reader.alerts().map_err(|e| e.to_string())?;
        alerts.reverse();
        alerts.truncate(limit);
        Ok((windows, alerts))
    }

    fn due_deliveries(
        &self,
        now: i64,
        webhooks: &[String],
        limit: usize,
    ) -> Result<Vec<Delivery>, String> {
        sqlite_alerts::due(&lock(&self.writer)?.db, now, webhooks, limit).map_err(|e| e.to_string())
    }

    fn record_delivery(
        &self,
        delivery: &Delivery,
        now: i64,
        outcome: Result<(), String>,
    ) -> Result<(), String> {
        sqlite_alerts::record(&lock(&self.writer)?.db, delivery, now, &outcome)
            .map_err(|e| e.to_string())
    }

    fn prune(&self, before: i64, limit: usize) -> Result<Pruned, String> {
        sqlite_retention::prune(&mut lock(&self.writer)?.db, before, limit)
            .map_err(|e| e.to_string())
    }

    fn ready(&self) -> Result<(), String> {
        lock(&self.reader)?
            .db
            .query_row("SELECT COUNT(*) FROM counters", [], |r| r.get::<_, i64>(0))
            .map(|_| ())
            .map_err(|e| format!("the database does not answer: {e}"))
    }
}

impl Store {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &str) -> Result<Store, String> {
        let db = Connection::open(path).map_err(|e| format!("cannot open {path}: {e}"))?;
        db.execute_batch(SCHEMA)
            .and_then(|()| db.execute_batch(limit_windows::LIMITS_SCHEMA))
            .and_then(|()| migrate(&db))
            .map_err(|e| format!("cannot prepare {path}: {e}"))?;
        db.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        Ok(Store {
            db,
            percents: Vec::new(),
            webhooks: Vec::new(),
        })
    }

    /// A read-only connection to the database at `path` (opened by [`Store::open`] first): in
    /// WAL mode its reads never wait for, nor hold up, the writer.
    pub fn open_reader(path: &str) -> Result<Store, String> {
        let db = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| format!("cannot open {path} for reading: {e}"))?;
        db.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        Ok(Store {
            db,
            percents: Vec::new(),
            webhooks: Vec::new(),
        })
    }

    /// Stores a batch (a JSON array of CloudEvents) and answers, for batch `batch_id`, which
    /// events are stored and which refused, with the touched totals. `Err((400, _))` only when
    /// the body as a whole is not a JSON array.
    pub fn ingest(
        &mut self,
        body: &[u8],
        batch_id: &str,
        now: i64,
    ) -> Result<BatchReply, (u16, String)> {
        let items = read_batch(body).map_err(|e| (400, e))?;
        let internal = |e: rusqlite::Error| (500, e.to_string());
        let tx = self.db.transaction().map_err(internal)?;
        let mut reply = BatchReply {
            batch_id: batch_id.to_string(),
            ..BatchReply::default()
        };
        let mut touched: Vec<(String, i64)> = Vec::new();
        let mut touched_limits: Vec<(String, i64)> = Vec::new();
        let mut added_limits = limit_windows::Added::new();
        let mut added_spend: std::collections::BTreeMap<(String, i64), WindowAdd> =
            std::collections::BTreeMap::new();
        let mut change = change_counter(&tx).map_err(internal)?;
        for item in items {
            let (event, json) = match item {
                Ok((Incoming::Spend(event), json)) => (*event, json),
                Ok((Incoming::Threshold(alert), json)) => {
                    let row = AlertRow::from_threshold(&alert);
                    let webhooks = &self.webhooks;
                    let inserted =
                        sqlite_alerts::insert(&tx, &alert.id, &row, &json, now, webhooks)
                            .map_err(internal)?;
                    reply.acknowledged.push(alert.id);
                    if inserted {
                        reply.accepted += 1;
                    } else {
                        reply.duplicates += 1;
                    }
                    continue;
                }
                Err(rejected) => {
                    reply.rejected.push(rejected);
                    continue;
                }
            };
            let d = &event.data;
            let inserted = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO events (id, source, time, received_at, key_hash, key_alias,
                        team_id, user_id, end_user, requested_model, resolved_model, deployment,
                        provider, status, prompt_tokens, completion_tokens, estimated,
                        cost_nano_usd, cost_source, policy_version, json, ended_at)
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                        ?17, ?18, ?19, ?20, ?21, ?22
                     WHERE NOT EXISTS (SELECT 1 FROM pruned_events WHERE id = ?1)",
                )
                .and_then(|mut insert| {
                    insert.execute(params![
                        event.id,
                        event.source,
                        event.time,
                        now,
                        d.key_hash,
                        d.key_alias,
                        d.team_id,
                        d.user_id,
                        d.end_user,
                        d.requested_model,
                        d.resolved_model,
                        d.deployment,
                        d.provider,
                        d.status,
                        d.usage.prompt_tokens as i64,
                        d.usage.completion_tokens as i64,
                        d.usage.estimated,
                        d.cost_nano_usd as i64,
                        d.cost_source,
                        d.policy_version,
                        json,
                        super::ended_at(&event.time).unwrap_or(now),
                    ])
                })
                .map_err(internal)?;
            for budget in &d.budgets {
                touched.push((budget.budget.clone(), budget.window_start));
            }
            for limit in &d.limits {
                touched_limits.push((limit.limit.clone(), limit.window_start));
            }
            reply.acknowledged.push(event.id.clone());
            if inserted == 0 {
                reply.duplicates += 1;
                continue;
            }
            reply.accepted += 1;
            for tag in &d.tags {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO event_tags (event_id, tag) VALUES (?1, ?2)",
                )
                .and_then(|mut insert| insert.execute(params![event.id, tag]))
                .map_err(internal)?;
            }
            limit_windows::add(&mut added_limits, &d.limits);
            for budget in &d.budgets {
                let window = (budget.budget.clone(), budget.window_start);
                let added = added_spend
                    .entry(window)
                    .or_insert_with(|| WindowAdd::new(budget, d));
                added.add(d.cost_nano_usd as i64, budget.max_nano_usd);
            }
        }
        // One upsert per window the batch touched (not one per event): the window's total grows
        // by the batch's sum, and its change number is the batch's next.
        let mut totals = std::collections::HashMap::new();
        for ((budget, window_start), add) in &added_spend {
            change += 1;
            let total: i64 = tx
                .prepare_cached(
                    "INSERT INTO budget_windows (budget, window_start, window_end, spend_nano_usd, changed,
                    max_nano_usd)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (budget, window_start) DO UPDATE SET
                    spend_nano_usd = CASE WHEN spend_nano_usd > 9223372036854775807 - excluded.spend_nano_usd THEN 9223372036854775807 ELSE spend_nano_usd + excluded.spend_nano_usd END,
                    changed = excluded.changed,
                    max_nano_usd = COALESCE(excluded.max_nano_usd, max_nano_usd)
                 RETURNING spend_nano_usd",
                )
                .and_then(|mut upsert| {
                    upsert.query_row(
                        params![
                            budget,
                            window_start,
                            add.end,
                            add.sum,
                            change,
                            add.max.map(|m| i64::try_from(m).unwrap_or(i64::MAX))
                        ],
                        |r| r.get(0),
                    )
                })
                .map_err(internal)?;
            totals.insert((budget.clone(), *window_start), total);
        }
        let raised = percent_alerts(
            &self.percents,
            &added_spend,
            |w| totals.get(w).copied(),
            now,
        );
        for alert in raised {
            let json = alert.row.to_json().to_string();
            sqlite_alerts::insert(&tx, &alert.id, &alert.row, &json, now, &self.webhooks)
                .map_err(internal)?;
        }
        change = limit_windows::store(&tx, added_limits, change).map_err(internal)?;
        tx.execute(
            "INSERT INTO counters (name, value) VALUES ('change', ?1)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            params![change],
        )
        .map_err(internal)?;
        touched.sort();
        touched.dedup();
        for (budget, start) in touched {
            if let Some(total) = window(&tx, &budget, start).map_err(internal)? {
                reply.budgets.push(total);
            }
        }
        touched_limits.sort();
        touched_limits.dedup();
        for (limit, start) in touched_limits {
            if let Some(total) = limit_windows::total(&tx, &limit, start).map_err(internal)? {
                reply.limits.push(total);
            }
        }
        tx.commit().map_err(internal)?;
        Ok(reply)
    }

    /// Totals of windows still open at `now` that changed after `since`.
    pub fn budgets_since(&self, since: u64, now: i64) -> Result<BudgetsReply, String> {
        let mut statement = self
            .db
            .prepare(
                "SELECT budget, window_start, window_end, spend_nano_usd, changed FROM budget_windows
                 WHERE changed > ?1 AND (window_end IS NULL OR window_end > ?2)
                 ORDER BY changed",
            )
            .map_err(|e| e.to_string())?;
        let (limits, limits_cursor) =
            limit_windows::since(&self.db, since, now).map_err(|e| e.to_string())?;
        let mut reply = BudgetsReply {
            cursor: since.max(limits_cursor),
            budgets: Vec::new(),
            limits,
        };
        let rows = statement
            .query_map(params![since as i64, now], |r| {
                Ok((
                    BudgetTotal {
                        budget: r.get(0)?,
                        window_start: r.get(1)?,
                        window_end: r.get(2)?,
                        spend_nano_usd: r.get::<_, i64>(3)? as u64,
                    },
                    r.get::<_, i64>(4)? as u64,
                ))
            })
            .map_err(|e| e.to_string())?;
        for row in rows {
            let (total, changed) = row.map_err(|e| e.to_string())?;
            reply.cursor = reply.cursor.max(changed);
            reply.budgets.push(total);
        }
        let latest = change_counter(&self.db).map_err(|e| e.to_string())?;
        reply.cursor = reply.cursor.max(latest as u64);
        Ok(reply)
    }

    /// Spend grouped for people: totals by key, team, model and status.
    pub fn report(&self) -> Result<Value, String> {
        let group = |dimension: Dimension| -> Result<Value, String> {
            grouped_on(&self.db, &ReportQuery::all(dimension))
                .map(|rows| ReportQuery::rows_json(&rows))
        };
        let (events, pruned): (i64, i64) = self
            .db
            .query_row(super::retention::COUNTS_SQL, [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(|e| e.to_string())?;
        let budgets = self.budgets_since(0, i64::MIN)?;
        let alerts = self.alerts().map_err(|e| e.to_string())?;
        Ok(serde_json::json!({
            "events": events,
            "events_pruned": pruned,
            "by_key": group(Dimension::Key)?,
            "by_team": group(Dimension::Team)?,
            "by_model": group(Dimension::Model)?,
            "by_status": group(Dimension::Status)?,
            "budget_windows": budgets.budgets,
            "alerts": alerts,
            "alert_deliveries": sqlite_alerts::deliveries(&self.db).map_err(|e| e.to_string())?,
        }))
    }

    /// Every threshold reached, one per budget window, oldest first.
    fn alerts(&self) -> rusqlite::Result<Vec<Value>> {
        let mut statement = self.db.prepare(
            "SELECT threshold, budget, scope, holder, model, window_start, window_end,
                    threshold_nano_usd, limit_nano_usd, spend_nano_usd, time, source
             FROM alerts ORDER BY time, id",
        )?;
        let rows =
            statement.query_map([], |r| sqlite_alerts::alert_row(r, 0).map(|a| a.to_json()))?;
        rows.collect()
    }
}

/// The groups of a grouped report; summed again in floating point (capped) when SQLite's exact
/// sum overflows.
fn grouped_on(db: &Connection, query: &ReportQuery) -> Result<Vec<GroupRow>, String> {
    match grouped_as(db, query, Dialect::Sqlite) {
        Err(e) if e.contains("integer overflow") => grouped_as(db, query, Dialect::SqliteTotal),
        other => other,
    }
}

fn grouped_as(
    db: &Connection,
    query: &ReportQuery,
    dialect: Dialect,
) -> Result<Vec<GroupRow>, String> {
    let (sql, params) = query.sql(dialect);
    let mut statement = db.prepare(&sql).map_err(|e| e.to_string())?;
    let values: Vec<rusqlite::types::Value> = params
        .into_iter()
        .map(|p| match p {
            Param::Text(text) => rusqlite::types::Value::Text(text),
            Param::Int(n) => rusqlite::types::Value::Integer(n),
        })
        .collect();
    let rows = statement
        .query_map(rusqlite::params_from_iter(values), |r| {
            Ok(GroupRow {
                name: r.get(0)?,
                requests: r.get(1)?,
                prompt_tokens: r.get(2)?,
                completion_tokens: r.get(3)?,
                cost_nano_usd: r.get(4)?,
                estimated: r.get(5)?,
            })
        })
        .map_err(|e| e.to_string())?;
    rows.collect::<Result<_, _>>().map_err(|e| e.to_string())
}

/// The schema's version (`PRAGMA user_version`) this binary writes: 2 added `ended_at` and
/// `event_tags` (spend attribution), 3 `alert_deliveries` (webhooks), 4 each budget
/// window's limit (the spend page), 5 the rollups and ids of pruned events (retention).
const SCHEMA_VERSION: i64 = 5;

/// Brings a database made by an older binary up to [`SCHEMA_VERSION`]; refuses a newer one.
fn migrate(db: &Connection) -> rusqlite::Result<()> {
    let version: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "the database's schema is version {version}, newer than this tollgate knows \
             ({SCHEMA_VERSION}): upgrade tollgate"
        )));
    }
    if version < 2 {
        let has_ended_at = db
            .prepare("SELECT 1 FROM pragma_table_info('events') WHERE name = 'ended_at'")?
            .exists([])?;
        let tx = db.unchecked_transaction()?;
        if !has_ended_at {
            tx.execute_batch(
                "ALTER TABLE events ADD COLUMN ended_at INTEGER;
                 UPDATE events SET ended_at = received_at;",
            )?;
        }
        tx.execute_batch(
            "CREATE INDEX IF NOT EXISTS events_ended_at ON events (ended_at);
             CREATE TABLE IF NOT EXISTS event_tags (
                 event_id TEXT NOT NULL,
                 tag TEXT NOT NULL,
                 PRIMARY KEY (tag, event_id)
             );
             CREATE INDEX IF NOT EXISTS event_tags_event ON event_tags (event_id);
             PRAGMA user_version = 2;",
        )?;
        tx.commit()?;
    }
    if version < 3 {
        let tx = db.unchecked_transaction()?;
        tx.execute_batch(sqlite_alerts::DELIVERIES_SCHEMA)?;
        tx.execute_batch("PRAGMA user_version = 3;")?;
        tx.commit()?;
    }
    if version < 4 {
        let has_max = db
            .prepare(
                "SELECT 1 FROM pragma_table_info('budget_windows') WHERE name = 'max_nano_usd'",
            )?
            .exists([])?;
        let tx = db.unchecked_transaction()?;
        if !has_max {
            tx.execute_batch("ALTER TABLE budget_windows ADD COLUMN max_nano_usd INTEGER;")?;
        }
        tx.execute_batch("PRAGMA user_version = 4;")?;
        tx.commit()?;
    }
    if version < 5 {
        let tx = db.unchecked_transaction()?;
        tx.execute_batch(super::retention::SCHEMA)?;
        tx.execute_batch("PRAGMA user_version = 5;")?;
        tx.commit()?;
    }
    Ok(())
}

/// The change cursor: bumped each time spend is added to a window.
fn change_counter(db: &Connection) -> rusqlite::Result<i64> {
    db.query_row(
        "SELECT value FROM counters WHERE name = 'change'",
        [],
        |r| r.get(0),
    )
    .optional()
    .map(|value| value.unwrap_or(0))
}

fn window(db: &Connection, budget: &str, start: i64) -> rusqlite::Result<Option<BudgetTotal>> {
    db.query_row(
        "SELECT window_end, spend_nano_usd FROM budget_windows WHERE budget = ?1 AND window_start = ?2",
        params![budget, start],
        |r| {
            Ok(BudgetTotal {
                budget: budget.to_string(),
                window_start: start,
                window_end: r.get(0)?,
                spend_nano_usd: r.get::<_, i64>(1)? as u64,
            })
        },
    )
    .optional()
}

#[cfg(test)]
#[path = "sqlite_tests.rs"]
mod tests;
