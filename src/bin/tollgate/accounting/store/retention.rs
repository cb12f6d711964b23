//! Retention (`--retain-days N`): events that ended before the start of the UTC day N days ago
//! are folded into per-day rollups and deleted, a chunk per transaction, so the stored event
//! records stay within N days without changing any total. (The rollups grow with the distinct
//! days and dimensions, the kept ids with the events.)
//!
//! - The report reads events and rollups as one set: a rollup is one row per day and per
//!   combination of key, team, user, end user, model, deployment, provider, status and tags,
//!   with the count and sums of the events it replaced. Grouped reports (any dimension, any
//!   filter) answer the same before and after pruning; a `from`/`to` that falls inside a pruned
//!   day counts that whole day at its start.
//! - Budget and rate-limit windows are kept totals of their own: pruning never touches them.
//! - The id of each pruned event is kept (`pruned_events`, about 60 bytes an event against
//!   about 1.5 KB for the event), so a batch retried after its events were pruned is answered
//!   as duplicates, never counted again.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::SpendStore;
use crate::accounting::metrics::Metrics;

/// The tables retention writes, in SQL both stores take (SQLite reads `BIGINT` as `INTEGER`).
/// Rollups are never deleted, and neither are the ids of pruned events.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS event_rollups (
    id TEXT PRIMARY KEY,
    day_start BIGINT NOT NULL,
    key_hash TEXT NOT NULL,
    key_alias TEXT,
    team_id TEXT,
    user_id TEXT,
    end_user TEXT,
    resolved_model TEXT NOT NULL,
    deployment TEXT NOT NULL,
    provider TEXT NOT NULL,
    status TEXT NOT NULL,
    tags TEXT NOT NULL,
    requests BIGINT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost_nano_usd BIGINT NOT NULL,
    estimated BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS event_rollups_day ON event_rollups (day_start);
CREATE TABLE IF NOT EXISTS rollup_tags (
    rollup_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (tag, rollup_id)
);
CREATE INDEX IF NOT EXISTS rollup_tags_rollup ON rollup_tags (rollup_id);
CREATE INDEX IF NOT EXISTS events_unended ON events (received_at) WHERE ended_at IS NULL;
CREATE TABLE IF NOT EXISTS pruned_events (
    id TEXT PRIMARY KEY,
    ended_at BIGINT NOT NULL
);
";

/// The columns of an event pruning reads, in [`StoredEvent`]'s order (both stores).
pub const STORED_EVENT_COLUMNS: &str = "id, COALESCE(ended_at, received_at), key_hash, key_alias, \
    team_id, user_id, end_user, resolved_model, deployment, provider, status, prompt_tokens, \
    completion_tokens, cost_nano_usd, estimated";

/// Events stored in all (those kept and those pruned), and of them pruned.
pub const COUNTS_SQL: &str = "SELECT CAST((SELECT COUNT(*) FROM events) + \
    (SELECT COALESCE(SUM(requests), 0) FROM event_rollups) AS BIGINT), \
    (SELECT COUNT(*) FROM pruned_events)";

/// The sums a rollup upsert adds, each capped at the largest integer (as window sums are):
/// `(column, SQL)` for `ON CONFLICT … DO UPDATE SET`.
pub fn saturating_adds(table: &str) -> String {
    [
        "requests",
        "prompt_tokens",
        "completion_tokens",
        "cost_nano_usd",
        "estimated",
    ]
    .iter()
    .map(|c| {
        format!(
            "{c} = CASE WHEN {table}.{c} > 9223372036854775807 - excluded.{c} \
                 THEN 9223372036854775807 ELSE {table}.{c} + excluded.{c} END"
        )
    })
    .collect::<Vec<_>>()
    .join(", ")
}

/// Events pruned per transaction: short enough that batches waiting on a prune wait
/// milliseconds, not seconds.
pub const CHUNK: usize = 1_000;
/// Chunks one round prunes at most, before it yields until the next round.
const CHUNKS_PER_ROUND: usize = 1_000;
/// Seconds in a day.
const DAY: i64 = 86_400;

/// The columns of a stored event that the report reads, as pruning reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The event's id.
    pub id: String,
    /// When the request ended (Unix seconds; `received_at` for rows without `ended_at`).
    pub at: i64,
    /// The dimensions the report groups by.
    pub dims: Dims,
    /// Prompt tokens.
    pub prompt_tokens: i64,
    /// Completion tokens.
    pub completion_tokens: i64,
    /// Cost, nano-dollars.
    pub cost_nano_usd: i64,
    /// Whether the usage was estimated.
    pub estimated: bool,
}

/// What a rollup row is keyed by, besides its day.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Dims {
    /// The key's hash.
    pub key_hash: String,
    /// The key's alias.
    pub key_alias: Option<String>,
    /// The key's team.
    pub team_id: Option<String>,
    /// The key's user.
    pub user_id: Option<String>,
    /// The body's `user`.
    pub end_user: Option<String>,
    /// The model reached.
    pub resolved_model: String,
    /// The deployment.
    pub deployment: String,
    /// The provider.
    pub provider: String,
    /// `ok`, `client_disconnect`, …
    pub status: String,
    /// The event's tags, sorted and without repeats.
    pub tags: Vec<String>,
}

/// One rollup: the events of one day with the same [`Dims`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollup {
    /// `r-` and the SHA-256 of the day and dims (the same rollup whichever instance folds it).
    pub id: String,
    /// The start of its UTC day.
    pub day_start: i64,
    /// Its dimensions.
    pub dims: Dims,
    /// Events folded in.
    pub requests: i64,
    /// Their prompt tokens.
    pub prompt_tokens: i64,
    /// Their completion tokens.
    pub completion_tokens: i64,
    /// Their cost, nano-dollars.
    pub cost_nano_usd: i64,
    /// How many of them were estimated.
    pub estimated: i64,
}

