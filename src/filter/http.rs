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

/// The request headers the core reads (first value of each).
#[derive(Default)]
struct HeadFacts {
    method: Option<String>,
    path: Option<String>,
    authorization: Option<String>,
    x_api_key: Option<String>,
    api_key: Option<String>,
    content_length: Option<String>,
}

/// Per-stream state.
pub struct TollgateHttp {
    shared: Rc<Shared>,
    stage: Stage,
    /// Which of [`CLIENT_CREDENTIAL_HEADERS`] the request carried (those must be removed).
    credential_headers: [bool; 3],
    /// Whether the request had a `content-length` (corrected after a body rewrite).
    has_content_length: bool,
}

impl TollgateHttp {
    /// A stream on the version `shared` belongs to.
    pub fn new(shared: Rc<Shared>) -> Self {
        TollgateHttp {
            shared,
            stage: Stage::Head,
            credential_headers: [false; 3],
            has_content_length: false,
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
        if self.shared.debug {
            host::log(
                Level::Debug,
                &format!("tollgate: denied {} {}", denial.status(), denial.code()),
            );
        }
        let details = format!("tollgate_{}", denial.code());
        self.respond(denial.status(), &details, &denial.body())
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
        let random = self.shared.next_random();
        let Some(verdict) = decide_body(&policy, ticket, &body, &self.shared.credentials, random)
        else {
            return self.deny(&Denial::GatewayError {
                code: "key_not_in_policy",
            });
        };
        let admission = match verdict.outcome {
            Ok(admission) => admission,
            Err(denial) => return self.deny(&denial),
        };
        for (name, present) in CLIENT_CREDENTIAL_HEADERS
            .iter()
            .zip(self.credential_headers)
        {
            if present {
                host::remove_header(Map::RequestHeaders, name);
            }
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
            if self.has_content_length {
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
            return self.deny(&Denial::GatewayError {
                code: "request_not_editable",
            });
        }
        host::clear_route_cache();
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
        self.stage = Stage::Forwarded;
        Action::Continue
    }
}

impl Context for TollgateHttp {}

impl HttpContext for TollgateHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let mut facts = HeadFacts::default();
        for (name, value) in host::headers(Map::RequestHeaders) {
            // Lossy: a non-UTF-8 credential is still seen (and refused as malformed, and removed).
            let value = String::from_utf8_lossy(&value).into_owned();
            let slot = match name.as_slice() {
                b":method" => &mut facts.method,
                b":path" => &mut facts.path,
                b"authorization" => &mut facts.authorization,
                b"x-api-key" => &mut facts.x_api_key,
                b"api-key" => &mut facts.api_key,
                b"content-length" => &mut facts.content_length,
                _ => continue,
            };
            slot.get_or_insert(value);
        }
        let content_length = facts
            .content_length
            .as_deref()
            .and_then(|v| v.trim().parse::<u64>().ok());
        self.credential_headers = [
            facts.authorization.is_some(),
            facts.x_api_key.is_some(),
            facts.api_key.is_some(),
        ];
        self.has_content_length = facts.content_length.is_some();
        let head = RequestHead {
            method: facts.method.as_deref().unwrap_or_default(),
            path: facts.path.as_deref().unwrap_or_default(),
            authorization: facts.authorization.as_deref(),
            x_api_key: facts.x_api_key.as_deref(),
            api_key: facts.api_key.as_deref(),
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
