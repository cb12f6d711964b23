//! `tollgate accounting --listen 127.0.0.1:PORT --db PATH`: the reference accounting server.
//!
//! It implements `docs/accounting-api.md`: takes batches of spend events, stores them durably in
//! SQLite (deduplicated by event id), keeps totals per budget window, answers each batch with the
//! totals it touched, serves changed totals to polling filters, and a spend report for people.

mod http;
mod store;

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Mutex;

use tollgate::policy::accounting_api::{BATCH_PATH, BUDGETS_PATH};

use http::{error_json, Request, Response};
use store::Store;

const USAGE: &str = "usage: tollgate accounting --listen 127.0.0.1:PORT --db PATH";

/// Runs the server until the process is stopped.
pub fn run(args: &[String]) -> Result<ExitCode, String> {
    let (mut listen, mut db) = (None, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--listen" => listen = it.next().cloned(),
            "--db" => db = it.next().cloned(),
            _ => return Err(USAGE.to_string()),
        }
    }
    let (Some(listen), Some(db)) = (listen, db) else {
        return Err(USAGE.to_string());
    };
    let store = Mutex::new(Store::open(&db)?);
    let listener =
        TcpListener::bind(&listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    println!("tollgate accounting listening on {address}, database {db}");
    http::serve(listener, move |request| handle(&store, request));
    Ok(ExitCode::SUCCESS)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn handle(store: &Mutex<Store>, request: Request) -> Response {
    let Ok(mut store) = store.lock() else {
        return Response {
            status: 500,
            body: error_json("the store is unavailable"),
        };
    };
    let result = match (request.method.as_str(), request.path.as_str()) {
        ("POST", BATCH_PATH) => store
            .ingest(&request.body, now())
            .map(|reply| serde_json::to_string(&reply).unwrap_or_default())
            .map_err(|e| (400, e)),
        ("GET", BUDGETS_PATH) => {
            let since = request
                .param("since")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let at = request
                .param("now")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(now);
            store
                .budgets_since(since, at)
                .map(|reply| serde_json::to_string(&reply).unwrap_or_default())
                .map_err(|e| (500, e))
        }
        ("GET", "/v1/spend/report") => store
            .report()
            .map(|report| report.to_string())
            .map_err(|e| (500, e)),
        ("GET", "/health") => Ok("{\"status\":\"ok\"}".to_string()),
        (_, BATCH_PATH | BUDGETS_PATH | "/v1/spend/report" | "/health") => {
            Err((405, format!("{} is not allowed here", request.method)))
        }
        _ => Err((404, format!("no route for {}", request.path))),
    };
    match result {
        Ok(body) => Response { status: 200, body },
        Err((status, message)) => {
            if status == 500 {
                eprintln!("tollgate accounting: {message}");
            }
            Response {
                status,
                body: error_json(&message),
            }
        }
    }
}
