//! The request path, end to end: headers first ([`decide_head`]), then the body
//! ([`decide_body`]). Each step is one function in its own module; this file only orders them.

use crate::policy::access::{check_access, AccessGrants};
use crate::policy::affinity_mark::{MarkWith, Seal, MIN_AFFINITY_SECRET_BYTES};
use crate::policy::affinity_request::{read_marks, MarkProblem, Marks};
use crate::policy::alias::{resolve, AliasLayer};
use crate::policy::auth::authenticate;
use crate::policy::budget::applicable_budgets;
use crate::policy::charge::worst_case_input;
use crate::policy::charge::{worst_case, Ask};
use crate::policy::config::AffinityFallback;
use crate::policy::config::UnpricedMode;
use crate::policy::cost::{PriceSource, ServiceTier};
use crate::policy::denial::Denial;
use crate::policy::index::{Deployment, KeyId, Policy, Team, VirtualKey};
use crate::policy::listing::list_models;
use crate::policy::metering::prompt_estimate;
use crate::policy::request::{
    model_edit, read_body, splice, BodyProblem, Endpoint, RequestHead, MAX_END_USER_BYTES,
};
use crate::policy::reservation::{reserve, LedgerStore, Reservation};
use crate::policy::routing::{Credentials, ModelTarget, Pinning, RouteError};
use crate::policy::stream_usage::include_usage_edit;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTicket {
    /// The authenticated key.
    pub key_id: KeyId,
    /// The endpoint called.
    pub endpoint: Endpoint,
    /// Largest body accepted.
    pub max_body_bytes: u64,
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
    let endpoint = Endpoint::classify(head.path);
    if endpoint == Endpoint::Unsupported {
        return HeadOutcome::Deny(Denial::UnknownEndpoint);
    }
    if !head.method.eq_ignore_ascii_case(endpoint.method()) {
        return HeadOutcome::Deny(Denial::MethodNotAllowed {
            allowed: endpoint.method(),
        });
    }
    if endpoint == Endpoint::ListModels {
        return HeadOutcome::Respond {
            status: 200,
            body: list_models(policy, auth.key, auth.team),
        };
    }
    let ticket = BodyTicket {
        key_id: auth.key_id,
        endpoint,
        max_body_bytes: policy.max_request_body_bytes,
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
    /// How to meter the response.
    pub metering: MeteringPlan,
    /// The budget hold to settle when the response ends (or release if it is never sent).
    pub reservation: Reservation,
}

/// What the response side needs to know about an admitted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeteringPlan {
    /// The API called.
    pub endpoint: Endpoint,
    /// The client asked for a stream.
    pub stream: bool,
    /// Usage reporting was switched on for this stream: strip it from what the client sees.
    pub strip_usage: bool,
    /// Prompt size estimate in tokens (stands in when no usage arrives).
    pub prompt_estimate: u64,
    /// The request body's `user`.
    pub end_user: Option<String>,
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
    ticket: BodyTicket,
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
    let outcome = decide_steps(policy, ticket, body, around, &mut trace);
    Some(Verdict { trace, outcome })
}

