//! The core's counters as Envoy stats of a native config. Envoy lets a config define stats only
//! while it is being created, so every name in the core's catalog is defined then. Counts are
//! summed in process memory as requests make them (one short lock per hook) and handed to Envoy
//! by the main-thread tick, as the Wasm filter sums them in its VM: a request makes no stat
//! calls into Envoy (a labelled stat call costs Envoy a tag lookup each time), and stats lag by
//! at most one tick (100 ms with an accounting cluster, else 1 s).

use std::cell::RefCell;
use std::sync::Mutex;

use hashbrown::HashMap;

use crate::core::exchange::telemetry::{
    Telemetry, COUNTERS, GEN_AI_COUNTERS, GEN_AI_HISTOGRAMS, HISTOGRAMS, LABELLED_COUNTERS,
};
use crate::native::config::{ConfigHandle, CounterId, HistogramId};

/// The stat ids one config defined, by the core's names.
#[derive(Default)]
pub struct StatIds {
    counters: HashMap<&'static str, CounterId>,
    labelled: HashMap<&'static str, CounterId>,
    histograms: HashMap<&'static str, HistogramId>,
    tagged_histograms: HashMap<&'static str, HistogramId>,
    tagged_counters: HashMap<&'static str, CounterId>,
}

impl StatIds {
    /// Defines every catalogued stat on `config` (inside `config_new`). A labelled counter is
    /// `<prefix>by_<label>` with the label as an Envoy tag (e.g. `tollgate_requests_denied_by_reason`).
    pub fn define(config: &mut ConfigHandle) -> StatIds {
        let mut ids = StatIds::default();
        for name in COUNTERS {
            if let Some(id) = config.define_counter(name) {
                ids.counters.insert(name, id);
            }
        }
        for (prefix, label) in LABELLED_COUNTERS {
            let name = format!("{prefix}by_{label}");
            if let Some(id) = config.define_labelled_counter(&name, label) {
                ids.labelled.insert(prefix, id);
            }
        }
        for name in HISTOGRAMS {
            if let Some(id) = config.define_histogram(name) {
                ids.histograms.insert(name, id);
            }
        }
        for (name, tags) in GEN_AI_HISTOGRAMS {
            if let Some(id) = config.define_tagged_histogram(name, tags) {
                ids.tagged_histograms.insert(name, id);
            }
        }
        for (name, tags) in GEN_AI_COUNTERS {
            if let Some(id) = config.define_tagged_counter(name, tags) {
                ids.tagged_counters.insert(name, id);
            }
        }
        ids
    }
}

