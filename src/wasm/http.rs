//! One HTTP stream: read facts, ask the core, apply its answer.
//!
//! Headers are held (`allow_on_headers_stop_iteration: true`) while the body is buffered, so
//! routing, credential and body edits all happen before anything is forwarded. Header writes
//! are only attempted while headers are held; a refused write is logged, never a panic.

use std::borrow::Cow;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::core::admission::client_headers::{
    carries_key, is_identity_encoding, removal_without_policy, scrub_query, Removal,
    UPSTREAM_ACCEPT_ENCODING,
};
use crate::core::admission::decide::{
    decide_body, decide_head_at, BodyTicket, HeadOutcome, Surroundings,
};
use crate::core::admission::request::{ROUTE_HEADER, VERSION_HEADER};
use crate::core::affinity::stream::ResponseMarker;
use crate::core::metering::response_meter::{EarlyEnd, ResponseMeter};
use crate::core::metering::stream_usage::UsageChunkStripper;
use crate::core::money::reservation::release;
use crate::core::money::settlement::Settlement;
use crate::core::spend::access_log::{denied_line, forwarded_line, FILTER_STATE_NAME};
use crate::core::{Denial, RequestHead};
use crate::wasm::host::{self, Buffer, HeaderPairs, Level, Map};
use crate::wasm::ledgers::SharedLedgers;
use crate::wasm::metrics;
use crate::wasm::root::Shared;

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

/// An admitted request on its way: what to meter and what to settle.
struct Forwarded {
    settlement: Settlement,
    meter: Option<ResponseMeter>,
    rewriter: Option<Rewriter>,
}

/// An edit applied to the response body as it passes.
enum Rewriter {
    /// Take out usage the client did not ask for (OpenAI streams).
    StripUsage(UsageChunkStripper),
    /// Mark Responses ids and encrypted content with the deployment's affinity tag.
    MarkAffinity(ResponseMarker),
}

impl Rewriter {
    fn rewrite(&mut self, chunk: &[u8], end: bool) -> Vec<u8> {
        match self {
            Rewriter::StripUsage(stripper) => stripper.rewrite(chunk, end),
            Rewriter::MarkAffinity(marker) => marker.rewrite(chunk, end),
        }
    }
}

/// The request headers the core reads (first value of each), borrowed from the host's buffer
/// where they are valid UTF-8.
#[derive(Default)]
struct HeadFacts<'a> {
    method: Option<Cow<'a, str>>,
    path: Option<Cow<'a, str>>,
    authorization: Option<Cow<'a, str>>,
    x_api_key: Option<Cow<'a, str>>,
    api_key: Option<Cow<'a, str>>,
    content_length: Option<Cow<'a, str>>,
    content_encoding: Option<Cow<'a, str>>,
}

/// Per-stream state.
pub struct TollgateHttp {
    shared: Rc<Shared>,
    stage: Stage,
    /// Whether the request had a `content-length` (corrected after a body rewrite).
    has_content_length: bool,
    /// The access-log summary left in filter state at the end of the stream.
    log_line: Option<String>,
    /// The virtual key the client presented, removed wherever else it appears (trailers too).
    presented_key: Option<String>,
}

impl TollgateHttp {
    /// A stream on the version `shared` belongs to.
    pub fn new(shared: Rc<Shared>) -> Self {
        TollgateHttp {
            shared,
            stage: Stage::Head,
            has_content_length: false,
            log_line: None,
            presented_key: None,
        }
    }

    fn version(&self) -> Option<&str> {
        self.shared.policy.as_deref().map(|p| p.version.as_str())
    }

    fn respond(&mut self, status: u16, details: &str, body: &str) -> Action {
        self.respond_with(status, details, body, &[])
    }

