//! Retention in the PostgreSQL store: one chunk of old events folded into rollups and deleted,
//! in one transaction holding the prune lock exclusively.
//!
//! Every batch holds the same advisory lock shared for its whole transaction, so a batch never
//! runs beside a prune: a batch's insert either sees a pruned event's id in `pruned_events` (and
//! answers it as a duplicate) or runs before the prune reads the event. Without the lock a batch
//! that started before a prune committed could insert an event again the moment the prune
//! deleted it (its `ON CONFLICT` waits for the delete, then finds no row). Two instances pruning
//! at once take turns on the same lock, so neither folds an event the other folded.

use postgres::{Client, Transaction};

use super::retention::{roll_up, saturating_adds, Dims, Pruned, StoredEvent, STORED_EVENT_COLUMNS};

/// The advisory-lock key batches take shared and prunes exclusive ("tgprune" in hex).
pub const PRUNE_LOCK: i64 = 0x0074_6770_7275_6e65;

/// Folds up to `limit` events that ended before `before` into rollups, keeps their ids, and
/// deletes them.
pub fn prune(client: &mut Client, before: i64, limit: usize) -> Result<Pruned, postgres::Error> {
    let mut tx = client.transaction()?;
    tx.batch_execute("SET LOCAL statement_timeout = '10s'")?;
    // The candidates are found before the lock is taken, each kind of row on its own index, so
    // batches wait only for the fold itself (a scan under the lock held every batch of the fleet
    // for as long as the planner's choice took). Rows without `ended_at` come from binaries
    // older than migration 2.
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut candidates: Vec<String> = tx
        .query(
            "SELECT id FROM events WHERE ended_at < $1 LIMIT $2",
            &[&before, &limit],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let rest = limit.saturating_sub(i64::try_from(candidates.len()).unwrap_or(i64::MAX));
    if rest > 0 {
        let unended = tx.query(
            "SELECT id FROM events WHERE ended_at IS NULL AND received_at < $1 LIMIT $2",
            &[&before, &rest],
        )?;
        candidates.extend(unended.iter().map(|r| r.get::<_, String>(0)));
    }
    if candidates.is_empty() {
        tx.commit()?;
        return Ok(Pruned::default());
    }
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PRUNE_LOCK])?;
    // Under the lock, by primary key: what another instance pruned meanwhile is gone.
    let rows = tx.query(
        &format!(
            "SELECT {STORED_EVENT_COLUMNS} FROM events
             WHERE id = ANY($1) AND COALESCE(ended_at, received_at) < $2 ORDER BY id FOR UPDATE"
        ),
        &[&candidates, &before],
    )?;
    let mut events: Vec<StoredEvent> = rows
        .iter()
        .map(|r| StoredEvent {
            id: r.get(0),
            at: r.get(1),
            dims: Dims {
                key_hash: r.get(2),
                key_alias: r.get(3),
                team_id: r.get(4),
                user_id: r.get(5),
                end_user: r.get(6),
                resolved_model: r.get(7),
                deployment: r.get(8),
                provider: r.get(9),
                status: r.get(10),
                tags: Vec::new(),
            },
            prompt_tokens: r.get(11),
            completion_tokens: r.get(12),
            cost_nano_usd: r.get(13),
            estimated: r.get(14),
        })
        .collect();
    if events.is_empty() {
        tx.commit()?;
        return Ok(Pruned::default());
    }
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let tag_rows = tx.query(
        "SELECT DISTINCT event_id, tag FROM event_tags WHERE event_id = ANY($1) ORDER BY 1, 2",
        &[&ids],
    )?;
    let mut by_id: std::collections::HashMap<String, Vec<String>> =
        std::collections::HashMap::new();
    for row in &tag_rows {
        by_id.entry(row.get(0)).or_default().push(row.get(1));
    }
    for event in &mut events {
        event.dims.tags = by_id.remove(&event.id).unwrap_or_default();
    }
    let rollups = roll_up(&events);
    store_rollups(&mut tx, &rollups)?;
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let ats: Vec<i64> = events.iter().map(|e| e.at).collect();
    tx.execute(
        "INSERT INTO pruned_events (id, ended_at) SELECT * FROM unnest($1::text[], $2::bigint[])
         ON CONFLICT (id) DO NOTHING",
        &[&ids, &ats],
    )?;
    // The events' tags go with them (ON DELETE CASCADE).
    tx.execute("DELETE FROM events WHERE id = ANY($1)", &[&ids])?;
    tx.commit()?;
    Ok(Pruned {
        events: events.len() as u64,
        rollups: rollups.len() as u64,
    })
}

fn store_rollups(
    tx: &mut Transaction<'_>,
    rollups: &[super::retention::Rollup],
) -> Result<(), postgres::Error> {
    let text = |f: fn(&super::retention::Rollup) -> &str| rollups.iter().map(f).collect::<Vec<_>>();
    let optional = |f: fn(&Dims) -> Option<&str>| {
        rollups
            .iter()
            .map(|r| f(&r.dims))
            .collect::<Vec<Option<&str>>>()
    };
    let number =
        |f: fn(&super::retention::Rollup) -> i64| rollups.iter().map(f).collect::<Vec<_>>();
    let tags: Vec<String> = rollups
        .iter()
        .map(|r| serde_json::to_string(&r.dims.tags).unwrap_or_default())
        .collect();
    tx.execute(
        &format!(
            "INSERT INTO event_rollups (id, day_start, key_hash, key_alias, team_id, user_id,
                end_user, resolved_model, deployment, provider, status, tags, requests,
                prompt_tokens, completion_tokens, cost_nano_usd, estimated)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],
                $12::text[], $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[],
                $17::bigint[])
             ON CONFLICT (id) DO UPDATE SET {}",
            saturating_adds("event_rollups")
        ),
        &[
            &text(|r| &r.id),
            &number(|r| r.day_start),
            &text(|r| &r.dims.key_hash),
            &optional(|d| d.key_alias.as_deref()),
            &optional(|d| d.team_id.as_deref()),
            &optional(|d| d.user_id.as_deref()),
            &optional(|d| d.end_user.as_deref()),
            &text(|r| &r.dims.resolved_model),
            &text(|r| &r.dims.deployment),
            &text(|r| &r.dims.provider),
            &text(|r| &r.dims.status),
            &tags,
            &number(|r| r.requests),
            &number(|r| r.prompt_tokens),
            &number(|r| r.completion_tokens),
            &number(|r| r.cost_nano_usd),
            &number(|r| r.estimated),
        ],
    )?;
    let (rollup_ids, names): (Vec<&str>, Vec<&str>) = rollups
        .iter()
        .flat_map(|r| r.dims.tags.iter().map(|t| (r.id.as_str(), t.as_str())))
        .unzip();
    if !rollup_ids.is_empty() {
        tx.execute(
            "INSERT INTO rollup_tags (rollup_id, tag) SELECT * FROM unnest($1::text[], $2::text[])
             ON CONFLICT DO NOTHING",
            &[&rollup_ids, &names],
        )?;
    }
    Ok(())
}
