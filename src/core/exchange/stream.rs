//! One HTTP exchange, callback by callback: read facts, ask the core, apply its answer
//! through the adapter's [`StreamHost`].
//!
//! Headers are held while the body is buffered, so routing, credential and body edits all
//! happen before anything is forwarded; no callback releases the request before a decision
//! exists (an out-of-order callback is refused). A refused host write on the request side
//! refuses the request rather than forward it half-edited.

use std::sync::Arc;

use super::host::{HeaderBlock, HeaderMap, LogLevel, Step, StreamHost};
use super::request_facts::HeadFacts;
use super::response_side::Forwarded;
use super::version::Version;
use crate::core::admission::client_headers::{
    carries_key, removal_without_policy, scrub_query, Removal, UPSTREAM_ACCEPT_ENCODING,
};
use crate::core::admission::decide::{decide_body, decide_head_at, BodyTicket, Surroundings};
use crate::core::admission::request::{ROUTE_HEADER, VERSION_HEADER};
use crate::core::limits::hold::release_limits;
use crate::core::money::reservation::release;
use crate::core::money::settlement::Settlement;
use crate::core::spend::access_log::{
    append_rate_fields, denied_line, forwarded_line, relayed_line,
};
use crate::core::{Denial, HeadOutcome};

enum Stage {
    /// Waiting for request headers.
    Head,
    /// Headers held; buffering the body (`buffered` bytes so far).
    Body {
        /// What the headers step decided.
        ticket: BodyTicket,
        /// Bytes of body Envoy holds for this stream.
        buffered: usize,
    },
    /// Forwarded upstream; metering the response.
    Forwarded(Box<Forwarded>),
    /// Answered locally, or settled.
    Answered,
}

/// One exchange on the config version it started with.
pub struct Exchange {
    version: Arc<Version>,
    stage: Stage,
    /// Whether the request had a `content-length` (corrected after a body rewrite).
    has_content_length: bool,
    /// The access-log summary left in filter state at the end of the stream.
    log_line: Option<String>,
    /// The virtual key the client presented, removed wherever else it appears (trailers too).
    presented_key: Option<String>,
    /// When the request headers arrived (the host's milliseconds): the start of
    /// `gen_ai_server_request_duration`.
    started_ms: u64,
}

impl Exchange {
    /// An exchange on `version`.
    pub fn new(version: Arc<Version>) -> Self {
        Exchange {
            version,
            stage: Stage::Head,
            has_content_length: false,
            log_line: None,
            presented_key: None,
            started_ms: 0,
        }
    }

    /// Whether the request was answered locally or settled (nothing more to do).
    pub fn is_answered(&self) -> bool {
        matches!(self.stage, Stage::Answered)
    }

