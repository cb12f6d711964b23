//! Durable spend storage in PostgreSQL, shared by several accounting instances.
//!
//! A batch is one transaction: its events are inserted with `INSERT … ON CONFLICT (id) DO
//! NOTHING` (one statement for the batch, ids in sorted order so that two instances storing the
//! same batch at once never deadlock), and the windows its new events touched are upserted in
//! the same transaction. Each window change takes the next number of one counter row, and that
//! row stays locked until the transaction commits: change numbers therefore commit in order, and
//! a poller whose cursor is the counter it read can never skip a change that commits later with
//! a smaller number (the out-of-order commit a plain sequence would allow). The cost is that
//! batches which add spend commit one after another, which they would anyway: they grow the
//! same hot window rows.

use std::collections::{BTreeMap, HashSet};

use postgres::error::SqlState;
use postgres::Transaction;
use r2d2_postgres::r2d2::{Pool, PooledConnection};
use serde_json::Value;
use tollgate::core::spend::accounting_api::{BatchReply, BudgetTotal, BudgetsReply, LimitTotal};
use tollgate::core::spend::event::SpendEvent;
use tollgate::core::spend::threshold::ThresholdEvent;

use super::batch::{Batch, Item};
use super::postgres_alerts;
use super::postgres_connect::{self, Manager};
use super::postgres_reads;
use super::postgres_retention;
use super::postgres_schema::migrate;
use super::report::{GroupRow, ReportQuery};
use super::retention::Pruned;
use super::{AlertRow, SpendStore, WindowRow};
use crate::accounting::alerts::delivery::Delivery;
use crate::accounting::alerts::{percent_alerts, Alerting, WindowAdd};

/// Attempts of a batch whose transaction PostgreSQL aborted as a deadlock or serialization
/// failure (both safe to run again: nothing of the attempt was kept).
const ATTEMPTS: usize = 3;

/// The PostgreSQL store: a pool of connections to one database.
pub struct PostgresStore {
    /// Always `Some` until dropped.
    pool: Option<Pool<Manager>>,
    /// Shares of a budget whose crossing raises an alert.
    percents: Vec<u32>,
    /// Ids of the webhooks each new alert is delivered to.
    webhooks: Vec<String>,
}

impl Drop for PostgresStore {
    /// The pool is dropped on a thread of its own: closing a rust-postgres client blocks on a
    /// runtime of its own, which panics on a thread that is driving the server's runtime (as
    /// the thread ending the server at shutdown is).
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            let _ = std::thread::spawn(move || drop(pool)).join();
        }
    }
}

/// A store failure: status for the answer and a message for the log.
type Failure = (u16, String);

fn internal(e: postgres::Error) -> Failure {
    let transient = e.code().is_some_and(|c| {
        [
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::LOCK_NOT_AVAILABLE,
            SqlState::QUERY_CANCELED,
        ]
        .contains(c)
    });
    // A value PostgreSQL refuses (class 22, data exception) fails every retry of this batch:
    // 422 makes the sender split it until the event at fault is alone, and quarantine it.
    let data = e.code().is_some_and(|c| c.code().starts_with("22"));
    // A closed connection or a restarting server: the sender retries the batch later.
    let status = if data {
        422
    } else if transient || e.is_closed() || e.code().is_none() {
        503
    } else {
        500
    };
    (status, format!("database: {}", described(&e)))
}

