//! The accounting server's HTTP layer, on hyper 1 (HTTP/1.1) and tokio: bounded request heads
//! (431), bodies (413) and connections, with timeouts for heads (slowloris), bodies and idle
//! connections. The handler is blocking (the stores) and runs on tokio's blocking pool.
//!
//! On SIGTERM or SIGINT the server stops accepting, lets every request in flight finish (a batch
//! being stored is stored and answered), closes idle keep-alive connections, and returns; after
//! the grace period it gives up on what is left (an unfinished transaction rolls back, and the
//! sender retries that batch).

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
use hyper_util::server::graceful::GracefulShutdown;
use tokio::signal::unix::{signal, SignalKind};
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
    /// The `content-type` header, if any.
    pub content_type: Option<String>,
    /// The body, or why it could not be read: `(status, message)`.
    pub body: Result<Vec<u8>, (u16, String)>,
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

/// A response: status, content type and body.
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// The body's content type.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
    /// Further headers.
    pub headers: Vec<(&'static str, &'static str)>,
}

/// The content type of JSON answers.
pub const JSON: &str = "application/json";

impl Response {
    /// A JSON answer.
    pub fn json(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: JSON,
            body,
            headers: Vec::new(),
        }
    }
}

/// Server limits that operators may change.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
    /// How long a shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

/// Serves `handler` on `listener` until SIGTERM or SIGINT, then shuts down gracefully.
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
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| format!("cannot set up the listener: {e}"))?;
        let mut terminate = signal(SignalKind::terminate())
            .map_err(|e| format!("cannot watch for SIGTERM: {e}"))?;
        let mut interrupt =
            signal(SignalKind::interrupt()).map_err(|e| format!("cannot watch for SIGINT: {e}"))?;
        let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        let graceful = GracefulShutdown::new();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = terminate.recv() => break,
                _ = interrupt.recv() => break,
            };
            let Ok((stream, _)) = accepted else {
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
            let service = service_fn(move |request| {
                let handler = Arc::clone(&handler);
                async move { Ok::<_, Infallible>(respond(request, handler).await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD.max(8192))
                .max_header_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), service);
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                let _slot = slot;
                let _ = connection.await;
            });
        }
        drop(listener);
        eprintln!("tollgate accounting: shutting down; finishing the requests in flight");
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(limits.shutdown_grace) => {
                eprintln!(
                    "tollgate accounting: requests still in flight after {} s are abandoned",
                    limits.shutdown_grace.as_secs()
                );
            }
        }
        Ok::<(), String>(())
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    served
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
        Ok(Ok(collected)) => Ok(collected.to_bytes().to_vec()),
        Ok(Err(problem)) => {
            let too_large = problem
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            if too_large {
                Err((413, format!("the body is larger than {MAX_BODY} bytes")))
            } else {
                Err((400, "the body could not be read".to_string()))
            }
        }
        Err(_) => Err((408, "the body did not arrive in time".to_string())),
    };
    let request = Request {
        method: head.method.as_str().to_string(),
        path: head.uri.path().to_string(),
        query: head.uri.query().unwrap_or("").to_string(),
        authorization,
        batch_id,
        content_type: header(CONTENT_TYPE.as_str()),
        body,
    };
    match tokio::task::spawn_blocking(move || handler(request)).await {
        Ok(response) => reply(response),
        Err(_) => reply(Response::json(
            500,
            error_json("the request could not be handled"),
        )),
    }
}

fn reply(answer: Response) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::from(answer.body)));
    *response.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(answer.content_type));
    for (name, value) in answer.headers {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
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
