//! The root context's side of spend reporting: buffer events, send them in batches from
//! `on_tick` with `dispatch_http_call`, apply the accounting cluster's answers to the budget
//! ledgers, poll authoritative spend, and drain before the root context finishes.
//!
//! Streams only ever call [`SpendSink::record`]; nothing here runs in a request's callbacks or
//! holds a client response.

use hashbrown::HashMap;

use crate::filter::host::{self, Level};
use crate::filter::ledgers::SharedLedgers;
use crate::filter::metrics;
use crate::policy::accounting_api::{BatchReply, BudgetsReply, BATCH_PATH, BUDGETS_PATH};
use crate::policy::denial::usd;
use crate::policy::index::Accounting;
use crate::policy::outbox::{Outbox, Outgoing};
use crate::policy::reservation::confirm;
use crate::policy::settlement::Finished;
use crate::policy::spend::{SpendEvent, BATCH_CONTENT_TYPE};

/// How many immediate re-sends a draining root context tries before giving up.
const DRAIN_ATTEMPTS: u32 = 3;
/// Longest tick period: a filled batch waits at most this long for the root context's tick.
const MAX_TICK_MS: u64 = 100;
/// Extra wait beyond the call timeout before an unanswered batch is counted as failed.
const ANSWER_GRACE_MS: u64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Batch,
    Poll,
}

/// Spend reporting state of one root context.
pub struct SpendSink {
    accounting: Option<Accounting>,
    outbox: Outbox,
    nonce: u64,
    seq: u64,
    calls: HashMap<u32, Call>,
    cursor: u64,
    next_poll_ms: u64,
    last_flush_ms: u64,
    draining: bool,
    drain_attempts: u32,
}

impl SpendSink {
    /// A sink sending to `accounting` (or nowhere); `nonce` makes event ids unique per root.
    /// The first flush interval is counted from `now_ms`.
    pub fn new(accounting: Option<Accounting>, nonce: u64, now_ms: u64) -> SpendSink {
        let (batch, bound) = accounting
            .as_ref()
            .map_or((1, 1), |a| (a.batch_max_events, a.max_buffered_events));
        SpendSink {
            accounting,
            outbox: Outbox::new(batch, bound),
            nonce,
            seq: 0,
            calls: HashMap::new(),
            cursor: 0,
            next_poll_ms: 0,
            last_flush_ms: now_ms,
            draining: false,
            drain_attempts: 0,
        }
    }

    /// The tick period this sink needs (0: none). Short, so that a filled batch leaves soon:
    /// sending is only ever done from the root context (a call made from a stream's callbacks
    /// would have its answer delivered to that stream, which may be gone).
    pub fn tick_period_ms(&self) -> u32 {
        self.accounting.as_ref().map_or(0, |a| {
            let poll = if a.poll_interval_ms == 0 {
                u64::MAX
            } else {
                a.poll_interval_ms
            };
            u32::try_from(a.flush_interval_ms.min(poll).min(MAX_TICK_MS)).unwrap_or(u32::MAX)
        })
    }

    /// Queues the spend event of a finished request (sent by the root context's next tick).
    pub fn record(&mut self, finished: Finished, now_ms: u64) {
        metrics::spend_recorded(&finished);
        let Some(accounting) = &self.accounting else {
            return;
        };
        self.seq += 1;
        let id = format!("{:016x}-{}", self.nonce, self.seq);
        let event = SpendEvent::new(
            id.clone(),
            &accounting.source,
            i64::try_from(now_ms).unwrap_or(i64::MAX),
            finished.data,
        );
        let dropped = self.outbox.push(Outgoing {
            id,
            json: event.to_json(),
            cost_nano: finished.cost.nano_usd,
            ledger_keys: finished.ledger_keys,
        });
        report_dropped(&dropped, "the spend buffer is full");
    }

    /// Periodic work: send a filled batch, or whatever waits once the flush interval has passed;
    /// count an unanswered batch as failed; poll authoritative spend when due.
    pub fn tick(&mut self, now_ms: u64) {
        let Some(accounting) = &self.accounting else {
            return;
        };
        let poll_every = accounting.poll_interval_ms;
        let flush_every = accounting.flush_interval_ms;
        let answer_limit = accounting.timeout_ms.saturating_add(ANSWER_GRACE_MS);
        if self.outbox.stale(now_ms, answer_limit) {
            host::log(
                Level::Warn,
                "tollgate: an accounting batch was never answered; sending it again",
            );
            self.batch_failed(now_ms);
        }
        let flush = now_ms.saturating_sub(self.last_flush_ms) >= flush_every;
        if self.outbox.due(now_ms, flush) {
            self.send_batch(now_ms);
        }
        let polling = self.calls.values().any(|c| *c == Call::Poll);
        if poll_every > 0 && now_ms >= self.next_poll_ms && !polling && !self.draining {
            self.next_poll_ms = now_ms.saturating_add(poll_every);
            self.poll(now_ms);
        }
    }

    /// Starts the final flush. True when nothing is left (the root may finish now).
    pub fn drain(&mut self, now_ms: u64) -> bool {
        self.draining = true;
        if self.outbox.is_empty() {
            return true;
        }
        if !self.outbox.busy() {
            self.send_batch(now_ms);
        }
        self.outbox.is_empty()
    }

