//! Connecting to PostgreSQL: the `--db` string read as rust-postgres reads it, a log name built
//! from the parsed config (never the raw string, which holds the password), the first
//! connection waited for (but not a wrong password or a missing database), the database's
//! encoding checked, and a pool whose connections time out instead of hanging.

use std::time::{Duration, Instant};

use postgres::config::{Host, SslMode};
use postgres::error::SqlState;
use postgres::{Client, Config, NoTls};
use r2d2_postgres::r2d2::{CustomizeConnection, Pool};
use r2d2_postgres::PostgresConnectionManager;

use super::postgres::described;

/// The pool's connection manager.
pub type Manager = PostgresConnectionManager<NoTls>;

/// How long the first connection may take at start (a fleet may start before its database).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request waits for a free pooled connection.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);
/// Each connection's session settings. A lock held by an instance that froze inside a batch
/// (paused, partitioned) fails the other instances' batches after 5 s, which their senders
/// retry, instead of holding every pool for as long as TCP takes to notice; a transaction
/// left idle is ended after 15 s so that its locks go.
const SESSION: &str = "SET lock_timeout = '5s'; SET idle_in_transaction_session_timeout = '15s'";

/// Parses `--db`; refuses what this build cannot do (TLS).
pub fn parse(db: &str) -> Result<Config, String> {
    let db = db.trim();
    // The scheme in any case (rust-postgres reads only the lowercase one).
    let lowered = ["postgresql://", "postgres://"].iter().find_map(|scheme| {
        db.get(..scheme.len())
            .filter(|head| head.eq_ignore_ascii_case(scheme))
            .map(|_| format!("{scheme}{}", &db[scheme.len()..]))
    });
    let mut config: Config = lowered
        .as_deref()
        .unwrap_or(db)
        .parse()
        .map_err(|e| format!("--db is not a PostgreSQL connection string or URL: {e}"))?;
    if config.get_ssl_mode() == SslMode::Require {
        return Err(
            "--db asks for TLS (sslmode=require), which this build of tollgate does not speak: \
             reach PostgreSQL on a private network or through a local TLS tunnel"
                .into(),
        );
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    if config.get_keepalives_idle() > Duration::from_secs(30) {
        config.keepalives_idle(Duration::from_secs(30));
    }
    Ok(config)
}

/// `user@host:port/database`, for log lines: no password, whatever the string looked like.
pub fn display(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(host, port)| match host {
            Host::Tcp(name) => format!("{name}:{port}"),
            Host::Unix(path) => format!("{}:{port}", path.display()),
        })
        .collect();
    format!(
        "postgres://{}@{}/{}",
        config.get_user().unwrap_or("-"),
        hosts.join(","),
        config.get_dbname().unwrap_or("-")
    )
}

/// A first connection: retried for up to 30 s while the server is not there, refused at once
/// when it answers that the password, the role or the database is wrong.
pub fn first_connection(config: &Config) -> Result<Client, String> {
    let name = display(config);
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match config.connect(NoTls) {
            Ok(client) => return Ok(client),
            Err(e) => {
                let message = explained(&e);
                let permanent = e.code().is_some_and(|c| {
                    *c == SqlState::INVALID_PASSWORD
                        || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                        || *c == SqlState::INVALID_CATALOG_NAME
                });
                if permanent || Instant::now() >= deadline {
                    return Err(format!("cannot connect to {name}: {message}"));
                }
                eprintln!("tollgate accounting: waiting for {name}: {message}");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// An error with its causes (`error connecting to server: Connection refused (os error 111)`).
fn explained(e: &postgres::Error) -> String {
    if e.as_db_error().is_some() {
        return described(e);
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Refuses a database that is not UTF-8: any text a client sends (an end user's name) could
/// otherwise fail a whole batch.
pub fn check_encoding(client: &mut Client) -> Result<(), String> {
    let encoding: String = client
        .query_one("SHOW server_encoding", &[])
        .map_err(|e| format!("cannot read the database's encoding: {}", described(&e)))?
        .get(0);
    if encoding.eq_ignore_ascii_case("UTF8") {
        Ok(())
    } else {
        Err(format!(
            "the database's encoding is {encoding}: Tollgate needs UTF8 \
             (CREATE DATABASE … ENCODING 'UTF8' TEMPLATE template0)"
        ))
    }
}

#[derive(Debug)]
struct Session;

impl CustomizeConnection<Client, postgres::Error> for Session {
    fn on_acquire(&self, client: &mut Client) -> Result<(), postgres::Error> {
        client.batch_execute(SESSION)
    }
}

/// The pool of `size` connections.
pub fn pool(config: Config, size: u32) -> Pool<Manager> {
    Pool::builder()
        .max_size(size.max(1))
        .min_idle(Some(1))
        .connection_timeout(CHECKOUT_TIMEOUT)
        .connection_customizer(Box::new(Session))
        .build_unchecked(PostgresConnectionManager::new(config, NoTls))
}
