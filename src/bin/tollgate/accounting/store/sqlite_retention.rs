//! Retention in the SQLite store: one chunk of old events folded into rollups and deleted, in
//! one transaction on the writer connection (so no batch is stored while it runs). Every row
//! has `ended_at` here: the migration that added it filled it, and one process writes the file.

use rusqlite::{params, Connection};

use super::retention::{roll_up, saturating_adds, Dims, Pruned, StoredEvent, STORED_EVENT_COLUMNS};

/// Folds up to `limit` events that ended before `before` into rollups, keeps their ids, and
/// deletes them.
pub fn prune(db: &mut Connection, before: i64, limit: usize) -> rusqlite::Result<Pruned> {
    let tx = db.transaction()?;
    let mut events = {
        let mut select = tx.prepare_cached(&format!(
            "SELECT {STORED_EVENT_COLUMNS} FROM events WHERE ended_at < ?1 LIMIT ?2"
        ))?;
        let rows = select.query_map(
            params![before, i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
                Ok(StoredEvent {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    dims: Dims {
                        key_hash: r.get(2)?,
                        key_alias: r.get(3)?,
                        team_id: r.get(4)?,
                        user_id: r.get(5)?,
                        end_user: r.get(6)?,
                        resolved_model: r.get(7)?,
                        deployment: r.get(8)?,
                        provider: r.get(9)?,
                        status: r.get(10)?,
                        tags: Vec::new(),
                    },
                    prompt_tokens: r.get(11)?,
                    completion_tokens: r.get(12)?,
                    cost_nano_usd: r.get(13)?,
                    estimated: r.get(14)?,
                })
            },
        )?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    if events.is_empty() {
        return Ok(Pruned::default());
    }
    {
        let mut tags = tx.prepare_cached(
            "SELECT DISTINCT tag FROM event_tags WHERE event_id = ?1 ORDER BY tag",
        )?;
        for event in &mut events {
            event.dims.tags = tags
                .query_map(params![event.id], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
        }
    }
    let rollups = roll_up(&events);
    {
        let mut upsert = tx.prepare_cached(&format!(
            "INSERT INTO event_rollups (id, day_start, key_hash, key_alias, team_id, user_id,
                end_user, resolved_model, deployment, provider, status, tags, requests,
                prompt_tokens, completion_tokens, cost_nano_usd, estimated)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
             ON CONFLICT (id) DO UPDATE SET {}",
            saturating_adds("event_rollups")
        ))?;
        let mut tag = tx
            .prepare_cached("INSERT OR IGNORE INTO rollup_tags (rollup_id, tag) VALUES (?1, ?2)")?;
        for r in &rollups {
            let d = &r.dims;
            upsert.execute(params![
                r.id,
                r.day_start,
                d.key_hash,
                d.key_alias,
                d.team_id,
                d.user_id,
                d.end_user,
                d.resolved_model,
                d.deployment,
                d.provider,
                d.status,
                serde_json::to_string(&d.tags).unwrap_or_default(),
                r.requests,
                r.prompt_tokens,
                r.completion_tokens,
                r.cost_nano_usd,
                r.estimated,
            ])?;
            for name in &d.tags {
                tag.execute(params![r.id, name])?;
            }
        }
        let mut keep_id = tx
            .prepare_cached("INSERT OR IGNORE INTO pruned_events (id, ended_at) VALUES (?1, ?2)")?;
        let mut delete_tags = tx.prepare_cached("DELETE FROM event_tags WHERE event_id = ?1")?;
        let mut delete = tx.prepare_cached("DELETE FROM events WHERE id = ?1")?;
        for event in &events {
            keep_id.execute(params![event.id, event.at])?;
            delete_tags.execute(params![event.id])?;
            delete.execute(params![event.id])?;
        }
    }
    tx.commit()?;
    Ok(Pruned {
        events: events.len() as u64,
        rollups: rollups.len() as u64,
    })
}
