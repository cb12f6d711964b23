//! Envoy stats emitted by the filter (Prometheus shows them without a prefix, e.g.
//! `tollgate_requests_allowed`).
//!
//! Counters are process-wide in Envoy: every worker VM adds to the same stat. Ids are defined
//! once per VM and cached here.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::filter::host::{self, MetricKind};

thread_local! {
    static IDS: RefCell<HashMap<String, Option<u32>>> = RefCell::new(HashMap::new());
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

fn count(name: &str) {
    if let Some(id) = metric_id(MetricKind::Counter, name) {
        host::increment_metric(id, 1);
    }
}

/// An admitted request.
pub fn request_allowed() {
    count("tollgate_requests_allowed");
}

/// A refused request, by reason (the error `code`).
pub fn request_denied(reason: &str) {
    count("tollgate_requests_denied");
    count(&format!("tollgate_requests_denied_{reason}"));
}

/// A config version accepted.
pub fn config_accepted(version: &str) {
    count("tollgate_config_accepted");
    if let Some(id) = metric_id(MetricKind::Gauge, &version_gauge(version)) {
        host::record_metric(id, 1);
    }
}

/// A config version rejected.
pub fn config_rejected() {
    count("tollgate_config_rejected");
}

/// A version is no longer served by this root context.
pub fn config_retired(version: &str) {
    if let Some(id) = metric_id(MetricKind::Gauge, &version_gauge(version)) {
        host::record_metric(id, 0);
    }
}

/// `tollgate_config_active_<version>`: 1 while a root context serves that version.
fn version_gauge(version: &str) -> String {
    let clean: String = version
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("tollgate_config_active_{clean}")
}
