//! Alerts in the PostgreSQL store: each stored once by id with one delivery row per configured
//! webhook in the same transaction, and deliveries taken with `FOR UPDATE SKIP LOCKED`, so two
//! instances never attempt the same delivery at once.

use postgres::{Client, Transaction};
use serde_json::Value;

use super::AlertRow;
use crate::accounting::alerts::delivery::{backoff, Delivery, LEASE_SECONDS, MAX_ATTEMPTS};

/// Stores an alert once (by id), and when it is new, a delivery for each of `webhooks`.
/// Returns whether it was new.
pub fn insert(
    tx: &mut Transaction<'_>,
    id: &str,
    row: &AlertRow,
    json: &str,
    now: i64,
    webhooks: &[String],
) -> Result<bool, postgres::Error> {
    let inserted = tx.execute(
        "INSERT INTO alerts (id, source, time, received_at, threshold, budget, scope, holder,
            model, window_start, window_end, threshold_nano_usd, limit_nano_usd,
            spend_nano_usd, json)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
         ON CONFLICT (id) DO NOTHING",
        &[
            &id,
            &row.source,
            &row.time,
            &now,
            &row.threshold,
            &row.budget,
            &row.scope,
            &row.holder,
            &row.model,
            &row.window_start,
            &row.window_end,
            &row.threshold_nano_usd,
            &row.limit_nano_usd,
            &row.spend_nano_usd,
            &json,
        ],
    )?;
    if inserted == 0 {
        return Ok(false);
    }
    if !webhooks.is_empty() {
        tx.execute(
            "INSERT INTO alert_deliveries (alert_id, webhook, next_attempt_at)
             SELECT $1, webhook, $3 FROM unnest($2::text[]) AS w (webhook)
             ON CONFLICT DO NOTHING",
            &[&id, &webhooks, &now],
        )?;
    }
    Ok(true)
}

const ALERT_COLUMNS: &str = "a.threshold, a.budget, a.scope, a.holder, a.model, a.window_start,
    a.window_end, a.threshold_nano_usd, a.limit_nano_usd, a.spend_nano_usd, a.time, a.source";

/// An alert row read with [`ALERT_COLUMNS`] from column `at` on.
pub fn alert_row(r: &postgres::Row, at: usize) -> AlertRow {
    AlertRow {
        threshold: r.get(at),
        budget: r.get(at + 1),
        scope: r.get(at + 2),
        holder: r.get(at + 3),
        model: r.get(at + 4),
        window_start: r.get(at + 5),
        window_end: r.get(at + 6),
        threshold_nano_usd: r.get(at + 7),
        limit_nano_usd: r.get(at + 8),
        spend_nano_usd: r.get(at + 9),
        time: r.get(at + 10),
        source: r.get(at + 11),
    }
}

/// Takes up to `limit` due deliveries to `webhooks`, reserving them for [`LEASE_SECONDS`].
pub fn due(
    client: &mut Client,
    now: i64,
    webhooks: &[String],
    limit: usize,
) -> Result<Vec<Delivery>, postgres::Error> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let sql = format!(
        "WITH taken AS (
             UPDATE alert_deliveries d SET next_attempt_at = $1 + $2
             WHERE (d.alert_id, d.webhook) IN (
                 SELECT alert_id, webhook FROM alert_deliveries
                 WHERE delivered_at IS NULL AND attempts < $3 AND next_attempt_at <= $1
                   AND webhook = ANY($4)
                 ORDER BY next_attempt_at LIMIT $5
                 FOR UPDATE SKIP LOCKED)
             RETURNING d.alert_id, d.webhook, d.attempts)
         SELECT t.alert_id, t.webhook, t.attempts, {ALERT_COLUMNS}
         FROM taken t JOIN alerts a ON a.id = t.alert_id"
    );
    let rows = client.query(
        sql.as_str(),
        &[&now, &LEASE_SECONDS, &MAX_ATTEMPTS, &webhooks, &limit],
    )?;
    Ok(rows
        .iter()
        .map(|r| Delivery {
            alert_id: r.get(0),
            webhook: r.get(1),
            attempts: r.get(2),
            lease: now + LEASE_SECONDS,
            alert: alert_row(r, 3).to_json(),
        })
        .collect())
}

/// Records an attempt: delivered, or to be retried after the backoff.
pub fn record(
    client: &mut Client,
    d: &Delivery,
    now: i64,
    outcome: &Result<(), String>,
) -> Result<(), postgres::Error> {
    let attempts = d.attempts + 1;
    match outcome {
        Ok(()) => client.execute(
            "UPDATE alert_deliveries SET attempts = $3, delivered_at = $4, last_error = NULL
             WHERE alert_id = $1 AND webhook = $2 AND next_attempt_at = $5
               AND delivered_at IS NULL",
            &[&d.alert_id, &d.webhook, &attempts, &now, &d.lease],
        )?,
        Err(e) => client.execute(
            "UPDATE alert_deliveries SET attempts = $3, next_attempt_at = $4, last_error = $5
             WHERE alert_id = $1 AND webhook = $2 AND next_attempt_at = $6
               AND delivered_at IS NULL",
            &[
                &d.alert_id,
                &d.webhook,
                &attempts,
                &(now + backoff(attempts)),
                e,
                &d.lease,
            ],
        )?,
    };
    Ok(())
}

/// Every delivery, for the report.
pub fn deliveries(tx: &mut Transaction<'_>) -> Result<Vec<Value>, postgres::Error> {
    let rows = tx.query(
        "SELECT alert_id, webhook, attempts, delivered_at, last_error FROM alert_deliveries
         ORDER BY alert_id, webhook",
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|r| super::delivery_json(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect())
}
