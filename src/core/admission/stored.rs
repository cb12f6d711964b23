//! Stored responses: `GET` / `DELETE /v1/responses/{id}` and `GET …/{id}/input_items`.
//!
//! The id in the path is one this gateway marked: its affinity mark, sealed to the caller's
//! tenant, names the deployment that created the response. The request goes to that deployment
//! (else one on its encryption boundary, which holds the same stored state) with the original
//! id, and only when the key and its team may still use a model that deployment serves: one
//! named by the deployment itself or by their allow-lists, checked by the same access rule as a
//! request. An id not sealed for this tenant (another tenant's, raw, forged) is 404 as the
//! provider answers an unknown id; a damaged mark is 400. Reading costs nothing at the provider
//! (the response's usage was charged when it was made), so nothing is reserved or metered, but a
//! used-up budget still refuses it, as LiteLLM checks budgets on every model route, and it
//! counts on the key's and team's request limits (it is a call to the provider).

use crate::core::admission::access::{check_access, Access};
use crate::core::admission::alias::resolve;
use crate::core::admission::decide::{
    tenant_seal, Admission, BodyTicket, MeteringPlan, Surroundings, Trace,
};
use crate::core::admission::denial::Denial;
use crate::core::admission::routing::{Credentials, ModelTarget, Pinning, RouteError};
use crate::core::affinity::mark::{unmark_id, AffinityTag, MarkWith, Reading, MAX_MARKED_ID};
use crate::core::config::index::{Deployment, Policy, Team, VirtualKey};
use crate::core::limits::hold::{reserve_limits, LimitHold, RateView};
use crate::core::limits::lines::applicable_limits;
use crate::core::money::budget::{applicable_budgets, Reached};
use crate::core::money::cost::ServiceTier;
use crate::core::money::reservation::{check_room, nothing_reserved};

/// Decides a stored-response request (its body must be empty).
pub(crate) fn decide_stored<'p, C: Credentials + ?Sized>(
    policy: &'p Policy,
    ticket: &BodyTicket,
    body: &[u8],
    around: &Surroundings<'_, C>,
    trace: &mut Trace<'p>,
) -> Result<Admission<'p>, Denial> {
    if body.iter().any(|b| !b.is_ascii_whitespace()) {
        return Err(Denial::InvalidRequest {
            code: "unexpected_body",
            message: "This endpoint takes no request body.".into(),
        });
    }
    let not_found = || Denial::ResponseStateNotFound {
        param: "response_id",
    };
    let id = ticket.path.response_id.as_deref().unwrap_or_default();
    if !id.starts_with("resp_") || id.len() > MAX_MARKED_ID {
        return Err(not_found()); // never an id this gateway issued
    }
    let seal = tenant_seal(policy, trace.key, trace.team, around.credentials)
        .ok_or(Denial::AffinitySecretUnavailable)?;
    let (original, pin) = match unmark_id(id, &seal) {
        Ok(Reading::Sealed(original, pin)) => (original, pin),
        Ok(Reading::Plain | Reading::Foreign) => return Err(not_found()),
        Err(_) => return Err(Denial::InvalidAffinityMark),
    };
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
    if !original.bytes().all(plain) {
        return Err(not_found()); // only a plain id goes into a path
    }
    let (name, access) = granted(policy, trace.key, trace.team, pin)?;
    let resolution = resolve(policy, trace.key, trace.team, name);
    trace.requested = Some(name.to_string());
    trace.hops = resolution.hops.clone();
    trace.resolved = Some(resolution.resolved().to_string());
    trace.grants = Some(access.grants);
    let target = ModelTarget::new(policy, resolution.resolved());
    let route = policy
        .route(
            &target,
            &access.deployments,
            around.credentials,
            around.random,
            Some(pin),
        )
        .map_err(|e| match e {
            RouteError::NoDeployment => Denial::AffinityUnavailable,
            RouteError::NoCredential => Denial::CredentialUnavailable,
            // Stored reads go through `route`, which never finds a deployment full.
            RouteError::Full { .. } => Denial::AffinityUnavailable,
        })?;
    trace.candidates = route.candidates;
    trace.pinning = route.pinning;
    if route.pinning == Pinning::Lost {
        return Err(Denial::AffinityUnavailable);
    }
    let lines = applicable_budgets(policy, (trace.key, trace.team), None, None, around.now);
    check_room(around.ledgers, &lines, around.now)?;
    // A read reaches the provider: it counts on the tenant's request limits and holds a slot
    // in flight (no tokens; the deployment's capacity is for generating, not reading).
    let reached = Reached {
        model: resolution.resolved(),
        deployment: route.deployment,
    };
    let limit_lines = applicable_limits(
        policy,
        (trace.key, trace.team),
        None,
        (name, Some(reached)),
        around.now,
    );
    let (limits, rate_view) = if limit_lines.is_empty() {
        (LimitHold::default(), RateView::default())
    } else {
        let ttl = policy.spending.reservation_ttl_seconds;
        reserve_limits(around.ledgers, limit_lines, 0, ttl, around.now)?
    };
    let credential = route
        .credential
        .as_deref()
        .map(|value| super::decide::credential_header(&route.deployment.provider, value));
    Ok(Admission {
        deployment: route.deployment,
        resolved_model: resolution.resolved().to_string(),
        upstream_model: route.upstream_model,
        credential,
        new_body: None,
        upstream_path: ticket.path.upstream(Some(&original)),
        metering: MeteringPlan {
            endpoint: ticket.endpoint,
            metered: false,
            stream: false,
            strip_usage: false,
            prompt_estimate: 0,
            end_user: None,
            tags: Vec::new(),
            service_tier: ServiceTier::Standard,
            mark_with: Some(MarkWith {
                tag: route.deployment.affinity,
                seal,
            }),
        },
        reservation: nothing_reserved(),
        limits,
        rate_view,
        descriptors: Vec::new(),
    })
}

