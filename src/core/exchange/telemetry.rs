//! The counters Tollgate emits, named once for both adapters (Prometheus shows them without
//! a prefix, e.g. `tollgate_requests_allowed`). An adapter implements the three primitives;
//! every event below is written in terms of them.

use crate::core::money::settlement::Finished;

/// Where counts go. Labelled counters are `prefix` + the label made safe by the adapter
/// ([`metric_label`]); labels come from bounded sets (denial codes, providers of the config).
pub trait Telemetry {
    /// Adds `by` to counter `name`.
    fn add(&self, name: &'static str, by: u64);
    /// Adds `by` to counter `prefix` + `label`.
    fn add_labelled(&self, prefix: &'static str, label: &str, by: u64);
    /// Records one histogram sample.
    fn record(&self, name: &'static str, value: u64);
    /// Records one sample of histogram `name` with these tags (names from [`GEN_AI_HISTOGRAMS`],
    /// values made safe by [`tag_value`]).
    fn record_tagged(&self, name: &'static str, tags: &[(&'static str, &str)], value: u64);
    /// Adds `by` to counter `name` with these tags (names from [`GEN_AI_COUNTERS`]).
    fn add_tagged(&self, name: &'static str, tags: &[(&'static str, &str)], by: u64);

    /// An admitted request.
    fn request_allowed(&self) {
        self.add("tollgate_requests_allowed", 1);
    }

    /// Client request headers (or trailers) removed before forwarding, by why.
    fn client_header_removed(&self, why: &'static str) {
        self.add_labelled("tollgate_client_headers_removed_", why, 1);
    }

    /// A successful upstream answer was still encoded (compressed) although `identity` was
    /// asked for: forwarded untouched and charged as its worst case.
    fn response_unreadable(&self) {
        self.add("tollgate_responses_encoded", 1);
    }

    /// A finished request was charged its reservation (its worst case), by why.
    fn charged_reserved(&self, why: &'static str) {
        self.add_labelled("tollgate_spend_charged_reserved_", why, 1);
    }

    /// A refused request, by reason (the error `code`).
    fn request_denied(&self, reason: &str) {
        self.add("tollgate_requests_denied", 1);
        self.add_labelled("tollgate_requests_denied_", reason, 1);
    }

    /// A budget refusal, by scope (`key`, `team`, `user`, `end_user`).
    fn budget_refused(&self, scope: &str) {
        self.add_labelled("tollgate_budget_refusals_", scope, 1);
    }

    /// A rate-limit refusal, by scope and kind (`key_rpm`, `deployment_tpm`, `team_parallel`:
    /// at most five scopes by five kinds).
    fn rate_limited(&self, scope: &str, kind: &str) {
        self.add_labelled(
            "tollgate_rate_limit_refusals_",
            &format!("{scope}_{kind}"),
            1,
        );
    }

    /// A finished request's spend was recorded: tokens and cost by provider (bounded by the
    /// providers of the config), and the terminal status.
    fn spend_recorded(&self, finished: &Finished) {
        let data = &finished.data;
        self.add("tollgate_spend_events_recorded", 1);
        self.add_labelled("tollgate_requests_finished_", &data.status, 1);
        let provider = data.provider.as_str();
        let usage = &data.usage;
        self.add_labelled("tollgate_prompt_tokens_", provider, usage.prompt_tokens);
        self.add_labelled(
            "tollgate_completion_tokens_",
            provider,
            usage.completion_tokens,
        );
        let cost = finished.cost.nano_usd;
        self.add_labelled("tollgate_cost_nano_usd_", provider, cost);
        if data.cost_source == "unpriced" {
            self.add("tollgate_spend_unpriced", 1);
        }
        if usage.estimated {
            self.add("tollgate_spend_estimated", 1);
        }
        if finished.unpriced_tool_calls {
            self.add("tollgate_spend_tool_calls_unpriced", 1);
        }
        if !finished.ledger_ok {
            self.add("tollgate_budget_ledger_errors", 1);
        }
    }

    /// A finished request under the OpenTelemetry GenAI semantic-convention names (what Envoy
    /// AI Gateway and agentgateway export): token usage by type, the request's duration
    /// (milliseconds: Envoy histograms hold whole numbers) and its cost (nano-dollars), each
    /// by operation, provider and `model` (the config's name of the model reached:
    /// [`crate::core::config::index::Policy::metric_model`], so the series are bounded by it).
    fn gen_ai_request(&self, finished: &Finished, model: &str, duration_ms: u64) {
        let data = &finished.data;
        let model = tag_value(model);
        let provider = tag_value(&data.provider);
        let operation = operation_name(&data.endpoint);
        let tags = [
            (GEN_AI_OPERATION, operation),
            (GEN_AI_PROVIDER, provider.as_str()),
            (GEN_AI_MODEL, model.as_str()),
        ];
        let [a, b, c] = tags;
        let usage = &data.usage;
        for (kind, tokens) in [
            ("input", usage.prompt_tokens),
            ("output", usage.completion_tokens),
        ] {
            self.record_tagged(
                GEN_AI_TOKEN_USAGE,
                &[a, b, c, (GEN_AI_TOKEN_TYPE, kind)],
                tokens,
            );
        }
        self.record_tagged(GEN_AI_REQUEST_DURATION, &tags, duration_ms);
        self.add_tagged(GEN_AI_COST, &tags, finished.cost.nano_usd);
    }

    /// A batch of `events` was handed to the accounting cluster.
    fn spend_batch_sent(&self, events: usize) {
        self.add("tollgate_spend_batches_sent", 1);
        self.add("tollgate_spend_events_sent", events as u64);
    }

    /// How long the accounting cluster took to answer a batch.
    fn spend_batch_latency(&self, ms: u64) {
        self.record("tollgate_spend_batch_latency_ms", ms);
    }

    /// A batch failed and will be retried.
    fn spend_batch_failed(&self) {
        self.add("tollgate_spend_batches_retried", 1);
    }

    /// The accounting cluster stored a batch.
    fn spend_acknowledged(&self, events: usize, rejected: usize) {
        self.add("tollgate_spend_events_acknowledged", events as u64);
        self.add("tollgate_spend_events_rejected", rejected as u64);
    }

    /// Events dropped because the buffer was full or the final flush failed.
    fn spend_dropped(&self, events: usize) {
        self.add("tollgate_spend_events_dropped", events as u64);
    }

    /// Events quarantined: refused by the accounting cluster, or too large to send.
    fn spend_quarantined(&self, events: usize) {
        self.add("tollgate_spend_events_quarantined", events as u64);
    }

    /// A poll of authoritative spend failed.
    fn spend_poll_failed(&self) {
        self.add("tollgate_spend_polls_failed", 1);
    }
}

