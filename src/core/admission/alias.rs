//! Step 2: resolve aliases *before* any access check.
//!
//! Order: the key's `aliases`, then its team's `model_aliases`, then the global
//! `model_group_alias`. Each layer is applied at most once, so resolution always ends.

use crate::core::config::index::{Policy, Team, VirtualKey};

/// Where an alias came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasLayer {
    /// The key's `aliases`.
    Key,
    /// The team's `model_aliases`.
    Team,
    /// The global `model_group_alias`.
    Global,
}

impl AliasLayer {
    /// Name used in explain output.
    pub fn name(self) -> &'static str {
        match self {
            AliasLayer::Key => "key alias",
            AliasLayer::Team => "team alias",
            AliasLayer::Global => "model_group_alias",
        }
    }
}

/// The model a request will really reach, and how it got there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution<'p, 'r> {
    /// The name the client sent.
    pub requested: &'r str,
    /// Each hop: the layer and the name it produced (borrowed from the policy).
    pub hops: Vec<(AliasLayer, &'p str)>,
}

impl Resolution<'_, '_> {
    /// The name after every alias layer.
    pub fn resolved(&self) -> &str {
        self.hops
            .last()
            .map_or(self.requested, |&(_, target)| target)
    }

    /// Whether any alias applied.
    pub fn is_aliased(&self) -> bool {
        !self.hops.is_empty()
    }
}

/// Applies key, team, then global aliases to `requested`.
pub fn resolve<'p, 'r>(
    policy: &'p Policy,
    key: &'p VirtualKey,
    team: Option<&'p Team>,
    requested: &'r str,
) -> Resolution<'p, 'r> {
    let mut hops: Vec<(AliasLayer, &'p str)> = Vec::new();
    let current = |hops: &[(AliasLayer, &'p str)]| hops.last().map(|&(_, t)| t);
    if let Some(target) = key.aliases.get(requested) {
        hops.push((AliasLayer::Key, target.as_str()));
    }
    let name = current(&hops).unwrap_or(requested);
    if let Some(target) = team.and_then(|t| t.aliases.get(name)) {
        hops.push((AliasLayer::Team, target.as_str()));
    }
    let name = current(&hops).unwrap_or(requested);
    if let Some(alias) = policy.global_aliases.get(name) {
        hops.push((AliasLayer::Global, alias.target.as_str()));
    }
    Resolution { requested, hops }
}

impl Policy {
    /// Applies only the global `model_group_alias` (used when validating alias targets).
    pub fn resolve_global<'a>(&'a self, name: &'a str) -> &'a str {
        self.global_aliases
            .get(name)
            .map_or(name, |a| a.target.as_str())
    }
}