    fn respond_with(
        &mut self,
        status: u16,
        details: &str,
        body: &str,
        extra: &[(&'static str, String)],
    ) -> Action {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(version) = self.version() {
            headers.push((VERSION_HEADER, version));
        }
        headers.extend(extra.iter().map(|(name, value)| (*name, value.as_str())));
        if !host::send_response(status, details, &headers, body.as_bytes()) {
            host::log(Level::Error, "tollgate: the host refused a local reply");
        }
        self.stage = Stage::Answered;
        Action::Pause
    }

    fn deny(&mut self, denial: &Denial) -> Action {
        metrics::request_denied(denial.code());
        self.log_line = Some(denied_line(self.version(), denial));
        if let Denial::BudgetExceeded { scope, .. } = denial {
            metrics::budget_refused(scope);
        }
        if self.shared.debug {
            host::log(
                Level::Debug,
                &format!("tollgate: denied {} {}", denial.status(), denial.code()),
            );
        }
        let details = format!("tollgate_{}", denial.code());
        let retry = denial.retry_headers();
        self.respond_with(denial.status(), &details, &denial.body(), &retry)
    }

    /// A callback arrived in a stage where no decision exists yet and none can be made: refuse
    /// rather than let the stream through.
    fn undecided(&mut self, callback: &str) -> Action {
        host::log(
            Level::Error,
            &format!("tollgate: {callback} arrived before a decision; refusing the stream"),
        );
        self.deny(&Denial::GatewayError {
            code: "request_out_of_order",
        })
    }

    /// Removes every client header (or trailer) that must not reach an upstream or a route,
    /// whatever the decision will be. Returns whether one of Tollgate's internal headers was
    /// among them (the route may have been picked on it), or `None` if Envoy refused a removal.
    fn remove_client_headers(&self, map: Map, pairs: &HeaderPairs) -> Option<bool> {
        let rules = self.shared.policy.as_deref().map(|p| &p.client_headers);
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
                    metrics::client_header_removed(why.name());
                }
            }
        }
        let mut ok = true;
        for name in removed {
            ok &= host::remove_header_bytes(map, name);
        }
        ok.then_some(internal)
    }

    fn decide_with_body(&mut self, ticket: BodyTicket, body_size: usize) -> Action {
        let Some(policy) = self.shared.policy.clone() else {
            return self.deny(&Denial::PolicyUnavailable);
        };
        let Some(body) = host::buffer(Buffer::RequestBody, body_size) else {
            host::log(Level::Error, "tollgate: could not read the request body");
            return self.deny(&Denial::GatewayError {
                code: "request_body_unreadable",
            });
        };
        let Some(now) = clock_seconds() else {
            return self.deny(&Denial::GatewayError {
                code: "clock_unavailable",
            });
        };
        let around = Surroundings {
            credentials: &self.shared.credentials,
            ledgers: &SharedLedgers,
            random: self.shared.next_random(),
            now,
        };
        let Some(verdict) = decide_body(&policy, ticket, &body, &around) else {
            return self.deny(&Denial::GatewayError {
                code: "key_not_in_policy",
            });
        };
        let admission = match verdict.outcome {
            Ok(admission) => admission,
            Err(denial) => return self.deny(&denial),
        };
        // Client credentials were removed with the headers; the upstream gets the gateway's.
        let mut applied =
            host::set_header(Map::Request, ROUTE_HEADER, &admission.deployment.cluster);
        applied &= host::set_header(Map::Request, "accept-encoding", UPSTREAM_ACCEPT_ENCODING);
        if let Some((name, value)) = &admission.credential {
            applied &= host::set_header(Map::Request, name, value);
        }
        if let Some(new_body) = &admission.new_body {
            applied &= host::replace_buffer(Buffer::RequestBody, body.len(), new_body);
            if self.has_content_length {
                applied &=
                    host::set_header(Map::Request, "content-length", &new_body.len().to_string());
            }
        }
        // The route must be picked again on the header just written.
        applied = applied && host::clear_route_cache();
        if !applied {
            // Forwarding half-edited could leak the client key or mis-route: refuse instead.
            host::log(Level::Error, "tollgate: the host refused a request edit");
            release(&SharedLedgers, &admission.reservation, now);
            return self.deny(&Denial::GatewayError {
                code: "request_not_editable",
            });
        }
        metrics::request_allowed();
        if self.shared.debug {
            host::log(
                Level::Debug,
                &format!(
                    "tollgate: allowed {} -> deployment {} (cluster {}, model {})",
                    verdict.trace.requested.as_deref().unwrap_or(""),
                    admission.deployment.id,
                    admission.deployment.cluster,
                    admission.upstream_model
                ),
            );
        }
        let requested = verdict.trace.requested.unwrap_or_default();
        match Settlement::new(&policy, ticket.key_id, requested, admission) {
            Some(settlement) => {
                self.stage = Stage::Forwarded(Box::new(Forwarded {
                    settlement,
                    meter: None,
                    rewriter: None,
                }));
            }
            None => self.stage = Stage::Answered,
        }
        Action::Continue
    }

    /// Settles a forwarded request once: price it, settle its budgets, queue its spend event.
    fn settle(&mut self) {
        let Stage::Forwarded(forwarded) = std::mem::replace(&mut self.stage, Stage::Answered)
        else {
            return;
        };
        let Some(policy) = self.shared.policy.clone() else {
            return;
        };
        let settlement = &forwarded.settlement;
        let details = host::property(&["response", "code_details"]).unwrap_or_default();
        let details = String::from_utf8_lossy(&details);
        let early = EarlyEnd::from_code_details(&details);
        let metered = match &forwarded.meter {
            Some(meter) => meter.finish(settlement.plan.prompt_estimate, early),
            None => ResponseMeter::new(settlement.plan.endpoint, 0, None)
                .finish(settlement.plan.prompt_estimate, early),
        };
        if let Some(why) = metered.charge_reserved {
            metrics::charged_reserved(why.name());
        }
        let finished = settlement.finish(&policy, &metered, &SharedLedgers, now_seconds());
        if self.shared.debug {
            host::log(
                Level::Debug,
                &format!(
                    "tollgate: settled {} {} ({details}) usage {:?} estimated={} charge_reserved={:?} cost {} nano-USD ({})",
                    finished.data.status,
                    finished.data.http_status,
                    metered.usage,
                    metered.estimated,
                    metered.charge_reserved.map(|why| why.name()),
                    finished.cost.nano_usd,
                    finished.data.cost_source
                ),
            );
        }
        self.log_line = Some(forwarded_line(&finished.data));
        self.shared
            .sink
            .borrow_mut()
            .record(finished, host::now_nanos() / 1_000_000);
    }
}