/// A PostgreSQL error with its SQLSTATE and message (the plain `Display` says only "db error").
pub(super) fn described(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

fn is_retryable(e: &postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

impl PostgresStore {
    /// Connects to `db` with a pool of `pool_size` connections and applies the migrations.
    pub fn open(
        db: &str,
        options: &super::DbOptions,
        alerting: &Alerting,
    ) -> Result<PostgresStore, String> {
        let target = postgres_connect::parse(db, options.ca_file.as_deref())?;
        let mut client = postgres_connect::first_connection(&target)?;
        postgres_connect::check_encoding(&mut client)?;
        migrate(&mut client)?;
        drop(client);
        Ok(PostgresStore {
            pool: Some(postgres_connect::pool(target, options.pool_size)),
            percents: alerting.percents.clone(),
            webhooks: alerting.webhook_ids(),
        })
    }

    /// The database, for log lines (no password).
    pub fn describe(db: &str) -> String {
        postgres_connect::parse_config(db)
            .map_or_else(|_| "postgres://…".into(), |c| postgres_connect::display(&c))
    }

    fn client(&self) -> Result<PooledConnection<Manager>, Failure> {
        self.pool
            .as_ref()
            .ok_or_else(|| (503, "the store is closed".to_string()))?
            .get()
            .map_err(|e| (503, format!("no database connection: {e}")))
    }
}

pub(super) fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Inserts the batch's events once each; returns the ids stored now (the rest were stored before).
fn insert_events(
    tx: &mut Transaction<'_>,
    spends: &[(&SpendEvent, &str)],
    now: i64,
) -> Result<HashSet<String>, postgres::Error> {
    if spends.is_empty() {
        return Ok(HashSet::new());
    }
    let text = |f: fn(&SpendEvent) -> &str| spends.iter().map(|(e, _)| f(e)).collect::<Vec<_>>();
    let optional =
        |f: fn(&SpendEvent) -> Option<&str>| spends.iter().map(|(e, _)| f(e)).collect::<Vec<_>>();
    let number =
        |f: fn(&SpendEvent) -> u64| spends.iter().map(|(e, _)| as_i64(f(e))).collect::<Vec<_>>();
    let rows = tx.query(
        "INSERT INTO events (id, source, time, received_at, key_hash, key_alias, team_id, user_id,
            end_user, requested_model, resolved_model, deployment, provider, status,
            prompt_tokens, completion_tokens, estimated, cost_nano_usd, cost_source,
            policy_version, json, ended_at)
         SELECT id, source, time, $4, key_hash, key_alias, team_id, user_id, end_user,
            requested_model, resolved_model, deployment, provider, status, prompt_tokens,
            completion_tokens, estimated, cost_nano_usd, cost_source, policy_version, json,
            ended_at
         FROM unnest($1::text[], $2::text[], $3::text[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
            $14::text[], $15::bigint[], $16::bigint[], $17::boolean[], $18::bigint[],
            $19::text[], $20::text[], $21::text[], $22::bigint[])
            AS batch (id, source, time, key_hash, key_alias, team_id, user_id, end_user,
            requested_model, resolved_model, deployment, provider, status, prompt_tokens,
            completion_tokens, estimated, cost_nano_usd, cost_source, policy_version, json,
            ended_at)
         WHERE NOT EXISTS (SELECT 1 FROM pruned_events p WHERE p.id = batch.id)
         ON CONFLICT (id) DO NOTHING
         RETURNING id",
        &[
            &text(|e| &e.id),
            &text(|e| &e.source),
            &text(|e| &e.time),
            &now,
            &text(|e| &e.data.key_hash),
            &optional(|e| e.data.key_alias.as_deref()),
            &optional(|e| e.data.team_id.as_deref()),
            &optional(|e| e.data.user_id.as_deref()),
            &optional(|e| e.data.end_user.as_deref()),
            &text(|e| &e.data.requested_model),
            &text(|e| &e.data.resolved_model),
            &text(|e| &e.data.deployment),
            &text(|e| &e.data.provider),
            &text(|e| &e.data.status),
            &number(|e| e.data.usage.prompt_tokens),
            &number(|e| e.data.usage.completion_tokens),
            &spends
                .iter()
                .map(|(e, _)| e.data.usage.estimated)
                .collect::<Vec<_>>(),
            &number(|e| e.data.cost_nano_usd),
            &text(|e| &e.data.cost_source),
            &text(|e| &e.data.policy_version),
            &spends.iter().map(|(_, json)| *json).collect::<Vec<_>>(),
            &spends
                .iter()
                .map(|(e, _)| super::ended_at(&e.time).unwrap_or(now))
                .collect::<Vec<_>>(),
        ],
    )?;
    let stored: HashSet<String> = rows.iter().map(|row| row.get::<_, String>(0)).collect();
    let (ids, tags): (Vec<&str>, Vec<&str>) = spends
        .iter()
        .filter(|(e, _)| stored.contains(&e.id))
        .flat_map(|(e, _)| e.data.tags.iter().map(|tag| (e.id.as_str(), tag.as_str())))
        .unzip();
    if !ids.is_empty() {
        tx.execute(
            "INSERT INTO event_tags (event_id, tag) SELECT * FROM unnest($1::text[], $2::text[])
             ON CONFLICT DO NOTHING",
            &[&ids, &tags],
        )?;
    }
    Ok(stored)
}

/// Stores the batch's threshold events once each (by id), with their deliveries; returns the
/// ids stored now.
fn insert_alerts(
    tx: &mut Transaction<'_>,
    alerts: &[(&ThresholdEvent, &str)],
    now: i64,
    webhooks: &[String],
) -> Result<HashSet<String>, postgres::Error> {
    let mut stored = HashSet::new();
    for (alert, json) in alerts {
        let row = AlertRow::from_threshold(alert);
        if postgres_alerts::insert(tx, &alert.id, &row, json, now, webhooks)? {
            stored.insert(alert.id.clone());
        }
    }
    Ok(stored)
}

/// What the events stored now add: `(budget, start) → (end, nano-dollars)` and
/// `(limit, start) → (end, count)`.
#[derive(Default)]
struct Added {
    spend: BTreeMap<(String, i64), WindowAdd>,
    limits: BTreeMap<(String, i64), (i64, i64)>,
}

/// Takes `n` consecutive change numbers; the counter row stays locked until the transaction
/// ends, so change numbers commit in the order they are taken. Returns the first.
fn take_changes(tx: &mut Transaction<'_>, n: usize) -> Result<i64, postgres::Error> {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    let last: i64 = tx
        .query_one(
            "UPDATE counters SET value = value + $1 WHERE name = 'change' RETURNING value",
            &[&n],
        )?
        .get(0);
    Ok(last - n + 1)
}

/// Adds to the windows and returns their new totals.
fn store_windows(
    tx: &mut Transaction<'_>,
    added: &Added,
) -> Result<(Vec<BudgetTotal>, Vec<LimitTotal>), postgres::Error> {
    let count = added.spend.len() + added.limits.len();
    let mut totals = (Vec::new(), Vec::new());
    if count == 0 {
        return Ok(totals);
    }
    let first = take_changes(tx, count)?;
    let changes: Vec<i64> = (first..).take(count).collect();
    let (spend_changes, limit_changes) = changes.split_at(added.spend.len());
    if !added.spend.is_empty() {
        let names: Vec<&str> = added.spend.keys().map(|(b, _)| b.as_str()).collect();
        let starts: Vec<i64> = added.spend.keys().map(|(_, s)| *s).collect();
        let ends: Vec<Option<i64>> = added.spend.values().map(|a| a.end).collect();
        let sums: Vec<i64> = added.spend.values().map(|a| a.sum).collect();
        let maxes: Vec<Option<i64>> = added.spend.values().map(|a| a.max.map(as_i64)).collect();
        let rows = tx.query(
            "INSERT INTO budget_windows (budget, window_start, window_end, spend_nano_usd, changed,
                max_nano_usd)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[],
                $6::bigint[])
             ON CONFLICT (budget, window_start) DO UPDATE SET
                max_nano_usd = COALESCE(excluded.max_nano_usd, budget_windows.max_nano_usd),
                spend_nano_usd = CASE WHEN budget_windows.spend_nano_usd > 9223372036854775807 - excluded.spend_nano_usd THEN 9223372036854775807 ELSE budget_windows.spend_nano_usd + excluded.spend_nano_usd END,
                changed = excluded.changed
             RETURNING budget, window_start, window_end, spend_nano_usd",
            &[&names, &starts, &ends, &sums, &spend_changes, &maxes],
        )?;
        totals.0 = rows.iter().map(budget_total).collect();
    }
    if !added.limits.is_empty() {
        let names: Vec<&str> = added.limits.keys().map(|(l, _)| l.as_str()).collect();
        let starts: Vec<i64> = added.limits.keys().map(|(_, s)| *s).collect();
        let ends: Vec<i64> = added.limits.values().map(|(e, _)| *e).collect();
        let counts: Vec<i64> = added.limits.values().map(|(_, n)| *n).collect();
        let rows = tx.query(
            "INSERT INTO limit_windows (limit_name, window_start, window_end, count, changed)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])
             ON CONFLICT (limit_name, window_start) DO UPDATE SET
                count = CASE WHEN limit_windows.count > 9223372036854775807 - excluded.count THEN 9223372036854775807 ELSE limit_windows.count + excluded.count END,
                changed = excluded.changed
             RETURNING limit_name, window_start, window_end, count",
            &[&names, &starts, &ends, &counts, &limit_changes],
        )?;
        totals.1 = rows.iter().map(limit_total).collect();
    }
    Ok(totals)
}

