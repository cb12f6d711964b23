//! The spend outbox of one VM (it outlives config versions): buffered events, one batch in flight, retries with
//! backoff, and a bound beyond which the oldest events are dropped (and reported, never silently).
//!
//! Pure state: the adapter asks [`Outbox::due`] on each tick, sends what [`Outbox::take_batch`]
//! gives, and reports the outcome with [`Outbox::acknowledged`] or [`Outbox::failed`].

use std::collections::VecDeque;

use crate::policy::spend::batch_body;

/// Longest wait between retries.
pub const MAX_BACKOFF_MS: u64 = 30_000;
/// First retry delay.
pub const FIRST_BACKOFF_MS: u64 = 250;

/// One serialised spend event waiting for the accounting cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The CloudEvents id.
    pub id: String,
    /// The event as JSON.
    pub json: String,
    /// Its cost in nano-dollars (moved from unconfirmed to confirmed on acknowledgement).
    pub cost_nano: u64,
    /// Ledger keys of the budget windows it counts against.
    pub ledger_keys: Vec<String>,
}

/// Buffered spend events and the batch in flight.
#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<Outgoing>,
    in_flight: Vec<Outgoing>,
    busy: bool,
    batch_max: usize,
    max_buffered: usize,
    failures: u32,
    retry_at_ms: u64,
    sent_at_ms: u64,
}

impl Outbox {
    /// An empty outbox sending up to `batch_max` events at a time and holding at most
    /// `max_buffered` (queued plus in flight).
    pub fn new(batch_max: usize, max_buffered: usize) -> Outbox {
        Outbox {
            queue: VecDeque::new(),
            in_flight: Vec::new(),
            busy: false,
            batch_max: batch_max.max(1),
            max_buffered: max_buffered.max(1),
            failures: 0,
            retry_at_ms: 0,
            sent_at_ms: 0,
        }
    }

    /// Queues an event; returns the events dropped to stay within the bound (oldest first).
    pub fn push(&mut self, event: Outgoing) -> Vec<Outgoing> {
        self.queue.push_back(event);
        self.trim()
    }

    /// Applies a new version's batch size and bound; returns the events dropped to fit the new
    /// bound (oldest first). The batch in flight is kept as it is.
    pub fn set_limits(&mut self, batch_max: usize, max_buffered: usize) -> Vec<Outgoing> {
        self.batch_max = batch_max.max(1);
        self.max_buffered = max_buffered.max(1);
        self.trim()
    }

    fn trim(&mut self) -> Vec<Outgoing> {
        let mut dropped = Vec::new();
        while self.queue.len() + self.in_flight.len() > self.max_buffered {
            match self.queue.pop_front() {
                Some(old) => dropped.push(old),
                None => break,
            }
        }
        dropped
    }

    /// Whether a batch should be sent now: nothing in flight, not backing off, and either a
    /// full batch is waiting or this is a tick (`flush`) with anything waiting.
    pub fn due(&self, now_ms: u64, flush: bool) -> bool {
        !self.busy
            && !self.queue.is_empty()
            && now_ms >= self.retry_at_ms
            && (flush || self.queue.len() >= self.batch_max)
    }

    /// Moves the next batch in flight (sent at `now_ms`) and returns its body (a JSON array).
    pub fn take_batch(&mut self, now_ms: u64) -> Vec<u8> {
        let n = self.batch_max.min(self.queue.len());
        self.in_flight = self.queue.drain(..n).collect();
        self.busy = true;
        self.sent_at_ms = now_ms;
        batch_body(self.in_flight.iter().map(|e| e.json.as_str()))
    }

    /// The batch in flight was stored; returns its events.
    pub fn acknowledged(&mut self) -> Vec<Outgoing> {
        self.busy = false;
        self.failures = 0;
        self.retry_at_ms = 0;
        std::mem::take(&mut self.in_flight)
    }

    /// The batch in flight failed: its events go back to the front, and sending waits
    /// `250 ms × 2^(failures-1)` (at most 30 s). Returns events dropped to stay within the bound.
    pub fn failed(&mut self, now_ms: u64) -> Vec<Outgoing> {
        self.busy = false;
        self.failures = self.failures.saturating_add(1);
        let shift = (self.failures - 1).min(16);
        let backoff = FIRST_BACKOFF_MS
            .saturating_mul(1 << shift)
            .min(MAX_BACKOFF_MS);
        self.retry_at_ms = now_ms.saturating_add(backoff);
        for event in std::mem::take(&mut self.in_flight).into_iter().rev() {
            self.queue.push_front(event);
        }
        self.trim()
    }

    /// A batch has been in flight longer than `limit_ms` without an answer (the answer was
    /// lost): the caller should count it as failed so that its events are sent again.
    pub fn stale(&self, now_ms: u64, limit_ms: u64) -> bool {
        self.busy && now_ms.saturating_sub(self.sent_at_ms) > limit_ms
    }

