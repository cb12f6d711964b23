//! The request path, end to end: headers first ([`decide_head`]), then the body
//! ([`decide_body`]). Each step is one function in its own module; this file only orders them.

use crate::core::admission::access::{check_access, AccessGrants};
use crate::core::admission::alias::{resolve, AliasLayer};
use crate::core::admission::auth::authenticate;
use crate::core::admission::denial::Denial;
use crate::core::admission::listing::{list_models, retrieve_model};
use crate::core::admission::path::{PathProblem, RequestPath};
use crate::core::admission::request::{
    read_body_as, splice, BodyProblem, Endpoint, RequestHead, MAX_END_USER_BYTES,
    MAX_MODEL_NAME_BYTES,
};
use crate::core::admission::routing::{Credentials, ModelTarget, Pinning, RouteError};
use crate::core::admission::stored::decide_stored;
use crate::core::affinity::mark::{MarkWith, Seal, MIN_AFFINITY_SECRET_BYTES};
use crate::core::affinity::request::{read_marks, MarkProblem, Marks};
use crate::core::config::config::AffinityFallback;
use crate::core::config::config::UnpricedMode;
use crate::core::config::index::{Deployment, KeyId, Policy, Team, VirtualKey};
use crate::core::limits::deployment_room::room;
use crate::core::limits::headers::descriptor_headers;
use crate::core::limits::hold::{counted_tokens, reserve_limits, LimitHold, RateView};
use crate::core::limits::lines::{applicable_limits, deployment_limits, LimitScope};
use crate::core::metering::response_meter::prompt_estimate;
use crate::core::metering::stream_usage::include_usage_edit;
use crate::core::money::budget::{applicable_budgets, Reached};
use crate::core::money::charge::worst_case_input;
use crate::core::money::charge::worst_case_tokens;
use crate::core::money::charge::{worst_case, Ask};
use crate::core::money::cost::{PriceSource, ServiceTier};
use crate::core::money::reservation::{
    check_room, nothing_reserved, release, reserve, LedgerStore, Reservation,
};
use crate::core::spend::attribution::{
    event_tags, request_tags, LITELLM_TAGS_HEADER, TOLLGATE_TAGS_HEADER,
};

/// What to do after the request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadOutcome {
    /// Answer now with this status and JSON body (`GET /v1/models`).
    Respond {
        /// HTTP status.
        status: u16,
        /// JSON body.
        body: String,
    },
    /// Refuse now.
    Deny(Denial),
    /// Hold the headers, buffer the body, then call [`decide_body`] with this ticket.
    ReadBody(BodyTicket),
}

/// What the body step needs to remember from the headers step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyTicket {
    /// The authenticated key.
    pub key_id: KeyId,
    /// The endpoint called.
    pub endpoint: Endpoint,
    /// Largest body accepted.
    pub max_body_bytes: u64,
    /// What the path names (the Azure form's model, a stored response's id) and which path
    /// goes upstream.
    pub path: RequestPath,
    /// The `x-tollgate-tags` and `x-litellm-tags` values, read with the body's tags.
    pub tag_headers: [Option<String>; 2],
}

impl BodyTicket {
    /// A 413 once the buffered body is larger than the limit.
    pub fn check_size(&self, buffered: u64) -> Result<(), Denial> {
        if buffered > self.max_body_bytes {
            Err(Denial::BodyTooLarge {
                limit: self.max_body_bytes,
            })
        } else {
            Ok(())
        }
    }
}

