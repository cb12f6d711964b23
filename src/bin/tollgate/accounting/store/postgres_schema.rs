//! The PostgreSQL schema as numbered migrations, applied at start under an advisory lock so that
//! several instances starting at once apply each migration exactly once.
//!
//! A migration is never edited once released: a change is a new migration at the end. A database
//! whose schema is newer than this binary knows is refused (an old binary must not write to it).

use postgres::Client;

/// The advisory-lock key the migrations are applied under (any fixed number; "tollgate" in hex).
const MIGRATION_LOCK: i64 = 0x746f_6c6c_6761_7465;

/// The migrations, in order: `(name, SQL)`. Version `n` is `MIGRATIONS[n - 1]`.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "events, budget and rate-limit windows, alerts, the change counter",
        "
CREATE TABLE events (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    time TEXT NOT NULL,
    received_at BIGINT NOT NULL,
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
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    estimated BOOLEAN NOT NULL,
    cost_nano_usd BIGINT NOT NULL,
    cost_source TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    json TEXT NOT NULL
);
CREATE INDEX events_received_at ON events (received_at);
CREATE TABLE budget_windows (
    budget TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    window_end BIGINT,
    spend_nano_usd BIGINT NOT NULL,
    changed BIGINT NOT NULL,
    PRIMARY KEY (budget, window_start)
);
CREATE INDEX budget_windows_changed ON budget_windows (changed);
CREATE TABLE limit_windows (
    limit_name TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    window_end BIGINT NOT NULL,
    count BIGINT NOT NULL,
    changed BIGINT NOT NULL,
    PRIMARY KEY (limit_name, window_start)
);
CREATE INDEX limit_windows_changed ON limit_windows (changed);
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    time TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    threshold TEXT NOT NULL,
    budget TEXT NOT NULL,
    scope TEXT NOT NULL,
    holder TEXT NOT NULL,
    model TEXT,
    window_start BIGINT NOT NULL,
    window_end BIGINT,
    threshold_nano_usd BIGINT NOT NULL,
    limit_nano_usd BIGINT,
    spend_nano_usd BIGINT NOT NULL,
    json TEXT NOT NULL
);
CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
INSERT INTO counters (name, value) VALUES ('change', 0);
",
    ),
    (
        "spend attribution: when each request ended, and its tags",
        "
ALTER TABLE events ADD COLUMN ended_at BIGINT;
UPDATE events SET ended_at = received_at;
CREATE INDEX events_ended_at ON events (ended_at);
CREATE TABLE event_tags (
    event_id TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (tag, event_id)
);
CREATE INDEX event_tags_event ON event_tags (event_id);
",
    ),
    (
        "alert webhook deliveries",
        "
CREATE TABLE alert_deliveries (
    alert_id TEXT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    webhook TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    delivered_at BIGINT,
    last_error TEXT,
    PRIMARY KEY (alert_id, webhook)
);
CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL;
",
    ),
    (
        "each budget window's limit, for the spend page",
        "ALTER TABLE budget_windows ADD COLUMN max_nano_usd BIGINT;",
    ),
    (
        "retention: daily rollups of pruned events, and their ids",
        super::retention::SCHEMA,
    ),
];

/// Applies the migrations `client`'s database lacks. Returns the schema version it now has.
pub fn migrate(client: &mut Client) -> Result<usize, String> {
    let fail = |e: postgres::Error| {
        format!(
            "cannot migrate the database: {} (the role needs to own the database, or CREATE on \
             its schema)",
            super::postgres::described(&e)
        )
    };
    let mut tx = client.transaction().map_err(fail)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(fail)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS tollgate_migrations (
            version INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .map_err(fail)?;
    let current: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM tollgate_migrations",
            &[],
        )
        .map_err(fail)?
        .get(0);
    let current = usize::try_from(current).unwrap_or(0);
    if current > MIGRATIONS.len() {
        return Err(format!(
            "the database's schema is version {current}, newer than this tollgate knows ({}): \
             upgrade tollgate before pointing it at this database",
            MIGRATIONS.len()
        ));
    }
    for (index, (name, sql)) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
        tx.batch_execute(sql).map_err(|e| {
            format!(
                "migration {version} ({name}) failed: {}",
                super::postgres::described(&e)
            )
        })?;
        tx.execute(
            "INSERT INTO tollgate_migrations (version, name) VALUES ($1, $2)",
            &[&version, name],
        )
        .map_err(fail)?;
    }
    tx.commit().map_err(fail)?;
    Ok(MIGRATIONS.len())
}
