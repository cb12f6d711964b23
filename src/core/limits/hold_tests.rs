//! Unit tests of counting, reserving and settling rate limits.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::sync::Arc;

use super::*;
use crate::core::config::time_zone::BudgetZone;
use crate::core::money::reservation::MemoryLedgers;

fn line(kind: LimitKind, limit: u64, now: i64) -> LimitLine {
    let (id, label): (Arc<str>, Arc<str>) = ("key:k".into(), "k".into());
    LimitLine::new(
        LimitScope::Key,
        kind,
        limit,
        (&id, &label, None),
        &BudgetZone::default(),
        now,
    )
}

fn used(store: &MemoryLedgers, key: &str, now: i64) -> u64 {
    store
        .0
        .borrow()
        .get(key)
        .map_or(0, |ledger| ledger.committed(now))
}

#[test]
fn the_request_after_the_limit_is_refused_until_the_next_minute() {
    let store = MemoryLedgers::default();
    let now = 1_000_040; // 20 s into a minute
    for i in 0..10 {
        let (_, view) =
            reserve_limits(&store, vec![line(LimitKind::Rpm, 10, now)], 0, 900, now).unwrap();
        let requests = view.requests.unwrap();
        assert_eq!((requests.limit, requests.remaining), (10, 9 - i));
        assert_eq!(requests.resets_in, 40);
    }
    let denial =
        reserve_limits(&store, vec![line(LimitKind::Rpm, 10, now)], 0, 900, now).unwrap_err();
    assert_eq!(denial.status(), 429);
    assert_eq!(denial.code(), "rpm");
    assert_eq!(denial.error_type(), "rate_limit_exceeded");
    let headers = denial.retry_headers();
    assert!(headers.contains(&("retry-after", "40".to_string())));
    assert!(headers.contains(&("x-ratelimit-remaining-requests", "0".to_string())));
    assert!(
        !headers.iter().any(|(n, _)| *n == "x-should-retry"),
        "a rate limit is worth retrying"
    );
    assert!(denial.message().contains("key 'k': 10 requests per minute"));
    let next = now + 40;
    assert!(reserve_limits(&store, vec![line(LimitKind::Rpm, 10, next)], 0, 900, next).is_ok());
}

#[test]
fn a_refusal_gives_back_what_the_lines_before_it_counted() {
    let store = MemoryLedgers::default();
    let now = 60;
    let lines = vec![line(LimitKind::Rpm, 5, now), line(LimitKind::Tpm, 100, now)];
    let (first, _) = reserve_limits(&store, lines.clone(), 100, 900, now).unwrap();
    assert_eq!(used(&store, lines[1].ledger_key(), now), 100);
    let denial = reserve_limits(&store, lines.clone(), 10, 900, now).unwrap_err();
    assert_eq!(denial.code(), "tpm");
    assert_eq!(
        used(&store, lines[0].ledger_key(), now),
        1,
        "the refused request's count was given back"
    );
    release_limits(&store, &first, now);
    assert_eq!(used(&store, lines[0].ledger_key(), now), 0);
    assert_eq!(used(&store, lines[1].ledger_key(), now), 0);
}

#[test]
fn tokens_are_reserved_then_settled_to_the_real_usage() {
    let store = MemoryLedgers::default();
    let zone = BudgetZone::default();
    let now = 120;
    let tpm = || vec![line(LimitKind::Tpm, 1_000, now)];
    let (hold, view) = reserve_limits(&store, tpm(), 600, 900, now).unwrap();
    assert_eq!(view.tokens.unwrap().remaining, 400);
    let key = hold.lines[0].ledger_key().to_string();
    assert!(settle_limits(&store, &zone, &hold, 42, now + 1).ok);
    assert_eq!(used(&store, &key, now + 1), 42);
    // Concurrent requests cannot all slip through a nearly full window: each holds its
    // reservation, and only a counter below the limit admits.
    let admitted = (0..10)
        .filter(|_| reserve_limits(&store, tpm(), 300, 900, now + 2).is_ok())
        .count();
    assert_eq!(
        admitted, 4,
        "42 + 4 × 300 passes 1,000: the fourth is the last"
    );
    assert!(used(&store, &key, now + 2) <= 1_000 + 300);
}