    fn respond<H: StreamHost + ?Sized>(
        &mut self,
        host: &mut H,
        status: u16,
        details: &str,
        body: &str,
        extra: &[(&'static str, String)],
    ) -> Step {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(version) = self.version.label() {
            headers.push((VERSION_HEADER, version));
        }
        headers.extend(extra.iter().map(|(name, value)| (*name, value.as_str())));
        if !host.send_response(status, details, &headers, body.as_bytes()) {
            host.log(LogLevel::Error, "tollgate: the host refused a local reply");
        }
        self.stage = Stage::Answered;
        Step::Pause
    }

    /// Whether this version leaves access-log lines (`settings.access_log`).
    fn logs_access(&self) -> bool {
        self.version.policy.as_deref().is_some_and(|p| p.access_log)
    }

    fn deny<H: StreamHost + ?Sized>(&mut self, host: &mut H, denial: &Denial) -> Step {
        host.telemetry().request_denied(denial.code());
        if self.logs_access() {
            self.log_line = Some(denied_line(self.version.label(), denial));
        }
        if let Denial::BudgetExceeded { scope, .. } = denial {
            host.telemetry().budget_refused(scope);
        }
        if let Denial::RateLimited { scope, kind, .. } = denial {
            host.telemetry().rate_limited(scope, kind.name());
        }
        if self.version.debug {
            let line = format!("tollgate: denied {} {}", denial.status(), denial.code());
            host.log(LogLevel::Debug, &line);
        }
        let details = format!("tollgate_{}", denial.code());
        let retry = denial.retry_headers();
        self.respond(host, denial.status(), &details, &denial.body(), &retry)
    }

    fn gateway_error<H: StreamHost + ?Sized>(&mut self, host: &mut H, code: &'static str) -> Step {
        self.deny(host, &Denial::GatewayError { code })
    }

    /// A callback arrived in a stage where no decision exists yet and none can be made: refuse
    /// rather than let the stream through.
    fn undecided<H: StreamHost + ?Sized>(&mut self, host: &mut H, callback: &str) -> Step {
        let line = format!("tollgate: {callback} arrived before a decision; refusing the stream");
        host.log(LogLevel::Error, &line);
        self.gateway_error(host, "request_out_of_order")
    }

    /// Removes every client header (or trailer) that must not reach an upstream or a route,
    /// whatever the decision will be. Returns whether one of Tollgate's internal headers was
    /// among them (the route may have been picked on it), or `None` if Envoy refused a removal.
    fn remove_client_headers<H: StreamHost + ?Sized>(
        &self,
        host: &mut H,
        map: HeaderMap,
        pairs: &HeaderBlock,
    ) -> Option<bool> {
        let rules = self.version.policy.as_deref().map(|p| &p.client_headers);
        let presented = self.presented_key.as_deref();
        let mut removed: Vec<&[u8]> = Vec::new();
        let mut internal = false;
        for (name, value) in pairs.iter() {
            let by_name = match rules {
                Some(rules) => rules.removal(name),
                None => removal_without_policy(name),
            };
            let pseudo = name.starts_with(b":");
            let why = by_name.or_else(|| {
                (!pseudo && carries_key(value, presented)).then_some(Removal::CarriesKey)
            });
            let Some(why) = why else { continue };
            internal |= why == Removal::Internal;
            if !removed.contains(&name) {
                removed.push(name);
                // Every request carries a credential: count only the unusual removals.
                if why != Removal::Credential {
                    host.telemetry().client_header_removed(why.name());
                }
            }
        }
        let mut ok = true;
        for name in removed {
            ok &= host.remove_header(map, name);
        }
        ok.then_some(internal)
    }

    /// Request headers arrived (`end_of_stream`: there is no body).
    pub fn on_request_headers<H: StreamHost + ?Sized>(
        &mut self,
        host: &mut H,
        end_of_stream: bool,
    ) -> Step {
        if !matches!(self.stage, Stage::Head) {
            return self.undecided(host, "a second request-headers callback");
        }
        self.started_ms = host.now_ms();
        let pairs = host.headers(HeaderMap::Request);
        let facts = HeadFacts::read(&pairs);
        self.presented_key = facts.presented_key();
        // Then, before anything is decided: nothing the client sent under Tollgate's names,
        // no credential (nor the presented key under any name) and no unforwarded tenant
        // selector stays on the request.
        let Some(internal) = self.remove_client_headers(host, HeaderMap::Request, &pairs) else {
            host.log(
                LogLevel::Error,
                "tollgate: the host refused a header removal",
            );
            return self.gateway_error(host, "request_not_editable");
        };
        if internal && !host.clear_route_cache() {
            // The route may have been picked on the client's x-tollgate-* header.
            return self.gateway_error(host, "request_not_editable");
        }
        let scrubbed = facts
            .path
            .as_deref()
            .and_then(|path| scrub_query(path, self.presented_key.as_deref()));
        if let Some(clean) = &scrubbed {
            host.telemetry().client_header_removed("query_credential");
            if !host.set_header(HeaderMap::Request, ":path", clean) {
                return self.gateway_error(host, "request_not_editable");
            }
        }
        self.has_content_length = facts.content_length.is_some();
        let mut head = facts.head();
        if let Some(clean) = &scrubbed {
            // Decided (and rewritten upstream) on the path without the credential parameters.
            head.path = clean;
        }
        let policy = self.version.policy.as_deref();
        match decide_head_at(policy, &head, host.clock_seconds()) {
            HeadOutcome::Respond { status, body } => {
                self.respond(host, status, "tollgate_models", &body, &[])
            }
            HeadOutcome::Deny(denial) => self.deny(host, &denial),
            HeadOutcome::ReadBody(ticket) => {
                if end_of_stream {
                    return self.decide_with_body(host, ticket, 0);
                }
                self.stage = Stage::Body {
                    ticket,
                    buffered: 0,
                };
                Step::Pause
            }
        }
    }

    /// A request body chunk arrived; Envoy holds `body_size` bytes in all.
    pub fn on_request_body<H: StreamHost + ?Sized>(
        &mut self,
        host: &mut H,
        body_size: usize,
        end_of_stream: bool,
    ) -> Step {
        match &mut self.stage {
            Stage::Body { ticket, buffered } => {
                let size = ticket.check_size(body_size as u64);
                if let Err(denial) = size {
                    return self.deny(host, &denial);
                }
                if !end_of_stream {
                    *buffered = body_size;
                    return Step::Pause;
                }
            }
            Stage::Head => return self.undecided(host, "a request body"),
            Stage::Forwarded(_) | Stage::Answered => return Step::Continue,
        }
        match std::mem::replace(&mut self.stage, Stage::Answered) {
            Stage::Body { ticket, .. } => self.decide_with_body(host, ticket, body_size),
            _ => Step::Continue,
        }
    }

    /// Request trailers arrived (the request ends here).
    pub fn on_request_trailers<H: StreamHost + ?Sized>(&mut self, host: &mut H) -> Step {
        // Trailers follow the same rules as headers: no credential or internal name goes on.
        let trailers = host.headers(HeaderMap::RequestTrailers);
        if self
            .remove_client_headers(host, HeaderMap::RequestTrailers, &trailers)
            .is_none()
        {
            host.log(
                LogLevel::Error,
                "tollgate: the host refused a trailer removal",
            );
            return self.gateway_error(host, "request_not_editable");
        }
        match std::mem::replace(&mut self.stage, Stage::Answered) {
            // The stream ends here: decide on the complete body Envoy buffered.
            Stage::Body { ticket, buffered } => self.decide_with_body(host, ticket, buffered),
            Stage::Head => {
                self.stage = Stage::Head;
                self.undecided(host, "request trailers")
            }
            other => {
                self.stage = other;
                Step::Continue
            }
        }
    }

    fn decide_with_body<H: StreamHost + ?Sized>(
        &mut self,
        host: &mut H,
        ticket: BodyTicket,
        body_size: usize,
    ) -> Step {
        let Some(policy) = self.version.policy.clone() else {
            return self.deny(host, &Denial::PolicyUnavailable);
        };
        let Some(body) = host.request_body(body_size) else {
            host.log(LogLevel::Error, "tollgate: could not read the request body");
            return self.gateway_error(host, "request_body_unreadable");
        };
        let Some(now) = host.clock_seconds() else {
            return self.gateway_error(host, "clock_unavailable");
        };
        let random = host.random();
        let key_id = ticket.key_id;
        let verdict = {
            let around = Surroundings {
                credentials: &self.version.credentials,
                ledgers: host.ledgers(),
                random,
                now,
            };
            decide_body(&policy, &ticket, &body, &around)
        };
        let Some(verdict) = verdict else {
            return self.gateway_error(host, "key_not_in_policy");
        };
        let admission = match verdict.outcome {
            Ok(admission) => admission,
            Err(denial) => return self.deny(host, &denial),
        };
        // Client credentials were removed with the headers; the upstream gets the gateway's.
        let request = HeaderMap::Request;
        let mut applied = host.set_header(request, ROUTE_HEADER, &admission.deployment.cluster);
        applied &= host.set_header(request, "accept-encoding", UPSTREAM_ACCEPT_ENCODING);
        if let Some((name, value)) = &admission.credential {
            applied &= host.set_header(request, name, value);
        }
        if let Some(path) = &admission.upstream_path {
            applied &= host.set_header(request, ":path", path);
        }
        for (name, value) in &admission.descriptors {
            applied &= host.set_header(request, name, value);
        }
        if let Some(new_body) = &admission.new_body {
            applied &= host.replace_request_body(body.len(), new_body);
            if self.has_content_length {
                let length = new_body.len().to_string();
                applied &= host.set_header(request, "content-length", &length);
            }
        }
        // The route must be picked again on the header just written.
        applied = applied && host.clear_route_cache();
        if !applied {
            // Forwarding half-edited could leak the client key or mis-route: refuse instead.
            host.log(LogLevel::Error, "tollgate: the host refused a request edit");
            release(host.ledgers(), &admission.reservation, now);
            release_limits(host.ledgers(), &admission.limits, now);
            return self.gateway_error(host, "request_not_editable");
        }
        host.telemetry().request_allowed();
        if self.version.debug {
            let line = format!(
                "tollgate: allowed {} -> deployment {} (cluster {}, model {})",
                verdict.trace.requested.as_deref().unwrap_or(""),
                admission.deployment.id,
                admission.deployment.cluster,
                admission.upstream_model
            );
            host.log(LogLevel::Debug, &line);
        }
        let requested = verdict.trace.requested.unwrap_or_default();
        self.stage = match Settlement::new(&policy, key_id, requested, admission) {
            Some(settlement) => Stage::Forwarded(Box::new(Forwarded::new(settlement))),
            None => Stage::Answered,
        };
        Step::Continue
    }

    /// Response headers arrived (`end_of_stream`: there is no body).
    pub fn on_response_headers<H: StreamHost + ?Sized>(
        &mut self,
        host: &mut H,
        end_of_stream: bool,
    ) -> Step {
        if let Some(version) = self.version.label() {
            host.set_header(HeaderMap::Response, VERSION_HEADER, version);
        }
        if let Stage::Forwarded(forwarded) = &mut self.stage {
            forwarded.on_headers(host, end_of_stream);
        }
        Step::Continue
    }

    /// A response body chunk of `chunk_size` bytes arrived.
    pub fn on_response_body<H: StreamHost + ?Sized>(
        &mut self,
        host: &mut H,
        chunk_size: usize,
        end_of_stream: bool,
    ) -> Step {
        if let Stage::Forwarded(forwarded) = &mut self.stage {
            forwarded.on_body(host, chunk_size, end_of_stream);
        }
        Step::Continue
    }

    /// The exchange is over (Envoy's access-log point): settle a forwarded request once and
    /// leave the access-log line.
    pub fn on_complete<H: StreamHost + ?Sized>(&mut self, host: &mut H) {
        self.settle(host);
        if let Some(line) = &self.log_line {
            host.set_access_log_line(line);
        }
    }

    /// Settles a forwarded request once: price it, settle its budgets, queue its spend event.
    fn settle<H: StreamHost + ?Sized>(&mut self, host: &mut H) {
        let Stage::Forwarded(forwarded) = std::mem::replace(&mut self.stage, Stage::Answered)
        else {
            return;
        };
        let Some(policy) = self.version.policy.clone() else {
            return;
        };
        if !forwarded.is_metered() {
            // Free at the provider (count_tokens, stored responses): nothing to price or record,
            // but its slot in flight is freed.
            let now = i64::try_from(host.now_ms() / 1000).unwrap_or(i64::MAX);
            let settlement = forwarded.settlement();
            if !settlement
                .settle_limits(&policy, host.ledgers(), None, now)
                .ok
            {
                host.log(
                    LogLevel::Warn,
                    "tollgate: a rate-limit counter could not be written",
                );
            }
            if self.logs_access() {
                let mut line = relayed_line(&policy, settlement);
                append_rate_fields(&mut line, &settlement.rate_view);
                self.log_line = Some(line);
            }
            return;
        }
        let finished = forwarded.finish(host, &policy, self.version.debug);
        let duration_ms = host.now_ms().saturating_sub(self.started_ms);
        let model = policy.metric_model(
            &finished.data.resolved_model,
            forwarded.settlement().deployment,
        );
        host.telemetry()
            .gen_ai_request(&finished, model, duration_ms);
        if self.logs_access() {
            let mut line = forwarded_line(&finished.data);
            append_rate_fields(&mut line, &forwarded.settlement().rate_view);
            self.log_line = Some(line);
        }
        host.record_spend(finished, policy.accounting.as_ref());
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