/// One count waiting to be handed to Envoy.
pub enum Pending {
    /// `by` on counter `name`.
    Counter(&'static str, u64),
    /// `by` on the labelled counter of `prefix`, label value `label`.
    Labelled(&'static str, String, u64),
    /// One histogram sample.
    Sample(&'static str, u64),
    /// One sample of a tagged histogram, with its tag values in order.
    TaggedSample(&'static str, Vec<String>, u64),
    /// `by` on a tagged counter, with its tag values in order.
    Tagged(&'static str, Vec<String>, u64),
}

/// Counts collected during one hook.
#[derive(Default)]
pub struct Collected(RefCell<Vec<Pending>>);

impl Telemetry for Collected {
    fn add(&self, name: &'static str, by: u64) {
        if by > 0 {
            self.0.borrow_mut().push(Pending::Counter(name, by));
        }
    }

    fn add_labelled(&self, prefix: &'static str, label: &str, by: u64) {
        if by > 0 {
            let pending = Pending::Labelled(prefix, label.to_string(), by);
            self.0.borrow_mut().push(pending);
        }
    }

    fn record(&self, name: &'static str, value: u64) {
        self.0.borrow_mut().push(Pending::Sample(name, value));
    }

    fn record_tagged(&self, name: &'static str, tags: &[(&'static str, &str)], value: u64) {
        let values = tags.iter().map(|(_, v)| v.to_string()).collect();
        let pending = Pending::TaggedSample(name, values, value);
        self.0.borrow_mut().push(pending);
    }

    fn add_tagged(&self, name: &'static str, tags: &[(&'static str, &str)], by: u64) {
        if by > 0 {
            let values = tags.iter().map(|(_, v)| v.to_string()).collect();
            self.0.borrow_mut().push(Pending::Tagged(name, values, by));
        }
    }
}

impl Collected {
    /// Takes what was collected.
    pub fn take(&self) -> Vec<Pending> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}

impl TotalsInner {
    fn dropped_sample(&mut self) {
        let total = self
            .counters
            .entry("tollgate_metric_samples_dropped")
            .or_insert(0);
        *total = total.saturating_add(1);
    }
}

/// The process's counts not yet handed to Envoy.
#[derive(Default)]
pub struct Totals(Mutex<TotalsInner>);

#[derive(Default)]
struct TotalsInner {
    counters: HashMap<&'static str, u64>,
    labelled: HashMap<(&'static str, String), u64>,
    samples: Vec<(&'static str, u64)>,
    tagged: HashMap<(&'static str, Vec<String>), u64>,
    /// Tagged samples by series, each series' tag values kept once.
    tagged_samples: HashMap<(&'static str, Vec<String>), Vec<u64>>,
    tagged_count: usize,
}

/// Histogram samples kept between ticks at most, each kind (later ones are dropped until the
/// next tick and counted in `tollgate_metric_samples_dropped`; counts never are). The tagged
/// ones are three a request: over 30,000 requests a second per process with the slowest tick.
const MAX_SAMPLES: usize = 100_000;

impl Totals {
    /// Adds one hook's counts (a poisoned lock drops them: stats only, never money).
    pub fn absorb(&self, pending: Vec<Pending>) {
        if pending.is_empty() {
            return;
        }
        let Ok(mut totals) = self.0.lock() else {
            return;
        };
        for item in pending {
            match item {
                Pending::Counter(name, by) => {
                    let total = totals.counters.entry(name).or_insert(0);
                    *total = total.saturating_add(by);
                }
                Pending::Labelled(prefix, label, by) => {
                    let total = totals.labelled.entry((prefix, label)).or_insert(0);
                    *total = total.saturating_add(by);
                }
                Pending::Sample(name, value) => {
                    if totals.samples.len() < MAX_SAMPLES {
                        totals.samples.push((name, value));
                    } else {
                        totals.dropped_sample();
                    }
                }
                Pending::TaggedSample(name, values, value) => {
                    if totals.tagged_count < MAX_SAMPLES {
                        totals.tagged_count += 1;
                        let series = totals.tagged_samples.entry((name, values)).or_default();
                        series.push(value);
                    } else {
                        totals.dropped_sample();
                    }
                }
                Pending::Tagged(name, values, by) => {
                    let total = totals.tagged.entry((name, values)).or_insert(0);
                    *total = total.saturating_add(by);
                }
            }
        }
    }

    /// Hands every count summed since the last call to Envoy through `config` (main thread).
    pub fn flush(&self, ids: &StatIds, config: &mut ConfigHandle) {
        let taken = match self.0.lock() {
            Ok(mut totals) => std::mem::take(&mut *totals),
            Err(_) => return,
        };
        for (name, by) in taken.counters {
            if let Some(id) = ids.counters.get(name) {
                config.increment_counter(*id, by);
            }
        }
        for ((prefix, label), by) in taken.labelled {
            if let Some(id) = ids.labelled.get(prefix) {
                config.increment_labelled_counter(*id, &label, by);
            }
        }
        for (name, value) in taken.samples {
            if let Some(id) = ids.histograms.get(name) {
                config.record_histogram(*id, value);
            }
        }
        for ((name, values), by) in taken.tagged {
            if let Some(id) = ids.tagged_counters.get(name) {
                let values: Vec<&str> = values.iter().map(String::as_str).collect();
                config.increment_tagged_counter(*id, &values, by);
            }
        }
        for ((name, labels), values) in taken.tagged_samples {
            if let Some(id) = ids.tagged_histograms.get(name) {
                let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
                for value in values {
                    config.record_tagged_histogram(*id, &labels, value);
                }
            }
        }
    }
}