/// Decides what can be decided from headers: policy loaded, key valid, endpoint served.
pub fn decide_head(policy: Option<&Policy>, head: &RequestHead, now: i64) -> HeadOutcome {
    let Some(policy) = policy else {
        return HeadOutcome::Deny(Denial::PolicyUnavailable);
    };
    let auth = match authenticate(policy, head, now) {
        Ok(auth) => auth,
        Err(denial) => return HeadOutcome::Deny(denial),
    };
    let path = match RequestPath::parse(head.path) {
        Ok(path) => path,
        Err(PathProblem::InvalidDeploymentName) => {
            return HeadOutcome::Deny(Denial::InvalidRequest {
                code: "invalid_model",
                message: format!(
                    "The deployment name in the path must be one model name of at most \
                     {MAX_MODEL_NAME_BYTES} bytes once percent-decoded: not empty, without \
                     empty, '.' or '..' segments, and without '\\', '?', '#', '%' or control \
                     characters."
                ),
            })
        }
    };
    let endpoint = path.endpoint;
    if endpoint == Endpoint::Unsupported {
        return HeadOutcome::Deny(Denial::UnknownEndpoint);
    }
    if !endpoint.accepts(head.method) {
        return HeadOutcome::Deny(Denial::MethodNotAllowed {
            allowed: endpoint.methods(),
        });
    }
    if endpoint == Endpoint::ListModels {
        return HeadOutcome::Respond {
            status: 200,
            body: list_models(policy, auth.key, auth.team),
        };
    }
    if endpoint == Endpoint::RetrieveModel {
        let id = path.model.unwrap_or_default();
        if id.len() > MAX_MODEL_NAME_BYTES {
            // Longer than any model name a request may send: it names no model.
            let shown: String = id.chars().take(64).collect();
            return HeadOutcome::Deny(Denial::ModelNotFound {
                model: format!("{shown}..."),
            });
        }
        return match retrieve_model(policy, auth.key, auth.team, &id) {
            Some(body) => HeadOutcome::Respond { status: 200, body },
            None => HeadOutcome::Deny(Denial::ModelNotFound { model: id }),
        };
    }
    let ticket = BodyTicket {
        key_id: auth.key_id,
        endpoint,
        max_body_bytes: policy.max_request_body_bytes,
        path,
        tag_headers: head.tag_headers.map(|value| value.map(str::to_string)),
    };
    if let Some(length) = head.content_length {
        if let Err(denial) = ticket.check_size(length) {
            return HeadOutcome::Deny(denial);
        }
    }
    if let Some(encoding) = head.content_encoding {
        if !encoding.trim().eq_ignore_ascii_case("identity") {
            // The decision needs the body as JSON, and the upstream must get what was decided.
            return HeadOutcome::Deny(Denial::UnsupportedContentEncoding {
                encoding: encoding.chars().take(64).collect(),
            });
        }
    }
    HeadOutcome::ReadBody(ticket)
}

/// [`decide_head`] with the host clock's answer: no time, no decision (an expiry or a budget
/// window cannot be checked without one), so a failed clock fails closed.
pub fn decide_head_at(
    policy: Option<&Policy>,
    head: &RequestHead,
    now: Option<i64>,
) -> HeadOutcome {
    match now {
        Some(now) => decide_head(policy, head, now),
        None => HeadOutcome::Deny(Denial::GatewayError {
            code: "clock_unavailable",
        }),
    }
}

/// How a request was decided, step by step (shown by `tollgate explain`).
#[derive(Debug, Clone)]
pub struct Trace<'p> {
    /// The key.
    pub key: &'p VirtualKey,
    /// Its team.
    pub team: Option<&'p Team>,
    /// The endpoint.
    pub endpoint: Endpoint,
    /// The model the client sent (once the body was read).
    pub requested: Option<String>,
    /// The alias hops applied.
    pub hops: Vec<(AliasLayer, &'p str)>,
    /// The model the request will reach.
    pub resolved: Option<String>,
    /// Why access was granted.
    pub grants: Option<AccessGrants<'p>>,
    /// How many deployments were equally eligible.
    pub candidates: usize,
    /// How a Responses follow-up's affinity mark was honoured.
    pub pinning: Pinning,
}

/// What to change before forwarding an admitted request, and what to meter afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct Admission<'p> {
    /// The chosen deployment (its `cluster` goes in `x-tollgate-cluster`).
    pub deployment: &'p Deployment,
    /// The model after alias resolution.
    pub resolved_model: String,
    /// The model name the provider sees.
    pub upstream_model: String,
    /// The upstream credential header to set, if the deployment has one.
    pub credential: Option<(&'static str, String)>,
    /// The rewritten body, when the model name changed or usage reporting was switched on.
    pub new_body: Option<Vec<u8>>,
    /// The `:path` to send upstream in place of the client's (the Azure and stored-response
    /// forms go on their canonical `/v1/…` path).
    pub upstream_path: Option<String>,
    /// How to meter the response.
    pub metering: MeteringPlan,
    /// The budget hold to settle when the response ends (or release if it is never sent).
    pub reservation: Reservation,
    /// The rate-limit hold to settle when the response ends (or release if it is never sent).
    pub limits: LimitHold,
    /// What the request saw of its tightest rate limits (the `x-ratelimit-*` answer headers).
    pub rate_view: RateView,
    /// Request headers for Envoy's rate-limit filters after Tollgate (empty unless
    /// `settings.rate_limit_descriptors`).
    pub descriptors: Vec<(&'static str, String)>,
}

/// What the response side needs to know about an admitted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeteringPlan {
    /// The API called.
    pub endpoint: Endpoint,
    /// The answer is metered and charged (false: free at the provider, nothing is recorded).
    pub metered: bool,
    /// The client asked for a stream.
    pub stream: bool,
    /// Usage reporting was switched on for this stream: strip it from what the client sees.
    pub strip_usage: bool,
    /// Prompt size estimate in tokens (stands in when no usage arrives).
    pub prompt_estimate: u64,
    /// The request body's `user`.
    pub end_user: Option<String>,
    /// The request's tags with the key's and team's (each once, sorted).
    pub tags: Vec<String>,
    /// The service tier asked for (priced when the response does not name one).
    pub service_tier: ServiceTier,
    /// Mark Responses ids and encrypted content in the answer with this tag and tenant seal
    /// (None without an affinity secret: the answer passes unmarked).
    pub mark_with: Option<MarkWith>,
}

