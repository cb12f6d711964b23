//! The spend outbox of one VM (it outlives config versions): buffered events, one batch in flight,
//! retries with backoff, per-event acknowledgement, and bounds (count and bytes) beyond which the
//! oldest events are dropped (and reported, never silently).
//!
//! Pure state: the adapter asks [`Outbox::due`] on each tick, sends what [`Outbox::take_batch`]
//! gives (with its [`SentBatch::seq`] as the batch identity), and reports the outcome for that
//! batch: [`Outbox::settle`] (the server answered which events it took), [`Outbox::refused`]
//! (the server says this batch can never be accepted) or [`Outbox::failed`] (no usable answer).
//! An outcome for any batch other than the one in flight is ignored, so a late answer can never
//! acknowledge the wrong events.
//!
//! A refused batch is split in halves until the event that makes it unacceptable is alone; that
//! event is then quarantined (taken out and handed back to be counted and logged), so one bad
//! event can never block the rest.

use std::collections::VecDeque;

use hashbrown::HashSet;

use crate::core::spend::accounting_api::BatchReply;
use crate::core::spend::event::batch_body;

/// Longest wait between retries.
pub const MAX_BACKOFF_MS: u64 = 30_000;
/// First retry delay.
pub const FIRST_BACKOFF_MS: u64 = 250;
/// Largest batch body, in bytes, unless one event alone is larger (then it goes alone).
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

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
    /// What it counted on rate-limit windows, by ledger key (moved from unconfirmed to
    /// acknowledged on acknowledgement).
    pub limit_counts: Vec<(String, u64)>,
}

impl Outgoing {
    /// What the event holds in the buffer, in bytes (its JSON and its ledger keys).
    pub fn weight(&self) -> usize {
        let limits: usize = self.limit_counts.iter().map(|(k, _)| k.len() + 8).sum();
        self.json.len() + self.ledger_keys.iter().map(String::len).sum::<usize>() + limits
    }
}

/// A batch handed to the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentBatch {
    /// The batch's identity: outcomes are applied only when they name it.
    pub seq: u64,
    /// The body (a JSON array of events).
    pub body: Vec<u8>,
}

/// What became of a batch the server answered event by event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settled {
    /// Stored (now or earlier): they leave the outbox.
    pub acknowledged: Vec<Outgoing>,
    /// Refused by the server, with its reason: quarantined (they leave the outbox, their spend
    /// stays in the local ledgers).
    pub rejected: Vec<(Outgoing, String)>,
    /// Named in neither list: back to the front of the queue, retried after a backoff.
    pub unanswered: usize,
    /// Events dropped to stay within the bounds when the unanswered ones went back.
    pub dropped: Vec<Outgoing>,
}

/// Buffered spend events and the batch in flight.
#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<Outgoing>,
    in_flight: Vec<Outgoing>,
    busy: bool,
    batch_seq: u64,
    batch_max: usize,
    /// Sizes of the parts a refused batch was split into, at the front of the queue (sent
    /// one part per batch, at once, without waiting for a flush).
    segments: VecDeque<usize>,
    max_buffered: usize,
    max_bytes: usize,
    bytes: usize,
    failures: u32,
    retry_at_ms: u64,
    sent_at_ms: u64,
}

impl Outbox {
    /// An empty outbox sending up to `batch_max` events at a time and holding at most
    /// `max_buffered` events and `max_bytes` bytes (queued plus in flight).
    pub fn new(batch_max: usize, max_buffered: usize, max_bytes: usize) -> Outbox {
        Outbox {
            queue: VecDeque::new(),
            in_flight: Vec::new(),
            busy: false,
            batch_seq: 0,
            batch_max: batch_max.max(1),
            segments: VecDeque::new(),
            max_buffered: max_buffered.max(1),
            max_bytes: max_bytes.max(1),
            bytes: 0,
            failures: 0,
            retry_at_ms: 0,
            sent_at_ms: 0,
        }
    }

    /// Queues an event; returns the events dropped to stay within the bounds (oldest first;
    /// possibly this one, when it alone exceeds the byte bound).
    pub fn push(&mut self, event: Outgoing) -> Vec<Outgoing> {
        self.bytes = self.bytes.saturating_add(event.weight());
        self.queue.push_back(event);
        self.trim()
    }

