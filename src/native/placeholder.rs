//! The stand-in behind [`super::module::new_config`] until the core's stream machine is wired:
//! it passes no traffic. Every request is answered `503 adapter_not_wired`, after the module has
//! read the whole request body, so the e2e test can prove the bindings (headers, body buffering
//! over HTTP/1.1 and HTTP/2, trailers, local replies, metrics, attributes, filter state, the
//! config scheduler and a config callout). It writes what it saw into `x-tollgate-native-*`
//! response headers and logs which thread ran each config-level hook.
//!
//! `filter_config` (a `StringValue`) is empty or a JSON object: `label` (echoed per response),
//! `echo_header` (default `x-tollgate-echo`), `hold` (`stop_iteration`, the default, or
//! `stop_all_and_buffer`: what the request-headers hook answers), `callout_cluster` and
//! `callout_path` (one GET sent from the main thread at start, its answer logged).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::config::{
    log, CalloutOutcome, ConfigHandle, ConfigScheduler, CounterId, HistogramId, Level,
};
use super::envoy::{HeaderMap, StreamHandle};
use super::module::{BodyStatus, Filter, FilterConfig, HeadersStatus, TrailersStatus};

/// The body of every answer.
pub const NOT_WIRED_BODY: &str = r#"{"error":{"message":"tollgate native module: adapter not wired yet","type":"server_error","param":null,"code":"adapter_not_wired"}}"#;
const EVENT_CALLOUT: u64 = 1;
const EVENT_STREAM_DONE: u64 = 2;
static CONFIGS_MADE: AtomicU64 = AtomicU64::new(0);

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    label: String,
    echo_header: Option<String>,
    hold: Option<String>,
    callout_cluster: Option<String>,
    callout_path: Option<String>,
}

/// The placeholder config: settings, metric ids and the main-thread scheduler.
pub struct PlaceholderConfig {
    instance: u64,
    label: String,
    echo_header: String,
    hold_all: bool,
    callout_cluster: Option<String>,
    callout_path: String,
    requests: Option<CounterId>,
    completed: Option<CounterId>,
    body_bytes: Option<HistogramId>,
    scheduler: Option<Arc<ConfigScheduler>>,
}

/// The calling thread's name (`envoy` is the main thread, `wrk:worker_N` a worker).
fn thread_name() -> String {
    std::fs::read_to_string("/proc/thread-self/comm")
        .map_or_else(|_| "?".to_string(), |name| name.trim().to_string())
}

impl PlaceholderConfig {
    /// Reads `filter_config`; `None` (config rejected) when it is neither empty nor valid JSON.
    pub fn new(
        config: &mut ConfigHandle,
        filter_name: &[u8],
        filter_config: &[u8],
    ) -> Option<Self> {
        let settings: Settings = if filter_config.iter().all(u8::is_ascii_whitespace) {
            Settings::default()
        } else {
            match serde_json::from_slice(filter_config) {
                Ok(settings) => settings,
                Err(error) => {
                    log(Level::Error, || {
                        format!("tollgate native: filter_config refused: {error}")
                    });
                    return None;
                }
            }
        };
        let hold_all = match settings.hold.as_deref() {
            None | Some("stop_iteration") => false,
            Some("stop_all_and_buffer") => true,
            Some(other) => {
                log(Level::Error, || {
                    format!("tollgate native: unknown hold {other:?}")
                });
                return None;
            }
        };
        let instance = CONFIGS_MADE.fetch_add(1, Ordering::Relaxed) + 1;
        let made = PlaceholderConfig {
            instance,
            label: settings.label,
            echo_header: settings
                .echo_header
                .unwrap_or_else(|| "x-tollgate-echo".to_string()),
            hold_all,
            callout_path: settings.callout_path.unwrap_or_else(|| "/".to_string()),
            callout_cluster: settings.callout_cluster,
            requests: config.define_counter("native_requests"),
            completed: config.define_counter("native_streams_completed"),
            body_bytes: config.define_histogram("native_request_body_bytes"),
            scheduler: config.new_scheduler().map(Arc::new),
        };
        if let (Some(_), Some(scheduler)) = (&made.callout_cluster, &made.scheduler) {
            scheduler.commit(EVENT_CALLOUT);
        }
        log(Level::Info, || {
            format!(
                "tollgate native: config_new instance={instance} label={} filter={} thread={} metrics={}",
                made.label,
                String::from_utf8_lossy(filter_name),
                thread_name(),
                made.requests.is_some() && made.completed.is_some() && made.body_bytes.is_some()
            )
        });
        Some(made)
    }
}

impl Drop for PlaceholderConfig {
    fn drop(&mut self) {
        let (instance, label) = (self.instance, &self.label);
        log(Level::Info, || {
            format!(
                "tollgate native: config_destroy instance={instance} label={label} thread={}",
                thread_name()
            )
        });
    }
}

impl FilterConfig for PlaceholderConfig {
    fn new_filter(&self, envoy: &mut StreamHandle) -> Option<Box<dyn Filter>> {
        let worker = envoy.worker_index();
        log(Level::Debug, || {
            format!(
                "tollgate native: filter_new instance={} worker={worker} thread={}",
                self.instance,
                thread_name()
            )
        });
        Some(Box::new(PlaceholderFilter {
            instance: self.instance,
            label: self.label.clone(),
            echo_header: self.echo_header.clone(),
            hold_all: self.hold_all,
            requests: self.requests,
            body_bytes: self.body_bytes,
            scheduler: self.scheduler.clone(),
            worker,
            body_hooks: 0,
            echo: None,
        }))
    }

