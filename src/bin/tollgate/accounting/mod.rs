//! `tollgate accounting --listen 127.0.0.1:PORT --db PATH|postgres://… --writer-token-file F [--reader-token-file F]`:
//! the reference accounting server (tokens may also come from `TOLLGATE_ACCOUNTING_WRITER_TOKEN`
//! and `TOLLGATE_ACCOUNTING_READER_TOKEN`; `--no-auth` for local development only).
//!
//! It implements `docs/accounting-api.md`: takes batches of spend events from authenticated
//! writers, validates each event, stores them durably (deduplicated by event id) in SQLite or in a
//! PostgreSQL database several instances share, keeps totals per budget window, answers each
//! batch event by event with the totals it touched, serves changed totals to polling filters,
//! and a spend report for people.

mod alerts;
mod auth;
mod http;
mod metrics;
mod page;
mod store;

use std::net::TcpListener;
use std::process::ExitCode;

use clap::Parser;
use tollgate::core::spend::accounting_api::{BATCH_PATH, BUDGETS_PATH};

use auth::{read_token_file, Refusal, Role, Tokens};
use http::{error_json, error_json_typed, Limits, Request, Response};
use metrics::{Metrics, Operation, Outcome, Reason};
use std::time::Instant;
use store::SpendStore;

const REPORT_PATH: &str = "/v1/spend/report";
/// The spend page (HTML).
const PAGE_PATH: &str = "/spend";
/// Prometheus metrics (OpenMetrics text), open like `/health`: counts and latencies only.
const METRICS_PATH: &str = "/metrics";
/// Readiness: 200 while the store answers, 503 while it does not (`/health` is liveness only).
const READY_PATH: &str = "/ready";

/// The reference accounting server.
#[derive(Parser, Debug)]
#[command(
    name = "tollgate accounting",
    about = "The reference accounting server"
)]
struct Args {
    /// Address to listen on, e.g. 127.0.0.1:9902.
    #[arg(long)]
    listen: String,
    /// The store: a SQLite database file, or a PostgreSQL URL (`postgres://user:password@host/db`,
    /// special characters in the password percent-encoded) that several instances may share.
    /// Better given as TOLLGATE_ACCOUNTING_DB, which `ps` does not show.
    #[arg(long, env = "TOLLGATE_ACCOUNTING_DB", hide_env_values = true)]
    db: String,
    /// PostgreSQL connections this instance keeps at most.
    #[arg(long, default_value_t = 8)]
    db_pool_size: u32,
    /// A PEM file of the CA certificates the PostgreSQL server's certificate must chain to,
    /// with `sslmode=require` in --db (the server's name is verified too); without it, the
    /// Mozilla roots.
    #[arg(long)]
    db_ca_file: Option<String>,
    /// File with the writers' bearer tokens (the filters), one per line.
    #[arg(long)]
    writer_token_file: Option<String>,
    /// File with the readers' bearer tokens (report and budget polls), one per line.
    #[arg(long)]
    reader_token_file: Option<String>,
    /// Accept requests without tokens (local development only).
    #[arg(long, conflicts_with_all = ["writer_token_file", "reader_token_file"])]
    no_auth: bool,
    /// Connections served at once; more are closed at once.
    #[arg(long, default_value_t = 512)]
    max_connections: usize,
    /// On SIGTERM, how long requests in flight may take to finish.
    #[arg(long, default_value_t = 20)]
    shutdown_grace_seconds: u64,
    /// Shares of a budget (percent, comma-separated) whose crossing in a window raises one
    /// alert; empty for none.
    #[arg(long, default_value = "50,80,100")]
    alert_thresholds: String,
    /// A webhook URL each new alert (and each soft-budget threshold) is POSTed to; repeatable.
    /// Better given in a file (--alert-webhook-file), which `ps` does not show.
    #[arg(long)]
    alert_webhook: Vec<String>,
    /// A file with webhook URLs, one per line.
    #[arg(long)]
    alert_webhook_file: Option<String>,
    /// Keep events this many whole UTC days; older ones are folded into daily rollups and
    /// deleted. Totals, budget windows and grouped reports stay the same, except that a from/to
    /// inside a pruned day counts that whole day. Enable it once every instance on the database
    /// runs this version. Unset: keep all.
    #[arg(long, env = "TOLLGATE_ACCOUNTING_RETAIN_DAYS", value_parser = clap::value_parser!(u32).range(1..=36_600))]
    retain_days: Option<u32>,
    /// How often retention runs (it also runs once at start), at most weekly.
    #[arg(long, env = "TOLLGATE_ACCOUNTING_PRUNE_EVERY_SECONDS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    prune_every_seconds: u64,
}