    /// Applies a new version's batch size and bounds; returns the events dropped to fit the new
    /// bounds (oldest first). The batch in flight is kept as it is.
    pub fn set_limits(
        &mut self,
        batch_max: usize,
        max_buffered: usize,
        max_bytes: usize,
    ) -> Vec<Outgoing> {
        self.batch_max = batch_max.max(1);
        self.max_buffered = max_buffered.max(1);
        self.max_bytes = max_bytes.max(1);
        self.trim()
    }

    fn trim(&mut self) -> Vec<Outgoing> {
        let mut dropped = Vec::new();
        while self.queue.len() + self.in_flight.len() > self.max_buffered
            || self.bytes > self.max_bytes
        {
            match self.queue.pop_front() {
                Some(old) => {
                    self.bytes = self.bytes.saturating_sub(old.weight());
                    self.consume_segment(1);
                    dropped.push(old);
                }
                None => break,
            }
        }
        dropped
    }

    /// Whether a batch should be sent now: nothing in flight, not backing off, and either a
    /// full batch is waiting, the rest of a split batch is, or this is a tick (`flush`) with
    /// anything waiting.
    pub fn due(&self, now_ms: u64, flush: bool) -> bool {
        !self.busy
            && !self.queue.is_empty()
            && now_ms >= self.retry_at_ms
            && (flush || !self.segments.is_empty() || self.queue.len() >= self.batch_max)
    }

    /// `n` events at the front of the queue are done with: they leave the current part.
    fn consume_segment(&mut self, n: usize) {
        if let Some(front) = self.segments.front_mut() {
            *front = front.saturating_sub(n);
            if *front == 0 {
                self.segments.pop_front();
            }
        }
    }

    /// Moves the next batch in flight (sent at `now_ms`): at most the batch size (or the next
    /// part of a split batch), and at most [`MAX_BATCH_BYTES`] unless its first event alone is
    /// larger.
    pub fn take_batch(&mut self, now_ms: u64) -> SentBatch {
        let limit = self.segments.front().copied().unwrap_or(self.batch_max);
        let mut n = 0;
        let mut size = 2;
        for event in self.queue.iter().take(limit) {
            size += event.json.len() + 1;
            if n > 0 && size > MAX_BATCH_BYTES {
                break;
            }
            n += 1;
        }
        self.in_flight = self.queue.drain(..n).collect();
        self.busy = true;
        self.sent_at_ms = now_ms;
        self.batch_seq += 1;
        SentBatch {
            seq: self.batch_seq,
            body: batch_body(self.in_flight.iter().map(|e| e.json.as_str())),
        }
    }

    /// The sequence number of the batch in flight, if one is.
    pub fn in_flight_seq(&self) -> Option<u64> {
        self.busy.then_some(self.batch_seq)
    }

    fn release(&mut self, event: &Outgoing) {
        self.bytes = self.bytes.saturating_sub(event.weight());
    }

    /// The server answered batch `seq` event by event. Returns `None` (and changes nothing)
    /// when `seq` is not the batch in flight.
    pub fn settle(&mut self, seq: u64, reply: &BatchReply, now_ms: u64) -> Option<Settled> {
        if self.in_flight_seq() != Some(seq) {
            return None;
        }
        let acknowledged: HashSet<&str> = reply.acknowledged.iter().map(String::as_str).collect();
        let mut settled = Settled::default();
        let mut again = Vec::new();
        for event in std::mem::take(&mut self.in_flight) {
            if acknowledged.contains(event.id.as_str()) {
                self.release(&event);
                settled.acknowledged.push(event);
            } else if let Some(why) = reply
                .rejected
                .iter()
                .find(|r| r.id.as_deref() == Some(event.id.as_str()))
            {
                self.release(&event);
                settled.rejected.push((event, why.reason.clone()));
            } else {
                again.push(event);
            }
        }
        self.busy = false;
        settled.unanswered = again.len();
        self.consume_segment(settled.acknowledged.len() + settled.rejected.len());
        if again.is_empty() {
            self.failures = 0;
            self.retry_at_ms = 0;
        } else {
            self.in_flight = again;
            settled.dropped = self.requeue_after_backoff(now_ms);
        }
        Some(settled)
    }

