//! Who may call the accounting server: writers (the filters: batches and budget polls) and
//! readers (people and tools: the report and budget polls), by bearer token. Tokens are
//! compared by their SHA-256 digests in constant time.

use sha2::{Digest, Sha256};

/// Shortest token accepted.
pub const MIN_TOKEN_BYTES: usize = 16;

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Store spend (`POST /v1/spend/batch`).
    Writer,
    /// Read spend (`GET /v1/spend/report`).
    Reader,
    /// Either role (`GET /v1/spend/budgets`: the filters poll it, people may read it).
    Any,
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No bearer token, or one the server does not know (401).
    Unauthenticated,
    /// A known token without the role (403).
    Forbidden,
}

/// The tokens the server accepts (`None`: `--no-auth`, everything is allowed).
pub struct Tokens {
    writers: Vec<[u8; 32]>,
    readers: Vec<[u8; 32]>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads a token file: one token per non-empty line, each at least [`MIN_TOKEN_BYTES`].
pub fn read_token_file(path: &str) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let tokens: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if tokens.is_empty() {
        return Err(format!("{path} holds no token"));
    }
    if let Some(short) = tokens.iter().position(|t| t.len() < MIN_TOKEN_BYTES) {
        return Err(format!(
            "{path}: token on line {} is shorter than {MIN_TOKEN_BYTES} characters",
            short + 1
        ));
    }
    Ok(tokens)
}

impl Tokens {
    /// The accepted writer and reader tokens.
    pub fn new(writers: &[String], readers: &[String]) -> Tokens {
        Tokens {
            writers: writers.iter().map(|t| digest(t)).collect(),
            readers: readers.iter().map(|t| digest(t)).collect(),
        }
    }

    /// Checks an `authorization` header for `role`.
    /// Checks `authorization`: `Bearer <token>`, or HTTP Basic with the token as the password
    /// (any user name; what a browser sends for the spend page).
    pub fn check(&self, authorization: Option<&str>, role: Role) -> Result<(), Refusal> {
        // Basic (what a browser sends) only reads: a writer token a browser remembered could
        // otherwise post spend from any page the operator visits.
        let basic = authorization
            .filter(|_| role == Role::Reader)
            .and_then(|value| value.strip_prefix("Basic "))
            .and_then(basic_password);
        let token = authorization
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(|t| t.trim().to_string())
            .or(basic)
            .ok_or(Refusal::Unauthenticated)?;
        let token = token.as_str();
        let presented = digest(token);
        // Compare against every token, so the time does not tell which list matched.
        let writer = self
            .writers
            .iter()
            .fold(false, |m, t| m | same(t, &presented));
        let reader = self
            .readers
            .iter()
            .fold(false, |m, t| m | same(t, &presented));
        let allowed = match role {
            Role::Writer => writer,
            Role::Reader => reader,
            Role::Any => writer || reader,
        };
        match (allowed, writer || reader) {
            (true, _) => Ok(()),
            (false, true) => Err(Refusal::Forbidden),
            (false, false) => Err(Refusal::Unauthenticated),
        }
    }
}

/// The password of HTTP Basic credentials (`base64(user:password)`).
fn basic_password(encoded: &str) -> Option<String> {
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':')
        .map(|(_, password)| password.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_checked_by_token() {
        let tokens = Tokens::new(&["w".repeat(20)], &["r".repeat(20)]);
        let bearer = |t: &str| format!("Bearer {t}");
        let (w, r) = (bearer(&"w".repeat(20)), bearer(&"r".repeat(20)));
        assert_eq!(tokens.check(Some(&w), Role::Writer), Ok(()));
        assert_eq!(tokens.check(Some(&w), Role::Any), Ok(()));
        assert_eq!(
            tokens.check(Some(&w), Role::Reader),
            Err(Refusal::Forbidden)
        );
        assert_eq!(tokens.check(Some(&r), Role::Reader), Ok(()));
        assert_eq!(
            tokens.check(Some(&r), Role::Writer),
            Err(Refusal::Forbidden)
        );
        for bad in [
            None,
            Some("w"),
            Some("Basic abc"),
            Some("Bearer nope-nope-nope-nope"),
        ] {
            assert_eq!(
                tokens.check(bad, Role::Any),
                Err(Refusal::Unauthenticated),
                "{bad:?}"
            );
        }
    }
}
