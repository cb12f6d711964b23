//! Rate-limit windows in the SQLite store: what every replica counted per limit and window
//! (requests, tokens), summed from the events' `data.limits` exactly once per event, and
//! answered to batches and polls as budget totals are.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};
use tollgate::core::spend::accounting_api::LimitTotal;
use tollgate::core::spend::event::LimitRef;

/// The table (created with the rest of the schema).
pub const LIMITS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS limit_windows (
    limit_name TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    window_end INTEGER NOT NULL,
    count INTEGER NOT NULL,
    changed INTEGER NOT NULL,
    PRIMARY KEY (limit_name, window_start)
);
CREATE INDEX IF NOT EXISTS limit_windows_changed ON limit_windows (changed);
";

/// What one batch adds, per window: `(limit, window start) → (window end, count)`.
pub type Added = BTreeMap<(String, i64), (i64, i64)>;

/// Notes an event's counts in `added` (only for an event stored now, never for a repeat).
pub fn add(added: &mut Added, limits: &[LimitRef]) {
    for limit in limits {
        let window = (limit.limit.clone(), limit.window_start);
        let entry = added.entry(window).or_insert((limit.window_end, 0));
        let count = i64::try_from(limit.count).unwrap_or(i64::MAX);
        entry.1 = entry.1.saturating_add(count);
    }
}

/// One upsert per window the batch added to, each with the batch's next change number.
/// Returns the last change number used.
pub fn store(db: &Connection, added: Added, mut change: i64) -> rusqlite::Result<i64> {
    for ((limit, start), (end, count)) in added {
        change += 1;
        db.prepare_cached(
            "INSERT INTO limit_windows (limit_name, window_start, window_end, count, changed)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (limit_name, window_start) DO UPDATE SET
                count = CASE WHEN count > 9223372036854775807 - excluded.count THEN 9223372036854775807 ELSE count + excluded.count END,
                changed = excluded.changed",
        )?
        .execute(params![limit, start, end, count, change])?;
    }
    Ok(change)
}

/// The current total of one window.
pub fn total(db: &Connection, limit: &str, start: i64) -> rusqlite::Result<Option<LimitTotal>> {
    db.query_row(
        "SELECT window_end, count FROM limit_windows WHERE limit_name = ?1 AND window_start = ?2",
        params![limit, start],
        |r| {
            Ok(LimitTotal {
                limit: limit.to_string(),
                window_start: start,
                window_end: r.get(0)?,
                count: r.get::<_, i64>(1)? as u64,
            })
        },
    )
    .optional()
}

/// Windows still open at `now` that changed after `since`, with the largest change number seen.
pub fn since(db: &Connection, since: u64, now: i64) -> rusqlite::Result<(Vec<LimitTotal>, u64)> {
    let mut statement = db.prepare_cached(
        "SELECT limit_name, window_start, window_end, count, changed FROM limit_windows
         WHERE changed > ?1 AND window_end > ?2 ORDER BY changed",
    )?;
    let rows = statement.query_map(params![since as i64, now], |r| {
        Ok((
            LimitTotal {
                limit: r.get(0)?,
                window_start: r.get(1)?,
                window_end: r.get(2)?,
                count: r.get::<_, i64>(3)? as u64,
            },
            r.get::<_, i64>(4)? as u64,
        ))
    })?;
    let mut out = Vec::new();
    let mut cursor = since;
    for row in rows {
        let (total, changed) = row?;
        cursor = cursor.max(changed);
        out.push(total);
    }
    Ok((out, cursor))
}