/// The name under which the key may reach the deployment(s) that hold the stored response, and
/// that name's access: the origin deployment named by `pin`, else those on its encryption
/// boundary. Candidates are the deployments' own names, then the key's and the team's list
/// entries; the first whose access check admits one of them wins.
fn granted<'p>(
    policy: &'p Policy,
    key: &'p VirtualKey,
    team: Option<&'p Team>,
    pin: AffinityTag,
) -> Result<(&'p str, Access<'p>), Denial> {
    let holding = |with: &dyn Fn(&AffinityTag) -> bool| -> Vec<&'p Deployment> {
        policy
            .deployments
            .iter()
            .filter(|d| with(&d.affinity))
            .collect()
    };
    let mut holders = holding(&|tag| *tag == pin);
    if holders.is_empty() {
        holders = holding(&|tag| tag.boundary == pin.boundary);
    }
    let Some(first) = holders.first() else {
        return Err(Denial::AffinityUnavailable); // no deployment holds that state any more
    };
    let lists = std::iter::once(&key.allow).chain(team.map(|t| &t.allow));
    let listed = lists.flat_map(|list| {
        let exact = list.exact.iter().map(String::as_str);
        exact.chain(list.patterns.iter().map(|p| p.as_str()))
    });
    let own = holders.iter().map(|d| d.model_name.as_str());
    for name in own.chain(listed) {
        let resolution = resolve(policy, key, team, name);
        let target = ModelTarget::new(policy, resolution.resolved());
        let Ok(access) = check_access(policy, key, team, &resolution, &target) else {
            continue;
        };
        let reaches = access.deployments.iter().any(|&id| {
            policy
                .deployment(id)
                .is_some_and(|d| holders.iter().any(|h| std::ptr::eq(*h, d)))
        });
        if reaches {
            return Ok((name, access));
        }
    }
    Err(Denial::ModelNotAllowed {
        model: first.model_name.clone(),
    })
}

#[cfg(test)]
#[path = "stored_tests.rs"]
mod tests;