/// Every unlabelled counter, for adapters that must define stats up front (the native module
/// defines them when a config version is created; Envoy freezes definitions afterwards).
pub const COUNTERS: &[&str] = &[
    "tollgate_requests_allowed",
    "tollgate_requests_denied",
    "tollgate_responses_encoded",
    "tollgate_spend_events_recorded",
    "tollgate_spend_unpriced",
    "tollgate_spend_estimated",
    "tollgate_spend_tool_calls_unpriced",
    "tollgate_budget_ledger_errors",
    "tollgate_spend_batches_sent",
    "tollgate_spend_events_sent",
    "tollgate_spend_batches_retried",
    "tollgate_spend_events_acknowledged",
    "tollgate_spend_events_rejected",
    "tollgate_spend_events_dropped",
    "tollgate_spend_events_quarantined",
    "tollgate_spend_polls_failed",
    "tollgate_config_accepted",
    "tollgate_config_rejected",
    "tollgate_metric_samples_dropped",
];

/// Every labelled counter: its prefix (the Wasm filter's stat is prefix + label) and the name
/// of its label (the native module's stat carries it as an Envoy tag).
pub const LABELLED_COUNTERS: &[(&str, &str)] = &[
    ("tollgate_client_headers_removed_", "why"),
    ("tollgate_spend_charged_reserved_", "why"),
    ("tollgate_requests_denied_", "reason"),
    ("tollgate_budget_refusals_", "scope"),
    ("tollgate_rate_limit_refusals_", "limit"),
    ("tollgate_requests_finished_", "status"),
    ("tollgate_prompt_tokens_", "provider"),
    ("tollgate_completion_tokens_", "provider"),
    ("tollgate_cost_nano_usd_", "provider"),
];

