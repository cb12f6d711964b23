//! Alerts in the SQLite store: each stored once by id, with one delivery row per configured
//! webhook made in the same transaction, and the delivery thread's reads and updates.

use rusqlite::{params, Connection};
use serde_json::Value;

use super::AlertRow;
use crate::accounting::alerts::delivery::{backoff, Delivery, LEASE_SECONDS, MAX_ATTEMPTS};

/// The deliveries table (schema version 3).
pub const DELIVERIES_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS alert_deliveries (
    alert_id TEXT NOT NULL,
    webhook TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    delivered_at INTEGER,
    last_error TEXT,
    PRIMARY KEY (alert_id, webhook)
);
CREATE INDEX IF NOT EXISTS alert_deliveries_due ON alert_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL;
";

/// Stores an alert once (by id), and when it is new, a delivery for each of `webhooks`.
/// Returns whether it was new.
pub fn insert(
    tx: &Connection,
    id: &str,
    row: &AlertRow,
    json: &str,
    now: i64,
    webhooks: &[String],
) -> rusqlite::Result<bool> {
    let inserted = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO alerts (id, source, time, received_at, threshold, budget, scope,
                holder, model, window_start, window_end, threshold_nano_usd, limit_nano_usd,
                spend_nano_usd, json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )?
        .execute(params![
            id,
            row.source,
            row.time,
            now,
            row.threshold,
            row.budget,
            row.scope,
            row.holder,
            row.model,
            row.window_start,
            row.window_end,
            row.threshold_nano_usd,
            row.limit_nano_usd,
            row.spend_nano_usd,
            json,
        ])?;
    if inserted == 0 {
        return Ok(false);
    }
    for webhook in webhooks {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO alert_deliveries (alert_id, webhook, next_attempt_at)
             VALUES (?1, ?2, ?3)",
        )?
        .execute(params![id, webhook, now])?;
    }
    Ok(true)
}

const ALERT_COLUMNS: &str = "threshold, budget, scope, holder, model, window_start, window_end,
    threshold_nano_usd, limit_nano_usd, spend_nano_usd, time, source";

/// An alert row read with [`ALERT_COLUMNS`] from column `at` on.
pub fn alert_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<AlertRow> {
    Ok(AlertRow {
        threshold: r.get(at)?,
        budget: r.get(at + 1)?,
        scope: r.get(at + 2)?,
        holder: r.get(at + 3)?,
        model: r.get(at + 4)?,
        window_start: r.get(at + 5)?,
        window_end: r.get(at + 6)?,
        threshold_nano_usd: r.get(at + 7)?,
        limit_nano_usd: r.get(at + 8)?,
        spend_nano_usd: r.get(at + 9)?,
        time: r.get(at + 10)?,
        source: r.get(at + 11)?,
    })
}

/// Takes up to `limit` due deliveries to `webhooks`, reserving them for [`LEASE_SECONDS`].
pub fn due(
    db: &Connection,
    now: i64,
    webhooks: &[String],
    limit: usize,
) -> rusqlite::Result<Vec<Delivery>> {
    let known = serde_json::to_string(webhooks).unwrap_or_default();
    let mut taken = db.prepare_cached(
        "UPDATE alert_deliveries SET next_attempt_at = ?1 + ?2
         WHERE rowid IN (SELECT rowid FROM alert_deliveries
             WHERE delivered_at IS NULL AND attempts < ?3 AND next_attempt_at <= ?1
               AND webhook IN (SELECT value FROM json_each(?4))
             ORDER BY next_attempt_at LIMIT ?5)
         RETURNING alert_id, webhook, attempts",
    )?;
    let rows = taken.query_map(
        params![now, LEASE_SECONDS, MAX_ATTEMPTS, known, limit as i64],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?)),
    )?;
    let taken: Vec<(String, String, i64)> = rows.collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for (alert_id, webhook, attempts) in taken {
        let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1");
        let row = db.query_row(&sql, params![alert_id], |r| alert_row(r, 0))?;
        out.push(Delivery {
            alert_id,
            webhook,
            attempts,
            lease: now + LEASE_SECONDS,
            alert: row.to_json(),
        });
    }
    Ok(out)
}

/// Records an attempt: delivered, or to be retried after the backoff.
pub fn record(
    db: &Connection,
    d: &Delivery,
    now: i64,
    outcome: &Result<(), String>,
) -> rusqlite::Result<()> {
    let attempts = d.attempts + 1;
    match outcome {
        Ok(()) => db.execute(
            "UPDATE alert_deliveries SET attempts = ?3, delivered_at = ?4, last_error = NULL
             WHERE alert_id = ?1 AND webhook = ?2 AND next_attempt_at = ?5
               AND delivered_at IS NULL",
            params![d.alert_id, d.webhook, attempts, now, d.lease],
        )?,
        Err(e) => db.execute(
            "UPDATE alert_deliveries SET attempts = ?3, next_attempt_at = ?4, last_error = ?5
             WHERE alert_id = ?1 AND webhook = ?2 AND next_attempt_at = ?6
               AND delivered_at IS NULL",
            params![
                d.alert_id,
                d.webhook,
                attempts,
                now + backoff(attempts),
                e,
                d.lease
            ],
        )?,
    };
    Ok(())
}

/// Every delivery, for the report.
pub fn deliveries(db: &Connection) -> rusqlite::Result<Vec<Value>> {
    let mut statement = db.prepare(
        "SELECT alert_id, webhook, attempts, delivered_at, last_error FROM alert_deliveries
         ORDER BY alert_id, webhook",
    )?;
    let rows = statement.query_map([], |r| {
        Ok(super::delivery_json(
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
        ))
    })?;
    rows.collect()
}