fn now_seconds() -> i64 {
    i64::try_from(host::now_nanos() / 1_000_000_000).unwrap_or(i64::MAX)
}

/// The host clock in Unix seconds, `None` when it failed (decisions then fail closed).
fn clock_seconds() -> Option<i64> {
    host::clock_nanos().and_then(|n| i64::try_from(n / 1_000_000_000).ok())
}

impl Context for TollgateHttp {}

impl HttpContext for TollgateHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if !matches!(self.stage, Stage::Head) {
            return self.undecided("a second request-headers callback");
        }
        let pairs = host::headers(Map::Request);
        let mut facts = HeadFacts::default();
        for (name, value) in pairs.iter() {
            let slot = match name {
                b":method" => &mut facts.method,
                b":path" => &mut facts.path,
                b"authorization" => &mut facts.authorization,
                b"x-api-key" => &mut facts.x_api_key,
                b"api-key" => &mut facts.api_key,
                b"content-length" => &mut facts.content_length,
                b"content-encoding" => &mut facts.content_encoding,
                _ => continue,
            };
            if slot.is_none() {
                // Lossy: a non-UTF-8 credential is still seen (and refused as malformed).
                *slot = Some(String::from_utf8_lossy(value));
            }
        }
        let presented = RequestHead {
            authorization: facts.authorization.as_deref(),
            x_api_key: facts.x_api_key.as_deref(),
            api_key: facts.api_key.as_deref(),
            ..RequestHead::default()
        }
        .credential()
        .ok()
        .map(str::to_string);
        self.presented_key = presented;
        // Then, before anything is decided: nothing the client sent under Tollgate's names,
        // no credential (nor the presented key under any name) and no unforwarded tenant
        // selector stays on the request.
        let Some(internal) = self.remove_client_headers(Map::Request, &pairs) else {
            host::log(Level::Error, "tollgate: the host refused a header removal");
            return self.deny(&Denial::GatewayError {
                code: "request_not_editable",
            });
        };
        if internal && !host::clear_route_cache() {
            // The route may have been picked on the client's x-tollgate-* header.
            return self.deny(&Denial::GatewayError {
                code: "request_not_editable",
            });
        }
        let scrubbed = facts
            .path
            .as_deref()
            .and_then(|path| scrub_query(path, self.presented_key.as_deref()));
        if let Some(clean) = scrubbed {
            metrics::client_header_removed("query_credential");
            if !host::set_header(Map::Request, ":path", &clean) {
                return self.deny(&Denial::GatewayError {
                    code: "request_not_editable",
                });
            }
        }
        let content_length = facts
            .content_length
            .as_deref()
            .and_then(|v| v.trim().parse::<u64>().ok());
        self.has_content_length = facts.content_length.is_some();
        let head = RequestHead {
            method: facts.method.as_deref().unwrap_or_default(),
            path: facts.path.as_deref().unwrap_or_default(),
            authorization: facts.authorization.as_deref(),
            x_api_key: facts.x_api_key.as_deref(),
            api_key: facts.api_key.as_deref(),
            content_length,
            content_encoding: facts.content_encoding.as_deref(),
        };
        match decide_head_at(self.shared.policy.as_deref(), &head, clock_seconds()) {
            HeadOutcome::Respond { status, body } => self.respond(status, "tollgate_models", &body),
            HeadOutcome::Deny(denial) => self.deny(&denial),
            HeadOutcome::ReadBody(ticket) => {
                if end_of_stream {
                    return self.decide_with_body(ticket, 0);
                }
                self.stage = Stage::Body {
                    ticket,
                    buffered: 0,
                };
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let ticket = match self.stage {
            Stage::Body { ticket, .. } => ticket,
            Stage::Head => return self.undecided("a request body"),
            Stage::Forwarded(_) | Stage::Answered => return Action::Continue,
        };
        if let Err(denial) = ticket.check_size(body_size as u64) {
            return self.deny(&denial);
        }
        if !end_of_stream {
            self.stage = Stage::Body {
                ticket,
                buffered: body_size,
            };
            return Action::Pause;
        }
        self.decide_with_body(ticket, body_size)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // Trailers follow the same rules as headers: no credential or internal name goes on.
        let trailers = host::headers(Map::RequestTrailers);
        if self
            .remove_client_headers(Map::RequestTrailers, &trailers)
            .is_none()
        {
            host::log(Level::Error, "tollgate: the host refused a trailer removal");
            return self.deny(&Denial::GatewayError {
                code: "request_not_editable",
            });
        }
        match self.stage {
            // The stream ends here: decide on the complete body Envoy buffered.
            Stage::Body { ticket, buffered } => self.decide_with_body(ticket, buffered),
            Stage::Head => self.undecided("request trailers"),
            Stage::Forwarded(_) | Stage::Answered => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if let Some(version) = self.version() {
            host::set_header(Map::Response, VERSION_HEADER, version);
        }
        let Stage::Forwarded(forwarded) = &mut self.stage else {
            return Action::Continue;
        };
        let (mut status, mut content_type, mut encoded) = (0u16, None, false);
        for (name, value) in host::headers(Map::Response).iter() {
            match name {
                b":status" => {
                    status = std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0)
                }
                b"content-type" => content_type = Some(String::from_utf8_lossy(value).into_owned()),
                b"content-encoding" => {
                    encoded |= !is_identity_encoding(&String::from_utf8_lossy(value));
                }
                _ => {}
            }
        }
        let plan = &forwarded.settlement.plan;
        let mut meter = if encoded {
            // Asked for identity, got something else: never parse or edit those bytes.
            metrics::response_unreadable();
            ResponseMeter::unreadable(plan.endpoint, status)
        } else {
            ResponseMeter::new(plan.endpoint, status, content_type.as_deref())
        };
        if end_of_stream {
            meter.end_without_body();
        } else if encoded {
            // Forwarded untouched: no usage strip, no affinity marks.
        } else if plan.strip_usage && meter.is_stream() {
            forwarded.rewriter = Some(Rewriter::StripUsage(UsageChunkStripper::new()));
        } else if let (Some(tag), true) = (plan.mark_with, (200..300).contains(&status)) {
            forwarded.rewriter = Some(Rewriter::MarkAffinity(ResponseMarker::new(tag)));
        }
        if forwarded.rewriter.is_some() {
            // The body will change length: let Envoy frame it.
            host::remove_header(Map::Response, "content-length");
        }
        forwarded.meter = Some(meter);
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Stage::Forwarded(forwarded) = &mut self.stage else {
            return Action::Continue;
        };
        let Some(meter) = &mut forwarded.meter else {
            return Action::Continue;
        };
        let chunk = host::buffer(Buffer::ResponseBody, body_size).unwrap_or_default();
        meter.feed(&chunk, end_of_stream);
        if let Some(rewriter) = &mut forwarded.rewriter {
            let out = rewriter.rewrite(&chunk, end_of_stream);
            if out != chunk && !host::replace_buffer(Buffer::ResponseBody, body_size, &out) {
                host::log(
                    Level::Warn,
                    "tollgate: the host refused a response body edit",
                );
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        self.settle();
        if let Some(line) = &self.log_line {
            host::set_property(FILTER_STATE_NAME, line.as_bytes());
        }
    }
}