    /// Events in the batch in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Empties the outbox (queued and in flight), for a final accounting of what is lost.
    pub fn take_all(&mut self) -> Vec<Outgoing> {
        self.busy = false;
        let mut all = std::mem::take(&mut self.in_flight);
        all.extend(self.queue.drain(..));
        all
    }

    /// Whether a batch is in flight.
    pub fn busy(&self) -> bool {
        self.busy
    }

    /// How long the batch in flight has been out (0 when none is).
    pub fn in_flight_for(&self, now_ms: u64) -> u64 {
        if self.busy {
            now_ms.saturating_sub(self.sent_at_ms)
        } else {
            0
        }
    }

    /// Events queued or in flight.
    pub fn len(&self) -> usize {
        self.queue.len() + self.in_flight.len()
    }

    /// Nothing queued or in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Consecutive failed sends.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn event(n: u32) -> Outgoing {
        Outgoing {
            id: format!("e{n}"),
            json: format!("{{\"id\":\"e{n}\"}}"),
            cost_nano: u64::from(n),
            ledger_keys: vec![],
        }
    }

    fn ids(events: &[Outgoing]) -> Vec<&str> {
        events.iter().map(|e| e.id.as_str()).collect()
    }

    #[test]
    fn new_limits_keep_the_batch_in_flight_and_drop_the_oldest_queued() {
        let mut outbox = Outbox::new(2, 10);
        for n in 1..=6 {
            outbox.push(event(n));
        }
        outbox.take_batch(0);
        let dropped = outbox.set_limits(3, 4);
        assert_eq!(
            ids(&dropped),
            ["e3", "e4"],
            "queued oldest first; e1, e2 are in flight"
        );
        assert_eq!(outbox.len(), 4);
        assert_eq!(ids(&outbox.acknowledged()), ["e1", "e2"]);
        assert_eq!(outbox.take_batch(0), br#"[{"id":"e5"},{"id":"e6"}]"#);
        assert!(outbox.set_limits(1, 100).is_empty());
    }

    #[test]
    fn a_full_batch_goes_at_once_a_partial_one_on_the_tick() {
        let mut outbox = Outbox::new(2, 10);
        assert!(!outbox.due(0, true), "nothing to send");
        outbox.push(event(1));
        assert!(!outbox.due(0, false));
        assert!(outbox.due(0, true));
        outbox.push(event(2));
        assert!(outbox.due(0, false));
        assert_eq!(outbox.in_flight_for(5), 0, "nothing in flight yet");
        assert_eq!(outbox.take_batch(0), br#"[{"id":"e1"},{"id":"e2"}]"#);
        assert_eq!(outbox.in_flight_for(40), 40);
        assert!(!outbox.stale(1000, 1000) && outbox.stale(1001, 1000));
        outbox.push(event(3));
        outbox.push(event(4));
        assert!(!outbox.due(0, true), "one batch in flight at a time");
        assert_eq!(ids(&outbox.acknowledged()), ["e1", "e2"]);
        assert!(outbox.due(0, false));
    }

    #[test]
    fn failures_retry_the_same_events_in_order_with_backoff() {
        let mut outbox = Outbox::new(2, 10);
        for n in 1..=3 {
            outbox.push(event(n));
        }
        let first = outbox.take_batch(0);
        assert!(outbox.failed(1000).is_empty());
        assert!(!outbox.due(1100, true));
        assert!(outbox.due(1250, true));
        assert_eq!(outbox.take_batch(0), first, "same events, same ids");
        outbox.failed(2000);
        assert!(!outbox.due(2499, true));
        assert!(outbox.due(2500, true));
        for _ in 0..20 {
            outbox.take_batch(0);
            outbox.failed(0);
        }
        assert!(outbox.due(MAX_BACKOFF_MS, true));
        assert!(!outbox.due(MAX_BACKOFF_MS - 1, true));
        outbox.take_batch(0);
        assert_eq!(ids(&outbox.acknowledged()), ["e1", "e2"]);
        assert_eq!(outbox.failures(), 0);
        assert_eq!(outbox.len(), 1);
    }

    #[test]
    fn the_bound_drops_the_oldest_and_reports_them() {
        let mut outbox = Outbox::new(2, 3);
        for n in 1..=3 {
            assert!(outbox.push(event(n)).is_empty());
        }
        assert_eq!(ids(&outbox.push(event(4))), ["e1"]);
        outbox.take_batch(0);
        assert_eq!(ids(&outbox.push(event(5))), ["e4"]);
        assert_eq!(outbox.len(), 3);
        assert!(outbox.failed(0).is_empty());
        assert_eq!(outbox.len(), 3);
    }
}