/// Every histogram.
pub const HISTOGRAMS: &[&str] = &["tollgate_spend_batch_latency_ms"];

/// `gen_ai.client.token.usage`: tokens of one request, by `gen_ai.token.type`.
pub const GEN_AI_TOKEN_USAGE: &str = "gen_ai_client_token_usage";
/// `gen_ai.server.request.duration`, in milliseconds (the convention's unit is seconds).
pub const GEN_AI_REQUEST_DURATION: &str = "gen_ai_server_request_duration";
/// A request's cost in nano-dollars (the conventions name no cost metric yet).
pub const GEN_AI_COST: &str = "gen_ai_client_cost_nano_usd";
/// `gen_ai.operation.name`: `chat`, `text_completion`, `embeddings`.
pub const GEN_AI_OPERATION: &str = "gen_ai_operation_name";
/// `gen_ai.provider.name`: the deployment's provider.
pub const GEN_AI_PROVIDER: &str = "gen_ai_provider_name";
/// `gen_ai.request.model`: the model reached after aliases.
pub const GEN_AI_MODEL: &str = "gen_ai_request_model";
/// `gen_ai.token.type`: `input` or `output`.
pub const GEN_AI_TOKEN_TYPE: &str = "gen_ai_token_type";

/// The tagged histograms and their tag names, in the order [`Telemetry::gen_ai_request`] gives
/// them (the native module defines them up front with these names as Envoy tags).
pub const GEN_AI_HISTOGRAMS: &[(&str, &[&str])] = &[
    (
        GEN_AI_TOKEN_USAGE,
        &[
            GEN_AI_OPERATION,
            GEN_AI_PROVIDER,
            GEN_AI_MODEL,
            GEN_AI_TOKEN_TYPE,
        ],
    ),
    (
        GEN_AI_REQUEST_DURATION,
        &[GEN_AI_OPERATION, GEN_AI_PROVIDER, GEN_AI_MODEL],
    ),
];

/// The tagged counters and their tag names.
pub const GEN_AI_COUNTERS: &[(&str, &[&str])] = &[(
    GEN_AI_COST,
    &[GEN_AI_OPERATION, GEN_AI_PROVIDER, GEN_AI_MODEL],
)];

/// The convention's operation name of an endpoint.
pub fn operation_name(endpoint: &str) -> &str {
    match endpoint {
        "chat_completions" | "messages" | "responses" => "chat",
        "completions" => "text_completion",
        other => other,
    }
}

/// A tag value as both forms show it: at most 128 bytes of ASCII letters, digits and
/// `. - _ / : @ *`, anything else `_` (model names keep their dots and slashes, a wildcard
/// deployment's name its `*`; nothing can break the Wasm form's tag encoding).
pub fn tag_value(value: &str) -> String {
    value
        .chars()
        .take(128)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | ':' | '@' | '*') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The Wasm form's stat name of a tagged metric: `name.tag=.=value;.;…`, which the Envoy
/// bootstrap's `stats_tags` (`(tag=\.=(.*?);\.;)`, as Istio's stats names use) turns back into
/// `name{tag="value",…}`.
pub fn tagged_stat_name(name: &str, tags: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(name.len() + 1 + tags.len() * 48);
    out.push_str(name);
    out.push('.');
    for (tag, value) in tags {
        out.push_str(tag);
        out.push_str("=.=");
        out.push_str(value);
        out.push_str(";.;");
    }
    out
}

