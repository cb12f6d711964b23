//! Envoy stats from the VM: the core's [`Telemetry`] over proxy-wasm metrics, plus the config
//! version gauges.
//!
//! Counters are process-wide in Envoy: every worker VM adds to the same stat. Ids are defined
//! once per VM and cached here. Per-request counts are summed inside the VM and handed to Envoy
//! on the root context's tick ([`flush`]), so a request costs no metric hostcalls; stats lag by
//! at most one tick (100 ms with an accounting cluster, else 1 s).

use std::cell::RefCell;

use hashbrown::HashMap;

use crate::core::exchange::telemetry::{metric_label, tagged_stat_name, version_gauge, Telemetry};
use crate::wasm::host::{self, MetricKind};

thread_local! {
    static IDS: RefCell<HashMap<String, Option<u32>>> = RefCell::new(HashMap::new());
    /// Counts by metric name, since the last flush.
    static PENDING: RefCell<HashMap<&'static str, u64>> = RefCell::new(HashMap::new());
    /// Counts of labelled metrics (`prefix` + label), since the last flush. Kept by prefix and
    /// raw label so that a request only looks them up; names are made at flush time.
    static LABELLED: RefCell<HashMap<&'static str, HashMap<String, u64>>> =
        RefCell::new(HashMap::new());
    /// Tagged counters by their stat name (`name.tag=.=value;.;…`), since the last flush.
    static TAGGED: RefCell<HashMap<String, u64>> = RefCell::new(HashMap::new());
    /// Tagged histogram samples by stat name, since the last flush (at most [`MAX_SAMPLES`] in
    /// all): each series' name is kept once.
    static SAMPLES: RefCell<(HashMap<String, Vec<u64>>, usize)> =
        RefCell::new((HashMap::new(), 0));
    /// Root contexts of this VM serving each version label (a label can be delivered again).
    static SERVING: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
}

/// Histogram samples kept between ticks at most (later ones are dropped until the next tick
/// and counted in `tollgate_metric_samples_dropped`; counters never are). Three a request:
/// over 30,000 requests a second per VM with the slowest tick.
const MAX_SAMPLES: usize = 100_000;

/// This VM's counters (summed in the VM, handed to Envoy by [`flush`]).
pub struct VmTelemetry;

impl Telemetry for VmTelemetry {
    fn add(&self, name: &'static str, by: u64) {
        PENDING.with(|p| {
            let mut p = p.borrow_mut();
            let total = p.entry(name).or_insert(0);
            *total = total.saturating_add(by);
        });
    }

    fn add_labelled(&self, prefix: &'static str, label: &str, by: u64) {
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

    fn record(&self, name: &'static str, value: u64) {
        if let Some(id) = metric_id(MetricKind::Histogram, name) {
            host::record_metric(id, value);
        }
    }

    fn record_tagged(&self, name: &'static str, tags: &[(&'static str, &str)], value: u64) {
        let kept = SAMPLES.with(|s| {
            let (series, count) = &mut *s.borrow_mut();
            if *count >= MAX_SAMPLES {
                return false;
            }
            *count += 1;
            series
                .entry(tagged_stat_name(name, tags))
                .or_default()
                .push(value);
            true
        });
        if !kept {
            self.add("tollgate_metric_samples_dropped", 1);
        }
    }

    fn add_tagged(&self, name: &'static str, tags: &[(&'static str, &str)], by: u64) {
        let name = tagged_stat_name(name, tags);
        TAGGED.with(|t| {
            let mut t = t.borrow_mut();
            let total = t.entry(name).or_insert(0);
            *total = total.saturating_add(by);
        });
    }
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
    let tagged = TAGGED.with(|t| std::mem::take(&mut *t.borrow_mut()));
    for (name, by) in tagged {
        increment(&name, by);
    }
    let (series, _) = SAMPLES.with(|s| std::mem::take(&mut *s.borrow_mut()));
    for (name, values) in series {
        if let Some(id) = metric_id(MetricKind::Histogram, &name) {
            for value in values {
                host::record_metric(id, value);
            }
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

/// Increments at once (rare events whose VM may not live to the next tick).
fn count_now(name: &str) {
    if let Some(id) = metric_id(MetricKind::Counter, name) {
        host::increment_metric(id, 1);
    }
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