    fn on_scheduled(&self, config: &mut ConfigHandle, event_id: u64) {
        match event_id {
            EVENT_CALLOUT => {
                let Some(cluster) = &self.callout_cluster else {
                    return;
                };
                let headers: [(&str, &[u8]); 3] = [
                    (":method", b"GET"),
                    (":path", self.callout_path.as_bytes()),
                    ("host", cluster.as_bytes()),
                ];
                let sent = config.http_callout(cluster, &headers, b"", 5000);
                log(Level::Info, || {
                    format!("tollgate native: config_scheduled callout to {cluster}: {sent:?} thread={}", thread_name())
                });
            }
            EVENT_STREAM_DONE => {
                if let Some(id) = self.completed {
                    config.increment_counter(id, 1);
                }
                log(Level::Debug, || {
                    format!(
                        "tollgate native: config_scheduled stream_done thread={}",
                        thread_name()
                    )
                });
            }
            _ => {}
        }
    }

    fn on_http_callout_done(
        &self,
        _config: &mut ConfigHandle,
        callout_id: u64,
        outcome: CalloutOutcome<'_>,
    ) {
        let status = outcome.status();
        let body = outcome.body();
        let failed = match &outcome {
            CalloutOutcome::Failed(result) => Some(result.0),
            CalloutOutcome::Answered { .. } => None,
        };
        log(Level::Info, || {
            format!(
                "tollgate native: callout {callout_id} answered status={status:?} failed={failed:?} body_bytes={} \
                 body_start={:?} thread={}",
                body.len(),
                String::from_utf8_lossy(body.get(..40).unwrap_or(&body)),
                thread_name()
            )
        });
    }
}

/// One stream of the placeholder.
struct PlaceholderFilter {
    instance: u64,
    label: String,
    echo_header: String,
    hold_all: bool,
    requests: Option<CounterId>,
    body_bytes: Option<HistogramId>,
    scheduler: Option<Arc<ConfigScheduler>>,
    worker: u32,
    body_hooks: u32,
    echo: Option<Vec<u8>>,
}

impl PlaceholderFilter {
    fn hold(&self) -> HeadersStatus {
        if self.hold_all {
            HeadersStatus::StopAllIterationAndBuffer
        } else {
            HeadersStatus::StopIteration
        }
    }

    /// The 503, with what the module saw of the request.
    fn answer(&mut self, envoy: &mut StreamHandle, body: &[u8]) {
        let digest: String = Sha256::digest(body)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let protocol = envoy.protocol().map(<[u8]>::to_vec).unwrap_or_default();
        let facts = [
            ("x-tollgate-native-body-bytes", body.len().to_string()),
            ("x-tollgate-native-body-sha256", digest),
            ("x-tollgate-native-body-hooks", self.body_hooks.to_string()),
            ("x-tollgate-native-worker", self.worker.to_string()),
            (
                "x-tollgate-native-config",
                format!("{}:{}", self.instance, self.label),
            ),
        ];
        let echo = self.echo.take();
        let mut headers: Vec<(&str, &[u8])> = vec![
            ("content-type", b"application/json"),
            ("x-tollgate-native-protocol", &protocol),
        ];
        if let Some(echo) = &echo {
            headers.push((self.echo_header.as_str(), echo));
        }
        headers.extend(facts.iter().map(|(name, value)| (*name, value.as_bytes())));
        if let Some(id) = self.body_bytes {
            envoy.record_histogram(id, body.len() as u64);
        }
        envoy.set_filter_state("tollgate.native", b"adapter_not_wired");
        envoy.send_response(
            503,
            &headers,
            NOT_WIRED_BODY.as_bytes(),
            "tollgate_adapter_not_wired",
        );
    }
}

impl Filter for PlaceholderFilter {
    fn on_request_headers(
        &mut self,
        envoy: &mut StreamHandle,
        end_of_stream: bool,
    ) -> HeadersStatus {
        self.echo = envoy
            .header(HeaderMap::RequestHeaders, &self.echo_header)
            .map(<[u8]>::to_vec);
        if let Some(id) = self.requests {
            envoy.increment_counter(id, 1);
        }
        if end_of_stream {
            self.answer(envoy, b"");
        }
        self.hold()
    }

    fn on_request_body(&mut self, envoy: &mut StreamHandle, end_of_stream: bool) -> BodyStatus {
        self.body_hooks += 1;
        if end_of_stream {
            let body = envoy.request_body().unwrap_or_default();
            self.answer(envoy, &body);
        }
        BodyStatus::StopIterationAndBuffer
    }

    fn on_request_trailers(&mut self, envoy: &mut StreamHandle) -> TrailersStatus {
        let body = envoy.request_body().unwrap_or_default();
        self.answer(envoy, &body);
        TrailersStatus::StopIteration
    }

    fn on_response_headers(
        &mut self,
        envoy: &mut StreamHandle,
        _end_of_stream: bool,
    ) -> HeadersStatus {
        // Runs only for answers the filter did not make itself (see `module`).
        envoy.set_header(
            HeaderMap::ResponseHeaders,
            "x-tollgate-native-saw-response",
            b"1",
        );
        HeadersStatus::Continue
    }

    fn on_stream_complete(&mut self, envoy: &mut StreamHandle) {
        let details = envoy.response_code_details().unwrap_or_default();
        let code = envoy.attribute_int(super::abi::AttributeId::RESPONSE_CODE);
        log(Level::Info, || {
            format!(
                "tollgate native: stream_complete worker={} code={code:?} details={details} thread={}",
                self.worker,
                thread_name()
            )
        });
        if let Some(scheduler) = &self.scheduler {
            scheduler.commit(EVENT_STREAM_DONE);
        }
    }
}
