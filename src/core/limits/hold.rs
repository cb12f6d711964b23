//! Counting a request on every rate limit it is under, all or none, and settling it.
//!
//! Counters live in the same [`LedgerStore`] as budgets (shared data in the Wasm form, process
//! memory in the native form), one slot per holder and kind, so every worker of one Envoy
//! process sees the same counts. Requests are counted when admitted; tokens are reserved
//! (the prompt estimate plus the output cap, as budgets reserve money) and replaced by the
//! real usage when the response ends, in the window it ends in; a request in flight holds one
//! slot until it ends. A request is refused once a counter has reached its limit, so the last
//! admitted request may take a token counter above it by at most its own tokens.

use crate::core::admission::denial::Denial;
use crate::core::config::config::TokenCount;
use crate::core::config::time_zone::BudgetZone;
use crate::core::limits::lines::{LimitLine, LimitScope};
use crate::core::limits::rules::LimitKind;
use crate::core::money::budget::Ledger;
use crate::core::money::reservation::{LedgerStore, StoreUnavailable};
use crate::core::spend::accounting_api::MAX_EVENT_TOKENS;
use crate::core::spend::event::LimitRef;

/// What an admitted request holds on its rate limits until it ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitHold {
    /// The counters it counts against.
    pub lines: Vec<LimitLine>,
    /// Tokens reserved on each token counter (before capping at its limit).
    pub tokens: u64,
    /// When its token and in-flight holds lapse if it never ends (Unix seconds).
    pub expires_at: i64,
    /// How long a hold lives without news of its request (`reservation_ttl_seconds`).
    pub ttl_seconds: u64,
}

impl LimitHold {
    /// Whether the request counts against no rate limit.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// Room left on the tightest tenant limit of one unit (requests or tokens), after this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remaining {
    /// The limit.
    pub limit: u64,
    /// What is left of it in this window.
    pub remaining: u64,
    /// Seconds until the window resets.
    pub resets_in: u64,
}

/// What a request learned of its tenant limits (for the `x-ratelimit-*` headers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateView {
    /// The tightest requests-per-window limit.
    pub requests: Option<Remaining>,
    /// The tightest tokens-per-window limit.
    pub tokens: Option<Remaining>,
}

impl RateView {
    /// Notes a tenant counter's state after this request.
    fn note(&mut self, line: &LimitLine, committed: u64, now: i64) {
        if line.scope == LimitScope::Deployment || line.kind == LimitKind::Parallel {
            return;
        }
        let seen = Remaining {
            limit: line.limit,
            remaining: line.limit.saturating_sub(committed),
            resets_in: line.resets_in(now),
        };
        let slot = if line.kind.counts_tokens() {
            &mut self.tokens
        } else {
            &mut self.requests
        };
        let tighter = slot.is_none_or(|current| seen.remaining < current.remaining);
        if tighter {
            *slot = Some(seen);
        }
    }
}

/// What a token counter holds for a request of `tokens`: at most its limit (a request asking
/// more than the whole limit passes only into an empty window, and a release takes back
/// exactly what was added).
fn held(line: &LimitLine, tokens: u64) -> u64 {
    match line.kind {
        LimitKind::Tpm | LimitKind::Tpd => tokens.min(line.limit),
        LimitKind::Rpm | LimitKind::Rpd | LimitKind::Parallel => 1,
    }
}

/// Counts the request on one counter unless it has reached its limit.
fn take(line: &LimitLine, ledger: &mut Ledger, tokens: u64, expires_at: i64, now: i64) -> bool {
    match line.kind {
        LimitKind::Rpm | LimitKind::Rpd => ledger.try_count(line.limit, 1, now),
        LimitKind::Tpm | LimitKind::Tpd | LimitKind::Parallel => {
            ledger.try_reserve(line.limit, held(line, tokens), expires_at, now)
        }
    }
}

/// Gives back what [`take`] counted (a request that was not forwarded after all).
fn give_back(line: &LimitLine, ledger: &mut Ledger, tokens: u64, expires_at: i64, now: i64) {
    match line.kind {
        LimitKind::Rpm | LimitKind::Rpd => ledger.uncount(1),
        LimitKind::Tpm | LimitKind::Tpd | LimitKind::Parallel => {
            ledger.release(held(line, tokens), expires_at, now)
        }
    }
}

/// The tokens a token limit counts of `input` and `output` (`settings.token_rate_limit_type`).
pub fn counted_tokens(count: TokenCount, input: u64, output: u64) -> u64 {
    match count {
        TokenCount::Total => input.saturating_add(output),
        TokenCount::Input => input,
        TokenCount::Output => output,
    }
}

/// Counts a request of `tokens` (its reservation) on every line, or on none: the first counter
/// already at its limit refuses it and what was counted before is given back.
pub fn reserve_limits(
    store: &dyn LedgerStore,
    lines: Vec<LimitLine>,
    tokens: u64,
    ttl_seconds: u64,
    now: i64,
) -> Result<(LimitHold, RateView), Denial> {
    let expires_at = Ledger::expiry(now, ttl_seconds);
    let mut view = RateView::default();
    for (i, line) in lines.iter().enumerate() {
        let mut committed = 0;
        let taken = store.update(line.ledger_key(), &mut |ledger| {
            let admitted = take(line, ledger, tokens, expires_at, now);
            committed = ledger.committed(now);
            admitted
        });
        let undo = |lines: &[LimitLine]| {
            let hold = LimitHold {
                lines: lines.to_vec(),
                tokens,
                expires_at,
                ttl_seconds,
            };
            release_limits(store, &hold, now);
        };
        match taken {
            Ok(true) => view.note(line, committed, now),
            Ok(false) => {
                undo(&lines[..i]);
                return Err(refusal(line, committed, now));
            }
            Err(StoreUnavailable) => {
                undo(&lines[..i]);
                return Err(Denial::GatewayError {
                    code: "rate_limit_store_unavailable",
                });
            }
        }
    }
    Ok((
        LimitHold {
            lines,
            tokens,
            expires_at,
            ttl_seconds,
        },
        view,
    ))
}