/// The start of the UTC day `at` falls in.
pub fn day_start(at: i64) -> i64 {
    at.div_euclid(DAY).saturating_mul(DAY)
}

/// Events that ended before this instant are pruned at `now` when `days` are kept: the start
/// of the UTC day `days` days ago (whole days only, so a rollup is never split).
pub fn cutoff(now: i64, days: u32) -> i64 {
    day_start(now.saturating_sub(i64::from(days).saturating_mul(DAY)))
}

/// Folds `events` into rollups, one per day and dims.
pub fn roll_up(events: &[StoredEvent]) -> Vec<Rollup> {
    let mut rollups: BTreeMap<(i64, &Dims), Rollup> = BTreeMap::new();
    for event in events {
        let day = day_start(event.at);
        let rollup = rollups.entry((day, &event.dims)).or_insert_with(|| Rollup {
            id: rollup_id(day, &event.dims),
            day_start: day,
            dims: event.dims.clone(),
            requests: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            cost_nano_usd: 0,
            estimated: 0,
        });
        rollup.requests = rollup.requests.saturating_add(1);
        rollup.prompt_tokens = rollup.prompt_tokens.saturating_add(event.prompt_tokens);
        rollup.completion_tokens = rollup
            .completion_tokens
            .saturating_add(event.completion_tokens);
        rollup.cost_nano_usd = rollup.cost_nano_usd.saturating_add(event.cost_nano_usd);
        rollup.estimated = rollup.estimated.saturating_add(i64::from(event.estimated));
    }
    rollups.into_values().collect()
}

fn rollup_id(day: i64, dims: &Dims) -> String {
    let canonical = serde_json::to_string(&(day, dims)).unwrap_or_default();
    let digest = Sha256::digest(canonical.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("r-{hex}")
}

/// What one prune call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Events folded and deleted.
    pub events: u64,
    /// Rollup rows written (new or grown).
    pub rollups: u64,
}

/// Starts the thread that prunes every `every` (and once at start); it ends soon after `stop`
/// is set. Each round prunes chunk after chunk until nothing is older than the cutoff.
pub fn spawn(
    store: Arc<dyn SpendStore>,
    days: u32,
    every: Duration,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if Instant::now() >= next {
                round(store.as_ref(), days, &metrics, &stop);
                next = Instant::now()
                    .checked_add(every)
                    .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
            }
            std::thread::sleep(Duration::from_millis(200).min(every));
        }
    })
}

fn round(store: &dyn SpendStore, days: u32, metrics: &Metrics, stop: &AtomicBool) {
    let before = cutoff(super::super::now(), days);
    for _ in 0..CHUNKS_PER_ROUND {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        match store.prune(before, CHUNK) {
            Ok(pruned) => {
                metrics.pruned(pruned.events);
                if pruned.events < CHUNK as u64 {
                    return;
                }
            }
            Err(e) => {
                // Another instance pruning, a lock wait timed out, the database away: the next
                // round tries again.
                eprintln!("tollgate accounting: pruning stopped this round: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, at: i64, team: &str, tags: &[&str], cost: i64) -> StoredEvent {
        StoredEvent {
            id: id.into(),
            at,
            dims: Dims {
                key_hash: "k".into(),
                team_id: Some(team.into()),
                resolved_model: "m".into(),
                deployment: "d".into(),
                provider: "p".into(),
                status: "ok".into(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                ..Dims::default()
            },
            prompt_tokens: 10,
            completion_tokens: 5,
            cost_nano_usd: cost,
            estimated: id.ends_with('e'),
        }
    }

    #[test]
    fn events_fold_by_day_and_dims_and_keep_their_sums() {
        let day = 1_796_083_200;
        let events = [
            event("1", day + 10, "a", &["x"], 100),
            event("2e", day + 20, "a", &["x"], 200),
            event("3", day + 30, "a", &["y"], 300),
            event("4", day + DAY + 1, "a", &["x"], 400),
            event("5", day + 40, "b", &["x"], i64::MAX),
            event("6", day + 50, "b", &["x"], 1),
        ];
        let rollups = roll_up(&events);
        assert_eq!(rollups.len(), 4);
        let first = &rollups[0];
        assert_eq!((first.day_start, first.requests), (day, 2));
        assert_eq!((first.cost_nano_usd, first.estimated), (300, 1));
        assert_eq!((first.prompt_tokens, first.completion_tokens), (20, 10));
        let saturated = rollups
            .iter()
            .find(|r| r.dims.team_id.as_deref() == Some("b"))
            .unwrap();
        assert_eq!(saturated.cost_nano_usd, i64::MAX);
        assert_eq!(rollups.iter().map(|r| r.requests).sum::<i64>(), 6);
        // The same day and dims fold into the same row on every instance, run after run.
        assert_eq!(roll_up(&events[..1])[0].id, first.id);
        assert_ne!(rollups[0].id, rollups[1].id);
    }

    #[test]
    fn the_cutoff_is_the_start_of_a_whole_day() {
        let noon = 1_796_083_200 + DAY / 2;
        assert_eq!(cutoff(noon, 1), 1_796_083_200 - DAY);
        assert_eq!(cutoff(noon, 0), 1_796_083_200);
        assert_eq!(day_start(-1), -DAY);
        assert!(cutoff(i64::MIN, u32::MAX) <= 0);
    }
}