/// Environment variable with a writer token, used when no `--writer-token-file` is given.
const WRITER_TOKEN_ENV: &str = "TOLLGATE_ACCOUNTING_WRITER_TOKEN";
/// Environment variable with a reader token, used when no `--reader-token-file` is given.
const READER_TOKEN_ENV: &str = "TOLLGATE_ACCOUNTING_READER_TOKEN";

/// The alerting settings from the arguments.
fn alerting_of(args: &Args) -> Result<alerts::Alerting, String> {
    let mut webhooks = args.alert_webhook.clone();
    if let Some(path) = &args.alert_webhook_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read --alert-webhook-file {path}: {e}"))?;
        webhooks.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    for url in &webhooks {
        alerts::delivery::check_url(url)?;
    }
    Ok(alerts::Alerting {
        percents: alerts::parse_percents(&args.alert_thresholds)?,
        webhooks,
    })
}

/// Tokens from a file, else from one environment variable (empty: none).
fn tokens_from(file: Option<&str>, env: &str) -> Result<Vec<String>, String> {
    if let Some(path) = file {
        return read_token_file(path);
    }
    match std::env::var(env) {
        Ok(token) if !token.trim().is_empty() => {
            let token = token.trim().to_string();
            if token.len() < auth::MIN_TOKEN_BYTES {
                return Err(format!(
                    "{env} is shorter than {} characters",
                    auth::MIN_TOKEN_BYTES
                ));
            }
            Ok(vec![token])
        }
        _ => Ok(Vec::new()),
    }
}

