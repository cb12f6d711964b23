//! Step 4: choose the deployment that serves the resolved model.
//!
//! Exact `model_name` matches win; otherwise the most specific matching wildcard deployments
//! (`anthropic/*` before `*`). The access check ([`crate::core::admission::access`]) narrows that to the
//! most specific tier holding deployments the key and team grant, and routing only chooses among
//! those. Among equals the choice is weighted random, skipping deployments whose credential
//! variable is not set in the VM.

use crate::core::affinity::mark::AffinityTag;
use crate::core::config::index::{Deployment, DeploymentId, Policy};
use crate::core::config::pattern::Pattern;
use crate::core::limits::deployment_room::{Room, UNLIMITED_ROOM};
use crate::core::limits::rules::LimitKind;

/// A model name plus its provider-qualified form, for wildcard matching.
///
/// A bare name (`claude-sonnet-4-6`) also matches `provider/*` when this version's cost map
/// puts it under that provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelTarget<'a> {
    /// The name as resolved.
    pub name: &'a str,
    /// `provider/name` for a bare name the cost map knows.
    pub qualified: Option<String>,
}

impl<'a> ModelTarget<'a> {
    /// Builds the target, looking the provider up in the policy's cost map.
    pub fn new(policy: &Policy, name: &'a str) -> Self {
        let qualified = policy
            .cost_map
            .provider_of_bare(name)
            .map(|provider| format!("{provider}/{name}"));
        ModelTarget { name, qualified }
    }

    /// Whether `pattern` matches the name or its qualified form.
    pub fn matched_by(&self, pattern: &Pattern) -> bool {
        self.capture(pattern).is_some()
    }

    /// What the first `*` of `pattern` matched, in the name or else its qualified form.
    pub fn capture(&self, pattern: &Pattern) -> Option<&str> {
        pattern
            .capture_first(self.name)
            .or_else(|| pattern.capture_first(self.qualified.as_deref()?))
    }

    /// What each `*` of `pattern` matched, in the name or else its qualified form.
    pub fn captures(&self, pattern: &Pattern) -> Option<Vec<&str>> {
        pattern
            .captures(self.name)
            .or_else(|| pattern.captures(self.qualified.as_deref()?))
    }
}

/// Where to credentials for deployments come from (the VM environment, in the filter).
pub trait Credentials {
    /// The value of environment variable `name`, if set and non-empty.
    fn get(&self, name: &str) -> Option<&str>;
}

impl Credentials for hashbrown::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        hashbrown::HashMap::get(self, name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// The chosen deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Route<'p> {
    /// The deployment.
    pub deployment: &'p Deployment,
    /// The model name the provider will see.
    pub upstream_model: String,
    /// The credential value to send upstream (None when the deployment has no `api_key_env`).
    pub credential: Option<String>,
    /// How many deployments were equally eligible.
    pub candidates: usize,
    /// How an affinity pin was honoured.
    pub pinning: Pinning,
}

/// How a request pinned by an affinity mark was routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pinning {
    /// The request carried no pin.
    Unpinned,
    /// To the deployment that produced the marked values.
    Origin,
    /// The origin is gone (or not eligible for this request); to one on its encryption boundary.
    Boundary,
    /// No eligible deployment shares the boundary: routed normally (the caller decides whether
    /// that is acceptable).
    Lost,
}

/// Why no deployment was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    /// No deployment serves this model.
    NoDeployment,
    /// Deployments exist, but none has its credential set.
    NoCredential,
    /// Every usable deployment has reached its `rpm`/`tpm` this minute.
    Full {
        /// The limit reached (of the deployment whose window resets first).
        kind: LimitKind,
        /// Seconds until the first of them has room again.
        resets_in: u64,
    },
}

impl Policy {
    /// The most specific tier of deployments serving `target`: exact first, then wildcards.
    pub fn candidates(&self, target: &ModelTarget) -> Vec<DeploymentId> {
        self.serving_tiers(target)
            .into_iter()
            .next()
            .unwrap_or_default()
    }

