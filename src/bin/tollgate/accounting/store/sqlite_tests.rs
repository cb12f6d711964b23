//! Tests of the SQLite store: dedupe, windows, cursors, readers beside the writer.

use super::*;
use tollgate::core::spend::event::{
    batch_body, BudgetRef, LimitRef, SpendData, SpendEvent, UsageData,
};

fn event(id: &str, cost: u64, budget: &str) -> String {
    let data = SpendData {
        policy_version: "v1".into(),
        key_hash: "ab".repeat(32),
        key_alias: Some("k".into()),
        team_id: Some("t".into()),
        user_id: None,
        end_user: None,
        endpoint: "chat_completions".into(),
        requested_model: "m".into(),
        resolved_model: "m".into(),
        deployment: "d".into(),
        provider: "openai".into(),
        upstream_model: "m".into(),
        stream: false,
        usage: UsageData::default(),
        cost_nano_usd: cost,
        cost_source: "cost_map".into(),
        status: "ok".into(),
        http_status: 200,
        budgets: vec![BudgetRef {
            budget: budget.into(),
            window_start: 100,
            window_end: Some(200),
            max_nano_usd: None,
        }],
        limits: vec![
            LimitRef {
                limit: "key:k/rpm".into(),
                window_start: 120,
                window_end: 180,
                count: 1,
            },
            LimitRef {
                limit: "key:k/tpm".into(),
                window_start: 120,
                window_end: 180,
                count: cost,
            },
        ],
        tags: vec![],
        metadata: Default::default(),
    };
    SpendEvent::new(id.into(), "test", 0, data).to_json()
}

#[test]
fn rate_limit_counts_are_summed_once_per_event_and_polled_while_open() {
    let mut store = Store::open(":memory:").unwrap();
    let reply = store
        .ingest(
            &batch(&[event("a", 30, "key:k"), event("b", 12, "key:k")]),
            "b1",
            1,
        )
        .unwrap();
    let counts = |limits: &[tollgate::core::spend::accounting_api::LimitTotal]| {
        limits
            .iter()
            .map(|l| (l.limit.clone(), l.count))
            .collect::<Vec<_>>()
    };
    let expected = vec![("key:k/rpm".to_string(), 2), ("key:k/tpm".to_string(), 42)];
    assert_eq!(counts(&reply.limits), expected);
    // A retried batch (another instance, a lost answer) counts nothing twice.
    let again = store
        .ingest(&batch(&[event("a", 30, "key:k")]), "b2", 2)
        .unwrap();
    assert_eq!(again.duplicates, 1);
    assert_eq!(counts(&again.limits)[0], ("key:k/rpm".to_string(), 2));
    let polled = store.budgets_since(0, 150).unwrap();
    assert_eq!(counts(&polled.limits), expected);
    assert!(store
        .budgets_since(polled.cursor, 150)
        .unwrap()
        .limits
        .is_empty());
    assert!(
        store.budgets_since(0, 180).unwrap().limits.is_empty(),
        "a closed window is not polled"
    );
}

fn batch(events: &[String]) -> Vec<u8> {
    batch_body(events.iter().map(String::as_str))
}