/// The current totals of the windows a batch touched but added nothing to (all its events there
/// were stored before).
fn unchanged_totals(
    tx: &mut Transaction<'_>,
    budgets: &[(String, i64)],
    limits: &[(String, i64)],
) -> Result<(Vec<BudgetTotal>, Vec<LimitTotal>), postgres::Error> {
    let split =
        |windows: &[(String, i64)]| -> (Vec<String>, Vec<i64>) { windows.iter().cloned().unzip() };
    let mut totals = (Vec::new(), Vec::new());
    if !budgets.is_empty() {
        let (names, starts) = split(budgets);
        let rows = tx.query(
            "SELECT w.budget, w.window_start, w.window_end, w.spend_nano_usd
             FROM budget_windows w
             JOIN unnest($1::text[], $2::bigint[]) AS t (budget, window_start)
               ON w.budget = t.budget AND w.window_start = t.window_start",
            &[&names, &starts],
        )?;
        totals.0 = rows.iter().map(budget_total).collect();
    }
    if !limits.is_empty() {
        let (names, starts) = split(limits);
        let rows = tx.query(
            "SELECT w.limit_name, w.window_start, w.window_end, w.count
             FROM limit_windows w
             JOIN unnest($1::text[], $2::bigint[]) AS t (limit_name, window_start)
               ON w.limit_name = t.limit_name AND w.window_start = t.window_start",
            &[&names, &starts],
        )?;
        totals.1 = rows.iter().map(limit_total).collect();
    }
    Ok(totals)
}

