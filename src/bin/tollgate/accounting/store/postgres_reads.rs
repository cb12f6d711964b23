//! The PostgreSQL store's reads: budget polls and the spend report, each in one read-only
//! `REPEATABLE READ` snapshot.

use postgres::types::ToSql;
use postgres::{Client, IsolationLevel, Transaction};
use serde_json::Value;
use tollgate::core::spend::accounting_api::{BudgetTotal, BudgetsReply};

use super::postgres::{as_i64, budget_total, described, limit_total};
use super::report::{Dialect, Dimension, GroupRow, Param, ReportQuery};

/// Totals of windows still open at `now` that changed after `since`, read in one snapshot with
/// the counter, so the cursor covers exactly what was read.
pub fn budgets_since(client: &mut Client, since: u64, now: i64) -> Result<BudgetsReply, String> {
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(|e| described(&e))?;
    let since_i64 = as_i64(since);
    let budgets = tx
        .query(
            "SELECT budget, window_start, window_end, spend_nano_usd FROM budget_windows
             WHERE changed > $1 AND (window_end IS NULL OR window_end > $2)
             ORDER BY changed",
            &[&since_i64, &now],
        )
        .map_err(|e| described(&e))?;
    let limits = tx
        .query(
            "SELECT limit_name, window_start, window_end, count FROM limit_windows
             WHERE changed > $1 AND window_end > $2 ORDER BY changed",
            &[&since_i64, &now],
        )
        .map_err(|e| described(&e))?;
    let latest: i64 = tx
        .query_one("SELECT value FROM counters WHERE name = 'change'", &[])
        .map_err(|e| described(&e))?
        .get(0);
    tx.commit().map_err(|e| described(&e))?;
    Ok(BudgetsReply {
        cursor: since.max(u64::try_from(latest).unwrap_or(0)),
        budgets: budgets.iter().map(budget_total).collect(),
        limits: limits.iter().map(limit_total).collect(),
    })
}

/// The spend report, read in one snapshot.
pub fn report(client: &mut Client) -> Result<Value, String> {
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(|e| described(&e))?;
    let mut group = |dimension: Dimension| -> Result<Value, String> {
        grouped_in(&mut tx, &ReportQuery::all(dimension)).map(|rows| ReportQuery::rows_json(&rows))
    };
    let by_key = group(Dimension::Key)?;
    let by_team = group(Dimension::Team)?;
    let by_model = group(Dimension::Model)?;
    let by_status = group(Dimension::Status)?;
    let counts = tx
        .query_one(super::retention::COUNTS_SQL, &[])
        .map_err(|e| described(&e))?;
    let (events, pruned): (i64, i64) = (counts.get(0), counts.get(1));
    let windows = tx
        .query(
            "SELECT budget, window_start, window_end, spend_nano_usd FROM budget_windows
             ORDER BY changed",
            &[],
        )
        .map_err(|e| described(&e))?;
    let alerts = tx
        .query(
            "SELECT a.threshold, a.budget, a.scope, a.holder, a.model, a.window_start,
                    a.window_end, a.threshold_nano_usd, a.limit_nano_usd, a.spend_nano_usd,
                    a.time, a.source
             FROM alerts a ORDER BY a.time, a.id",
            &[],
        )
        .map_err(|e| described(&e))?;
    let deliveries = super::postgres_alerts::deliveries(&mut tx).map_err(|e| described(&e))?;
    tx.commit().map_err(|e| described(&e))?;
    let alerts: Vec<Value> = alerts
        .iter()
        .map(|r| super::postgres_alerts::alert_row(r, 0).to_json())
        .collect();
    let windows: Vec<BudgetTotal> = windows.iter().map(budget_total).collect();
    Ok(serde_json::json!({
        "events": events,
        "events_pruned": pruned,
        "by_key": by_key,
        "by_team": by_team,
        "by_model": by_model,
        "by_status": by_status,
        "budget_windows": windows,
        "alerts": alerts,
        "alert_deliveries": deliveries,
    }))
}

/// The groups of a grouped report, in one read-only statement.
pub fn grouped(client: &mut Client, query: &ReportQuery) -> Result<Vec<GroupRow>, String> {
    let mut tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .map_err(|e| described(&e))?;
    let rows = grouped_in(&mut tx, query)?;
    tx.commit().map_err(|e| described(&e))?;
    Ok(rows)
}

fn grouped_in(tx: &mut Transaction<'_>, query: &ReportQuery) -> Result<Vec<GroupRow>, String> {
    let (sql, params) = query.sql(Dialect::Postgres);
    let boxed: Vec<Box<dyn ToSql + Sync>> = params
        .into_iter()
        .map(|p| -> Box<dyn ToSql + Sync> {
            match p {
                Param::Text(text) => Box::new(text),
                Param::Int(n) => Box::new(n),
            }
        })
        .collect();
    let refs: Vec<&(dyn ToSql + Sync)> = boxed.iter().map(|b| b.as_ref()).collect();
    let rows = tx.query(sql.as_str(), &refs).map_err(|e| described(&e))?;
    Ok(rows
        .iter()
        .map(|r| GroupRow {
            name: r.get(0),
            requests: r.get(1),
            prompt_tokens: r.get(2),
            completion_tokens: r.get(3),
            cost_nano_usd: r.get(4),
            estimated: r.get(5),
        })
        .collect())
}

/// The open budget windows and the latest alerts, for the spend page.
pub fn page_data(
    client: &mut Client,
    now: i64,
    limit: usize,
) -> Result<(Vec<super::WindowRow>, Vec<Value>), String> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let sql = super::PAGE_WINDOWS_SQL
        .replace("{now}", "$1")
        .replace("{limit}", "$2");
    let windows = client
        .query(sql.as_str(), &[&now, &limit])
        .map_err(|e| described(&e))?
        .iter()
        .map(|r| super::WindowRow {
            budget: r.get(0),
            window_start: r.get(1),
            window_end: r.get(2),
            spend_nano_usd: r.get(3),
            max_nano_usd: r.get(4),
        })
        .collect();
    let alerts = client
        .query(
            "SELECT a.threshold, a.budget, a.scope, a.holder, a.model, a.window_start,
                    a.window_end, a.threshold_nano_usd, a.limit_nano_usd, a.spend_nano_usd,
                    a.time, a.source
             FROM alerts a ORDER BY a.time DESC, a.id LIMIT $1",
            &[&limit],
        )
        .map_err(|e| described(&e))?
        .iter()
        .map(|r| super::postgres_alerts::alert_row(r, 0).to_json())
        .collect();
    Ok((windows, alerts))
}
