//! Envoy stats emitted by the filter (Prometheus shows them without a prefix, e.g.
//! `tollgate_requests_allowed`).
//!
//! Counters are process-wide in Envoy: every worker VM adds to the same stat. Ids are defined
//! once per VM and cached here. Per-request counts are summed inside the VM and handed to Envoy
//! on the root context's tick ([`flush`]), so a request costs no metric hostcalls; stats lag by
//! at most one tick (100 ms with an accounting cluster, else 1 s).

use std::cell::RefCell;

use hashbrown::HashMap;

use crate::core::money::settlement::Finished;
use crate::wasm::host::{self, MetricKind};

thread_local! {
    static IDS: RefCell<HashMap<String, Option<u32>>> = RefCell::new(HashMap::new());
    /// Counts by metric name, since the last flush.
    static PENDING: RefCell<HashMap<&'static str, u64>> = RefCell::new(HashMap::new());
    /// Counts of labelled metrics (`prefix` + label), since the last flush. Kept by prefix and
    /// raw label so that a request only looks them up; names are made at flush time.
    static LABELLED: RefCell<HashMap<&'static str, HashMap<String, u64>>> =
        RefCell::new(HashMap::new());
    /// Root contexts of this VM serving each version label (a label can be delivered again).
    static SERVING: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
}

/// Hands the counts summed since the last call to Envoy.
pub fn flush() {
    let pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    for (name, by) in pending {
        increment(name, by);
    }
    let labelled = LABELLED.with(|l| std::mem::take(&mut *l.borrow_mut()));
    for (prefix, labels) in labelled {
        for (label, by) in labels {
            increment(&format!("{prefix}{}", metric_label(&label)), by);
        }
    }
}

fn increment(name: &str, by: u64) {
    if by == 0 {
        return;
    }
    if let Some(id) = metric_id(MetricKind::Counter, name) {
        host::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
    }
}

/// A label made safe for a stat name: ASCII letters and digits, anything else `_`.
fn metric_label(label: &str) -> String {
    label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn metric_id(kind: MetricKind, name: &str) -> Option<u32> {
    IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        if let Some(id) = ids.get(name) {
            return *id;
        }
        let id = host::define_metric(kind, name);
        ids.insert(name.to_string(), id);
        id
    })
}

fn count(name: &'static str) {
    add(name, 1);
}

/// Increments at once (rare events whose VM may not live to the next tick).
fn count_now(name: &str) {
    if let Some(id) = metric_id(MetricKind::Counter, name) {
        host::increment_metric(id, 1);
    }
}

/// An admitted request.
pub fn request_allowed() {
    count("tollgate_requests_allowed");
}

/// Client request headers (or trailers) removed before forwarding, by why.
pub fn client_header_removed(why: &'static str) {
    add_labelled("tollgate_client_headers_removed_", why, 1);
}

/// A successful upstream answer was still encoded (compressed) although `identity` was asked
/// for: forwarded untouched and charged as its worst case.
pub fn response_unreadable() {
    count("tollgate_responses_encoded");
}

/// A finished request was charged its reservation (its worst case), by why: `unreadable`,
/// `client_left`, `upstream_timeout`.
pub fn charged_reserved(why: &'static str) {
    add_labelled("tollgate_spend_charged_reserved_", why, 1);
}

/// A refused request, by reason (the error `code`).
pub fn request_denied(reason: &str) {
    count("tollgate_requests_denied");
    add_labelled("tollgate_requests_denied_", reason, 1);
}

fn add(name: &'static str, by: u64) {
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        let total = p.entry(name).or_insert(0);
        *total = total.saturating_add(by);
    });
}

fn add_labelled(prefix: &'static str, label: &str, by: u64) {
    LABELLED.with(|l| {
        let mut l = l.borrow_mut();
        let labels = l.entry(prefix).or_default();
        match labels.get_mut(label) {
            Some(total) => *total = total.saturating_add(by),
            None => {
                labels.insert(label.to_string(), by);
            }
        }
    });
}