    /// Every deployment serving `target`, in tiers, most specific first: the exact-named
    /// deployments alone when there are any, else the matching wildcards grouped by
    /// specificity (`openai/o1*` before `openai/*` before `*`).
    pub fn serving_tiers(&self, target: &ModelTarget) -> Vec<Vec<DeploymentId>> {
        if let Some(exact) = self.exact_deployments.get(target.name) {
            return vec![exact.clone()];
        }
        let mut tiers: Vec<Vec<DeploymentId>> = Vec::new();
        let mut tier_specificity = None;
        for &id in &self.wildcard_deployments {
            let Some(pattern) = self.deployment(id).and_then(|d| d.pattern.as_ref()) else {
                continue;
            };
            if !target.matched_by(pattern) {
                continue;
            }
            match tiers.last_mut() {
                Some(tier) if tier_specificity == Some(pattern.specificity()) => tier.push(id),
                _ => {
                    tier_specificity = Some(pattern.specificity());
                    tiers.push(vec![id]);
                }
            }
        }
        tiers
    }

    /// Whether some deployment serves `name`.
    pub fn is_servable(&self, name: &str) -> bool {
        !self.candidates(&ModelTarget::new(self, name)).is_empty()
    }

    /// Chooses a deployment for `target` among `ids` (the deployments the access check
    /// granted, see [`crate::core::admission::access::Access`]); `random` is any uniformly random number.
    /// A `pin` (from an affinity mark) narrows the choice to its origin deployment, else to its
    /// encryption boundary, and only ever among the deployments that normal routing could pick
    /// here: a forged pin cannot reach anything else, nor a drained (weight 0) deployment.
    pub fn route<'p, C: Credentials + ?Sized>(
        &'p self,
        target: &ModelTarget,
        ids: &[DeploymentId],
        credentials: &C,
        random: u64,
        pin: Option<AffinityTag>,
    ) -> Result<Route<'p>, RouteError> {
        let unlimited = |_: &Deployment| Room::Left(UNLIMITED_ROOM);
        self.route_with_room(target, ids, credentials, (random, pin), &unlimited)
    }

    /// [`Policy::route`], minding each deployment's `rpm`/`tpm` as `room` reports it: a full
    /// deployment is skipped, and the rest are chosen from by weight scaled by the share of
    /// headroom each has left. When every usable deployment is full: [`RouteError::Full`].
    pub fn route_with_room<'p, C: Credentials + ?Sized>(
        &'p self,
        target: &ModelTarget,
        ids: &[DeploymentId],
        credentials: &C,
        (random, pin): (u64, Option<AffinityTag>),
        room: &dyn Fn(&Deployment) -> Room,
    ) -> Result<Route<'p>, RouteError> {
        if ids.is_empty() {
            return Err(RouteError::NoDeployment);
        }
        let all: Vec<&Deployment> = ids.iter().filter_map(|&id| self.deployment(id)).collect();
        let (eligible, pinning) = match pin {
            None => (all, Pinning::Unpinned),
            Some(pin) => {
                // A pin only chooses among what weighted routing could pick: a drained
                // (weight 0) deployment is picked only when nothing live is usable.
                let has_credential = |d: &Deployment| {
                    d.credential_env
                        .as_ref()
                        .is_none_or(|env| credentials.get(env).is_some())
                };
                let live = all.iter().any(|d| d.weight_milli > 0 && has_credential(d));
                let pinnable: Vec<&Deployment> = all
                    .iter()
                    .copied()
                    .filter(|d| !live || d.weight_milli > 0)
                    .collect();
                let origin: Vec<&Deployment> = pinnable
                    .iter()
                    .copied()
                    .filter(|d| d.affinity == pin)
                    .collect();
                let boundary: Vec<&Deployment> = pinnable
                    .iter()
                    .copied()
                    .filter(|d| d.affinity.boundary == pin.boundary)
                    .collect();
                if !origin.is_empty() {
                    (origin, Pinning::Origin)
                } else if !boundary.is_empty() {
                    (boundary, Pinning::Boundary)
                } else {
                    (all, Pinning::Lost)
                }
            }
        };
        let usable: Vec<(&Deployment, Option<&str>)> = eligible
            .into_iter()
            .filter_map(|d| match &d.credential_env {
                None => Some((d, None)),
                Some(env) => credentials.get(env).map(|value| (d, Some(value))),
            })
            .collect();
        if usable.is_empty() {
            return Err(RouteError::NoCredential);
        }
        let usable = with_room(usable, room)?;
        let (deployment, credential) =
            pick_weighted(&usable, random).ok_or(RouteError::NoCredential)?;
        Ok(Route {
            deployment,
            upstream_model: upstream_model(deployment, target),
            credential: credential.map(str::to_string),
            candidates: usable.len(),
            pinning,
        })
    }
}