pub(super) fn budget_total(row: &postgres::Row) -> BudgetTotal {
    BudgetTotal {
        budget: row.get(0),
        window_start: row.get(1),
        window_end: row.get(2),
        spend_nano_usd: u64::try_from(row.get::<_, i64>(3)).unwrap_or(0),
    }
}

pub(super) fn limit_total(row: &postgres::Row) -> LimitTotal {
    LimitTotal {
        limit: row.get(0),
        window_start: row.get(1),
        window_end: row.get(2),
        count: u64::try_from(row.get::<_, i64>(3)).unwrap_or(0),
    }
}

impl PostgresStore {
    /// One attempt at storing `batch` in one transaction.
    fn ingest_once(
        &self,
        batch: &Batch,
        batch_id: &str,
        now: i64,
    ) -> Result<Result<BatchReply, postgres::Error>, Failure> {
        let mut client = self.client()?;
        Ok(self.ingest_in(&mut client, batch, batch_id, now))
    }

    fn ingest_in(
        &self,
        client: &mut postgres::Client,
        batch: &Batch,
        batch_id: &str,
        now: i64,
    ) -> Result<BatchReply, postgres::Error> {
        let (percents, webhooks) = (&self.percents, &self.webhooks);
        let mut tx = client.transaction()?;
        // A batch never takes longer than this (its statements are bounded by the batch size).
        // Never beside a prune (see `postgres_retention`); batches share the lock among them.
        // One round trip for both.
        tx.batch_execute(&format!(
            "SET LOCAL statement_timeout = '15s'; SELECT pg_advisory_xact_lock_shared({})",
            postgres_retention::PRUNE_LOCK
        ))?;
        let stored = insert_events(&mut tx, &batch.spends(), now)?;
        let stored_alerts = insert_alerts(&mut tx, &batch.thresholds(), now, webhooks)?;
        let mut reply = BatchReply {
            batch_id: batch_id.to_string(),
            ..BatchReply::default()
        };
        let mut added = Added::default();
        let mut touched: Vec<(String, i64)> = Vec::new();
        let mut touched_limits: Vec<(String, i64)> = Vec::new();
        for item in &batch.items {
            match item {
                Item::Rejected(rejected) => reply.rejected.push(rejected.clone()),
                Item::Threshold { event, first, .. } => {
                    reply.acknowledged.push(event.id.clone());
                    if *first && stored_alerts.contains(&event.id) {
                        reply.accepted += 1;
                    } else {
                        reply.duplicates += 1;
                    }
                }
                Item::Spend { event, first, .. } => {
                    let d = &event.data;
                    reply.acknowledged.push(event.id.clone());
                    touched.extend(d.budgets.iter().map(|b| (b.budget.clone(), b.window_start)));
                    touched_limits
                        .extend(d.limits.iter().map(|l| (l.limit.clone(), l.window_start)));
                    if !(*first && stored.contains(&event.id)) {
                        reply.duplicates += 1;
                        continue;
                    }
                    reply.accepted += 1;
                    for budget in &d.budgets {
                        let key = (budget.budget.clone(), budget.window_start);
                        let entry = added
                            .spend
                            .entry(key)
                            .or_insert_with(|| WindowAdd::new(budget, d));
                        entry.add(as_i64(d.cost_nano_usd), budget.max_nano_usd);
                    }
                    for limit in &d.limits {
                        let key = (limit.limit.clone(), limit.window_start);
                        let entry = added.limits.entry(key).or_insert((limit.window_end, 0));
                        entry.1 = entry.1.saturating_add(as_i64(limit.count));
                    }
                }
            }
        }
        let (mut budgets, mut limits) = store_windows(&mut tx, &added)?;
        let total = |w: &(String, i64)| {
            budgets
                .iter()
                .find(|b| b.budget == w.0 && b.window_start == w.1)
                .map(|b| as_i64(b.spend_nano_usd))
        };
        for alert in percent_alerts(percents, &added.spend, total, now) {
            let json = alert.row.to_json().to_string();
            postgres_alerts::insert(&mut tx, &alert.id, &alert.row, &json, now, webhooks)?;
        }
        touched.sort();
        touched.dedup();
        touched.retain(|window| !added.spend.contains_key(window));
        touched_limits.sort();
        touched_limits.dedup();
        touched_limits.retain(|window| !added.limits.contains_key(window));
        let (other_budgets, other_limits) = unchanged_totals(&mut tx, &touched, &touched_limits)?;
        budgets.extend(other_budgets);
        limits.extend(other_limits);
        budgets.sort_by(|a, b| (&a.budget, a.window_start).cmp(&(&b.budget, b.window_start)));
        limits.sort_by(|a, b| (&a.limit, a.window_start).cmp(&(&b.limit, b.window_start)));
        reply.budgets = budgets;
        reply.limits = limits;
        tx.commit()?;
        Ok(reply)
    }
}