/// The refusal for a counter that has reached its limit, with what it counts (`used`).
pub fn refusal(line: &LimitLine, used: u64, now: i64) -> Denial {
    Denial::RateLimited {
        scope: line.scope.name(),
        kind: line.kind,
        name: line.label.to_string(),
        model: line.model.clone(),
        limit: line.limit,
        used,
        resets_in_seconds: line.resets_in(now),
    }
}

/// Gives back a hold whose request was not forwarded after all.
pub fn release_limits(store: &dyn LedgerStore, hold: &LimitHold, now: i64) {
    for line in &hold.lines {
        let _ = store.update(line.ledger_key(), &mut |ledger| {
            give_back(line, ledger, hold.tokens, hold.expires_at, now);
            true
        });
    }
}

/// Keeps a long request's holds alive: while its answer is still arriving, its slot in flight
/// (and its token reservation, while that window lasts) moves to the expiry bucket of `now`, so
/// a stream that outlives `reservation_ttl_seconds` keeps its slot. Ledgers are written only
/// when the bucket moves (at most once a minute); a request whose answer stalls for longer than
/// the TTL loses its holds, as a crashed one does.
pub fn renew_limits(store: &dyn LedgerStore, hold: &mut LimitHold, now: i64) {
    let next = Ledger::expiry(now, hold.ttl_seconds);
    if hold.lines.is_empty() || next <= hold.expires_at {
        return;
    }
    for line in &hold.lines {
        let window_open = line.window_end.is_none_or(|end| end > now);
        let renewable = line.kind == LimitKind::Parallel || line.kind.counts_tokens();
        if !(renewable && window_open) {
            continue;
        }
        let amount = held(line, hold.tokens);
        let _ = store.update(line.ledger_key(), &mut |ledger| {
            ledger.release(amount, hold.expires_at, now);
            ledger.hold(amount, next);
            true
        });
    }
    hold.expires_at = next;
}

/// What a finished request counted on one rate-limit window (reported to the accounting
/// cluster, which sums every replica's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    /// The ledger key of the window's counter.
    pub ledger_key: String,
    /// The event's record of it.
    pub limit: LimitRef,
}

/// What settling a rate-limit hold did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitsSettled {
    /// False if a counter could not be written.
    pub ok: bool,
    /// The requests and tokens counted, by window (requests in flight are not: they are over).
    pub counted: Vec<Counted>,
}

/// Ends a forwarded request: frees its slot in flight and replaces its token reservation with
/// the `used` tokens, counted in the window the request ends in.
pub fn settle_limits(
    store: &dyn LedgerStore,
    zone: &BudgetZone,
    hold: &LimitHold,
    used: u64,
    now: i64,
) -> LimitsSettled {
    let mut settled = LimitsSettled {
        ok: true,
        counted: Vec::new(),
    };
    for line in &hold.lines {
        match line.kind {
            LimitKind::Rpm | LimitKind::Rpd => {
                let end = line.window_end.unwrap_or(line.window_start);
                settled.counted.push(counted(
                    line,
                    line.ledger_key().to_string(),
                    (line.window_start, end),
                    1,
                ));
            }
            LimitKind::Parallel => {
                settled.ok &= store
                    .update(line.ledger_key(), &mut |ledger| {
                        ledger.release(1, hold.expires_at, now);
                        true
                    })
                    .is_ok();
            }
            LimitKind::Tpm | LimitKind::Tpd => {
                let reserved = held(line, hold.tokens);
                let (ends_in, window) = line.window_at(zone, now);
                let same = ends_in == line.ledger_key();
                settled.ok &= store
                    .update(line.ledger_key(), &mut |ledger| {
                        ledger.release(reserved, hold.expires_at, now);
                        if same {
                            ledger.record(used);
                        }
                        true
                    })
                    .is_ok();
                if !same {
                    settled.ok &= store
                        .update(&ends_in, &mut |ledger| {
                            ledger.record(used);
                            true
                        })
                        .is_ok();
                }
                if used > 0 {
                    // Within what one event may carry (a request charged a huge reservation).
                    let count = used.min(MAX_EVENT_TOKENS);
                    settled.counted.push(counted(line, ends_in, window, count));
                }
            }
        }
    }
    settled
}

fn counted(line: &LimitLine, ledger_key: String, (start, end): (i64, i64), count: u64) -> Counted {
    Counted {
        ledger_key,
        limit: LimitRef {
            limit: line.name(),
            window_start: start,
            window_end: end,
            count,
        },
    }
}

/// Applies the accounting cluster's acknowledgement of events: each event's counts leave
/// `unconfirmed` on their windows (summed per window first), and `totals` (every replica's
/// count per ledger key) raise the confirmed amounts.
pub fn confirm_counted<'e>(
    store: &dyn LedgerStore,
    counts: impl IntoIterator<Item = &'e (String, u64)>,
    totals: &hashbrown::HashMap<String, u64>,
) {
    let mut per_window: hashbrown::HashMap<&'e str, u64> = hashbrown::HashMap::new();
    for (key, count) in counts {
        let sum = per_window.entry(key.as_str()).or_insert(0);
        *sum = sum.saturating_add(*count);
    }
    for (key, sum) in &per_window {
        let _ = store.update(key, &mut |ledger| {
            ledger.confirm(*sum, totals.get(*key).copied());
            true
        });
    }
}

#[cfg(test)]
#[path = "hold_tests.rs"]
mod tests;