struct Server {
    tokens: Option<Tokens>,
    store: std::sync::Arc<dyn SpendStore>,
    metrics: std::sync::Arc<Metrics>,
    /// The last readiness answer and when it was found: probes (which need no token) reach
    /// the store at most once a second.
    readiness: std::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

/// How long a readiness answer is reused.
const READY_FOR: std::time::Duration = std::time::Duration::from_secs(1);

fn ready(server: &Server) -> Result<(), String> {
    let Ok(mut last) = server.readiness.lock() else {
        return Err("the readiness check is unavailable".into());
    };
    if let Some((at, answer)) = last.as_ref() {
        if at.elapsed() < READY_FOR {
            return answer.clone();
        }
    }
    let answer = timed(server, Operation::Ready, || server.store.ready());
    *last = Some((Instant::now(), answer.clone()));
    answer
}

/// Runs the server until the process is stopped.
pub fn run(args: &[String]) -> Result<ExitCode, String> {
    let args = match Args::try_parse_from(
        std::iter::once("tollgate accounting".to_string()).chain(args.iter().cloned()),
    ) {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            // --help, --version: to stdout, and a success.
            print!("{e}");
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e.to_string()),
    };
    let tokens = if args.no_auth {
        eprintln!(
            "tollgate accounting: --no-auth: anyone who can connect may write and read spend"
        );
        None
    } else {
        let writers = tokens_from(args.writer_token_file.as_deref(), WRITER_TOKEN_ENV)?;
        if writers.is_empty() {
            return Err(format!(
                "tollgate accounting needs writer tokens: --writer-token-file or {WRITER_TOKEN_ENV} \
                 (or --no-auth for local development)"
            ));
        }
        let readers = tokens_from(args.reader_token_file.as_deref(), READER_TOKEN_ENV)?;
        Some(Tokens::new(&writers, &readers))
    };
    let alerting = std::sync::Arc::new(alerting_of(&args)?);
    let options = store::DbOptions {
        pool_size: args.db_pool_size,
        ca_file: args.db_ca_file.clone(),
    };
    let store = store::open(&args.db, &options, &alerting)?;
    let metrics = std::sync::Arc::new(Metrics::new());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let deliveries = (!alerting.webhooks.is_empty()).then(|| {
        alerts::delivery::spawn(
            std::sync::Arc::clone(&store),
            std::sync::Arc::clone(&alerting),
            std::sync::Arc::clone(&metrics),
            std::sync::Arc::clone(&stop),
        )
    });
    let pruning = args.retain_days.map(|days| {
        println!("tollgate accounting: keeping events {days} days (older ones are rolled up)");
        store::retention::spawn(
            std::sync::Arc::clone(&store),
            days,
            std::time::Duration::from_secs(args.prune_every_seconds),
            std::sync::Arc::clone(&metrics),
            std::sync::Arc::clone(&stop),
        )
    });
    let server = Server {
        tokens,
        store,
        metrics,
        readiness: std::sync::Mutex::new(None),
    };
    let listener = TcpListener::bind(&args.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    println!(
        "tollgate accounting listening on {address}, database {}",
        store::describe(&args.db)
    );
    let limits = Limits {
        max_connections: args.max_connections,
        shutdown_grace: std::time::Duration::from_secs(args.shutdown_grace_seconds),
    };
    let served = http::serve(listener, limits, move |request| handle(&server, request));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for thread in [deliveries, pruning].into_iter().flatten() {
        let _ = thread.join();
    }
    served?;
    eprintln!("tollgate accounting: stopped");
    Ok(ExitCode::SUCCESS)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn role_of(method: &str, path: &str) -> Option<Role> {
    match (method, path) {
        ("POST", BATCH_PATH) => Some(Role::Writer),
        ("GET", BUDGETS_PATH) => Some(Role::Any),
        ("GET", REPORT_PATH | PAGE_PATH) => Some(Role::Reader),
        _ => None,
    }
}

fn handle(server: &Server, request: Request) -> Response {
    let started = Instant::now();
    server.metrics.in_flight(1);
    let response = route(server, &request);
    server.metrics.in_flight(-1);
    if request.path == BATCH_PATH && request.method == "POST" {
        server.metrics.batch(response.status, started.elapsed());
    }
    response
}

/// The store call `run`, timed as `operation`.
fn timed<T>(server: &Server, operation: Operation, run: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let result = run();
    server.metrics.store(operation, started.elapsed());
    result
}

fn route(server: &Server, request: &Request) -> Response {
    if let (Some(tokens), Some(role)) = (&server.tokens, role_of(&request.method, &request.path)) {
        match tokens.check(request.authorization.as_deref(), role) {
            Ok(()) => {}
            Err(Refusal::Unauthenticated) => {
                server.metrics.refused(Reason::Unauthenticated);
                let mut refused = Response::json(
                    401,
                    error_json_typed(
                        "a valid bearer token is required",
                        "authentication_error",
                        Some("invalid_token"),
                    ),
                );
                if request.path == PAGE_PATH {
                    // A browser then asks for the reader token (as the password).
                    refused
                        .headers
                        .push(("www-authenticate", "Basic realm=\"tollgate spend\""));
                }
                return refused;
            }
            Err(Refusal::Forbidden) => {
                server.metrics.refused(Reason::Forbidden);
                return Response::json(
                    403,
                    error_json_typed(
                        "this token may not do that",
                        "permission_error",
                        Some("wrong_role"),
                    ),
                );
            }
        }
    }
    let body = match &request.body {
        Ok(body) => body.as_slice(),
        Err((status, message)) => {
            server.metrics.refused(match status {
                413 => Reason::BodyTooLarge,
                408 => Reason::BodyTimeout,
                _ => Reason::BadBody,
            });
            return Response::json(*status, error_json(message));
        }
    };
    let json_body = request.content_type.as_deref().is_none_or(|kind| {
        let kind = kind
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        kind == "application/json" || kind.ends_with("+json")
    });
    if request.path == BATCH_PATH && !json_body {
        // A form a browser could submit across sites (text/plain, form data) is never a batch.
        server.metrics.refused(Reason::BadBody);
        return Response::json(415, error_json("a batch is JSON (application/json)"));
    }
    let result = match (request.method.as_str(), request.path.as_str()) {
        ("POST", BATCH_PATH) => timed(server, Operation::Ingest, || {
            server
                .store
                .ingest(body, request.batch_id.as_deref().unwrap_or(""), now())
        })
        .map(|reply| {
            server.metrics.events(Outcome::Accepted, reply.accepted);
            server.metrics.events(Outcome::Duplicate, reply.duplicates);
            server
                .metrics
                .events(Outcome::Rejected, reply.rejected.len() as u64);
            serde_json::to_string(&reply).unwrap_or_default()
        })
        .inspect_err(|(status, _)| {
            if *status == 400 {
                server.metrics.refused(Reason::BadBody);
            }
        }),
        ("GET", BUDGETS_PATH) => {
            let since = request
                .param("since")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let at = request
                .param("now")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(now);
            timed(server, Operation::Poll, || {
                server.store.budgets_since(since, at)
            })
            .map(|reply| serde_json::to_string(&reply).unwrap_or_default())
            .map_err(|e| (503, e))
        }
        ("GET", REPORT_PATH) => match store::report::parse(&request.query) {
            Err(message) => Err((400, message)),
            Ok(None) => timed(server, Operation::Report, || server.store.report())
                .map(|report| report.to_string())
                .map_err(|e| (503, e)),
            Ok(Some(query)) => {
                return match timed(server, Operation::Report, || server.store.grouped(&query)) {
                    Ok(rows) => {
                        let (body, content_type) = query.render(rows);
                        Response {
                            status: 200,
                            content_type,
                            body,
                            headers: Vec::new(),
                        }
                    }
                    Err(e) => {
                        eprintln!("tollgate accounting: {e}");
                        Response::json(
                            503,
                            error_json_typed(
                                "the store is unavailable; try again later",
                                "server_error",
                                None,
                            ),
                        )
                    }
                };
            }
        },
        ("GET", PAGE_PATH) => {
            return match timed(server, Operation::Report, || {
                page::render(server.store.as_ref(), &request.query, now())
            }) {
                Ok(body) => Response {
                    status: 200,
                    content_type: "text/html; charset=utf-8",
                    body,
                    headers: vec![
                        (
                            "content-security-policy",
                            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; \
                             form-action 'none'; base-uri 'none'",
                        ),
                        ("x-content-type-options", "nosniff"),
                        ("cache-control", "no-store"),
                    ],
                },
                Err(e) => {
                    eprintln!("tollgate accounting: {e}");
                    Response::json(
                        503,
                        error_json_typed(
                            "the store is unavailable; try again later",
                            "server_error",
                            None,
                        ),
                    )
                }
            };
        }
        ("GET", "/health") => Ok("{\"status\":\"ok\"}".to_string()),
        ("GET", READY_PATH) => match ready(server) {
            Ok(()) => Ok("{\"status\":\"ready\"}".to_string()),
            Err(e) => Err((503, e)),
        },
        ("GET", METRICS_PATH) => {
            if let Some((connections, idle)) = server.store.pool_state() {
                server.metrics.pool(connections, idle);
            }
            return Response {
                status: 200,
                content_type: metrics::CONTENT_TYPE,
                body: server.metrics.encode(),
                headers: Vec::new(),
            };
        }
        (
            _,
            BATCH_PATH | BUDGETS_PATH | REPORT_PATH | PAGE_PATH | "/health" | READY_PATH
            | METRICS_PATH,
        ) => {
            server.metrics.refused(Reason::NoRoute);
            Err((405, format!("{} is not allowed here", request.method)))
        }
        _ => {
            server.metrics.refused(Reason::NoRoute);
            Err((404, "no such route".to_string()))
        }
    };
    match result {
        Ok(body) => Response::json(200, body),
        Err((status, message)) if status >= 500 => {
            // The details (SQL errors) go to the log, not to the peer.
            eprintln!("tollgate accounting: {message}");
            let shown = if status == 503 {
                "the store is unavailable; try again later"
            } else {
                "the store failed; see the accounting server's log"
            };
            Response::json(status, error_json_typed(shown, "server_error", None))
        }
        Err((status, message)) => Response::json(status, error_json(&message)),
    }
}
