//! Spend reporting, written once for both adapters: buffer finished requests' events, send
//! them in batches from the adapter's periodic work (a root context's tick, a config-level
//! scheduler), apply the accounting cluster's answers to the budget ledgers, poll
//! authoritative spend, and drain when the last config version retires.
//!
//! The adapter keeps one sender per VM or process, not per config version: a version that is
//! replaced while the accounting cluster is down leaves its unsent events to the versions
//! after it instead of dropping them. Streams only ever call [`SpendSender::record`]; nothing
//! here runs in a request's callbacks or holds a client response. "Owners" are the adapter's
//! ids for the contexts serving a version (proxy-wasm root contexts, native filter configs).

use hashbrown::HashMap;

use super::host::LogLevel;
use super::telemetry::Telemetry;
use crate::core::admission::denial::usd;
use crate::core::config::index::Accounting;
use crate::core::limits::hold::confirm_counted;
use crate::core::money::reservation::{confirm, confirm_acknowledged, LedgerStore};
use crate::core::money::settlement::Finished;
use crate::core::spend::accounting_api::{
    truncated, BatchReply, BudgetTotal, BudgetsReply, BATCH_ID_HEADER, BATCH_PATH, BUDGETS_PATH,
    MAX_EVENT_BYTES,
};
use crate::core::spend::event::BATCH_CONTENT_TYPE;
use crate::core::spend::event_writer::write_event;
use crate::core::spend::outbox::{Outbox, Outgoing, Settled};
use crate::core::spend::threshold::{ThresholdData, ThresholdEvent};

/// How many immediate re-sends a draining sender tries before giving up.
const DRAIN_ATTEMPTS: u32 = 3;
/// Longest tick period: a filled batch waits at most this long for the next tick.
const MAX_TICK_MS: u64 = 100;
/// Extra wait beyond the call timeout before an unanswered batch is counted as failed.
const ANSWER_GRACE_MS: u64 = 1000;

