//! Spend senders by destination: one [`SpendSender`] per accounting destination in use (cluster,
//! authority, path prefix and token variable), so two configs served by one process (or one VM)
//! that report to different accounting clusters never send each other's events, nor with each
//! other's token. Each event carries the `source` of the version that served it.
//!
//! A version adopts the sender of its destination (made on first use; a new version with the
//! same destination keeps the same sender, its queue and its poll cursor, and its batching
//! settings become the sender's). A request's event goes to the sender of the version that
//! served it. A sender whose versions are all gone while events still wait is *orphaned*: the
//! next tick of any live version takes it over and finishes its work with the sender's own
//! settings, so a swap to another accounting cluster loses nothing. Senders are never dropped (a
//! stream of an old version may still record), so their number is the count of distinct
//! destinations the process has served.

use crate::core::config::index::Accounting;
use crate::core::exchange::spend_sender::{CalloutHost, SpendSender};
use crate::core::money::settlement::Finished;

/// Whether two versions' settings report to the same accounting destination.
fn same_destination(a: &Accounting, b: &Accounting) -> bool {
    (&a.cluster, &a.authority, &a.path_prefix, &a.token_env)
        == (&b.cluster, &b.authority, &b.path_prefix, &b.token_env)
}

/// Every spend sender of one process or VM.
pub struct SpendSenders {
    nonce: u64,
    senders: Vec<SpendSender>,
    /// Roots that retired while answers were pending: they no longer tick or take over.
    retired: Vec<u32>,
}

impl SpendSenders {
    /// No senders yet; `nonce` makes event ids unique per process or VM (each sender derives
    /// its own from it).
    pub fn new(nonce: u64) -> SpendSenders {
        SpendSenders {
            nonce,
            senders: Vec::new(),
            retired: Vec::new(),
        }
    }

    fn index_of(&self, accounting: &Accounting) -> Option<usize> {
        self.senders.iter().position(|s| {
            s.accounting()
                .is_some_and(|own| same_destination(own, accounting))
        })
    }

