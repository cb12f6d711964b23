//! Connecting to PostgreSQL: the `--db` string read as rust-postgres reads it, a log name built
//! from the parsed config (never the raw string, which holds the password), the first
//! connection waited for (but not a wrong password or a missing database), the database's
//! encoding checked, and a pool whose connections time out instead of hanging.
//!
//! TLS: `sslmode=require` connects over TLS (rustls) and verifies the server's certificate
//! chain and name, as libpq's `verify-full` does, against `--db-ca-file` (PEM) or else the
//! Mozilla roots. Any other `sslmode` (the default `prefer` included) connects in plain text:
//! a connection that would quietly fall back to plain text is not offered.

use std::time::{Duration, Instant};

use postgres::config::{Host, SslMode};
use postgres::error::SqlState;
use postgres::{Client, Config};
use r2d2_postgres::r2d2::{CustomizeConnection, Pool};
use r2d2_postgres::PostgresConnectionManager;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::postgres::described;

/// The pool's connection manager (TLS used only with `sslmode=require`).
pub type Manager = PostgresConnectionManager<MakeRustlsConnect>;

/// How to reach the database: its parsed config and the TLS connector.
#[derive(Clone)]
pub struct Target {
    /// The connection settings.
    pub config: Config,
    /// The TLS connector (unused unless `sslmode=require`).
    pub tls: MakeRustlsConnect,
}

/// The TLS connector: roots from `ca_file` (PEM certificates), else the Mozilla roots.
fn connector(ca_file: Option<&str>) -> Result<MakeRustlsConnect, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read --db-ca-file {path}: {e}"))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("--db-ca-file {path}: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("--db-ca-file {path}: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("--db-ca-file {path} holds no certificate"));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// How long the first connection may take at start (a fleet may start before its database).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request waits for a free pooled connection.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);
/// Each connection's session settings. A lock held by an instance that froze inside a batch
/// (paused, partitioned) fails the other instances' batches after 5 s, which their senders
/// retry, instead of holding every pool for as long as TCP takes to notice; a transaction
/// left idle is ended after 15 s so that its locks go.
const SESSION: &str = "SET lock_timeout = '5s'; SET idle_in_transaction_session_timeout = '15s'";

/// Parses `--db` (and reads `--db-ca-file` when TLS is asked for).
pub fn parse(db: &str, ca_file: Option<&str>) -> Result<Target, String> {
    let mut config = parse_config(db)?;
    if config.get_ssl_mode() != SslMode::Require {
        if ca_file.is_some() {
            return Err("--db-ca-file needs sslmode=require in --db".into());
        }
        // `prefer` would try TLS and fail on any certificate it cannot verify: plain text it is.
        config.ssl_mode(SslMode::Disable);
    }
    Ok(Target {
        config,
        tls: connector(ca_file)?,
    })
}

/// The settings of `--db`, with a connect timeout and keepalives.
pub fn parse_config(db: &str) -> Result<Config, String> {
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
    let tls = if config.get_ssl_mode() == SslMode::Require {
        " (TLS)"
    } else {
        ""
    };
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
        "postgres://{}@{}/{}{tls}",
        config.get_user().unwrap_or("-"),
        hosts.join(","),
        config.get_dbname().unwrap_or("-")
    )
}

/// A first connection: retried for up to 30 s while the server is not there, refused at once
/// when it answers that the password, the role or the database is wrong.
pub fn first_connection(target: &Target) -> Result<Client, String> {
    let name = display(&target.config);
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match target.config.connect(target.tls.clone()) {
            Ok(client) => return Ok(client),
            Err(e) => {
                let message = explained(&e);
                // A certificate refused or a server without TLS does not get better by waiting.
                let tls = message.contains("TLS");
                let permanent = tls
                    || e.code().is_some_and(|c| {
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
pub fn pool(target: Target, size: u32) -> Pool<Manager> {
    Pool::builder()
        .max_size(size.max(1))
        .min_idle(Some(1))
        .connection_timeout(CHECKOUT_TIMEOUT)
        .connection_customizer(Box::new(Session))
        .build_unchecked(PostgresConnectionManager::new(target.config, target.tls))
}