impl SpendStore for PostgresStore {
    fn ingest(&self, body: &[u8], batch_id: &str, now: i64) -> Result<BatchReply, Failure> {
        let batch = Batch::read(body)?;
        let mut attempt = 1;
        loop {
            match self.ingest_once(&batch, batch_id, now)? {
                Ok(reply) => return Ok(reply),
                Err(e) if is_retryable(&e) && attempt < ATTEMPTS => attempt += 1,
                Err(e) => return Err(internal(e)),
            }
        }
    }

    fn budgets_since(&self, since: u64, now: i64) -> Result<BudgetsReply, String> {
        let mut client = self.client().map_err(|(_, e)| e)?;
        postgres_reads::budgets_since(&mut client, since, now)
    }

    fn report(&self) -> Result<Value, String> {
        let mut client = self.client().map_err(|(_, e)| e)?;
        postgres_reads::report(&mut client)
    }

    fn grouped(&self, query: &ReportQuery) -> Result<Vec<GroupRow>, String> {
        let mut client = self.client().map_err(|(_, e)| e)?;
        postgres_reads::grouped(&mut client, query)
    }

    fn page_data(&self, now: i64, limit: usize) -> Result<(Vec<WindowRow>, Vec<Value>), String> {
        let mut client = self.client().map_err(|(_, e)| e)?;
        postgres_reads::page_data(&mut client, now, limit)
    }

    fn due_deliveries(
        &self,
        now: i64,
        webhooks: &[String],
        limit: usize,
    ) -> Result<Vec<Delivery>, String> {
        let mut client = self.client().map_err(|(_, e)| e)?;
        postgres_alerts::due(&mut client, now, webhooks, limit).map_err(|e| described(&e))
    }

    fn record_delivery(
        &self,
        delivery: &Delivery,
        now: i64,
        outcome: Result<(), String>,
    ) -> Result<(), String> {
        let mut client = self.client().map_err(|(_, e)| e)?;
        postgres_alerts::record(&mut client, delivery, now, &outcome).map_err(|e| described(&e))
    }

    fn prune(&self, before: i64, limit: usize) -> Result<Pruned, String> {
        let mut client = self.client().map_err(|(_, e)| e)?;
        postgres_retention::prune(&mut client, before, limit).map_err(|e| described(&e))
    }

    fn pool_state(&self) -> Option<(u32, u32)> {
        let state = self.pool.as_ref()?.state();
        Some((state.connections, state.idle_connections))
    }

    fn ready(&self) -> Result<(), String> {
        let mut client = self.client().map_err(|(_, e)| e)?;
        client
            .query_one("SELECT value FROM counters WHERE name = 'change'", &[])
            .map(|_| ())
            .map_err(|e| format!("the database does not answer: {}", described(&e)))
    }
}
