//! The accounting server's HTTP layer, on hyper 1 (HTTP/1.1) and tokio: bounded request heads
//! (431), bodies (413) and connections, with timeouts for heads (slowloris), bodies and idle
//! connections. The handler is blocking (SQLite) and runs on tokio's blocking pool.

use std::convert::Infallible;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;

/// Largest request body accepted (a batch is at most 1 MiB plus one event from the filter).
pub const MAX_BODY: usize = 8 * 1024 * 1024;
/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// The whole head must arrive within this time, also for an idle keep-alive connection's
/// next request (a slowloris client is cut off).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// The whole body must arrive within this time.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// One parsed request.
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// The query string (without `?`).
    pub query: String,
    /// The `authorization` header, if any.
    pub authorization: Option<String>,
    /// The batch identity header, if any.
    pub batch_id: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// A query parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

/// A response: status and JSON body.
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// JSON text.
    pub body: String,
}

/// Server limits that operators may change.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
}

/// Serves `handler` on `listener` until the process ends.
pub fn serve<H>(listener: TcpListener, limits: Limits, handler: H) -> Result<(), String>
where
    H: Fn(Request) -> Response + Send + Sync + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot set up the listener: {e}"))?;
    let handler = Arc::new(handler);
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| format!("cannot set up the listener: {e}"))?;
        let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of file descriptors, or a connection reset before it was accepted.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                let _slot = slot;
                let service = service_fn(move |request| {
                    let handler = Arc::clone(&handler);
                    async move { Ok::<_, Infallible>(respond(request, handler).await) }
                });
                let _ = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEAD_TIMEOUT)
                    .max_buf_size(MAX_HEAD.max(8192))
                    .max_header_size(MAX_HEAD)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

async fn respond<H>(
    request: hyper::Request<Incoming>,
    handler: Arc<H>,
) -> hyper::Response<Full<Bytes>>
where
    H: Fn(Request) -> Response + Send + Sync + 'static,
{
    let (head, body) = request.into_parts();
    let header = |name: &str| {
        head.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let authorization = header(AUTHORIZATION.as_str());
    let batch_id = header(tollgate::core::spend::accounting_api::BATCH_ID_HEADER);
    let collected =
        tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY).collect()).await;
    let body = match collected {
        Ok(Ok(collected)) => collected.to_bytes().to_vec(),
        Ok(Err(problem)) => {
            let too_large = problem
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            return if too_large {
                reply(
                    413,
                    error_json(&format!("the body is larger than {MAX_BODY} bytes")),
                )
            } else {
                reply(400, error_json("the body could not be read"))
            };
        }
        Err(_) => return reply(408, error_json("the body did not arrive in time")),
    };
    let request = Request {
        method: head.method.as_str().to_string(),
        path: head.uri.path().to_string(),
        query: head.uri.query().unwrap_or("").to_string(),
        authorization,
        batch_id,
        body,
    };
    match tokio::task::spawn_blocking(move || handler(request)).await {
        Ok(response) => reply(response.status, response.body),
        Err(_) => reply(500, error_json("the request could not be handled")),
    }
}

fn reply(status: u16, body: String) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// An OpenAI-style error body (`invalid_request_error`).
pub fn error_json(message: &str) -> String {
    error_json_typed(message, "invalid_request_error", None)
}

/// An OpenAI-style error body of a given type and code.
pub fn error_json_typed(message: &str, kind: &str, code: Option<&str>) -> String {
    serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        .to_string()
}
