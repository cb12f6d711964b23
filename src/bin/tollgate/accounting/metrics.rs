//! The accounting server's own metrics, served at `GET /metrics` in the OpenMetrics text format
//! Prometheus scrapes: events by outcome, batches by status, batch and store latency, refused
//! requests by reason, requests in flight. No metric carries a key, team or model name.

use std::sync::atomic::AtomicI64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// What became of one event of a batch.
#[derive(Clone, Copy, Debug)]
pub enum Outcome {
    /// Stored now.
    Accepted,
    /// Stored before (a retry, or another instance had it): counted once.
    Duplicate,
    /// Refused as malformed.
    Rejected,
}

/// The store operation timed.
#[derive(Clone, Copy, Debug)]
pub enum Operation {
    /// A batch stored.
    Ingest,
    /// A budget poll.
    Poll,
    /// A spend report.
    Report,
    /// A readiness check.
    Ready,
}

/// Why a request was refused before the store saw it.
#[derive(Clone, Copy, Debug)]
pub enum Reason {
    /// No or an unknown bearer token (401).
    Unauthenticated,
    /// A token of the wrong role (403).
    Forbidden,
    /// A body above the limit (413).
    BodyTooLarge,
    /// A body that did not arrive in time (408).
    BodyTimeout,
    /// A body that could not be read, or a batch that is not a JSON array (400).
    BadBody,
    /// An unknown route or method (404/405).
    NoRoute,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Duplicate => "duplicate",
            Outcome::Rejected => "rejected",
        }
    }
}

impl Operation {
    fn label(self) -> &'static str {
        match self {
            Operation::Ingest => "ingest",
            Operation::Poll => "poll",
            Operation::Report => "report",
            Operation::Ready => "ready",
        }
    }
}

impl Reason {
    fn label(self) -> &'static str {
        match self {
            Reason::Unauthenticated => "unauthenticated",
            Reason::Forbidden => "forbidden",
            Reason::BodyTooLarge => "body_too_large",
            Reason::BodyTimeout => "body_timeout",
            Reason::BadBody => "bad_body",
            Reason::NoRoute => "no_route",
        }
    }
}

fn latency_histogram() -> Histogram {
    // 0.5 ms … about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The metrics, registered once at start.
pub struct Metrics {
    registry: Registry,
    events: Family<OutcomeLabel, Counter>,
    batches: Family<StatusLabel, Counter>,
    batch_seconds: Histogram,
    store_seconds: Family<OperationLabel, Histogram>,
    refused: Family<ReasonLabel, Counter>,
    in_flight: Gauge<i64, AtomicI64>,
    webhooks: Family<OutcomeLabel, Counter>,
    pruned: Counter,
    pool_connections: Gauge<i64, AtomicI64>,
    pool_idle: Gauge<i64, AtomicI64>,
}

impl Metrics {
    /// Registers every metric under the `tollgate_accounting` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tollgate_accounting");
        let events = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "events",
            "Spend and threshold events received, by outcome",
            events.clone(),
        );
        let batches = Family::<StatusLabel, Counter>::default();
        registry.register(
            "batches",
            "Batches answered, by HTTP status",
            batches.clone(),
        );
        let batch_seconds = latency_histogram();
        registry.register(
            "batch_seconds",
            "Time to answer a batch (store transaction included)",
            batch_seconds.clone(),
        );
        let store_seconds = Family::<OperationLabel, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "store_seconds",
            "Time spent in the store, by operation",
            store_seconds.clone(),
        );
        let refused = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "requests_refused",
            "Requests refused before the store, by reason",
            refused.clone(),
        );
        let in_flight = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "requests_in_flight",
            "Requests being handled now",
            in_flight.clone(),
        );
        let webhooks = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Alert webhook attempts, by outcome (delivered or failed)",
            webhooks.clone(),
        );
        let pruned = Counter::default();
        registry.register(
            "events_pruned",
            "Events folded into daily rollups and deleted by retention (--retain-days)",
            pruned.clone(),
        );
        let pool_connections = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "db_pool_connections",
            "PostgreSQL connections this instance holds open (in use and idle)",
            pool_connections.clone(),
        );
        let pool_idle = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "db_pool_idle_connections",
            "PostgreSQL connections this instance holds idle",
            pool_idle.clone(),
        );
        Metrics {
            pruned,
            pool_connections,
            pool_idle,
            webhooks,
            registry,
            events,
            batches,
            batch_seconds,
            store_seconds,
            refused,
            in_flight,
        }
    }

    /// Counts `n` events of one outcome.
    pub fn events(&self, outcome: Outcome, n: u64) {
        self.events
            .get_or_create(&OutcomeLabel {
                outcome: outcome.label(),
            })
            .inc_by(n);
    }

    /// Counts one answered batch and its latency.
    pub fn batch(&self, status: u16, took: Duration) {
        self.batches.get_or_create(&StatusLabel { status }).inc();
        self.batch_seconds.observe(took.as_secs_f64());
    }

    /// Records time spent in the store.
    pub fn store(&self, operation: Operation, took: Duration) {
        self.store_seconds
            .get_or_create(&OperationLabel {
                operation: operation.label(),
            })
            .observe(took.as_secs_f64());
    }

    /// Counts a refused request.
    pub fn refused(&self, reason: Reason) {
        self.refused
            .get_or_create(&ReasonLabel {
                reason: reason.label(),
            })
            .inc();
    }

    /// One webhook attempt.
    pub fn webhook(&self, delivered: bool) {
        let outcome = if delivered { "delivered" } else { "failed" };
        self.webhooks.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// Counts events pruned by retention.
    pub fn pruned(&self, n: u64) {
        self.pruned.inc_by(n);
    }

    /// The connection pool's state now: connections open, and of them idle.
    pub fn pool(&self, connections: u32, idle: u32) {
        self.pool_connections.set(i64::from(connections));
        self.pool_idle.set(i64::from(idle));
    }

    /// A request started (`+1`) or ended (`-1`).
    pub fn in_flight(&self, delta: i64) {
        self.in_flight.inc_by(delta);
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_every_metric_with_its_labels() {
        let metrics = Metrics::new();
        metrics.events(Outcome::Accepted, 3);
        metrics.events(Outcome::Duplicate, 1);
        metrics.batch(200, Duration::from_millis(4));
        metrics.store(Operation::Ingest, Duration::from_millis(3));
        metrics.refused(Reason::Unauthenticated);
        metrics.pruned(7);
        metrics.pool(3, 2);
        let text = metrics.encode();
        for line in [
            "tollgate_accounting_events_total{outcome=\"accepted\"} 3",
            "tollgate_accounting_events_total{outcome=\"duplicate\"} 1",
            "tollgate_accounting_batches_total{status=\"200\"} 1",
            "tollgate_accounting_batch_seconds_count 1",
            "tollgate_accounting_store_seconds_count{operation=\"ingest\"} 1",
            "tollgate_accounting_requests_refused_total{reason=\"unauthenticated\"} 1",
            "tollgate_accounting_requests_in_flight 0",
            "tollgate_accounting_events_pruned_total 7",
            "tollgate_accounting_db_pool_connections 3",
            "tollgate_accounting_db_pool_idle_connections 2",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