    /// Handles the answer to a call made by this sink (`status` 0: no answer). Returns true
    /// when a drain has just completed.
    pub fn on_response(&mut self, token: u32, status: u16, body: &[u8], now_ms: u64) -> bool {
        match self.calls.remove(&token) {
            Some(Call::Batch) => self.on_batch_response(status, body, now_ms),
            Some(Call::Poll) => self.on_poll_response(status, body),
            None => {}
        }
        if !self.draining {
            return false;
        }
        if self.outbox.is_empty() {
            return true;
        }
        if !self.outbox.busy() {
            if self.drain_attempts >= DRAIN_ATTEMPTS {
                let left = self.outbox.take_all();
                report_dropped(&left, "the accounting cluster did not take the final flush");
                return true;
            }
            self.send_batch(now_ms);
            return self.outbox.is_empty();
        }
        false
    }

    fn send_batch(&mut self, now_ms: u64) {
        let Some(accounting) = &self.accounting else {
            return;
        };
        self.last_flush_ms = now_ms;
        let body = self.outbox.take_batch(now_ms);
        let path = format!("{}{BATCH_PATH}", accounting.path_prefix);
        let headers = vec![
            (":method", "POST"),
            (":path", path.as_str()),
            (":authority", accounting.authority.as_str()),
            ("content-type", BATCH_CONTENT_TYPE),
        ];
        let events = self.outbox.in_flight();
        match host::dispatch(&accounting.cluster, headers, &body, accounting.timeout_ms) {
            Some(token) => {
                self.calls.insert(token, Call::Batch);
                metrics::spend_batch_sent(events);
            }
            None => {
                host::log(
                    Level::Error,
                    &format!(
                        "tollgate: could not call accounting cluster {:?} (is it defined in the Envoy config?)",
                        accounting.cluster
                    ),
                );
                self.batch_failed(now_ms);
            }
        }
    }

    fn batch_failed(&mut self, now_ms: u64) {
        metrics::spend_batch_failed();
        if self.draining {
            self.drain_attempts += 1;
        }
        let dropped = self.outbox.failed(now_ms);
        report_dropped(&dropped, "the spend buffer is full");
    }

    fn on_batch_response(&mut self, status: u16, body: &[u8], now_ms: u64) {
        if !(200..300).contains(&status) {
            host::log(
                Level::Warn,
                &format!(
                    "tollgate: accounting batch failed with status {status}: {}; will retry",
                    String::from_utf8_lossy(body.get(..200).unwrap_or(body))
                ),
            );
            self.batch_failed(now_ms);
            return;
        }
        let reply: BatchReply = serde_json::from_slice(body).unwrap_or_default();
        let acked = self.outbox.acknowledged();
        metrics::spend_acknowledged(acked.len(), reply.rejected.len());
        for rejected in &reply.rejected {
            host::log(
                Level::Error,
                &format!(
                    "tollgate: accounting rejected spend event {}: {}",
                    rejected.id.as_deref().unwrap_or("?"),
                    rejected.reason
                ),
            );
        }
        let totals: HashMap<String, u64> = reply
            .budgets
            .iter()
            .map(|b| (b.ledger_key(), b.spend_nano_usd))
            .collect();
        let ledgers = SharedLedgers;
        for event in &acked {
            for key in &event.ledger_keys {
                confirm(&ledgers, key, event.cost_nano, totals.get(key).copied());
            }
        }
        // Behind? Send the next full batch now (this runs in the root context).
        if !self.draining && self.outbox.due(now_ms, false) {
            self.send_batch(now_ms);
        }
    }

    fn poll(&mut self, now_ms: u64) {
        let Some(accounting) = &self.accounting else {
            return;
        };
        let path = format!(
            "{}{BUDGETS_PATH}?since={}&now={}",
            accounting.path_prefix,
            self.cursor,
            now_ms / 1000
        );
        let headers = vec![
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", accounting.authority.as_str()),
        ];
        if let Some(token) =
            host::dispatch(&accounting.cluster, headers, b"", accounting.timeout_ms)
        {
            self.calls.insert(token, Call::Poll);
        }
    }

    fn on_poll_response(&mut self, status: u16, body: &[u8]) {
        if !(200..300).contains(&status) {
            metrics::spend_poll_failed();
            return;
        }
        let Ok(reply) = serde_json::from_slice::<BudgetsReply>(body) else {
            metrics::spend_poll_failed();
            return;
        };
        let ledgers = SharedLedgers;
        for total in &reply.budgets {
            confirm(&ledgers, &total.ledger_key(), 0, Some(total.spend_nano_usd));
        }
        self.cursor = self.cursor.max(reply.cursor);
    }
}

fn report_dropped(dropped: &[Outgoing], why: &str) {
    if dropped.is_empty() {
        return;
    }
    let lost: u64 = dropped.iter().map(|e| e.cost_nano).sum();
    metrics::spend_dropped(dropped.len());
    host::log(
        Level::Error,
        &format!(
            "tollgate: dropped {} spend event(s) worth ${} because {why} (first id {}); \
             their spend still counts against local budgets",
            dropped.len(),
            usd(lost),
            dropped.first().map_or("", |e| e.id.as_str())
        ),
    );
}