    /// Root context `root` serves a newly accepted version with `accounting` (`token`: the
    /// value of `accounting.token_env`). Without a section, its requests report nothing, but
    /// its ticks still finish what orphaned senders hold.
    pub fn adopt(
        &mut self,
        host: &mut dyn CalloutHost,
        root: u32,
        accounting: Option<&Accounting>,
        token: Option<String>,
        now_ms: u64,
    ) {
        let Some(accounting) = accounting else {
            return;
        };
        let index = match self.index_of(accounting) {
            Some(index) => index,
            None => {
                // Distinct per sender, so two senders never write the same event id.
                let salt = (self.senders.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                self.senders.push(SpendSender::new(self.nonce ^ salt));
                self.senders.len() - 1
            }
        };
        if let Some(sender) = self.senders.get_mut(index) {
            sender.adopt(host, root, Some(accounting), token, now_ms);
        }
    }

    /// Queues a finished request's event on the sender of the version that served it
    /// (`accounting`: that version's settings; `None`: it reports nothing, only counts).
    pub fn record(
        &mut self,
        host: &mut dyn CalloutHost,
        accounting: Option<&Accounting>,
        finished: Finished,
        now_ms: u64,
    ) {
        let found = accounting.and_then(|a| Some((a, self.index_of(a)?)));
        match found {
            Some((accounting, index)) => {
                if let Some(sender) = self.senders.get_mut(index) {
                    sender.record(host, &accounting.source, finished, now_ms);
                }
            }
            None => host.telemetry().spend_recorded(&finished),
        }
    }

    /// Periodic work of root context `root`: its own senders, then any orphaned one.
    pub fn tick(&mut self, host: &mut dyn CalloutHost, now_ms: u64, root: u32) {
        if self.retired.contains(&root) {
            return;
        }
        for sender in &mut self.senders {
            if sender.is_orphaned() {
                sender.take_over(root);
            }
            if sender.serves(root) {
                sender.tick(host, now_ms, root);
            }
        }
    }

    /// Root context `root` finishes. True when it may go now. While another root of the VM or
    /// process lives, `root` only lets go of its senders (that root's next tick takes over what
    /// is left, with each sender's own settings); the last root makes the final flush (see
    /// [`SpendSender::retire`]).
    pub fn retire(&mut self, host: &mut dyn CalloutHost, root: u32, now_ms: u64) -> bool {
        let others_live = self
            .senders
            .iter()
            .any(|s| s.has_live_root() && !s.live_roots_are(root));
        let mut done = true;
        for sender in &mut self.senders {
            if !sender.serves(root) {
                continue;
            }
            done &= if others_live {
                sender.release(root)
            } else {
                sender.retire(host, root, now_ms)
            };
        }
        let done = done && !self.awaits_answer_for(root);
        if !done && !self.retired.contains(&root) {
            self.retired.push(root);
        }
        done
    }

    /// Handles the answer to call `token`. True when the root context that made it has retired
    /// and nothing of it is left unanswered.
    pub fn on_response(
        &mut self,
        host: &mut dyn CalloutHost,
        token: u64,
        status: u16,
        body: &[u8],
        now_ms: u64,
    ) -> bool {
        let Some((sender, root)) = self
            .senders
            .iter_mut()
            .find_map(|s| s.caller_of(token).map(|root| (s, root)))
        else {
            return false;
        };
        let done = sender.on_response(host, token, status, body, now_ms);
        let done = done && !self.awaits_answer_for(root);
        if done {
            self.retired.retain(|r| *r != root);
        }
        done
    }

    fn awaits_answer_for(&self, root: u32) -> bool {
        self.senders.iter().any(|s| s.awaits_answer_for(root))
    }

    /// The tick period the senders need (0: none): the shortest of any sender's.
    pub fn tick_period_ms(&self) -> u32 {
        self.senders
            .iter()
            .map(SpendSender::tick_period_ms)
            .filter(|&ms| ms > 0)
            .min()
            .unwrap_or(0)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use std::cell::RefCell;

    use super::*;
    use crate::core::exchange::host::LogLevel;
    use crate::core::exchange::telemetry::Telemetry;
    use crate::core::money::cost::{Cost, PriceSource};
    use crate::core::money::reservation::{LedgerStore, MemoryLedgers};
    use crate::core::spend::event::tests::sample_data;
    use crate::core::spend::event::SpendData;

    struct NoCounts;
    impl Telemetry for NoCounts {
        fn add(&self, _: &'static str, _: u64) {}
        fn add_labelled(&self, _: &'static str, _: &str, _: u64) {}
        fn record(&self, _: &'static str, _: u64) {}
        fn record_tagged(&self, _: &'static str, _: &[(&'static str, &str)], _: u64) {}
        fn add_tagged(&self, _: &'static str, _: &[(&'static str, &str)], _: u64) {}
    }

    /// Records every call: (cluster, authorization header, body).
    #[derive(Default)]
    struct Calls {
        made: RefCell<Vec<(String, String, String)>>,
        ledgers: MemoryLedgers,
        known: Vec<&'static str>,
        /// Refuse every call (as the native module's worker threads must).
        refuse: bool,
    }

    impl CalloutHost for Calls {
        fn dispatch(
            &mut self,
            cluster: &str,
            headers: &[(&str, &str)],
            body: &[u8],
            _timeout_ms: u64,
        ) -> Option<u64> {
            if self.refuse {
                return None;
            }
            let auth = headers
                .iter()
                .find(|(n, _)| *n == "authorization")
                .map_or("", |(_, v)| v);
            let mut made = self.made.borrow_mut();
            let body = String::from_utf8_lossy(body).into_owned();
            made.push((cluster.to_string(), auth.to_string(), body));
            Some(made.len() as u64)
        }
        fn log(&self, _: LogLevel, _: &str) {}
        fn telemetry(&self) -> &dyn Telemetry {
            &NoCounts
        }
        fn ledgers(&self) -> &dyn LedgerStore {
            &self.ledgers
        }
        fn budget_window_start(&self, budget: &str, _now: i64) -> Option<i64> {
            // The test's budgets never reset: their one window starts at 0.
            self.known.contains(&budget).then_some(0)
        }
    }

    fn accounting(cluster: &str, flush_interval_ms: u64) -> Accounting {
        Accounting {
            cluster: cluster.into(),
            authority: "accounting".into(),
            path_prefix: String::new(),
            source: format!("tollgate/{cluster}"),
            flush_interval_ms,
            batch_max_events: 100,
            max_buffered_events: 1000,
            max_buffered_bytes: 1 << 20,
            token_env: None,
            poll_interval_ms: 0,
            timeout_ms: 1000,
        }
    }

    pub(crate) fn finished(user: &str) -> Finished {
        Finished {
            data: SpendData {
                end_user: Some(user.into()),
                budgets: Vec::new(),
                ..sample_data()
            },
            cost: Cost {
                nano_usd: 5,
                source: PriceSource::CostMap,
            },
            ledger_keys: Vec::new(),
            limit_counts: Vec::new(),
            ledger_ok: true,
            unpriced_tool_calls: false,
            soft_reached: Vec::new(),
        }
    }

    fn token(name: &str) -> Option<String> {
        Some(format!("token-{name}"))
    }

    #[test]
    fn two_configs_send_their_own_events_to_their_own_cluster_with_their_own_token() {
        let (a, b) = (accounting("acct-a", 0), accounting("acct-b", 0));
        let mut host = Calls::default();
        let mut senders = SpendSenders::new(1);
        senders.adopt(&mut host, 1, Some(&a), token("a"), 0);
        senders.adopt(&mut host, 2, Some(&b), token("b"), 0);
        senders.record(&mut host, Some(&a), finished("from-a"), 10);
        senders.record(&mut host, Some(&b), finished("from-b"), 10);
        senders.tick(&mut host, 20, 1);
        senders.tick(&mut host, 20, 2);
        let made = host.made.borrow();
        assert_eq!(made.len(), 2, "{made:?}");
        for (cluster, auth, body) in made.iter() {
            let own = if cluster == "acct-a" { "a" } else { "b" };
            assert_eq!(auth, &format!("Bearer token-{own}"));
            assert!(body.contains(&format!("from-{own}")), "{cluster}: {body}");
            assert!(body.contains(&format!("tollgate/acct-{own}")), "{body}");
            let other = if own == "a" { "from-b" } else { "from-a" };
            assert!(
                !body.contains(other),
                "{cluster} got the other's event: {body}"
            );
        }
        let ids: Vec<&str> = made.iter().map(|(_, _, b)| b.as_str()).collect();
        let id = |body: &str| body.split("\"id\":\"").nth(1).map(|r| r[..20].to_string());
        assert_ne!(
            id(ids[0]),
            id(ids[1]),
            "event ids stay unique across senders"
        );
    }

    #[test]
    fn a_version_without_accounting_reports_nothing_and_stops_no_one_else() {
        let a = accounting("acct-a", 0);
        let mut host = Calls::default();
        let mut senders = SpendSenders::new(1);
        senders.adopt(&mut host, 1, Some(&a), None, 0);
        senders.adopt(&mut host, 2, None, None, 0);
        senders.record(&mut host, None, finished("unreported"), 10);
        senders.record(&mut host, Some(&a), finished("reported"), 10);
        senders.tick(&mut host, 20, 1);
        senders.tick(&mut host, 20, 2);
        let made = host.made.borrow();
        assert_eq!(made.len(), 1);
        assert!(made[0].2.contains("reported") && !made[0].2.contains("unreported"));
    }

    #[test]
    fn events_left_by_a_replaced_version_go_where_they_were_recorded_for() {
        let (old, new) = (
            accounting("acct-old", 60_000),
            accounting("acct-new", 60_000),
        );
        let mut host = Calls::default();
        let mut senders = SpendSenders::new(1);
        senders.adopt(&mut host, 1, Some(&old), token("old"), 0);
        senders.record(&mut host, Some(&old), finished("queued-before-swap"), 10);
        senders.adopt(&mut host, 2, Some(&new), token("new"), 20);
        // The old version goes before its flush interval, where no call can be made; another
        // root lives, so it may go at once (that root takes over).
        host.refuse = true;
        assert!(
            senders.retire(&mut host, 1, 30),
            "not held by events another root sends"
        );
        host.refuse = false;
        assert!(host.made.borrow().is_empty());
        // The new version's tick, after the old sender's interval, sends the old events.
        senders.tick(&mut host, 70_000, 2);
        let made = host.made.borrow();
        let sent: Vec<_> = made
            .iter()
            .filter(|(_, _, b)| b.contains("queued-before-swap"))
            .collect();
        assert_eq!(sent.len(), 1, "{made:?}");
        assert_eq!(sent[0].0, "acct-old");
        assert_eq!(sent[0].1, "Bearer token-old");
    }

    #[test]
    fn the_last_root_flushes_before_it_goes_and_a_retired_root_never_ticks_again() {
        let a = accounting("acct", 60_000);
        let mut host = Calls::default();
        let mut senders = SpendSenders::new(1);
        senders.adopt(&mut host, 1, Some(&a), None, 0);
        senders.record(&mut host, Some(&a), finished("last"), 10);
        assert!(
            !senders.retire(&mut host, 1, 20),
            "waits for its final flush's answer"
        );
        assert_eq!(host.made.borrow().len(), 1, "the final flush was sent");
        senders.tick(&mut host, 120_000, 1);
        assert_eq!(
            host.made.borrow().len(),
            1,
            "a retired root does not tick or take over"
        );
    }

    #[test]
    fn a_new_version_on_the_same_destination_sends_the_queue_with_its_own_settings() {
        let slow = accounting("acct", 60_000);
        let mut fast = accounting("acct", 100);
        fast.source = "tollgate/fast".into();
        let mut host = Calls::default();
        let mut senders = SpendSenders::new(1);
        senders.adopt(&mut host, 1, Some(&slow), None, 0);
        senders.record(&mut host, Some(&slow), finished("queued-slow"), 10);
        senders.adopt(&mut host, 2, Some(&fast), None, 20);
        senders.record(&mut host, Some(&fast), finished("queued-fast"), 30);
        senders.tick(&mut host, 200, 2);
        let made = host.made.borrow();
        assert_eq!(
            made.len(),
            1,
            "one batch, at the new flush interval: {made:?}"
        );
        let body = &made[0].2;
        assert!(
            body.contains("queued-slow") && body.contains("queued-fast"),
            "{body}"
        );
        // Each event keeps the source of the version that served it.
        assert!(
            body.contains("tollgate/acct") && body.contains("tollgate/fast"),
            "{body}"
        );
    }

    #[test]
    fn polled_totals_of_budgets_or_windows_the_version_does_not_have_are_ignored() {
        let mut a = accounting("acct-a", 60_000);
        a.poll_interval_ms = 1000;
        let mut host = Calls {
            known: vec!["key:known"],
            ..Calls::default()
        };
        let mut senders = SpendSenders::new(1);
        senders.adopt(&mut host, 1, Some(&a), None, 0);
        senders.tick(&mut host, 5_000, 1);
        let poll = host.made.borrow().len() as u64;
        assert_eq!(poll, 1, "one poll");
        let body = br#"{"cursor":9,"budgets":[
            {"budget":"key:known","window_start":0,"window_end":null,"spend_nano_usd":7},
            {"budget":"key:made-up","window_start":0,"window_end":null,"spend_nano_usd":7},
            {"budget":"key:known","window_start":1,"window_end":null,"spend_nano_usd":0},
            {"budget":"key:known","window_start":9999999999,"spend_nano_usd":0}]}"#;
        senders.on_response(&mut host, poll, 200, body, 5_001);
        let ledgers = host.ledgers.0.borrow();
        // A window the budget is not in would move its ledger slot out of the current window
        // (dropping its spend): only the current window's total is taken in.
        assert_eq!(
            ledgers.keys().collect::<Vec<_>>(),
            ["tollgate/budget/key:known/0"]
        );
    }
}
