//! Step 1: authenticate the virtual key and its team.

use crate::core::admission::denial::Denial;
use crate::core::admission::request::{CredentialProblem, RequestHead};
use crate::core::config::index::{KeyId, Policy, Team, VirtualKey};
use crate::core::config::key_hash;
use crate::core::config::time::format_rfc3339;

/// A key that passed authentication.
#[derive(Debug, Clone, Copy)]
pub struct Authenticated<'p> {
    /// Index of the key in the policy (stable for the policy's lifetime).
    pub key_id: KeyId,
    /// The key.
    pub key: &'p VirtualKey,
    /// The key's team, if any.
    pub team: Option<&'p Team>,
}

/// Finds the key by SHA-256 and refuses missing, malformed, unknown, blocked and expired keys
/// and keys of blocked teams. `now` is Unix seconds.
pub fn authenticate<'p>(
    policy: &'p Policy,
    head: &RequestHead,
    now: i64,
) -> Result<Authenticated<'p>, Denial> {
    let raw = head.credential().map_err(|problem| match problem {
        CredentialProblem::Missing => Denial::MissingKey,
        CredentialProblem::Malformed => Denial::MalformedKey,
    })?;
    let digest = key_hash::digest(raw);
    let key_id = *policy.key_index.get(&digest).ok_or(Denial::UnknownKey)?;
    let key = policy.keys.get(key_id as usize).ok_or(Denial::UnknownKey)?;
    if !key_hash::constant_time_eq(&key.digest, &digest) {
        return Err(Denial::UnknownKey);
    }
    if key.blocked {
        return Err(Denial::KeyBlocked);
    }
    if let Some(expires_at) = key.expires_at {
        if now >= expires_at {
            return Err(Denial::KeyExpired {
                expired_at: format_rfc3339(expires_at),
            });
        }
    }
    let team = key.team.and_then(|t| policy.team(t));
    if let Some(team) = team {
        if team.blocked {
            return Err(Denial::TeamBlocked {
                team: team.display_name().to_string(),
            });
        }
    }
    Ok(Authenticated { key_id, key, team })
}