/// A deployment that could serve, its credential, and its share of headroom left.
type Open<'p, 'c> = (&'p Deployment, Option<&'c str>, u64);

/// The usable deployments that are not full, each with its share of headroom left (per
/// mille; 1000 for a deployment without limits).
fn with_room<'p, 'c>(
    usable: Vec<(&'p Deployment, Option<&'c str>)>,
    room: &dyn Fn(&Deployment) -> Room,
) -> Result<Vec<Open<'p, 'c>>, RouteError> {
    if usable.len() == 1 || usable.iter().all(|(d, _)| d.limits.is_none()) {
        // All alike: the weights alone decide, exactly as configured. A lone candidate is not
        // read either: there is no choice to make, and its counters refuse it if it is full
        // (two shared-data reads fewer per request).
        return Ok(usable.into_iter().map(|(d, c)| (d, c, 1)).collect());
    }
    let mut soonest: Option<(LimitKind, u64)> = None;
    let mut open = Vec::with_capacity(usable.len());
    for (d, credential) in usable {
        match room(d) {
            Room::Left(left) => open.push((d, credential, u64::from(left))),
            Room::Full { kind, resets_in } => {
                if soonest.is_none_or(|(_, at)| resets_in < at) {
                    soonest = Some((kind, resets_in));
                }
            }
        }
    }
    if open.is_empty() {
        let (kind, resets_in) = soonest.unwrap_or((LimitKind::Rpm, 1));
        return Err(RouteError::Full { kind, resets_in });
    }
    Ok(open)
}

/// A weighted random choice: each deployment's weight scaled by its share of headroom left,
/// so traffic leans to the deployments with room while weights keep their meaning.
fn pick_weighted<'p, 'c>(
    usable: &[Open<'p, 'c>],
    random: u64,
) -> Option<(&'p Deployment, Option<&'c str>)> {
    let weight = |d: &Deployment, room: u64| d.weight_milli.saturating_mul(room.max(1));
    let total: u64 = usable
        .iter()
        .map(|(d, _, room)| weight(d, *room))
        .fold(0, u64::saturating_add);
    if total == 0 {
        // Every candidate is drained (weight 0): fall back to uniform choice rather than fail.
        let len = u64::try_from(usable.len()).ok().filter(|&n| n > 0)?;
        let (d, credential, _) = usable.get(usize::try_from(random % len).ok()?).copied()?;
        return Some((d, credential));
    }
    let mut point = random % total;
    for &(d, credential, room) in usable {
        let w = weight(d, room);
        if point < w {
            return Some((d, credential));
        }
        point -= w;
    }
    None
}

