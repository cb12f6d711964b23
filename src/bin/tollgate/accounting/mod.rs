//! `tollgate accounting --listen 127.0.0.1:PORT --db PATH|postgres://… --writer-token-file F [--reader-token-file F]`:
//! the reference accounting server (tokens may also come from `TOLLGATE_ACCOUNTING_WRITER_TOKEN`
//! and `TOLLGATE_ACCOUNTING_READER_TOKEN`; `--no-auth` for local development only).
//!
//! It implements `docs/accounting-api.md`: takes batches of spend events from authenticated
//! writers, validates each event, stores them durably (deduplicated by event id) in SQLite or in a
//! PostgreSQL database several instances share, keeps totals per budget window, answers each
//! batch event by event with the totals it touched, serves changed totals to polling filters,
//! and a spend report for people.

mod auth;
mod http;
mod store;

use std::net::TcpListener;
use std::process::ExitCode;

use clap::Parser;
use tollgate::core::spend::accounting_api::{BATCH_PATH, BUDGETS_PATH};

use auth::{read_token_file, Refusal, Role, Tokens};
use http::{error_json, error_json_typed, Limits, Request, Response};
use store::SpendStore;

const REPORT_PATH: &str = "/v1/spend/report";
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
    /// The store: a SQLite database file, or a PostgreSQL URL (`postgres://user:password@host/db`)
    /// that several instances may share.
    #[arg(long)]
    db: String,
    /// PostgreSQL connections this instance keeps at most.
    #[arg(long, default_value_t = 8)]
    db_pool_size: u32,
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
}

/// Environment variable with a writer token, used when no `--writer-token-file` is given.
const WRITER_TOKEN_ENV: &str = "TOLLGATE_ACCOUNTING_WRITER_TOKEN";
/// Environment variable with a reader token, used when no `--reader-token-file` is given.
const READER_TOKEN_ENV: &str = "TOLLGATE_ACCOUNTING_READER_TOKEN";

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
    store: Box<dyn SpendStore>,
}

/// Runs the server until the process is stopped.
pub fn run(args: &[String]) -> Result<ExitCode, String> {
    let args = Args::try_parse_from(
        std::iter::once("tollgate accounting".to_string()).chain(args.iter().cloned()),
    )
    .map_err(|e| e.to_string())?;
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
    let store = store::open(&args.db, args.db_pool_size)?;
    let server = Server { tokens, store };
    let listener = TcpListener::bind(&args.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    println!(
        "tollgate accounting listening on {address}, database {}",
        store::redacted(&args.db)
    );
    let limits = Limits {
        max_connections: args.max_connections,
    };
    http::serve(listener, limits, move |request| handle(&server, request))?;
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
        ("GET", REPORT_PATH) => Some(Role::Reader),
        _ => None,
    }
}

fn handle(server: &Server, request: Request) -> Response {
    if let (Some(tokens), Some(role)) = (&server.tokens, role_of(&request.method, &request.path)) {
        match tokens.check(request.authorization.as_deref(), role) {
            Ok(()) => {}
            Err(Refusal::Unauthenticated) => {
                return Response {
                    status: 401,
                    body: error_json_typed(
                        "a valid bearer token is required",
                        "authentication_error",
                        Some("invalid_token"),
                    ),
                }
            }
            Err(Refusal::Forbidden) => {
                return Response {
                    status: 403,
                    body: error_json_typed(
                        "this token may not do that",
                        "permission_error",
                        Some("wrong_role"),
                    ),
                }
            }
        }
    }
    let result = match (request.method.as_str(), request.path.as_str()) {
        ("POST", BATCH_PATH) => server
            .store
            .ingest(
                &request.body,
                request.batch_id.as_deref().unwrap_or(""),
                now(),
            )
            .map(|reply| serde_json::to_string(&reply).unwrap_or_default()),
        ("GET", BUDGETS_PATH) => {
            let since = request
                .param("since")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let at = request
                .param("now")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(now);
            server
                .store
                .budgets_since(since, at)
                .map(|reply| serde_json::to_string(&reply).unwrap_or_default())
                .map_err(|e| (503, e))
        }
        ("GET", REPORT_PATH) => server
            .store
            .report()
            .map(|report| report.to_string())
            .map_err(|e| (503, e)),
        ("GET", "/health") => Ok("{\"status\":\"ok\"}".to_string()),
        ("GET", READY_PATH) => match server.store.ready() {
            Ok(()) => Ok("{\"status\":\"ready\"}".to_string()),
            Err(e) => Err((503, e)),
        },
        (_, BATCH_PATH | BUDGETS_PATH | REPORT_PATH | "/health" | READY_PATH) => {
            Err((405, format!("{} is not allowed here", request.method)))
        }
        _ => Err((404, "no such route".to_string())),
    };
    match result {
        Ok(body) => Response { status: 200, body },
        Err((status, message)) => {
            if status >= 500 {
                eprintln!("tollgate accounting: {message}");
            }
            Response {
                status,
                body: error_json(&message),
            }
        }
    }
}
