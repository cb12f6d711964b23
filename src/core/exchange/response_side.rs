//! The response side of a forwarded exchange: meter the answer as it passes, apply the edits
//! the plan asks for (strip usage the client did not ask for, mark Responses ids), and turn
//! the end of the stream into a priced, settled record.

use super::host::{HeaderMap, LogLevel, StreamHost};
use crate::core::admission::client_headers::is_identity_encoding;
use crate::core::affinity::stream::ResponseMarker;
use crate::core::limits::headers::{is_upstream_rate_header, rate_headers};
use crate::core::limits::hold::renew_limits;
use crate::core::metering::response_meter::{EarlyEnd, ResponseMeter};
use crate::core::metering::stream_usage::UsageChunkStripper;
use crate::core::money::settlement::{Finished, Settlement};
use crate::core::Policy;

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

/// An admitted request on its way: what to meter and what to settle.
pub struct Forwarded {
    settlement: Settlement,
    meter: Option<ResponseMeter>,
    rewriter: Option<Rewriter>,
    /// The response headers were seen (a body before them is not read).
    headers_seen: bool,
}

impl Forwarded {
    /// A request forwarded under `settlement`.
    pub fn new(settlement: Settlement) -> Self {
        Forwarded {
            settlement,
            meter: None,
            rewriter: None,
            headers_seen: false,
        }
    }

    /// Whether the answer is metered and charged (false: relayed, only marked).
    pub fn is_metered(&self) -> bool {
        self.settlement.plan.metered
    }

    /// What the request was admitted with.
    pub fn settlement(&self) -> &Settlement {
        &self.settlement
    }

    /// Response headers: pick the meter and the body edit.
    pub fn on_headers<H: StreamHost + ?Sized>(&mut self, host: &mut H, end_of_stream: bool) {
        let (mut status, mut content_type, mut encoded) = (0u16, None, false);
        let headers = host.headers(HeaderMap::Response);
        let mut provider_limits: Vec<&[u8]> = Vec::new();
        for (name, value) in headers.iter() {
            if is_upstream_rate_header(name) && !provider_limits.contains(&name) {
                provider_limits.push(name);
            }
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
        // The provider's limits are the gateway credential's, shared by every tenant: the
        // client sees its own (Tollgate's) instead.
        for name in provider_limits {
            host.remove_header(HeaderMap::Response, name);
        }
        for (name, value) in rate_headers(&self.settlement.rate_view) {
            host.set_header(HeaderMap::Response, name, &value);
        }
        let plan = &self.settlement.plan;
        let mut meter = if encoded {
            // Asked for identity, got something else: never parse or edit those bytes.
            host.telemetry().response_unreadable();
            ResponseMeter::unreadable(plan.endpoint, status)
        } else {
            ResponseMeter::new(plan.endpoint, status, content_type.as_deref())
        };
        if end_of_stream {
            meter.end_without_body();
        } else if encoded {
            // Forwarded untouched: no usage strip, no affinity marks.
        } else if plan.strip_usage && meter.is_stream() {
            self.rewriter = Some(Rewriter::StripUsage(UsageChunkStripper::new()));
        } else if let (Some(tag), true) = (plan.mark_with, (200..300).contains(&status)) {
            self.rewriter = Some(Rewriter::MarkAffinity(ResponseMarker::new(tag)));
        }
        if self.rewriter.is_some() {
            // The body will change length: let Envoy frame it.
            host.remove_header(HeaderMap::Response, b"content-length");
        }
        // Free answers are not metered: a stored response's usage was charged when it was made.
        self.meter = plan.metered.then_some(meter);
        self.headers_seen = true;
    }

    /// A response body chunk: meter it, edit it if the plan says so.
    pub fn on_body<H: StreamHost + ?Sized>(&mut self, host: &mut H, size: usize, end: bool) {
        if !self.headers_seen {
            return;
        }
        // No host call for an empty chunk (an end-of-stream marker).
        let chunk = match size {
            0 => Vec::new(),
            _ => host.response_chunk(size).unwrap_or_default(),
        };
        if let Some(meter) = &mut self.meter {
            meter.feed(&chunk, end);
        }
        if !end && !self.settlement.limits.is_empty() {
            // A long answer keeps its slot in flight past the reservation TTL.
            let now = i64::try_from(host.now_ms() / 1000).unwrap_or(i64::MAX);
            renew_limits(host.ledgers(), &mut self.settlement.limits, now);
        }
        if let Some(rewriter) = &mut self.rewriter {
            let out = rewriter.rewrite(&chunk, end);
            if out != chunk && !host.replace_response_chunk(size, &out) {
                host.log(
                    LogLevel::Warn,
                    "tollgate: the host refused a response body edit",
                );
            }
        }
    }

    /// The stream is over: price the request and settle its budgets.
    pub fn finish<H: StreamHost + ?Sized>(
        &self,
        host: &mut H,
        policy: &Policy,
        debug: bool,
    ) -> Finished {
        let settlement = &self.settlement;
        let details = host.response_code_details();
        let early = EarlyEnd::from_code_details(&details);
        let estimate = settlement.plan.prompt_estimate;
        let metered = match &self.meter {
            Some(meter) => meter.finish(estimate, early),
            None => ResponseMeter::new(settlement.plan.endpoint, 0, None).finish(estimate, early),
        };
        if let Some(why) = metered.charge_reserved {
            host.telemetry().charged_reserved(why.name());
        }
        let now = i64::try_from(host.now_ms() / 1000).unwrap_or(i64::MAX);
        let finished = settlement.finish(policy, &metered, host.ledgers(), now);
        if debug {
            let line = format!(
                "tollgate: settled {} {} ({details}) usage {:?} estimated={} \
                 charge_reserved={:?} cost {} nano-USD ({})",
                finished.data.status,
                finished.data.http_status,
                metered.usage,
                metered.estimated,
                metered.charge_reserved.map(|why| why.name()),
                finished.cost.nano_usd,
                finished.data.cost_source
            );
            host.log(LogLevel::Debug, &line);
        }
        finished
    }
}