/// The model name the provider sees: the deployment's upstream model, with a wildcard filled
/// from what the request's name matched and a duplicated provider prefix removed.
pub fn upstream_model(deployment: &Deployment, target: &ModelTarget) -> String {
    let Some(pattern) = &deployment.pattern else {
        return deployment.upstream_model.clone();
    };
    if !deployment.upstream_model.contains('*') {
        return deployment.upstream_model.clone();
    }
    let captures = target
        .captures(pattern)
        .unwrap_or_else(|| vec![target.name]);
    // Fewer stars upstream than in model_name (`*meta.llama3*` → `bedrock/meta.llama3*`): the
    // upstream's stars take the last captures, as LiteLLM documents (`hello-meta.llama3-70b` →
    // `meta.llama3-70b`).
    let stars = deployment.upstream_model.matches('*').count();
    let captures = &captures[captures.len().saturating_sub(stars)..];
    let filled = Pattern::substitute(&deployment.upstream_model, captures);
    match filled.strip_prefix(deployment.provider.as_str()) {
        Some(rest) if rest.starts_with('/') => rest[1..].to_string(),
        _ => filled,
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::core::compile;
    use hashbrown::HashMap;

    fn policy() -> Policy {
        compile(
            br#"{"version":"v1","cost_map":{"claude-x":{"litellm_provider":"anthropic"},
                                          "gpt-4o":{"litellm_provider":"openai"}},
              "model_list":[
                {"model_name":"gpt-4o","litellm_params":{"model":"openai/gpt-4o","api_key_env":"K_A"},"cluster":"a","model_info":{"id":"a"}},
                {"model_name":"gpt-4o","litellm_params":{"model":"openai/gpt-4o","api_key_env":"K_B","weight":3},"cluster":"b","model_info":{"id":"b"}},
                {"model_name":"anthropic/*","litellm_params":{"model":"anthropic/*"},"cluster":"anthropic"},
                {"model_name":"*","litellm_params":{"model":"openai/*"},"cluster":"fallback"}]}"#,
        )
        .unwrap()
    }

    fn route_to<'p>(
        p: &'p Policy,
        target: &ModelTarget,
        c: &HashMap<String, String>,
        random: u64,
        pin: Option<AffinityTag>,
    ) -> Result<Route<'p>, RouteError> {
        p.route(target, &p.candidates(target), c, random, pin)
    }

    #[test]
    fn every_star_is_filled_as_litellm_fills_it() {
        // Phase 2 · 3/5 item 11, LiteLLM's own examples (pattern_match_deployments.py).
        let p = compile(
            br#"{"version":"v1","model_list":[
                {"model_name":"llmengine/fo::*::static::*","litellm_params":{"model":"openai/fo::*::static::*"},"cluster":"o"},
                {"model_name":"*meta.llama3*","litellm_params":{"model":"bedrock/meta.llama3*"},"cluster":"b"}]}"#,
        )
        .unwrap();
        let upstream = |name: &str| {
            let target = ModelTarget::new(&p, name);
            route_to(&p, &target, &creds(&[]), 0, None).map(|r| r.upstream_model)
        };
        assert_eq!(
            upstream("llmengine/fo::bar::static::baz").unwrap(),
            "fo::bar::static::baz"
        );
        assert_eq!(
            upstream("hello-world-meta.llama3-70b").unwrap(),
            "meta.llama3-70b"
        );
    }

    fn creds(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn exact_deployment_wins_over_wildcards() {
        let p = policy();
        let c = creds(&[("K_A", "a"), ("K_B", "b")]);
        let route = route_to(&p, &ModelTarget::new(&p, "gpt-4o"), &c, 0, None).unwrap();
        assert_eq!(route.deployment.cluster, "a");
        assert_eq!(route.upstream_model, "gpt-4o");
        assert_eq!(route.candidates, 2);
    }

    #[test]
    fn weights_split_traffic_among_equals() {
        let p = policy();
        let c = creds(&[("K_A", "a"), ("K_B", "b")]);
        let target = ModelTarget::new(&p, "gpt-4o");
        let to_b = (0..4000u64)
            .filter(|r| {
                route_to(&p, &target, &c, *r, None)
                    .unwrap()
                    .deployment
                    .cluster
                    == "b"
            })
            .count();
        assert_eq!(to_b, 3000);
    }

    #[test]
    fn deployments_without_their_credential_are_skipped() {
        let p = policy();
        let only_b = creds(&[("K_B", "b")]);
        let target = ModelTarget::new(&p, "gpt-4o");
        for r in 0..10 {
            let route = route_to(&p, &target, &only_b, r, None).unwrap();
            assert_eq!(
                (
                    route.deployment.cluster.as_str(),
                    route.credential.as_deref()
                ),
                ("b", Some("b"))
            );
        }
        assert_eq!(
            route_to(&p, &target, &creds(&[]), 0, None),
            Err(RouteError::NoCredential)
        );
    }

    #[test]
    fn bare_name_reaches_provider_wildcard_through_the_cost_map() {
        let p = policy();
        let route = route_to(&p, &ModelTarget::new(&p, "claude-x"), &creds(&[]), 0, None).unwrap();
        assert_eq!(route.deployment.cluster, "anthropic");
        assert_eq!(route.upstream_model, "claude-x");
        let prefixed = route_to(
            &p,
            &ModelTarget::new(&p, "anthropic/claude-new"),
            &creds(&[]),
            0,
            None,
        )
        .unwrap();
        assert_eq!(prefixed.upstream_model, "claude-new");
    }

    #[test]
    fn unknown_bare_name_falls_to_catch_all_not_to_provider_wildcard() {
        let p = policy();
        let route = route_to(
            &p,
            &ModelTarget::new(&p, "claude-unknown"),
            &creds(&[]),
            0,
            None,
        )
        .unwrap();
        assert_eq!(route.deployment.cluster, "fallback");
        assert_eq!(route.upstream_model, "claude-unknown");
        let dup = route_to(&p, &ModelTarget::new(&p, "openai/o9"), &creds(&[]), 0, None).unwrap();
        assert_eq!(dup.upstream_model, "o9");
    }

    #[test]
    fn nothing_serves_a_name_without_catch_all() {
        let p = compile(
            br#"{"version":"v1","model_list":[{"model_name":"anthropic/*","litellm_params":{"model":"anthropic/*"},"cluster":"a"}]}"#,
        )
        .unwrap();
        assert_eq!(
            route_to(&p, &ModelTarget::new(&p, "gpt-4o"), &creds(&[]), 0, None),
            Err(RouteError::NoDeployment)
        );
    }

    #[test]
    fn a_pin_routes_to_its_origin_then_its_boundary_and_never_outside_the_candidates() {
        let p = policy();
        let c = creds(&[("K_A", "a"), ("K_B", "b")]);
        let target = ModelTarget::new(&p, "gpt-4o");
        let b = p.deployments[1].affinity;
        for r in 0..50 {
            let route = route_to(&p, &target, &c, r, Some(b)).unwrap();
            assert_eq!(
                (route.deployment.cluster.as_str(), route.pinning),
                ("b", Pinning::Origin)
            );
        }
        // The origin left the config, but a deployment on the same credential remains.
        let gone = AffinityTag::new("b-old", "cred:K_B");
        let route = route_to(&p, &target, &c, 0, Some(gone)).unwrap();
        assert_eq!(
            (route.deployment.cluster.as_str(), route.pinning),
            ("b", Pinning::Boundary)
        );
        // A pin to a deployment that does not serve this model (here: the anthropic wildcard)
        // is never followed there.
        let elsewhere = p.deployments[2].affinity;
        let route = route_to(&p, &target, &c, 0, Some(elsewhere)).unwrap();
        assert_eq!(route.pinning, Pinning::Lost);
        assert!(["a", "b"].contains(&route.deployment.cluster.as_str()));
        // The pinned origin without its credential is 503, not a silent move elsewhere.
        let only_a = creds(&[("K_A", "a")]);
        assert_eq!(
            route_to(&p, &target, &only_a, 0, Some(b)),
            Err(RouteError::NoCredential)
        );
    }

    #[test]
    fn every_star_of_a_wildcard_upstream_is_filled() {
        let p = compile(
            br#"{"version":"v1","model_list":[
                {"model_name":"bedrock/*.anthropic.*","litellm_params":{"model":"bedrock/*.anthropic.*-v1:0"},"cluster":"b"}]}"#,
        )
        .unwrap();
        let target = ModelTarget::new(&p, "bedrock/eu.anthropic.claude-3");
        let route = route_to(&p, &target, &creds(&[]), 0, None).unwrap();
        assert_eq!(route.upstream_model, "eu.anthropic.claude-3-v1:0");
    }

    #[test]
    fn a_pin_never_picks_a_drained_deployment_that_weighted_routing_would_skip() {
        let p = compile(
            br#"{"version":"v1","model_list":[
                {"model_name":"m","litellm_params":{"model":"openai/m","api_key_env":"K_LIVE"},"cluster":"live","model_info":{"id":"live"}},
                {"model_name":"m","litellm_params":{"model":"openai/m","api_key_env":"K_DRAINED","weight":0},"cluster":"drained","model_info":{"id":"drained"}}]}"#,
        )
        .unwrap();
        let target = ModelTarget::new(&p, "m");
        let c = creds(&[("K_LIVE", "l"), ("K_DRAINED", "d")]);
        let drained = p.deployments[1].affinity;
        for r in 0..20 {
            assert_eq!(
                route_to(&p, &target, &c, r, None)
                    .unwrap()
                    .deployment
                    .cluster,
                "live"
            );
            let pinned = route_to(&p, &target, &c, r, Some(drained)).unwrap();
            assert_eq!(
                (pinned.deployment.cluster.as_str(), pinned.pinning),
                ("live", Pinning::Lost)
            );
        }
        // With nothing live usable, weighted routing falls back to the drained one, and so may a pin.
        let only_drained = creds(&[("K_DRAINED", "d")]);
        let pinned = route_to(&p, &target, &only_drained, 0, Some(drained)).unwrap();
        assert_eq!(
            (pinned.deployment.cluster.as_str(), pinned.pinning),
            ("drained", Pinning::Origin)
        );
    }
}