fn decide_steps<'p, C: Credentials + ?Sized>(
    policy: &'p Policy,
    ticket: BodyTicket,
    body: &[u8],
    around: &Surroundings<'_, C>,
    trace: &mut Trace<'p>,
) -> Result<Admission<'p>, Denial> {
    ticket.check_size(body.len() as u64)?;
    let facts = read_body(body).map_err(body_denial)?;
    if facts.background {
        // Its result is fetched later (GET /v1/responses/{id}), outside metering and budgets.
        return Err(Denial::UnsupportedParameter {
            param: "background",
        });
    }
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
    let route = policy
        .route(
            &target,
            &access.deployments,
            around.credentials,
            around.random,
            marks.pin(),
        )
        .map_err(|e| match e {
            RouteError::NoDeployment => Denial::ModelNotFound {
                model: requested.to_string(),
            },
            RouteError::NoCredential => Denial::CredentialUnavailable,
        })?;
    trace.candidates = route.candidates;
    trace.pinning = route.pinning;
    let strip = route.pinning == Pinning::Lost;
    if strip && (marks.previous.is_some() || policy.affinity_fallback == AffinityFallback::Fail) {
        return Err(Denial::AffinityUnavailable);
    }

    let prompt = prompt_estimate(body.len());
    let lines = applicable_budgets(
        policy,
        trace.key,
        trace.team,
        facts.end_user.as_deref(),
        around.now,
    );
    let ask = Ask::of_request(ticket.endpoint, prompt, &facts);
    let worst = worst_case(policy, route.deployment, &route.upstream_model, &ask);
    let billed_input = worst_case_input(policy, route.deployment, &route.upstream_model, &ask);
    let unpriced = worst.source == PriceSource::Unpriced;
    if unpriced && policy.spending.unpriced == UnpricedMode::Deny && !lines.is_empty() {
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

    // Unvouched items always go, undecryptable reasoning too when its boundary is lost;
    // restores inside removed items are skipped by splice.
    let mut edits: Vec<_> = marks
        .removals(strip)
        .into_iter()
        .map(|span| (span, Vec::new()))
        .collect();
    edits.extend(marks.restores);
    if route.upstream_model != requested {
        edits.push(model_edit(facts.model_span.clone(), &route.upstream_model));
    }
    let usage_edit = include_usage_edit(ticket.endpoint, body, &facts);
    let strip_usage = usage_edit.is_some();
    edits.extend(usage_edit);
    let new_body = (!edits.is_empty()).then(|| splice(body, edits));
    let credential = route
        .credential
        .as_deref()
        .map(|value| credential_header(&route.deployment.provider, value));
    Ok(Admission {
        deployment: route.deployment,
        resolved_model: resolution.resolved().to_string(),
        upstream_model: route.upstream_model,
        credential,
        new_body,
        metering: MeteringPlan {
            endpoint: ticket.endpoint,
            stream: facts.stream,
            strip_usage,
            // A cut stream of a follow-up is billed its stored conversation, not the new bytes.
            prompt_estimate: billed_input,
            end_user: facts.end_user.map(|u| u.into_owned()),
            service_tier: ask.tier,
            mark_with: seal.map(|seal| MarkWith {
                tag: route.deployment.affinity,
                seal,
            }),
        },
        reservation,
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
        None => format!("key:{}", crate::policy::key_hash::to_hex(&key.digest)),
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
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::policy::compile;
    use crate::policy::key_hash::{digest, to_hex};
    use crate::policy::reservation::MemoryLedgers;
    use hashbrown::HashMap;

    fn policy() -> Policy {
        let json = format!(
            r#"{{"version":"v1","settings":{{"max_request_body_bytes":100}},
              "cost_map":{{"claude-x":{{"litellm_provider":"anthropic"}}}},
              "model_list":[
                {{"model_name":"anthropic/*","litellm_params":{{"model":"anthropic/*","api_key_env":"ANTHROPIC_KEY"}},"cluster":"anthropic"}},
                {{"model_name":"gpt-4o","litellm_params":{{"model":"openai/gpt-4o","api_key_env":"OPENAI_KEY"}},"cluster":"openai"}}],
              "model_group_alias":{{"fast":"gpt-4o"}},
              "keys":[{{"key_hash":"{}","key_alias":"k","models":["fast","anthropic/*"]}}]}}"#,
            to_hex(&digest("sk-k"))
        );
        compile(json.as_bytes()).unwrap()
    }

    fn head<'a>(method: &'a str, path: &'a str, auth: &'a str) -> RequestHead<'a> {
        RequestHead {
            method,
            path,
            authorization: Some(auth),
            ..RequestHead::default()
        }
    }

    fn creds() -> HashMap<String, String> {
        [("ANTHROPIC_KEY", "a-secret"), ("OPENAI_KEY", "o-secret")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn decide<'p>(
        p: &'p Policy,
        body: &[u8],
        credentials: &HashMap<String, String>,
        random: u64,
    ) -> Option<Verdict<'p>> {
        let ledgers = MemoryLedgers::default();
        let around = Surroundings {
            credentials,
            ledgers: &ledgers,
            random,
            now: 0,
        };
        decide_body(p, ticket(p), body, &around)
    }

    fn ticket(p: &Policy) -> BodyTicket {
        match decide_head(
            Some(p),
            &head("POST", "/v1/chat/completions", "Bearer sk-k"),
            0,
        ) {
            HeadOutcome::ReadBody(ticket) => ticket,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn without_a_policy_everything_is_refused_with_503() {
        let outcome = decide_head(
            None,
            &head("POST", "/v1/chat/completions", "Bearer sk-k"),
            0,
        );
        assert_eq!(outcome, HeadOutcome::Deny(Denial::PolicyUnavailable));
    }

    #[test]
    fn authentication_runs_before_endpoint_checks() {
        let p = policy();
        let outcome = decide_head(Some(&p), &head("POST", "/v1/files", "Bearer sk-nobody"), 0);
        assert_eq!(outcome, HeadOutcome::Deny(Denial::UnknownKey));
        let outcome = decide_head(Some(&p), &head("POST", "/v1/files", "Bearer sk-k"), 0);
        assert_eq!(outcome, HeadOutcome::Deny(Denial::UnknownEndpoint));
        let outcome = decide_head(Some(&p), &head("GET", "/v1/messages", "Bearer sk-k"), 0);
        assert_eq!(
            outcome,
            HeadOutcome::Deny(Denial::MethodNotAllowed { allowed: "POST" })
        );
    }

    #[test]
    fn a_compressed_request_body_is_refused_with_415_after_authentication() {
        let p = policy();
        let mut h = head("POST", "/v1/chat/completions", "Bearer sk-k");
        h.content_encoding = Some("gzip");
        let outcome = decide_head(Some(&p), &h, 0);
        let HeadOutcome::Deny(denial) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(
            (denial.status(), denial.code()),
            (415, "unsupported_content_encoding")
        );
        h.content_encoding = Some("identity");
        assert!(matches!(
            decide_head(Some(&p), &h, 0),
            HeadOutcome::ReadBody(_)
        ));
        let mut stranger = head("POST", "/v1/chat/completions", "Bearer sk-nobody");
        stranger.content_encoding = Some("gzip");
        assert_eq!(
            decide_head(Some(&p), &stranger, 0),
            HeadOutcome::Deny(Denial::UnknownKey)
        );
    }

    #[test]
    fn a_failed_clock_fails_closed() {
        let p = policy();
        let h = head("POST", "/v1/chat/completions", "Bearer sk-k");
        assert_eq!(
            decide_head_at(Some(&p), &h, None),
            HeadOutcome::Deny(Denial::GatewayError {
                code: "clock_unavailable"
            })
        );
        assert!(matches!(
            decide_head_at(Some(&p), &h, Some(0)),
            HeadOutcome::ReadBody(_)
        ));
    }

    #[test]
    fn oversized_content_length_is_refused_before_reading_the_body() {
        let p = policy();
        let mut h = head("POST", "/v1/chat/completions", "Bearer sk-k");
        h.content_length = Some(101);
        assert_eq!(
            decide_head(Some(&p), &h, 0),
            HeadOutcome::Deny(Denial::BodyTooLarge { limit: 100 })
        );
    }

    #[test]
    fn models_endpoint_is_answered_from_headers() {
        let p = policy();
        let HeadOutcome::Respond { status, body } =
            decide_head(Some(&p), &head("GET", "/v1/models", "Bearer sk-k"), 0)
        else {
            panic!("expected a listing");
        };
        assert_eq!(status, 200);
        let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
        let ids: Vec<&str> = listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["claude-x", "fast"]);
    }

    #[test]
    fn admitted_request_gets_route_credential_and_rewritten_body() {
        let p = policy();
        let c = creds();
        let verdict = decide(&p, br#"{"model":"fast","n":1}"#, &c, 7).unwrap();
        let admission = verdict.outcome.unwrap();
        assert_eq!(admission.deployment.cluster, "openai");
        assert_eq!(
            admission.credential,
            Some(("authorization", "Bearer o-secret".to_string()))
        );
        assert_eq!(
            admission.new_body.as_deref(),
            Some(&br#"{"model":"gpt-4o","n":1}"#[..])
        );
        assert_eq!(verdict.trace.resolved.as_deref(), Some("gpt-4o"));
    }

    #[test]
    fn unchanged_model_keeps_the_body_untouched() {
        let p = policy();
        let c = creds();
        let verdict = decide(&p, br#"{"model":"claude-x"}"#, &c, 0).unwrap();
        let admission = verdict.outcome.unwrap();
        assert_eq!(admission.new_body, None);
        assert_eq!(
            admission.credential,
            Some(("x-api-key", "a-secret".to_string()))
        );
    }

    #[test]
    fn body_refusals_carry_their_codes() {
        let p = policy();
        let c = creds();
        let code = |body: &[u8]| decide(&p, body, &c, 0).unwrap().outcome.unwrap_err().code();
        assert_eq!(code(b"not json"), "invalid_json");
        assert_eq!(code(b"{}"), "missing_model");
        assert_eq!(code(b"  "), "missing_body");
        assert_eq!(code(br#"{"model":"gpt-4o"}"#), "model_not_allowed");
        assert_eq!(code(&[b' '; 101]), "request_too_large");
    }

    #[test]
    fn missing_credential_is_503_not_a_forward_without_it() {
        let p = policy();
        let none: HashMap<String, String> = HashMap::new();
        let verdict = decide(&p, br#"{"model":"claude-x"}"#, &none, 0).unwrap();
        assert_eq!(verdict.outcome.unwrap_err(), Denial::CredentialUnavailable);
    }

    fn budget_policy(unpriced: &str) -> Policy {
        let json = format!(
            r#"{{"version":"v1","settings":{{"unpriced_models":{{"mode":"{unpriced}"}}}},
              "cost_map":{{"gpt-4o":{{"litellm_provider":"openai","input_cost_per_token":2.5e-06,
                                      "output_cost_per_token":1e-05,"max_output_tokens":1000}}}},
              "model_list":[
                {{"model_name":"gpt-4o","litellm_params":{{"model":"openai/gpt-4o"}},"cluster":"openai"}},
                {{"model_name":"mystery","litellm_params":{{"model":"openai/mystery"}},"cluster":"openai"}}],
              "teams":[{{"team_id":"t","max_budget":0.02}}],
              "keys":[{{"key_hash":"{}","team_id":"t"}}]}}"#,
            to_hex(&digest("sk-k"))
        );
        compile(json.as_bytes()).unwrap()
    }

    fn decide_with<'p>(p: &'p Policy, body: &[u8], ledgers: &MemoryLedgers) -> Verdict<'p> {
        let none: HashMap<String, String> = HashMap::new();
        let around = Surroundings {
            credentials: &none,
            ledgers,
            random: 0,
            now: 1000,
        };
        decide_body(p, ticket(p), body, &around).unwrap()
    }

    #[test]
    fn a_background_request_is_refused_however_it_is_written() {
        let p = budget_policy("deny");
        let ledgers = MemoryLedgers::default();
        for body in [
            &br#"{"model":"gpt-4o","background":true}"#[..],
            br#"{"model":"gpt-4o","background":"true"}"#,
            br#"{"model":"gpt-4o","background":1}"#,
        ] {
            let denial = decide_with(&p, body, &ledgers).outcome.unwrap_err();
            assert_eq!(
                denial,
                Denial::UnsupportedParameter {
                    param: "background"
                }
            );
            assert_eq!((denial.status(), denial.param()), (400, Some("background")));
        }
        let twice = br#"{"model":"gpt-4o","background":false,"background":true}"#;
        let denial = decide_with(&p, twice, &ledgers).outcome.unwrap_err();
        assert_eq!(denial.code(), "invalid_json", "a duplicated key is refused");
        assert!(ledgers.0.borrow().is_empty(), "nothing was reserved");
        for allowed in [
            &br#"{"model":"gpt-4o","background":false}"#[..],
            br#"{"model":"gpt-4o","background":null}"#,
        ] {
            assert!(decide_with(&p, allowed, &ledgers).outcome.is_ok());
        }
    }

    #[test]
    fn a_budgeted_request_reserves_its_worst_case_and_the_next_one_is_refused() {
        let p = budget_policy("deny");
        let ledgers = MemoryLedgers::default();
        let body = br#"{"model":"gpt-4o","max_tokens":1500,"messages":[]}"#;
        let first = decide_with(&p, body, &ledgers).outcome.unwrap();
        // 13 prompt tokens (52 bytes / 4) at 2.5e-6 + 1000 (the model's cap) at 1e-5.
        assert_eq!(first.reservation.amount, 32_500 + 10_000_000);
        assert_eq!(first.reservation.lines.len(), 1);
        let second = decide_with(&p, body, &ledgers).outcome;
        assert_eq!(
            second.map(|_| ()),
            Ok(()),
            "0.01 of 0.02 reserved: still room"
        );
        let third = decide_with(&p, body, &ledgers).outcome.unwrap_err();
        assert_eq!(third.status(), 429);
        assert!(third.message().contains("team 't'"), "{}", third.message());
    }

    #[test]
    fn unpriced_models_are_refused_under_a_budget_unless_tracked() {
        let body = br#"{"model":"mystery"}"#;
        let p = budget_policy("deny");
        let denial = decide_with(&p, body, &MemoryLedgers::default())
            .outcome
            .unwrap_err();
        assert_eq!(
            denial,
            Denial::UnpricedModel {
                model: "mystery".into()
            }
        );
        let p = budget_policy("track");
        let admitted = decide_with(&p, body, &MemoryLedgers::default())
            .outcome
            .unwrap();
        assert_eq!(admitted.reservation.amount, 0);
    }

    #[test]
    fn an_openai_stream_gets_usage_switched_on_and_marked_for_stripping() {
        let p = budget_policy("deny");
        let ledgers = MemoryLedgers::default();
        let body = br#"{"model":"gpt-4o","stream":true,"user":"cust"}"#;
        let admission = decide_with(&p, body, &ledgers).outcome.unwrap();
        assert!(admission.metering.strip_usage && admission.metering.stream);
        assert_eq!(admission.metering.end_user.as_deref(), Some("cust"));
        let sent: serde_json::Value =
            serde_json::from_slice(admission.new_body.as_deref().unwrap()).unwrap();
        assert_eq!(sent["stream_options"]["include_usage"], true);
        let asked = br#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}"#;
        let admission = decide_with(&p, asked, &ledgers).outcome.unwrap();
        assert!(!admission.metering.strip_usage);
        assert_eq!(admission.new_body, None);
    }

    fn tenant_policy() -> Policy {
        let json = format!(
            r#"{{"version":"v1",
              "model_list":[{{"model_name":"o4-mini","litellm_params":{{"model":"openai/o4-mini"}},"cluster":"openai"}}],
              "teams":[{{"team_id":"red"}},{{"team_id":"blue"}}],
              "keys":[{{"key_hash":"{}","team_id":"red"}},{{"key_hash":"{}","team_id":"blue"}},{{"key_hash":"{}"}}]}}"#,
            to_hex(&digest("sk-red")),
            to_hex(&digest("sk-blue")),
            to_hex(&digest("sk-solo"))
        );
        compile(json.as_bytes()).unwrap()
    }

    fn respond<'p>(
        p: &'p Policy,
        key: &str,
        body: &str,
        credentials: &HashMap<String, String>,
    ) -> Result<Admission<'p>, Denial> {
        let auth = format!("Bearer {key}");
        let HeadOutcome::ReadBody(ticket) =
            decide_head(Some(p), &head("POST", "/v1/responses", &auth), 0)
        else {
            panic!("no body step");
        };
        let ledgers = MemoryLedgers::default();
        let around = Surroundings {
            credentials,
            ledgers: &ledgers,
            random: 0,
            now: 0,
        };
        decide_body(p, ticket, body.as_bytes(), &around)
            .unwrap()
            .outcome
    }

    #[test]
    fn responses_state_is_bound_to_its_tenant() {
        use crate::policy::affinity_mark::mark_id;
        let p = tenant_policy();
        let secret: HashMap<String, String> = [(
            "TOLLGATE_AFFINITY_SECRET".to_string(),
            "sixteen bytes at least".to_string(),
        )]
        .into_iter()
        .collect();
        let first = respond(&p, "sk-red", r#"{"model":"o4-mini","input":"hi"}"#, &secret).unwrap();
        let with = first.metering.mark_with.expect("answers are marked");
        let id = mark_id("resp_0123abcd", &with);
        let follow =
            format!(r#"{{"model":"o4-mini","input":"more","previous_response_id":"{id}"}}"#);
        let own = respond(&p, "sk-red", &follow, &secret).unwrap();
        // A stream of this follow-up cut before its usage is billed the stored conversation.
        assert!(
            own.metering.prompt_estimate > first.metering.prompt_estimate * 1000,
            "{} vs {}",
            own.metering.prompt_estimate,
            first.metering.prompt_estimate
        );
        let sent = String::from_utf8(own.new_body.unwrap()).unwrap();
        assert!(
            sent.contains(r#""previous_response_id":"resp_0123abcd""#),
            "{sent}"
        );
        let not_found = Denial::ResponseStateNotFound {
            param: "previous_response_id",
        };
        for other in ["sk-blue", "sk-solo"] {
            assert_eq!(respond(&p, other, &follow, &secret), Err(not_found.clone()));
        }
        // The original id (anyone can read it inside the mark) is vouched for by no one.
        let raw = r#"{"model":"o4-mini","input":"x","previous_response_id":"resp_0123abcd"}"#;
        assert_eq!(respond(&p, "sk-red", raw, &secret), Err(not_found));
        // Without the secret: nothing is marked, and follow-ups fail closed.
        let none: HashMap<String, String> = HashMap::new();
        let unmarked = respond(&p, "sk-red", r#"{"model":"o4-mini","input":"hi"}"#, &none).unwrap();
        assert_eq!(unmarked.metering.mark_with, None);
        assert_eq!(
            respond(&p, "sk-red", &follow, &none),
            Err(Denial::AffinitySecretUnavailable)
        );
    }
}