#[test]
fn a_request_ending_in_a_later_minute_counts_its_tokens_there() {
    let store = MemoryLedgers::default();
    let zone = BudgetZone::default();
    let start = 170; // 50 s into the minute starting at 120
    let (hold, _) = reserve_limits(
        &store,
        vec![line(LimitKind::Tpm, 1_000, start)],
        500,
        900,
        start,
    )
    .unwrap();
    let end = 190; // the next minute (180..240)
    assert!(settle_limits(&store, &zone, &hold, 70, end).ok);
    let later = line(LimitKind::Tpm, 1_000, end);
    assert_eq!(used(&store, later.ledger_key(), end), 70);
}

#[test]
fn a_slot_in_flight_is_held_until_the_request_ends() {
    let store = MemoryLedgers::default();
    let zone = BudgetZone::default();
    let now = 5;
    let parallel = || vec![line(LimitKind::Parallel, 2, now)];
    let (a, _) = reserve_limits(&store, parallel(), 0, 900, now).unwrap();
    let (_b, _) = reserve_limits(&store, parallel(), 0, 900, now).unwrap();
    let denial = reserve_limits(&store, parallel(), 0, 900, now).unwrap_err();
    assert_eq!(denial.code(), "parallel");
    assert!(denial
        .retry_headers()
        .contains(&("retry-after", "1".to_string())));
    assert!(settle_limits(&store, &zone, &a, 0, now + 3).ok);
    assert!(reserve_limits(&store, parallel(), 0, 900, now + 3).is_ok());
    // A hold that is never settled lapses with the reservation TTL.
    let late = now + 3600;
    assert!(reserve_limits(
        &store,
        vec![line(LimitKind::Parallel, 2, late)],
        0,
        900,
        late
    )
    .is_ok());
}

#[test]
fn a_request_larger_than_the_limit_passes_only_an_empty_window() {
    let store = MemoryLedgers::default();
    let now = 0;
    let tpm = || vec![line(LimitKind::Tpm, 100, now)];
    let (hold, _) = reserve_limits(&store, tpm(), 1 << 40, 900, now).unwrap();
    assert_eq!(
        used(&store, hold.lines[0].ledger_key(), now),
        100,
        "held at the limit"
    );
    assert!(reserve_limits(&store, tpm(), 1, 900, now).is_err());
    release_limits(&store, &hold, now);
    assert_eq!(used(&store, hold.lines[0].ledger_key(), now), 0);
}

#[test]
fn token_limits_count_what_the_setting_says() {
    assert_eq!(counted_tokens(TokenCount::Total, 10, 5), 15);
    assert_eq!(counted_tokens(TokenCount::Input, 10, 5), 10);
    assert_eq!(counted_tokens(TokenCount::Output, 10, 5), 5);
}

#[test]
fn a_long_request_keeps_its_slot_past_the_reservation_ttl() {
    let store = MemoryLedgers::default();
    let start = 1_000_000_000 - 1_000_000_000 % 60 + 50; // 50 s into a minute
    let parallel = |now| vec![line(LimitKind::Parallel, 1, now)];
    let (mut hold, _) = reserve_limits(&store, parallel(start), 0, 5, start).unwrap();
    let first_expiry = hold.expires_at;
    assert_eq!(first_expiry, start + 10, "rounded up to the next minute");
    // Chunks every 4 s: the one at 56 s moves the hold before it lapses at 60 s.
    for t in [start + 4, start + 8] {
        renew_limits(&store, &mut hold, t);
    }
    assert!(hold.expires_at > first_expiry);
    let later = start + 30;
    assert!(
        reserve_limits(&store, parallel(later), 0, 5, later).is_err(),
        "the slot is still held"
    );
    assert!(settle_limits(&store, &BudgetZone::default(), &hold, 0, later).ok);
    assert!(reserve_limits(&store, parallel(later), 0, 5, later).is_ok());
}