    /// The server refused batch `seq` as a whole, as one it can never accept (400, 413, 422).
    /// A batch of several events is split: its events go back to the front and the next batches
    /// are half its size, sent at once. A batch of one is that event's fault: it is returned,
    /// quarantined. `None` when `seq` is not the batch in flight.
    pub fn refused(&mut self, seq: u64) -> Option<Vec<Outgoing>> {
        if self.in_flight_seq() != Some(seq) {
            return None;
        }
        self.busy = false;
        let batch = std::mem::take(&mut self.in_flight);
        self.consume_segment(batch.len());
        if batch.len() <= 1 {
            for event in &batch {
                self.release(event);
            }
            return Some(batch);
        }
        let first = batch.len() / 2;
        self.segments.push_front(batch.len() - first);
        self.segments.push_front(first);
        for event in batch.into_iter().rev() {
            self.queue.push_front(event);
        }
        Some(Vec::new())
    }

    /// Batch `seq` failed (no answer, an error status, or an answer that is not a valid reply
    /// for it): its events go back to the front, and sending waits `250 ms × 2^(failures-1)`
    /// (at most 30 s). Returns events dropped to stay within the bounds; `None` when `seq` is
    /// not the batch in flight.
    pub fn failed(&mut self, seq: u64, now_ms: u64) -> Option<Vec<Outgoing>> {
        if self.in_flight_seq() != Some(seq) {
            return None;
        }
        Some(self.requeue_after_backoff(now_ms))
    }