/// What the sender needs of Envoy: HTTP calls to the accounting cluster, logs, counters and
/// the budget ledgers its answers update.
pub trait CalloutHost {
    /// Starts an HTTP call to `cluster`; the call's id, or `None` if the host refused. Its
    /// answer comes back through [`SpendSender::on_response`] with that id.
    fn dispatch(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Option<u64>;
    /// Writes a log line.
    fn log(&self, level: LogLevel, message: &str);
    /// The counters.
    fn telemetry(&self) -> &dyn Telemetry;
    /// The budget ledgers of this process (or VM).
    fn ledgers(&self) -> &dyn LedgerStore;
    /// The start of the window the budget named `budget` (`scope:id`) of the version making
    /// this call is in at `now` (Unix seconds), `None` when it has no such budget: totals the
    /// accounting cluster reports for other names, or for other windows, are ignored.
    fn budget_window_start(&self, budget: &str, now: i64) -> Option<i64>;
    /// The start of the window the rate limit named `limit` (`holder/kind`) of the version
    /// making this call is in at `now`, `None` when it has no such limit (its totals are then
    /// ignored, as budget totals are).
    fn limit_window_start(&self, _limit: &str, _now: i64) -> Option<i64> {
        None
    }
    /// For a window of a budget of this version that has a soft budget, the threshold event's
    /// data (the caller fills in the spend); `None` otherwise.
    fn soft_threshold(&self, _total: &BudgetTotal) -> Option<ThresholdData> {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    /// A batch, by its sequence number in the outbox.
    Batch(u64),
    Poll,
}

/// Statuses that say "this batch can never be accepted": it is split, and an event refused
/// alone is quarantined. Every other failure (401/403/404/429, 5xx, no answer) is retried.
fn refuses_batch(status: u16) -> bool {
    matches!(status, 400 | 413 | 422)
}

/// Spend reporting state of one VM or process.
pub struct SpendSender {
    /// Where events go: the newest settings seen, kept after a version without an `accounting`
    /// section so that events queued before it are still delivered.
    accounting: Option<Accounting>,
    /// The bearer token presented to the accounting cluster (from `accounting.token_env`).
    token: Option<String>,
    /// Whether the newest version reports spend (new events are queued only then).
    recording: bool,
    outbox: Outbox,
    nonce: u64,
    seq: u64,
    /// Calls in flight: what each is, and the root context that made it (its answer goes there).
    calls: HashMap<u64, (Call, u32)>,
    /// Root contexts serving a version, oldest first; the newest one sends.
    live_roots: Vec<u32>,
    cursor: u64,
    next_poll_ms: u64,
    last_flush_ms: u64,
    draining: bool,
    drain_attempts: u32,
}

impl SpendSender {
    /// A sink with nowhere to send yet; `nonce` makes event ids unique per sender (mix randomness into it: clocks alone collide across workers and replicas).
    pub fn new(nonce: u64) -> SpendSender {
        SpendSender {
            accounting: None,
            token: None,
            recording: false,
            outbox: Outbox::new(1, 1, 1),
            nonce,
            seq: 0,
            calls: HashMap::new(),
            live_roots: Vec::new(),
            cursor: 0,
            next_poll_ms: 0,
            last_flush_ms: 0,
            draining: false,
            drain_attempts: 0,
        }
    }

    /// Root context `root` serves a newly accepted version: it becomes the one that sends, with
    /// this version's accounting settings. Queued events stay (they are sent with the new
    /// settings); without a section, new events are no longer queued but those already queued
    /// still go to the last cluster named. `token` is the value of `accounting.token_env`.
    pub fn adopt(
        &mut self,
        host: &mut dyn CalloutHost,
        root: u32,
        accounting: Option<&Accounting>,
        token: Option<String>,
        now_ms: u64,
    ) {
        self.live_roots.retain(|r| *r != root);
        self.live_roots.push(root);
        self.draining = false;
        self.drain_attempts = 0;
        self.recording = accounting.is_some();
        let Some(new) = accounting else {
            return;
        };
        let same_server = self.accounting.as_ref().is_some_and(|old| {
            (&old.cluster, &old.path_prefix, &old.authority)
                == (&new.cluster, &new.path_prefix, &new.authority)
        });
        if !same_server {
            self.cursor = 0;
            self.next_poll_ms = 0;
        }
        if self.accounting.is_none() {
            self.last_flush_ms = now_ms;
        }
        let dropped = self.outbox.set_limits(
            new.batch_max_events,
            new.max_buffered_events,
            new.max_buffered_bytes,
        );
        report_dropped(host, &dropped, "the new version buffers fewer events");
        self.accounting = Some(new.clone());
        self.token = token;
    }

    /// The tick period this sink needs (0: none). Short, so that a filled batch leaves soon:
    /// sending is only ever done from a root context (a call made from a stream's callbacks
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

    /// Root context `root` finishes. True when it may go now: no call of its own is unanswered
    /// and, if it was the VM's last, the final flush is done. Otherwise its answers, through
    /// [`SpendSender::on_response`], say when.
    pub fn retire(&mut self, host: &mut dyn CalloutHost, root: u32, now_ms: u64) -> bool {
        self.live_roots.retain(|r| *r != root);
        if self.live_roots.is_empty() {
            self.drain(host, now_ms, root)
        } else {
            !self.awaits_answer_for(root)
        }
    }

    /// Root context `root` stops sending here without a final flush: another live root (of
    /// another destination) takes over what is left on its next tick. True when none of its own
    /// calls is unanswered.
    pub fn release(&mut self, root: u32) -> bool {
        self.live_roots.retain(|r| *r != root);
        !self.awaits_answer_for(root)
    }

    /// Whether any root context serves this sender.
    pub fn has_live_root(&self) -> bool {
        !self.live_roots.is_empty()
    }

    /// Whether `root` is the only root context serving this sender.
    pub fn live_roots_are(&self, root: u32) -> bool {
        self.live_roots.iter().all(|r| *r == root)
    }

    /// Whether a call made by root context `root` is still unanswered.
    pub fn awaits_answer_for(&self, root: u32) -> bool {
        self.calls.values().any(|(_, owner)| *owner == root)
    }

    /// The accounting settings this sender sends with (`None` until a version adopts it).
    pub fn accounting(&self) -> Option<&Accounting> {
        self.accounting.as_ref()
    }

    /// The root context that made call `token`, if it is one of this sender's, unanswered.
    pub fn caller_of(&self, token: u64) -> Option<u32> {
        self.calls.get(&token).map(|(_, root)| *root)
    }

    /// Whether root context `root` serves a version that sends through this sender.
    pub fn serves(&self, root: u32) -> bool {
        self.live_roots.contains(&root)
    }

    /// No version sends through this sender any more, yet events wait or a call is unanswered.
    pub fn is_orphaned(&self) -> bool {
        self.live_roots.is_empty() && (!self.outbox.is_empty() || !self.calls.is_empty())
    }

    /// Root context `root` (serving another version) finishes this orphaned sender's work with
    /// the sender's own settings: its events still go where they were recorded for, and it no
    /// longer polls (the versions that used its totals are gone).
    pub fn take_over(&mut self, root: u32) {
        if !self.live_roots.contains(&root) {
            self.live_roots.push(root);
        }
        self.draining = true;
    }

    fn sends(&self, root: u32) -> bool {
        self.live_roots.last() == Some(&root)
    }

    /// Queues the spend event of a finished request (sent by the root context's next tick),
    /// with the `source` of the version that served it.
    pub fn record(
        &mut self,
        host: &mut dyn CalloutHost,
        source: &str,
        finished: Finished,
        now_ms: u64,
    ) {
        host.telemetry().spend_recorded(&finished);
        if self.accounting.is_none() || !self.recording {
            return;
        }
        self.seq += 1;
        let id = format!("{:016x}-{}", self.nonce, self.seq);
        // Sized for a typical event (about 1 KiB), so the text is not regrown as it is written.
        let mut json = String::with_capacity(1024);
        let ended_at = i64::try_from(now_ms).unwrap_or(i64::MAX);
        write_event(&mut json, &id, source, ended_at, &finished.data);
        let outgoing = Outgoing {
            id,
            json,
            cost_nano: finished.cost.nano_usd,
            ledger_keys: finished.ledger_keys,
            limit_counts: finished.limit_counts,
        };
        self.queue(host, outgoing);
        for data in finished.soft_reached {
            self.report_threshold(host, source, ended_at, data);
        }
    }

    /// Queues the threshold event of a soft budget found reached. Its id is the same from
    /// every replica, so the accounting cluster keeps one per window; it moves no money.
    fn report_threshold(
        &mut self,
        host: &mut dyn CalloutHost,
        source: &str,
        at_ms: i64,
        data: ThresholdData,
    ) {
        let event = ThresholdEvent::new(source, at_ms, data);
        host.log(
            LogLevel::Info,
            &format!(
                "tollgate: budget {} reached its soft budget of ${} in the window starting {}",
                event.data.budget,
                event.data.threshold_nano_usd as f64 / 1e9,
                event.data.window_start
            ),
        );
        let outgoing = Outgoing {
            json: event.to_json(),
            id: event.id,
            cost_nano: 0,
            ledger_keys: Vec::new(),
            limit_counts: Vec::new(),
        };
        self.queue(host, outgoing);
    }

    /// Puts an event in the outbox, or quarantines it when it is empty or too large to send.
    fn queue(&mut self, host: &mut dyn CalloutHost, outgoing: Outgoing) {
        if outgoing.json.len() > MAX_EVENT_BYTES || outgoing.json.is_empty() {
            let why = format!("the event is empty or larger than {MAX_EVENT_BYTES} bytes");
            report_quarantined(host, &[(outgoing, why)]);
            return;
        }
        let dropped = self.outbox.push(outgoing);
        report_dropped(host, &dropped, "the spend buffer is full");
    }

    /// Periodic work, done by root context `root`: send a filled batch, or whatever waits once
    /// the flush interval has passed; count an unanswered batch as failed; poll authoritative
    /// spend when due.
    pub fn tick(&mut self, host: &mut dyn CalloutHost, now_ms: u64, root: u32) {
        if !self.sends(root) {
            return;
        }
        let Some(accounting) = &self.accounting else {
            return;
        };
        let poll_every = accounting.poll_interval_ms;
        let flush_every = accounting.flush_interval_ms;
        let answer_limit = accounting.timeout_ms.saturating_add(ANSWER_GRACE_MS);
        if self.outbox.stale(now_ms, answer_limit) {
            host.log(
                LogLevel::Warn,
                "tollgate: an accounting batch was never answered; sending it again",
            );
            self.batch_failed(host, now_ms);
        }
        let flush = now_ms.saturating_sub(self.last_flush_ms) >= flush_every;
        if self.outbox.due(now_ms, flush) {
            self.send_batch(host, now_ms, root);
        }
        let polling = self.calls.values().any(|(c, _)| *c == Call::Poll);
        let poll_due = poll_every > 0 && now_ms >= self.next_poll_ms;
        if poll_due && self.recording && !polling && !self.draining {
            self.next_poll_ms = now_ms.saturating_add(poll_every);
            self.poll(host, now_ms, root);
        }
    }

    /// Starts the final flush, when root context `root`, the VM's last, finishes. True when
    /// nothing is left (the root may finish now).
    fn drain(&mut self, host: &mut dyn CalloutHost, now_ms: u64, root: u32) -> bool {
        self.draining = true;
        if self.outbox.is_empty() {
            return true;
        }
        if !self.outbox.busy() {
            self.send_batch(host, now_ms, root);
        }
        self.outbox.is_empty()
    }

    /// Handles the answer to a call made by this sink (`status` 0: no answer). Returns true
    /// when the root context that made the call has retired and may now finish.
    pub fn on_response(
        &mut self,
        host: &mut dyn CalloutHost,
        token: u64,
        status: u16,
        body: &[u8],
        now_ms: u64,
    ) -> bool {
        let root = match self.calls.remove(&token) {
            Some((Call::Batch(seq), root)) => {
                self.on_batch_response(host, seq, status, body, now_ms, root);
                root
            }
            Some((Call::Poll, root)) => {
                self.on_poll_response(host, status, body, now_ms);
                root
            }
            None => return false,
        };
        if self.live_roots.contains(&root) {
            return false;
        }
        if !self.live_roots.is_empty() {
            return !self.awaits_answer_for(root);
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
                report_dropped(
                    host,
                    &left,
                    "the accounting cluster did not take the final flush",
                );
                return true;
            }
            self.send_batch(host, now_ms, root);
            return self.outbox.is_empty();
        }
        false
    }

    fn send_batch(&mut self, host: &mut dyn CalloutHost, now_ms: u64, root: u32) {
        let Some(accounting) = &self.accounting else {
            return;
        };
        self.last_flush_ms = now_ms;
        let batch = self.outbox.take_batch(now_ms);
        let path = format!("{}{BATCH_PATH}", accounting.path_prefix);
        let batch_id = self.batch_id(batch.seq);
        let authorization = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers = vec![
            (":method", "POST"),
            (":path", path.as_str()),
            (":authority", accounting.authority.as_str()),
            ("content-type", BATCH_CONTENT_TYPE),
            (BATCH_ID_HEADER, batch_id.as_str()),
        ];
        if let Some(value) = &authorization {
            headers.push(("authorization", value.as_str()));
        }
        let events = self.outbox.in_flight();
        match host.dispatch(
            &accounting.cluster,
            &headers,
            &batch.body,
            accounting.timeout_ms,
        ) {
            Some(token) => {
                self.calls.insert(token, (Call::Batch(batch.seq), root));
                host.telemetry().spend_batch_sent(events);
            }
            None => {
                host.log(
                    LogLevel::Error,
                    &format!(
                        "tollgate: could not call accounting cluster {:?} (Envoy refused the call: the cluster is not defined, has no healthy host, or is overloaded)",
                        accounting.cluster
                    ),
                );
                self.batch_failed(host, now_ms);
            }
        }
    }

    /// The wire identity of batch `seq` of this VM.
    fn batch_id(&self, seq: u64) -> String {
        format!("{:016x}-b{seq}", self.nonce)
    }

    /// The batch in flight failed (no usable answer): its events are sent again after a backoff.
    fn batch_failed(&mut self, host: &mut dyn CalloutHost, now_ms: u64) {
        let Some(seq) = self.outbox.in_flight_seq() else {
            return;
        };
        host.telemetry().spend_batch_failed();
        if self.draining {
            self.drain_attempts += 1;
        }
        let dropped = self.outbox.failed(seq, now_ms).unwrap_or_default();
        report_dropped(host, &dropped, "the spend buffer is full");
    }

    fn on_batch_response(
        &mut self,
        host: &mut dyn CalloutHost,
        seq: u64,
        status: u16,
        body: &[u8],
        now_ms: u64,
        root: u32,
    ) {
        let batch_id = self.batch_id(seq);
        if self.outbox.in_flight_seq() != Some(seq) {
            // A late answer for a batch already counted as failed (its events were re-queued
            // and are sent again): it must not settle whatever is in flight now.
            host.log(
                LogLevel::Warn,
                &format!("tollgate: ignored a late accounting answer for batch {batch_id}"),
            );
            return;
        }
        if status != 0 {
            host.telemetry()
                .spend_batch_latency(self.outbox.in_flight_for(now_ms));
        }
        let excerpt = || String::from_utf8_lossy(body.get(..200).unwrap_or(body)).into_owned();
        if refuses_batch(status) {
            let events = self.outbox.in_flight();
            host.log(
                LogLevel::Warn,
                &format!(
                    "tollgate: accounting refused batch {batch_id} of {events} event(s) with status \
                     {status}: {}; {}",
                    excerpt(),
                    if events > 1 { "splitting it" } else { "quarantining its event" }
                ),
            );
            let quarantined = self.outbox.refused(seq).unwrap_or_default();
            let why = format!("the accounting cluster refused it alone with status {status}");
            report_quarantined(
                host,
                &quarantined
                    .into_iter()
                    .map(|e| (e, why.clone()))
                    .collect::<Vec<_>>(),
            );
        } else if !(200..300).contains(&status) {
            host.log(
                LogLevel::Warn,
                &format!(
                    "tollgate: accounting batch {batch_id} failed with {}: {}; will retry",
                    if status == 0 {
                        "no answer (reset, timed out, or larger than Envoy's buffer limit)"
                            .to_string()
                    } else {
                        format!("status {status}")
                    },
                    excerpt()
                ),
            );
            self.batch_failed(host, now_ms);
            return;
        } else {
            let reply = match BatchReply::for_batch(body, &batch_id) {
                Ok(reply) => reply,
                Err(problem) => {
                    host.log(
                        LogLevel::Warn,
                        &format!(
                            "tollgate: accounting answered batch {batch_id} with {status} but {problem} \
                             ({}); nothing is acknowledged, will retry",
                            excerpt()
                        ),
                    );
                    self.batch_failed(host, now_ms);
                    return;
                }
            };
            let Some(settled) = self.outbox.settle(seq, &reply, now_ms) else {
                return;
            };
            self.apply_settled(host, &reply, &settled);
            if settled.unanswered > 0 {
                host.telemetry().spend_batch_failed();
                host.log(
                    LogLevel::Warn,
                    &format!(
                        "tollgate: accounting answered batch {batch_id} without naming {} of its \
                         events; they are sent again",
                        settled.unanswered
                    ),
                );
                if self.draining {
                    self.drain_attempts += 1;
                }
                return;
            }
        }
        // Behind? Send the next full batch now (this runs in the root context).
        if !self.draining && self.sends(root) && self.outbox.due(now_ms, false) {
            self.send_batch(host, now_ms, root);
        }
    }

    /// Acknowledged events move from unconfirmed to confirmed, with the reply's totals for the
    /// windows they touched (totals for any other window are not trusted from a batch answer);
    /// rejected events are quarantined, and their spend stays in the local ledgers.
    fn apply_settled(&self, host: &mut dyn CalloutHost, reply: &BatchReply, settled: &Settled) {
        let acked = &settled.acknowledged;
        host.telemetry()
            .spend_acknowledged(acked.len(), settled.rejected.len());
        report_quarantined(host, &settled.rejected);
        report_dropped(host, &settled.dropped, "the spend buffer is full");
        let touched: hashbrown::HashSet<&str> = acked
            .iter()
            .flat_map(|e| e.ledger_keys.iter().map(String::as_str))
            .collect();
        let totals: HashMap<String, u64> = reply
            .budgets
            .iter()
            .map(|b| (b.ledger_key(), b.spend_nano_usd))
            .filter(|(key, _)| touched.contains(key.as_str()))
            .collect();
        confirm_acknowledged(
            host.ledgers(),
            acked
                .iter()
                .map(|e| (e.ledger_keys.as_slice(), e.cost_nano)),
            &totals,
        );
        if acked.iter().any(|e| !e.limit_counts.is_empty()) {
            let touched: hashbrown::HashSet<&str> = acked
                .iter()
                .flat_map(|e| e.limit_counts.iter().map(|(k, _)| k.as_str()))
                .collect();
            let totals: HashMap<String, u64> = reply
                .limits
                .iter()
                .map(|l| (l.ledger_key(), l.count))
                .filter(|(key, _)| touched.contains(key.as_str()))
                .collect();
            let counts = acked.iter().flat_map(|e| e.limit_counts.iter());
            confirm_counted(host.ledgers(), counts, &totals);
        }
    }

    fn poll(&mut self, host: &mut dyn CalloutHost, now_ms: u64, root: u32) {
        let Some(accounting) = &self.accounting else {
            return;
        };
        let path = format!(
            "{}{BUDGETS_PATH}?since={}&now={}",
            accounting.path_prefix,
            self.cursor,
            now_ms / 1000
        );
        let authorization = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers = vec![
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", accounting.authority.as_str()),
        ];
        if let Some(value) = &authorization {
            headers.push(("authorization", value.as_str()));
        }
        if let Some(token) =
            host.dispatch(&accounting.cluster, &headers, b"", accounting.timeout_ms)
        {
            self.calls.insert(token, (Call::Poll, root));
        }
    }

    fn on_poll_response(
        &mut self,
        host: &mut dyn CalloutHost,
        status: u16,
        body: &[u8],
        now_ms: u64,
    ) {
        if !(200..300).contains(&status) {
            host.telemetry().spend_poll_failed();
            return;
        }
        let Ok(reply) = serde_json::from_slice::<BudgetsReply>(body) else {
            host.telemetry().spend_poll_failed();
            return;
        };
        // Only budgets of this version: a peer naming budgets nobody has would otherwise add a
        // ledger per name (the ledgers hold one slot per budget, not per name a peer invents).
        // And only in the window each is in now: a budget's slot holds one window and moves on
        // to a newer one it is told of, so a total for a later (or made-up) window would drop
        // the current window's spend and reservations, and the budget would stop refusing.
        let now_s = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
        let current: Vec<&BudgetTotal> = reply
            .budgets
            .iter()
            .filter(|t| host.budget_window_start(&t.budget, now_s) == Some(t.window_start))
            .collect();
        let ledgers = host.ledgers();
        for total in &current {
            confirm(ledgers, &total.ledger_key(), 0, Some(total.spend_nano_usd));
        }
        // Rate-limit windows the same way: only this version's limits, in their current window.
        for total in &reply.limits {
            if host.limit_window_start(&total.limit, now_s) == Some(total.window_start) {
                confirm(host.ledgers(), &total.ledger_key(), 0, Some(total.count));
            }
        }
        self.cursor = self.cursor.max(reply.cursor);
        // A soft budget the replicas reached together, though no request here saw it reached:
        // reported now (once per window and process; the event id is the same everywhere).
        let reached: Vec<ThresholdData> = current
            .iter()
            .filter_map(|&total| {
                let mut data = host.soft_threshold(total)?;
                let mut spent = None;
                let _ = host.ledgers().update(&total.ledger_key(), &mut |ledger| {
                    spent = ledger
                        .reach_soft(Some(data.threshold_nano_usd))
                        .then(|| ledger.spent());
                    spent.is_some()
                });
                data.spend_nano_usd = spent?;
                Some(data)
            })
            .collect();
        if !reached.is_empty() {
            let source = self
                .accounting
                .as_ref()
                .map(|a| a.source.clone())
                .unwrap_or_default();
            let at = i64::try_from(now_ms).unwrap_or(i64::MAX);
            for data in reached {
                self.report_threshold(host, &source, at, data);
            }
        }
    }
}

fn report_dropped(host: &mut dyn CalloutHost, dropped: &[Outgoing], why: &str) {
    if dropped.is_empty() {
        return;
    }
    let lost: u64 = dropped.iter().map(|e| e.cost_nano).sum();
    host.telemetry().spend_dropped(dropped.len());
    host.log(
        LogLevel::Error,
        &format!(
            "tollgate: dropped {} spend event(s) worth ${} because {why} (first id {}); \
             their spend still counts against local budgets",
            dropped.len(),
            usd(lost),
            dropped.first().map_or("", |e| e.id.as_str())
        ),
    );
}

/// Events taken out of the outbox for good because they can never be accepted: counted, and
/// logged one by one with their id, value and reason. Their spend stays in the local ledgers.
fn report_quarantined(host: &mut dyn CalloutHost, events: &[(Outgoing, String)]) {
    if events.is_empty() {
        return;
    }
    host.telemetry().spend_quarantined(events.len());
    for (event, why) in events {
        host.log(
            LogLevel::Error,
            &format!(
                "tollgate: quarantined spend event {} worth ${} ({} bytes): {}; it is not sent \
                 again, its spend still counts against local budgets",
                truncated(&event.id, 256),
                usd(event.cost_nano),
                event.json.len(),
                truncated(why, 300)
            ),
        );
    }
}