/// A label made safe for a stat name: ASCII letters and digits, anything else `_`.
pub fn metric_label(label: &str) -> String {
    label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// `tollgate_config_active_<version>`: 1 while a config version is served.
pub fn version_gauge(version: &str) -> String {
    format!("tollgate_config_active_{}", metric_label(version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    struct Recorded(RefCell<Vec<String>>);

    impl Telemetry for Recorded {
        fn add(&self, name: &'static str, by: u64) {
            self.0.borrow_mut().push(format!("{name}+{by}"));
        }
        fn add_labelled(&self, prefix: &'static str, label: &str, by: u64) {
            self.0.borrow_mut().push(format!("{prefix}{label}+{by}"));
        }
        fn record(&self, name: &'static str, value: u64) {
            self.0.borrow_mut().push(format!("{name}={value}"));
        }
        fn record_tagged(&self, name: &'static str, tags: &[(&'static str, &str)], value: u64) {
            let name = tagged_stat_name(name, tags);
            self.0.borrow_mut().push(format!("{name}={value}"));
        }
        fn add_tagged(&self, name: &'static str, tags: &[(&'static str, &str)], by: u64) {
            let name = tagged_stat_name(name, tags);
            self.0.borrow_mut().push(format!("{name}+{by}"));
        }
    }

    #[test]
    fn a_denial_counts_in_total_and_by_code() {
        let t = Recorded::default();
        t.request_denied("budget_exceeded");
        assert_eq!(
            *t.0.borrow(),
            vec![
                "tollgate_requests_denied+1",
                "tollgate_requests_denied_budget_exceeded+1"
            ]
        );
    }

    #[test]
    fn every_event_uses_a_catalogued_stat() {
        let t = Recorded::default();
        t.request_allowed();
        t.client_header_removed("internal");
        t.response_unreadable();
        t.charged_reserved("client_left");
        t.request_denied("budget_exceeded");
        t.budget_refused("key");
        t.spend_batch_sent(1);
        t.spend_batch_latency(1);
        t.spend_batch_failed();
        t.spend_acknowledged(1, 1);
        t.spend_dropped(1);
        t.spend_quarantined(1);
        t.spend_poll_failed();
        for entry in t.0.borrow().iter() {
            let name = entry.split(['+', '=']).next().unwrap();
            let known = COUNTERS.contains(&name)
                || HISTOGRAMS.contains(&name)
                || LABELLED_COUNTERS.iter().any(|(p, _)| name.starts_with(p));
            assert!(known, "{name} is not in the catalog");
        }
    }

    #[test]
    fn a_finished_request_speaks_the_gen_ai_conventions() {
        let mut finished = crate::core::exchange::spend_senders::tests::finished("u");
        finished.data.resolved_model = "claude-sonnet-4.5;.;x=.=y".into();
        finished.data.provider = "anthropic".into();
        finished.data.endpoint = "messages".into();
        finished.cost.nano_usd = 45_000;
        let t = Recorded::default();
        t.gen_ai_request(&finished, &finished.data.resolved_model, 1234);
        let tags = "gen_ai_operation_name=.=chat;.;gen_ai_provider_name=.=anthropic;.;\
                    gen_ai_request_model=.=claude-sonnet-4.5_._x_._y;.;";
        assert_eq!(
            *t.0.borrow(),
            vec![
                format!("gen_ai_client_token_usage.{tags}gen_ai_token_type=.=input;.;=10"),
                format!("gen_ai_client_token_usage.{tags}gen_ai_token_type=.=output;.;=2"),
                format!("gen_ai_server_request_duration.{tags}=1234"),
                format!("gen_ai_client_cost_nano_usd.{tags}+45000"),
            ]
        );
        for (name, tags) in GEN_AI_HISTOGRAMS.iter().chain(GEN_AI_COUNTERS) {
            assert!(t.0.borrow().iter().any(|e| e.starts_with(name)), "{name}");
            assert!(tags.len() >= 3);
        }
        assert_eq!(operation_name("completions"), "text_completion");
        assert_eq!(operation_name("embeddings"), "embeddings");
        assert_eq!(tag_value(&"é".repeat(200)).len(), 128);
    }

    #[test]
    fn labels_and_version_gauges_are_safe_stat_names() {
        assert_eq!(metric_label("a.b-c/d"), "a_b_c_d");
        assert_eq!(
            version_gauge("2026-12-02.1"),
            "tollgate_config_active_2026_12_02_1"
        );
    }
}