    fn requeue_after_backoff(&mut self, now_ms: u64) -> Vec<Outgoing> {
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

    /// The events of the batch in flight.
    pub fn in_flight_events(&self) -> &[Outgoing] {
        &self.in_flight
    }

    /// Empties the outbox (queued and in flight), for a final accounting of what is lost.
    pub fn take_all(&mut self) -> Vec<Outgoing> {
        self.busy = false;
        self.bytes = 0;
        self.segments.clear();
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

    /// Bytes held (queued and in flight), as counted by [`Outgoing::weight`].
    pub fn bytes(&self) -> usize {
        self.bytes
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
    use crate::core::spend::accounting_api::RejectedEvent;

    fn event(n: u32) -> Outgoing {
        Outgoing {
            id: format!("e{n}"),
            json: format!("{{\"id\":\"e{n}\"}}"),
            cost_nano: u64::from(n),
            ledger_keys: vec![],
            limit_counts: vec![],
        }
    }

    fn ids(events: &[Outgoing]) -> Vec<&str> {
        events.iter().map(|e| e.id.as_str()).collect()
    }

    fn reply(acknowledged: &[&str], rejected: &[&str]) -> BatchReply {
        BatchReply {
            batch_id: "b".into(),
            acknowledged: acknowledged.iter().map(|s| s.to_string()).collect(),
            rejected: rejected
                .iter()
                .map(|id| RejectedEvent {
                    id: Some(id.to_string()),
                    reason: "bad".into(),
                })
                .collect(),
            ..BatchReply::default()
        }
    }

    /// Acknowledges the batch in flight completely.
    fn ack_all(outbox: &mut Outbox) -> Vec<Outgoing> {
        let seq = outbox.in_flight_seq().unwrap();
        let all: Vec<String> = outbox.in_flight.iter().map(|e| e.id.clone()).collect();
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        outbox
            .settle(seq, &reply(&all, &[]), 0)
            .unwrap()
            .acknowledged
    }

    #[test]
    fn new_limits_keep_the_batch_in_flight_and_drop_the_oldest_queued() {
        let mut outbox = Outbox::new(2, 10, 1 << 20);
        for n in 1..=6 {
            outbox.push(event(n));
        }
        outbox.take_batch(0);
        let dropped = outbox.set_limits(3, 4, 1 << 20);
        assert_eq!(
            ids(&dropped),
            ["e3", "e4"],
            "queued oldest first; e1, e2 are in flight"
        );
        assert_eq!(outbox.len(), 4);
        assert_eq!(ids(&ack_all(&mut outbox)), ["e1", "e2"]);
        assert_eq!(outbox.take_batch(0).body, br#"[{"id":"e5"},{"id":"e6"}]"#);
        assert!(outbox.set_limits(1, 100, 1 << 20).is_empty());
    }

    #[test]
    fn a_full_batch_goes_at_once_a_partial_one_on_the_tick() {
        let mut outbox = Outbox::new(2, 10, 1 << 20);
        assert!(!outbox.due(0, true), "nothing to send");
        outbox.push(event(1));
        assert!(!outbox.due(0, false));
        assert!(outbox.due(0, true));
        outbox.push(event(2));
        assert!(outbox.due(0, false));
        assert_eq!(outbox.in_flight_for(5), 0, "nothing in flight yet");
        assert_eq!(outbox.take_batch(0).body, br#"[{"id":"e1"},{"id":"e2"}]"#);
        assert_eq!(outbox.in_flight_for(40), 40);
        assert!(!outbox.stale(1000, 1000) && outbox.stale(1001, 1000));
        outbox.push(event(3));
        outbox.push(event(4));
        assert!(!outbox.due(0, true), "one batch in flight at a time");
        assert_eq!(ids(&ack_all(&mut outbox)), ["e1", "e2"]);
        assert!(outbox.due(0, false));
    }

    #[test]
    fn failures_retry_the_same_events_in_order_with_backoff() {
        let mut outbox = Outbox::new(2, 10, 1 << 20);
        for n in 1..=3 {
            outbox.push(event(n));
        }
        let first = outbox.take_batch(0);
        assert!(outbox.failed(first.seq, 1000).unwrap().is_empty());
        assert!(!outbox.due(1100, true));
        assert!(outbox.due(1250, true));
        let second = outbox.take_batch(0);
        assert_eq!(second.body, first.body, "same events, same ids");
        assert_ne!(second.seq, first.seq, "a new batch identity");
        outbox.failed(second.seq, 2000);
        assert!(!outbox.due(2499, true));
        assert!(outbox.due(2500, true));
        for _ in 0..20 {
            let seq = outbox.take_batch(0).seq;
            outbox.failed(seq, 0);
        }
        assert!(outbox.due(MAX_BACKOFF_MS, true));
        assert!(!outbox.due(MAX_BACKOFF_MS - 1, true));
        outbox.take_batch(0);
        assert_eq!(ids(&ack_all(&mut outbox)), ["e1", "e2"]);
        assert_eq!(outbox.failures(), 0);
        assert_eq!(outbox.len(), 1);
    }

    #[test]
    fn the_bound_drops_the_oldest_and_reports_them() {
        let mut outbox = Outbox::new(2, 3, 1 << 20);
        for n in 1..=3 {
            assert!(outbox.push(event(n)).is_empty());
        }
        assert_eq!(ids(&outbox.push(event(4))), ["e1"]);
        let seq = outbox.take_batch(0).seq;
        assert_eq!(ids(&outbox.push(event(5))), ["e4"]);
        assert_eq!(outbox.len(), 3);
        assert!(outbox.failed(seq, 0).unwrap().is_empty());
        assert_eq!(outbox.len(), 3);
    }

    #[test]
    fn the_byte_bound_drops_the_oldest_and_counts_bytes_out() {
        let big = |n: u32| Outgoing {
            json: "x".repeat(1000),
            ledger_keys: vec!["k".repeat(100)],
            ..event(n)
        };
        let mut outbox = Outbox::new(10, 1000, 3500);
        for n in 1..=3 {
            assert!(outbox.push(big(n)).is_empty());
        }
        assert_eq!(outbox.bytes(), 3300);
        assert_eq!(ids(&outbox.push(big(4))), ["e1"], "4400 bytes > 3500");
        assert_eq!(outbox.bytes(), 3300);
        let seq = outbox.take_batch(0).seq;
        ack_all(&mut outbox);
        assert_eq!((outbox.bytes(), outbox.len()), (0, 0));
        assert!(outbox.settle(seq, &reply(&[], &[]), 0).is_none());
        let mut tiny = Outbox::new(10, 1000, 10);
        assert_eq!(
            ids(&tiny.push(big(9))),
            ["e9"],
            "an event larger than the whole bound is dropped at once"
        );
        assert_eq!(tiny.bytes(), 0);
    }

    #[test]
    fn a_batch_is_cut_at_the_byte_limit_but_never_empty() {
        let mut outbox = Outbox::new(100, 1000, usize::MAX);
        let huge = |n: u32| Outgoing {
            json: "y".repeat(MAX_BATCH_BYTES / 2),
            ..event(n)
        };
        for n in 1..=3 {
            outbox.push(huge(n));
        }
        outbox.take_batch(0);
        assert_eq!(
            outbox.in_flight(),
            1,
            "two halves plus brackets exceed the limit"
        );
        ack_all(&mut outbox);
        let mut alone = Outbox::new(100, 1000, usize::MAX);
        alone.push(Outgoing {
            json: "z".repeat(MAX_BATCH_BYTES * 2),
            ..event(1)
        });
        alone.take_batch(0);
        assert_eq!(alone.in_flight(), 1);
    }

    #[test]
    fn only_the_acknowledged_events_leave_the_rest_are_quarantined_or_retried() {
        let mut outbox = Outbox::new(4, 10, 1 << 20);
        for n in 1..=4 {
            outbox.push(event(n));
        }
        let batch = outbox.take_batch(0);
        let settled = outbox
            .settle(batch.seq, &reply(&["e1", "e3", "nope"], &["e2"]), 1000)
            .unwrap();
        assert_eq!(ids(&settled.acknowledged), ["e1", "e3"]);
        assert_eq!(settled.rejected.len(), 1);
        assert_eq!(
            (
                settled.rejected[0].0.id.as_str(),
                settled.rejected[0].1.as_str()
            ),
            ("e2", "bad")
        );
        assert_eq!(settled.unanswered, 1, "e4 was named nowhere");
        assert_eq!(outbox.len(), 1);
        assert!(!outbox.due(1000, true), "an incomplete answer backs off");
        assert!(outbox.due(1250, true));
        assert_eq!(outbox.take_batch(1250).body, br#"[{"id":"e4"}]"#);
    }

    #[test]
    fn an_answer_for_another_batch_changes_nothing() {
        let mut outbox = Outbox::new(2, 10, 1 << 20);
        for n in 1..=4 {
            outbox.push(event(n));
        }
        let old = outbox.take_batch(0);
        // It timed out; its events go back and are sent again as a new batch.
        outbox.failed(old.seq, 0);
        let new = outbox.take_batch(300);
        assert_eq!(new.body, old.body);
        // The late answer of the old batch names its events, but it is not this batch.
        assert!(outbox
            .settle(old.seq, &reply(&["e1", "e2"], &[]), 400)
            .is_none());
        assert!(outbox.refused(old.seq).is_none());
        assert!(outbox.failed(old.seq, 400).is_none());
        assert_eq!((outbox.in_flight_seq(), outbox.len()), (Some(new.seq), 4));
        assert!(outbox.settle(new.seq + 1, &reply(&[], &[]), 400).is_none());
        assert_eq!(ids(&ack_all(&mut outbox)), ["e1", "e2"]);
    }

    #[test]
    fn a_refused_batch_is_split_until_the_bad_event_is_alone_and_quarantined() {
        let mut outbox = Outbox::new(8, 100, 1 << 20);
        for n in 1..=8 {
            outbox.push(event(n));
        }
        let bad = "e6";
        let mut quarantined = Vec::new();
        let mut stored = Vec::new();
        let mut sends = 0;
        while !outbox.is_empty() {
            assert!(
                outbox.due(0, false),
                "a split batch is sent at once, without a flush"
            );
            let batch = outbox.take_batch(0);
            sends += 1;
            assert!(sends < 20, "bounded");
            let has_bad = outbox.in_flight.iter().any(|e| e.id == bad);
            if has_bad {
                quarantined.extend(outbox.refused(batch.seq).unwrap());
            } else {
                stored.extend(ack_all(&mut outbox));
            }
        }
        assert_eq!(ids(&quarantined), [bad]);
        assert_eq!(stored.len(), 7, "every other event is stored");
        assert_eq!(
            outbox.failures(),
            0,
            "refusals are not failures: no backoff"
        );
        assert_eq!(outbox.bytes(), 0);
        assert_eq!(
            sends, 7,
            "8 refused; 4 stored; 4 refused; 2 refused; 1 stored; 1 quarantined; 2 stored"
        );
        // Once the split batch is done, batches are full again.
        for n in 10..=17 {
            outbox.push(event(n));
        }
        outbox.take_batch(0);
        assert_eq!(outbox.in_flight(), 8);
    }
}