#[test]
fn a_threshold_from_several_replicas_is_stored_once_and_moves_no_money() {
    use tollgate::core::spend::threshold::{ThresholdData, ThresholdEvent};
    let threshold = |source: &str, spend: u64| {
        let data = ThresholdData {
            policy_version: "v1".into(),
            threshold: "soft_budget".into(),
            budget: "team:t".into(),
            scope: "team".into(),
            holder: "search".into(),
            model: None,
            window_start: 100,
            window_end: Some(200),
            threshold_nano_usd: 10,
            limit_nano_usd: None,
            spend_nano_usd: spend,
        };
        ThresholdEvent::new(source, 1_000, data).to_json()
    };
    let mut store = Store::open(":memory:").unwrap();
    let body = batch(&[event("a", 12, "team:t"), threshold("replica-a", 12)]);
    let reply = store.ingest(&body, "b1", 1).unwrap();
    assert_eq!((reply.accepted, reply.duplicates), (2, 0));
    assert!(reply.rejected.is_empty(), "{:?}", reply.rejected);
    let other = batch(&[threshold("replica-b", 15), threshold("replica-b", 15)]);
    let reply = store.ingest(&other, "b2", 2).unwrap();
    assert_eq!((reply.accepted, reply.duplicates), (0, 2));
    assert_eq!(reply.acknowledged.len(), 2);
    let report = store.report().unwrap();
    let alerts = report["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["budget"], "team:t");
    assert_eq!(alerts[0]["source"], "replica-a");
    assert_eq!(report["budget_windows"][0]["spend_nano_usd"], 12);
    assert_eq!(report["events"], 1);
}

#[test]
fn retried_events_are_counted_once_and_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!("tollgate-store-{}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let path = dir.to_str().unwrap();
    let mut store = Store::open(path).unwrap();
    let first = batch(&[event("a", 10, "team:t"), event("b", 5, "team:t")]);
    let reply = store.ingest(&first, "b1", 1).unwrap();
    assert_eq!((reply.accepted, reply.duplicates), (2, 0));
    assert_eq!(
        (reply.batch_id.as_str(), reply.acknowledged.as_slice()),
        ("b1", &["a".to_string(), "b".to_string()][..])
    );
    assert_eq!(reply.budgets[0].spend_nano_usd, 15);
    let again = store.ingest(&first, "b2", 2).unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 2));
    assert_eq!(
        again.acknowledged.len(),
        2,
        "duplicates are acknowledged too"
    );
    assert_eq!(
        again.budgets[0].spend_nano_usd, 15,
        "a retry is not counted twice"
    );
    drop(store);

    let mut store = Store::open(path).unwrap();
    let reader = Store::open_reader(path).unwrap();
    let polled = reader.budgets_since(0, 150).unwrap();
    assert_eq!(polled.budgets.len(), 1);
    assert_eq!(polled.budgets[0].spend_nano_usd, 15);
    let cursor = polled.cursor;
    assert!(store.budgets_since(cursor, 150).unwrap().budgets.is_empty());
    store
        .ingest(&batch(&[event("c", 1, "team:t")]), "b3", 3)
        .unwrap();
    let changed = reader.budgets_since(cursor, 150).unwrap();
    assert_eq!(changed.budgets[0].spend_nano_usd, 16);
    assert!(
        store.budgets_since(0, 250).unwrap().budgets.is_empty(),
        "closed windows are left out"
    );
    let report = reader.report().unwrap();
    assert!(
        Store::open_reader(path)
            .unwrap()
            .ingest(b"[]", "x", 0)
            .is_err(),
        "read-only"
    );
    assert_eq!(report["events"], 3);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn one_batch_sums_each_window_once_and_skips_its_own_repeats() {
    let path = std::env::temp_dir().join(format!("tollgate-sum-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let path = path.to_str().unwrap();
    let mut store = Store::open(path).unwrap();
    let events = [
        event("s1", 10, "team:t"),
        event("s2", 7, "key:k"),
        event("s1", 10, "team:t"), // the same event twice in one batch
        event("s3", 3, "team:t"),
    ];
    let reply = store.ingest(&batch(&events), "b1", 1).unwrap();
    assert_eq!((reply.accepted, reply.duplicates), (3, 1));
    let totals: Vec<(&str, u64)> = reply
        .budgets
        .iter()
        .map(|b| (b.budget.as_str(), b.spend_nano_usd))
        .collect();
    assert_eq!(totals, [("key:k", 7), ("team:t", 13)]);
    let polled = store.budgets_since(0, 150).unwrap();
    assert_eq!(polled.budgets.len(), 2);
    let cursor = polled.cursor;
    store
        .ingest(&batch(&[event("s4", 1, "key:k")]), "b2", 2)
        .unwrap();
    let changed = store.budgets_since(cursor, 150).unwrap();
    assert_eq!(changed.budgets.len(), 1, "only the window that changed");
    assert_eq!(
        (
            changed.budgets[0].budget.as_str(),
            changed.budgets[0].spend_nano_usd
        ),
        ("key:k", 8)
    );
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_long_read_does_not_hold_up_ingestion() {
    let path = std::env::temp_dir().join(format!("tollgate-read-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let path = path.to_str().unwrap();
    let mut writer = Store::open(path).unwrap();
    writer
        .ingest(&batch(&[event("r1", 1, "team:t")]), "b1", 1)
        .unwrap();
    let reader = Store::open_reader(path).unwrap();
    // A report in progress: a read transaction holding its snapshot.
    let snapshot = reader.db.unchecked_transaction().unwrap();
    let seen: i64 = snapshot
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(seen, 1);
    let started = std::time::Instant::now();
    writer
        .ingest(&batch(&[event("r2", 1, "team:t")]), "b2", 2)
        .unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "the writer did not wait for the reader"
    );
    drop(snapshot);
    assert_eq!(reader.report().unwrap()["events"], 2);
    let _ = std::fs::remove_file(path);
}

#[test]
fn malformed_events_are_rejected_one_by_one() {
    let mut store = Store::open(":memory:").unwrap();
    let body = format!(
        "[{},{{\"id\":\"x\"}},{}]",
        event("ok", 1, "key:k"),
        event("bad", 1, "nocolon")
    );
    let reply = store.ingest(body.as_bytes(), "b", 0).unwrap();
    assert_eq!(reply.accepted, 1);
    assert_eq!(reply.acknowledged, ["ok"]);
    assert_eq!(reply.rejected.len(), 2);
    assert_eq!(reply.rejected[0].id.as_deref(), Some("x"));
    assert_eq!(reply.rejected[1].id.as_deref(), Some("bad"));
    assert_eq!(store.ingest(b"{}", "b", 0).err().map(|e| e.0), Some(400));
}

#[test]
fn a_database_of_the_first_schema_is_migrated_in_place() {
    let path = std::env::temp_dir().join(format!("tollgate-migrate-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let path = path.to_str().unwrap();
    {
        // The schema as the first release wrote it (no ended_at, no event_tags, version 0).
        let old = Connection::open(path).unwrap();
        old.execute_batch(SCHEMA).unwrap();
        old.execute(
            "INSERT INTO events (id, source, time, received_at, key_hash, requested_model,
                resolved_model, deployment, provider, status, prompt_tokens, completion_tokens,
                estimated, cost_nano_usd, cost_source, policy_version, json)
             VALUES ('old', 's', 't', 1234, 'h', 'm', 'm', 'd', 'p', 'ok', 1, 1, 0, 5, 'c', 'v', '{}')",
            [],
        )
        .unwrap();
    }
    let mut store = Store::open(path).unwrap();
    let (ended, version): (i64, i64) = store
        .db
        .query_row(
            "SELECT ended_at, (SELECT user_version FROM pragma_user_version) FROM events",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (ended, version),
        (1234, SCHEMA_VERSION),
        "old rows keep their receipt time"
    );
    store
        .ingest(&batch(&[event("new", 1, "key:k")]), "b", 9)
        .unwrap();
    drop(store);
    Store::open(path).unwrap(); // opening again changes nothing
    std::fs::remove_file(path).unwrap();
}

fn tagged(id: &str, cost: u64, team: &str, tags: &[&str], ended_at_ms: i64) -> String {
    let mut event: SpendEvent = serde_json::from_str(&event(id, cost, "key:k")).unwrap();
    event.data.team_id = Some(team.into());
    event.data.tags = tags.iter().map(|t| t.to_string()).collect();
    event.data.usage.prompt_tokens = cost / 2;
    SpendEvent::new(id.into(), "test", ended_at_ms, event.data).to_json()
}

fn every_grouping(db: &Connection) -> Vec<Vec<GroupRow>> {
    let mut all = Vec::new();
    for query in [
        "group_by=team",
        "group_by=tag",
        "group_by=day",
        "group_by=key&tag=x",
        "group_by=tag&team=a",
        "group_by=model&from=1796083200&to=1796169600",
        "group_by=status&from=1796169600",
    ] {
        let query = super::super::report::parse(query).unwrap().unwrap();
        all.push(grouped_on(db, &query).unwrap());
    }
    all
}

#[test]
fn pruning_folds_old_events_into_rollups_without_changing_a_total() {
    let mut store = Store::open(":memory:").unwrap();
    let day_ms = 1_796_083_200_000; // 2026-12-01T00:00:00Z
    let events = [
        tagged("e1", 100, "a", &["x", "y"], day_ms + 1_000),
        tagged("e2", 200, "a", &["x", "y"], day_ms + 2_000),
        tagged("e3", 300, "a", &["y"], day_ms + 3_000),
        tagged("e4", 400, "b", &[], day_ms + 86_400_000 + 5),
        tagged("e5", 500, "b", &["x"], day_ms + 2 * 86_400_000),
    ];
    store.ingest(&batch(&events), "b1", 10).unwrap();
    let before = every_grouping(&store.db);
    let report = store.report().unwrap();
    let windows = store.budgets_since(0, i64::MIN).unwrap();
    // Events before the third day go, two per chunk; the third day's event stays.
    let cutoff = (day_ms + 2 * 86_400_000) / 1000;
    let mut pruned = 0;
    for _ in 0..10 {
        let step = sqlite_retention::prune(&mut store.db, cutoff, 2).unwrap();
        pruned += step.events;
        if step.events == 0 {
            break;
        }
    }
    assert_eq!(pruned, 4);
    let kept: i64 = store
        .db
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(kept, 1);
    let rollups: i64 = store
        .db
        .query_row("SELECT COUNT(*) FROM event_rollups", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rollups, 3, "e1 and e2 share a day and dims");
    assert_eq!(every_grouping(&store.db), before);
    let after = store.report().unwrap();
    assert_eq!(after["events"], report["events"]);
    assert_eq!(after["events_pruned"], 4);
    assert_eq!(after["by_team"], report["by_team"]);
    assert_eq!(store.budgets_since(0, i64::MIN).unwrap(), windows);
    // A batch retried after its events were pruned moves nothing.
    let again = store.ingest(&batch(&events), "b2", 20).unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 5));
    assert_eq!(every_grouping(&store.db), before);
    // A late event of a pruned day is stored, then folded into the same rollup.
    let late = tagged("e6", 50, "a", &["x", "y"], day_ms + 9_000);
    assert_eq!(store.ingest(&batch(&[late]), "b3", 30).unwrap().accepted, 1);
    assert_eq!(
        sqlite_retention::prune(&mut store.db, cutoff, 10)
            .unwrap()
            .events,
        1
    );
    let rollup: (i64, i64) = store
        .db
        .query_row(
            "SELECT requests, cost_nano_usd FROM event_rollups WHERE team_id = 'a' AND tags = '[\"x\",\"y\"]'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(rollup, (3, 350));
    let teams = grouped_on(
        &store.db,
        &super::super::report::parse("group_by=team")
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let a = teams.iter().find(|t| t.name == "a").unwrap();
    assert_eq!((a.requests, a.cost_nano_usd), (4, 650));
}
