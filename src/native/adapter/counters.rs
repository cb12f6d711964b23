//! The core's counters as Envoy stats of a native config. Envoy lets a config define stats only
//! while it is being created, so every name in the core's catalog is defined then; counts made
//! during a hook are collected and handed to Envoy once at its end (through the stream, or
//! through the config on the main thread).

use std::cell::RefCell;

use hashbrown::HashMap;

use crate::core::exchange::telemetry::{Telemetry, COUNTERS, HISTOGRAMS, LABELLED_COUNTERS};
use crate::native::config::{ConfigHandle, CounterId, HistogramId};
use crate::native::envoy::StreamHandle;

/// The stat ids one config defined, by the core's names.
#[derive(Default)]
pub struct StatIds {
    counters: HashMap<&'static str, CounterId>,
    labelled: HashMap<&'static str, CounterId>,
    histograms: HashMap<&'static str, HistogramId>,
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
}

/// Counts collected during one hook (a stream's) or between ticks (the spend sender's).
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
}

impl Collected {
    /// Takes what was collected.
    pub fn take(&self) -> Vec<Pending> {
        std::mem::take(&mut *self.0.borrow_mut())
    }

    /// Hands what was collected to Envoy through a stream of the config that defined `ids`.
    pub fn flush_to_stream(&self, ids: &StatIds, envoy: &mut StreamHandle) {
        for pending in self.take() {
            match pending {
                Pending::Counter(name, by) => {
                    if let Some(id) = ids.counters.get(name) {
                        envoy.increment_counter(*id, by);
                    }
                }
                Pending::Labelled(prefix, label, by) => {
                    if let Some(id) = ids.labelled.get(prefix) {
                        envoy.increment_labelled_counter(*id, &label, by);
                    }
                }
                Pending::Sample(name, value) => {
                    if let Some(id) = ids.histograms.get(name) {
                        envoy.record_histogram(*id, value);
                    }
                }
            }
        }
    }

    /// Hands counts to Envoy through the config that defined `ids` (main thread). Labelled
    /// counts are not made outside streams.
    pub fn flush_to_config(pending: Vec<Pending>, ids: &StatIds, config: &mut ConfigHandle) {
        for pending in pending {
            match pending {
                Pending::Counter(name, by) => {
                    if let Some(id) = ids.counters.get(name) {
                        config.increment_counter(*id, by);
                    }
                }
                Pending::Sample(name, value) => {
                    if let Some(id) = ids.histograms.get(name) {
                        config.record_histogram(*id, value);
                    }
                }
                Pending::Labelled(..) => {}
            }
        }
    }
}
