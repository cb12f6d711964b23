//! The Rust face of the module: a [`FilterConfig`] per Envoy filter config, a [`Filter`] per
//! stream, and [`new_config`], the one place that decides which implementation serves.
//!
//! Threads: `new_config`, [`FilterConfig::on_scheduled`], [`FilterConfig::on_http_callout_done`]
//! and the config's `Drop` run on Envoy's main thread (the drop may instead run on the worker
//! that ends the config's last stream); [`FilterConfig::new_filter`] and every [`Filter`] method
//! run on the stream's worker thread. One config object serves every worker at once, hence
//! `Send + Sync` and `&self`. A filter never sees a hook while one of its own hooks runs: a hook
//! Envoy runs inside a call the filter makes (its own `send_response` announces itself to the
//! filter's `local_reply` hook synchronously) is answered by the adapter (`Continue`) without
//! calling the filter. The filter's response hooks do not run at all for its own local reply
//! (observed in Envoy 1.40 while the module was written).

use super::config::{CalloutOutcome, ConfigHandle};
use super::envoy::StreamHandle;

/// What the request- or response-headers hook tells Envoy (`FilterHeadersStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadersStatus {
    /// Pass the headers on.
    Continue,
    /// Hold the headers; body hooks still run. A later hook's `Continue` releases them, or a
    /// local reply ends the stream.
    StopIteration,
    /// Pass the headers on without ending the stream.
    ContinueAndDontEndStream,
    /// Hold headers and body; body hooks still run.
    StopAllIterationAndBuffer,
    /// As `StopAllIterationAndBuffer`, with watermark back-pressure instead of a limit.
    StopAllIterationAndWatermark,
}

/// What a body hook tells Envoy (`FilterDataStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyStatus {
    /// Pass the chunk (and anything held) on.
    Continue,
    /// Keep the chunk in the held buffer (413/500 past the buffer limit) and wait for more.
    StopIterationAndBuffer,
    /// Keep the chunk, with watermark back-pressure.
    StopIterationAndWatermark,
    /// Drop nothing, hold nothing: wait (the chunk stays with Envoy).
    StopIterationNoBuffer,
}

/// What a trailers hook tells Envoy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrailersStatus {
    /// Pass the trailers (and anything held) on.
    Continue,
    /// Hold them.
    StopIteration,
}

/// What happens after a local reply was announced to every filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalReplyStatus {
    /// Send the local reply.
    Continue,
    /// Reset the stream instead.
    ContinueAndResetStream,
}

impl HeadersStatus {
    pub(crate) fn raw(self) -> u32 {
        match self {
            HeadersStatus::Continue => 0,
            HeadersStatus::StopIteration => 1,
            HeadersStatus::ContinueAndDontEndStream => 2,
            HeadersStatus::StopAllIterationAndBuffer => 3,
            HeadersStatus::StopAllIterationAndWatermark => 4,
        }
    }
}

impl BodyStatus {
    pub(crate) fn raw(self) -> u32 {
        match self {
            BodyStatus::Continue => 0,
            BodyStatus::StopIterationAndBuffer => 1,
            BodyStatus::StopIterationAndWatermark => 2,
            BodyStatus::StopIterationNoBuffer => 3,
        }
    }
}

impl TrailersStatus {
    pub(crate) fn raw(self) -> u32 {
        match self {
            TrailersStatus::Continue => 0,
            TrailersStatus::StopIteration => 1,
        }
    }
}

impl LocalReplyStatus {
    pub(crate) fn raw(self) -> u32 {
        match self {
            LocalReplyStatus::Continue => 0,
            LocalReplyStatus::ContinueAndResetStream => 1,
        }
    }
}

/// One Envoy filter config (one `filter_config` value), shared by every worker.
pub trait FilterConfig: Send + Sync {
    /// A filter for a new stream (worker thread). `None` fails the stream closed (Envoy still
    /// runs its hooks, with no filter: the request hooks answer 500 and hold).
    fn new_filter(&self, envoy: &mut StreamHandle) -> Option<Box<dyn Filter>>;

    /// An event posted with a [`super::config::ConfigScheduler`] (main thread).
    fn on_scheduled(&self, _config: &mut ConfigHandle, _event_id: u64) {}

    /// The end of a config callout (main thread). Not called once the config is being destroyed.
    fn on_http_callout_done(
        &self,
        _config: &mut ConfigHandle,
        _callout_id: u64,
        _outcome: CalloutOutcome<'_>,
    ) {
    }
}

/// One stream's filter (worker thread). Every method has a pass-through default.
pub trait Filter {
    /// Request headers arrived; `end_of_stream` when there is no body.
    fn on_request_headers(
        &mut self,
        _envoy: &mut StreamHandle,
        _end_of_stream: bool,
    ) -> HeadersStatus {
        HeadersStatus::Continue
    }

    /// A request chunk arrived (read it with [`StreamHandle::request_body`] or `body_chunks`).
    fn on_request_body(&mut self, _envoy: &mut StreamHandle, _end_of_stream: bool) -> BodyStatus {
        BodyStatus::Continue
    }

    /// Request trailers arrived (the body, if any, is complete and held).
    fn on_request_trailers(&mut self, _envoy: &mut StreamHandle) -> TrailersStatus {
        TrailersStatus::Continue
    }

    /// Response headers arrived (not called for this filter's own local reply).
    fn on_response_headers(
        &mut self,
        _envoy: &mut StreamHandle,
        _end_of_stream: bool,
    ) -> HeadersStatus {
        HeadersStatus::Continue
    }

    /// A response chunk arrived ([`StreamHandle::response_chunk`], `replace_response_chunk`).
    fn on_response_body(&mut self, _envoy: &mut StreamHandle, _end_of_stream: bool) -> BodyStatus {
        BodyStatus::Continue
    }

    /// Response trailers arrived.
    fn on_response_trailers(&mut self, _envoy: &mut StreamHandle) -> TrailersStatus {
        TrailersStatus::Continue
    }

    /// The stream is over (before access logs are written and before the filter is dropped).
    fn on_stream_complete(&mut self, _envoy: &mut StreamHandle) {}

    /// A local reply (another filter's or Envoy's) is about to be sent.
    fn on_local_reply(
        &mut self,
        _envoy: &mut StreamHandle,
        _status: u32,
        _details: &[u8],
        _reset_imminent: bool,
    ) -> LocalReplyStatus {
        LocalReplyStatus::Continue
    }

    /// The end of a callout this stream started.
    fn on_http_callout_done(
        &mut self,
        _envoy: &mut StreamHandle,
        _callout_id: u64,
        _outcome: CalloutOutcome<'_>,
    ) {
    }

    /// An event posted to this stream's worker.
    fn on_scheduled(&mut self, _envoy: &mut StreamHandle, _event_id: u64) {}
}

/// Builds the config for one `filter_config` (main thread, inside `config_new`, the only time
/// metrics can be defined). `None` rejects the config (Envoy refuses it, or NACKs the ECDS update).
pub fn new_config(
    config: &mut ConfigHandle,
    _filter_name: &[u8],
    filter_config: &[u8],
) -> Option<Box<dyn FilterConfig>> {
    super::adapter::VersionConfig::new(config, filter_config)
        .map(|config| Box::new(config) as Box<dyn FilterConfig>)
}