/// A budget refusal, by scope (`key`, `team`, `user`, `end_user`).
pub fn budget_refused(scope: &str) {
    add_labelled("tollgate_budget_refusals_", scope, 1);
}

/// A finished request's spend was recorded: tokens and cost by provider (bounded by the
/// providers of the config), and the terminal status.
pub fn spend_recorded(finished: &Finished) {
    let data = &finished.data;
    count("tollgate_spend_events_recorded");
    add_labelled("tollgate_requests_finished_", &data.status, 1);
    let provider = data.provider.as_str();
    add_labelled(
        "tollgate_prompt_tokens_",
        provider,
        data.usage.prompt_tokens,
    );
    add_labelled(
        "tollgate_completion_tokens_",
        provider,
        data.usage.completion_tokens,
    );
    add_labelled("tollgate_cost_nano_usd_", provider, finished.cost.nano_usd);
    if data.cost_source == "unpriced" {
        count("tollgate_spend_unpriced");
    }
    if data.usage.estimated {
        count("tollgate_spend_estimated");
    }
    if finished.unpriced_tool_calls {
        count("tollgate_spend_tool_calls_unpriced");
    }
    if !finished.ledger_ok {
        count("tollgate_budget_ledger_errors");
    }
}

/// A batch of `events` was handed to the accounting cluster.
pub fn spend_batch_sent(events: usize) {
    count("tollgate_spend_batches_sent");
    add("tollgate_spend_events_sent", events as u64);
}

/// How long the accounting cluster took to answer a batch (a histogram, recorded at once).
pub fn spend_batch_latency(ms: u64) {
    if let Some(id) = metric_id(MetricKind::Histogram, "tollgate_spend_batch_latency_ms") {
        host::record_metric(id, ms);
    }
}

/// A batch failed and will be retried.
pub fn spend_batch_failed() {
    count("tollgate_spend_batches_retried");
}

/// The accounting cluster stored a batch.
pub fn spend_acknowledged(events: usize, rejected: usize) {
    add("tollgate_spend_events_acknowledged", events as u64);
    add("tollgate_spend_events_rejected", rejected as u64);
}

/// Events dropped because the buffer was full or the final flush failed.
pub fn spend_dropped(events: usize) {
    add("tollgate_spend_events_dropped", events as u64);
}

/// Events quarantined: refused by the accounting cluster (alone, or named as rejected), or too
/// large to send; they are never sent again.
pub fn spend_quarantined(events: usize) {
    add("tollgate_spend_events_quarantined", events as u64);
}

/// A poll of authoritative spend failed.
pub fn spend_poll_failed() {
    count("tollgate_spend_polls_failed");
}

/// A config version accepted.
pub fn config_accepted(version: &str) {
    count_now("tollgate_config_accepted");
    SERVING.with(|s| *s.borrow_mut().entry(version.to_string()).or_insert(0) += 1);
    if let Some(id) = metric_id(MetricKind::Gauge, &version_gauge(version)) {
        host::record_metric(id, 1);
    }
}

/// A config version rejected.
pub fn config_rejected() {
    count_now("tollgate_config_rejected");
}

/// A version is no longer served by this root context. The gauge goes to 0 only when no other
/// root context of this VM serves the same label (a re-delivered version is still active).
pub fn config_retired(version: &str) {
    let still_served = SERVING.with(|s| {
        let mut serving = s.borrow_mut();
        let left = serving.get_mut(version).map_or(0, |n| {
            *n = n.saturating_sub(1);
            *n
        });
        if left == 0 {
            serving.remove(version);
        }
        left > 0
    });
    if still_served {
        return;
    }
    if let Some(id) = metric_id(MetricKind::Gauge, &version_gauge(version)) {
        host::record_metric(id, 0);
    }
}

/// `tollgate_config_active_<version>`: 1 while a root context serves that version.
fn version_gauge(version: &str) -> String {
    format!("tollgate_config_active_{}", metric_label(version))
}