/// What the body step needs from its surroundings besides the policy and the body.
pub struct Surroundings<'a, C: ?Sized> {
    /// Upstream credentials by variable name.
    pub credentials: &'a C,
    /// Budget ledgers.
    pub ledgers: &'a dyn LedgerStore,
    /// Drives weighted routing.
    pub random: u64,
    /// Unix seconds.
    pub now: i64,
}

/// The outcome of the body step with its trace.
#[derive(Debug, Clone)]
pub struct Verdict<'p> {
    /// How the decision was reached.
    pub trace: Trace<'p>,
    /// Admit (with edits) or deny.
    pub outcome: Result<Admission<'p>, Denial>,
}

/// Decides an authenticated request from its body: resolve aliases, check access on the
/// resolved target, route, check and reserve budgets, and prepare the upstream edits.
pub fn decide_body<'p, C: Credentials + ?Sized>(
    policy: &'p Policy,
    ticket: &BodyTicket,
    body: &[u8],
    around: &Surroundings<'_, C>,
) -> Option<Verdict<'p>> {
    let key = policy.keys.get(ticket.key_id as usize)?;
    let team = key.team.and_then(|t| policy.team(t));
    let mut trace = Trace {
        key,
        team,
        endpoint: ticket.endpoint,
        requested: None,
        hops: Vec::new(),
        resolved: None,
        grants: None,
        candidates: 0,
        pinning: Pinning::Unpinned,
    };
    let outcome = match ticket.endpoint {
        Endpoint::StoredResponse | Endpoint::ResponseInputItems => ticket
            .check_size(body.len() as u64)
            .and_then(|()| decide_stored(policy, ticket, body, around, &mut trace)),
        _ => decide_steps(policy, ticket, body, around, &mut trace),
    };
    Some(Verdict { trace, outcome })
}

