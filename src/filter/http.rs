//! One HTTP stream: read facts, ask the core, apply its answer.
//!
//! Headers are held (`allow_on_headers_stop_iteration: true`) while the body is buffered, so
//! routing, credential and body edits all happen before anything is forwarded. Header writes
//! are only attempted while headers are held; a refused write is logged, never a panic.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::filter::host::{self, Buffer, Level, Map};
use crate::filter::metrics;
use crate::filter::root::Shared;
use crate::policy::decide::{decide_body, decide_head, BodyTicket, HeadOutcome};
use crate::policy::request::{CLIENT_CREDENTIAL_HEADERS, ROUTE_HEADER, VERSION_HEADER};
use crate::policy::{Denial, RequestHead};

enum Stage {
    /// Waiting for request headers.
    Head,
    /// Headers held; buffering the body.
    Body(BodyTicket),
    /// Forwarded upstream.
    Forwarded,
    /// Answered locally.
    Answered,
}

/// Per-stream state.
pub struct TollgateHttp {
    shared: Rc<Shared>,
    stage: Stage,
}

impl TollgateHttp {
    /// A stream on the version `shared` belongs to.
    pub fn new(shared: Rc<Shared>) -> Self {
        TollgateHttp {
            shared,
            stage: Stage::Head,
        }
    }

    fn version(&self) -> Option<&str> {
        self.shared.policy.as_deref().map(|p| p.version.as_str())
    }

    fn respond(&mut self, status: u16, details: &str, body: &str) -> Action {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(version) = self.version() {
            headers.push((VERSION_HEADER, version));
        }
        if !host::send_response(status, details, &headers, body.as_bytes()) {
            host::log(Level::Error, "tollgate: the host refused a local reply");
        }
        self.stage = Stage::Answered;
        Action::Pause
    }

    fn deny(&mut self, denial: &Denial) -> Action {
        metrics::request_denied(denial.code());
        host::log(
            Level::Debug,
            &format!("tollgate: denied {} {}", denial.status(), denial.code()),
        );
        let details = format!("tollgate_{}", denial.code());
        self.respond(denial.status(), &details, &denial.body())
    }

    fn decide_with_body(&mut self, ticket: BodyTicket, body_size: usize) -> Action {
        let Some(policy) = self.shared.policy.clone() else {
            return self.deny(&Denial::PolicyUnavailable);
        };
        let Some(body) = host::buffer(Buffer::RequestBody, body_size) else {
            host::log(Level::Error, "tollgate: could not read the request body");
            return self.deny(&Denial::InvalidRequest {
                code: "unreadable_body",
                message: "The request body could not be read.".into(),
            });
        };
        let random = self.shared.next_random();
        let Some(verdict) = decide_body(&policy, ticket, &body, &self.shared.credentials, random)
        else {
            return self.deny(&Denial::UnknownKey);
        };
        let admission = match verdict.outcome {
            Ok(admission) => admission,
            Err(denial) => return self.deny(&denial),
        };
        for name in CLIENT_CREDENTIAL_HEADERS {
            host::remove_header(Map::RequestHeaders, name);
        }
        let mut applied = host::set_header(
            Map::RequestHeaders,
            ROUTE_HEADER,
            &admission.deployment.cluster,
        );
        if let Some((name, value)) = &admission.credential {
            applied &= host::set_header(Map::RequestHeaders, name, value);
        }
        if let Some(new_body) = &admission.new_body {
            applied &= host::replace_buffer(Buffer::RequestBody, body.len(), new_body);
            if host::header(Map::RequestHeaders, "content-length").is_some() {
                applied &= host::set_header(
                    Map::RequestHeaders,
                    "content-length",
                    &new_body.len().to_string(),
                );
            }
        }
        if !applied {
            // Forwarding half-edited could leak the client key or mis-route: refuse instead.
            host::log(Level::Error, "tollgate: the host refused a request edit");
            return self.deny(&Denial::InvalidRequest {
                code: "request_not_editable",
                message: "The gateway could not prepare this request.".into(),
            });
        }
        host::clear_route_cache();
        metrics::request_allowed();
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
        self.stage = Stage::Forwarded;
        Action::Continue
    }
}

impl Context for TollgateHttp {}

impl HttpContext for TollgateHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let method = host::header_text(Map::RequestHeaders, ":method").unwrap_or_default();
        let path = host::header_text(Map::RequestHeaders, ":path").unwrap_or_default();
        let authorization = host::header_text(Map::RequestHeaders, "authorization");
        let x_api_key = host::header_text(Map::RequestHeaders, "x-api-key");
        let api_key = host::header_text(Map::RequestHeaders, "api-key");
        let content_length = host::header_text(Map::RequestHeaders, "content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        let head = RequestHead {
            method: &method,
            path: &path,
            authorization: authorization.as_deref(),
            x_api_key: x_api_key.as_deref(),
            api_key: api_key.as_deref(),
            content_length,
        };
        let now = i64::try_from(host::now_nanos() / 1_000_000_000).unwrap_or(i64::MAX);
        match decide_head(self.shared.policy.as_deref(), &head, now) {
            HeadOutcome::Respond { status, body } => self.respond(status, "tollgate_models", &body),
            HeadOutcome::Deny(denial) => self.deny(&denial),
            HeadOutcome::ReadBody(ticket) => {
                if end_of_stream {
                    return self.decide_with_body(ticket, 0);
                }
                self.stage = Stage::Body(ticket);
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Stage::Body(ticket) = self.stage else {
            return Action::Continue;
        };
        if let Err(denial) = ticket.check_size(body_size as u64) {
            return self.deny(&denial);
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.decide_with_body(ticket, body_size)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(version) = self.version() {
            host::set_header(Map::ResponseHeaders, VERSION_HEADER, version);
        }
        Action::Continue
    }
}