fn decide_steps<'p, C: Credentials + ?Sized>(
    policy: &'p Policy,
    ticket: &BodyTicket,
    body: &[u8],
    around: &Surroundings<'_, C>,
    trace: &mut Trace<'p>,
) -> Result<Admission<'p>, Denial> {
    ticket.check_size(body.len() as u64)?;
    let facts = read_body_as(body, ticket.path.model.as_deref()).map_err(body_denial)?;
    if facts.background {
        // Its result is fetched later (GET /v1/responses/{id}), outside metering and budgets.
        return Err(Denial::UnsupportedParameter {
            param: "background",
        });
    }
    let [tollgate_tags, litellm_tags] = &ticket.tag_headers;
    let request_tags = request_tags(
        facts.tags.iter().map(|tag| tag.as_ref()),
        [
            (TOLLGATE_TAGS_HEADER, tollgate_tags.as_deref()),
            (LITELLM_TAGS_HEADER, litellm_tags.as_deref()),
        ],
    )
    .map_err(|problem| Denial::InvalidRequest {
        code: "invalid_tags",
        message: format!(
            "The tags in {} were refused: {}.",
            problem.source, problem.reason
        ),
    })?;
    let tags = event_tags(
        &request_tags,
        &trace.key.attribution,
        trace.team.map(|t| &t.attribution),
    );
    let requested: &str = &facts.model;
    trace.requested = Some(requested.to_string());

    let resolution = resolve(policy, trace.key, trace.team, requested);
    trace.hops = resolution.hops.clone();
    trace.resolved = Some(resolution.resolved().to_string());

    let target = ModelTarget::new(policy, resolution.resolved());
    let access = check_access(policy, trace.key, trace.team, &resolution, &target)?;
    trace.grants = Some(access.grants);

    let seal = (ticket.endpoint == Endpoint::Responses)
        .then(|| tenant_seal(policy, trace.key, trace.team, around.credentials))
        .flatten();
    let marks = if ticket.endpoint == Endpoint::Responses {
        read_marks(body, seal.as_ref()).map_err(|problem| match problem {
            MarkProblem::Corrupt => Denial::InvalidAffinityMark,
            MarkProblem::NoSecret => Denial::AffinitySecretUnavailable,
            MarkProblem::Unreadable => Denial::InvalidRequest {
                code: "invalid_json",
                message: "The request body has a duplicated key in the Responses input; \
                          send each key once."
                    .into(),
            },
        })?
    } else {
        Marks::default()
    };
    if marks.previous_unvouched {
        return Err(Denial::ResponseStateNotFound {
            param: "previous_response_id",
        });
    }
    if marks.has_unvouched_items() && policy.affinity_fallback == AffinityFallback::Fail {
        return Err(Denial::ResponseStateNotFound { param: "input" });
    }
    let deployment_room = |d: &Deployment| room(around.ledgers, policy, d, around.now);
    let route = policy
        .route_with_room(
            &target,
            &access.deployments,
            around.credentials,
            (around.random, marks.pin()),
            &deployment_room,
        )
        .map_err(|e| match e {
            RouteError::NoDeployment => Denial::ModelNotFound {
                model: requested.to_string(),
            },
            RouteError::NoCredential => Denial::CredentialUnavailable,
            RouteError::Full { kind, resets_in } => Denial::RateLimited {
                scope: LimitScope::Deployment.name(),
                kind,
                name: requested.to_string(),
                model: None,
                limit: 0,
                used: 0,
                resets_in_seconds: resets_in,
            },
        })?;
    trace.candidates = route.candidates;
    trace.pinning = route.pinning;
    let strip = route.pinning == Pinning::Lost;
    if strip && (marks.previous.is_some() || policy.affinity_fallback == AffinityFallback::Fail) {
        return Err(Denial::AffinityUnavailable);
    }

    let prompt = prompt_estimate(body.len());
    let reached = Reached {
        model: target.name,
        deployment: route.deployment,
    };
    let lines = applicable_budgets(
        policy,
        (trace.key, trace.team),
        facts.end_user.as_deref(),
        Some(reached),
        around.now,
    );
    let ask = Ask::of_request(ticket.endpoint, prompt, &facts);
    let metered = ticket.endpoint.is_metered();
    let mut limit_lines = applicable_limits(
        policy,
        (trace.key, trace.team),
        facts.end_user.as_deref(),
        (requested, Some(reached)),
        around.now,
    );
    limit_lines.extend(deployment_limits(
        policy,
        route.deployment,
        requested,
        around.now,
    ));
    let (reservation, billed_input) = if metered {
        let worst = worst_case(policy, route.deployment, &route.upstream_model, &ask);
        let billed_input = worst_case_input(policy, route.deployment, &route.upstream_model, &ask);
        let unpriced = worst.source == PriceSource::Unpriced;
        let budgeted = lines.iter().any(|line| line.enforced);
        if unpriced && policy.spending.unpriced == UnpricedMode::Deny && budgeted {
            return Err(Denial::UnpricedModel {
                model: requested.to_string(),
            });
        }
        let reservation = reserve(
            around.ledgers,
            lines,
            worst.nano_usd,
            policy.spending.reservation_ttl_seconds,
            around.now,
        )?;
        (reservation, billed_input)
    } else {
        // Free at the provider (count_tokens): nothing is held, but a used-up budget refuses.
        check_room(around.ledgers, &lines, around.now)?;
        (nothing_reserved(), 0)
    };
    let (limits, rate_view) = if limit_lines.is_empty() {
        (LimitHold::default(), RateView::default())
    } else {
        let tokens = if metered {
            let (input, output) =
                worst_case_tokens(policy, route.deployment, &route.upstream_model, &ask);
            counted_tokens(policy.token_count, input, output)
        } else {
            0
        };
        let ttl = policy.spending.reservation_ttl_seconds;
        match reserve_limits(around.ledgers, limit_lines, tokens, ttl, around.now) {
            Ok(held) => held,
            Err(denial) => {
                release(around.ledgers, &reservation, around.now);
                return Err(denial);
            }
        }
    };

    // Unvouched items always go, undecryptable reasoning too when its boundary is lost;
    // restores inside removed items are skipped by splice.
    let mut edits: Vec<_> = marks
        .removals(strip)
        .into_iter()
        .map(|span| (span, Vec::new()))
        .collect();
    edits.extend(marks.restores);
    edits.extend(facts.model_edit(&route.upstream_model));
    edits.extend(facts.tags_edit.clone());
    let usage_edit = include_usage_edit(ticket.endpoint, body, &facts);
    let strip_usage = usage_edit.is_some();
    edits.extend(usage_edit);
    let new_body = (!edits.is_empty()).then(|| splice(body, edits));
    let credential = route
        .credential
        .as_deref()
        .map(|value| credential_header(&route.deployment.provider, value));
    let descriptors = if policy.rate_limit_descriptors {
        descriptor_headers(
            crate::core::config::key_hash::to_hex(&trace.key.digest),
            trace.team.map(|t| t.id.as_str()),
            trace.key.user_id.as_deref(),
            facts.end_user.as_deref(),
            resolution.resolved(),
        )
    } else {
        Vec::new()
    };
    Ok(Admission {
        deployment: route.deployment,
        resolved_model: resolution.resolved().to_string(),
        upstream_model: route.upstream_model,
        credential,
        new_body,
        upstream_path: ticket.path.upstream(None),
        metering: MeteringPlan {
            endpoint: ticket.endpoint,
            metered,
            stream: facts.stream,
            strip_usage,
            // A cut stream of a follow-up is billed its stored conversation, not the new bytes.
            prompt_estimate: billed_input,
            end_user: facts.end_user.map(|u| u.into_owned()),
            tags,
            service_tier: ask.tier,
            mark_with: seal.map(|seal| MarkWith {
                tag: route.deployment.affinity,
                seal,
            }),
        },
        reservation,
        limits,
        rate_view,
        descriptors,
    })
}

/// The caller's tenant key for Responses affinity: the team, else the key itself, under the
/// operator's secret (`settings.affinity_secret_env`); None when the secret is not configured.
pub fn tenant_seal<C: Credentials + ?Sized>(
    policy: &Policy,
    key: &VirtualKey,
    team: Option<&Team>,
    credentials: &C,
) -> Option<Seal> {
    let secret = credentials
        .get(&policy.affinity_secret_env)
        .filter(|s| s.len() >= MIN_AFFINITY_SECRET_BYTES)?;
    let tenant = match team {
        Some(team) => format!("team:{}", team.id),
        None => format!("key:{}", crate::core::config::key_hash::to_hex(&key.digest)),
    };
    Some(Seal::new(secret.as_bytes(), &tenant))
}

/// How the upstream expects its credential: Anthropic `x-api-key`, Azure `api-key`, else Bearer.
pub fn credential_header(provider: &str, value: &str) -> (&'static str, String) {
    match provider {
        "anthropic" => ("x-api-key", value.to_string()),
        "azure" | "azure_text" => ("api-key", value.to_string()),
        _ => ("authorization", format!("Bearer {value}")),
    }
}

fn body_denial(problem: BodyProblem) -> Denial {
    let (code, message) = match problem {
        BodyProblem::Empty => (
            "missing_body",
            "The request body is empty; send a JSON object.".to_string(),
        ),
        BodyProblem::InvalidJson(detail) => (
            "invalid_json",
            format!("The request body is not a valid JSON object: {detail}."),
        ),
        BodyProblem::MissingModel => (
            "missing_model",
            "The request body has no 'model' field (or it is null).".to_string(),
        ),
        BodyProblem::InvalidModel => (
            "invalid_model",
            "'model' must be a non-empty string of at most 512 bytes.".to_string(),
        ),
        BodyProblem::InvalidTags => (
            "invalid_tags",
            "'metadata.tags' must be a list of strings.".to_string(),
        ),
        BodyProblem::InvalidUser => (
            "invalid_user",
            format!(
                "'user' must be a string of at most {MAX_END_USER_BYTES} bytes without control characters."
            ),
        ),
    };
    Denial::InvalidRequest { code, message }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "decide_path_tests.rs"]
mod path_tests;

#[cfg(test)]
#[path = "decide_limit_tests.rs"]
mod limit_tests;
