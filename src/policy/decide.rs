//! The request path, end to end: headers first ([`decide_head`]), then the body
//! ([`decide_body`]). Each step is one function in its own module; this file only orders them.

use crate::policy::access::{check_access, AccessGrants};
use crate::policy::alias::{resolve, AliasLayer};
use crate::policy::auth::authenticate;
use crate::policy::denial::Denial;
use crate::policy::index::{Deployment, KeyId, Policy, Team, VirtualKey};
use crate::policy::listing::list_models;
use crate::policy::request::{read_body, rewrite_model, BodyProblem, Endpoint, RequestHead};
use crate::policy::routing::{Credentials, ModelTarget, RouteError};

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
    HeadOutcome::ReadBody(ticket)
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
}

/// What to change before forwarding an admitted request.
#[derive(Debug, Clone, PartialEq)]
pub struct Admission<'p> {
    /// The chosen deployment (its `cluster` goes in `x-tollgate-cluster`).
    pub deployment: &'p Deployment,
    /// The model name the provider sees.
    pub upstream_model: String,
    /// The upstream credential header to set, if the deployment has one.
    pub credential: Option<(&'static str, String)>,
    /// The rewritten body, when the model name changed.
    pub new_body: Option<Vec<u8>>,
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
/// resolved target, route, and prepare the upstream edits. `random` drives weighted choice.
pub fn decide_body<'p, C: Credentials + ?Sized>(
    policy: &'p Policy,
    ticket: BodyTicket,
    body: &[u8],
    credentials: &C,
    random: u64,
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
    };
    let outcome = decide_steps(policy, ticket, body, credentials, random, &mut trace);
    Some(Verdict { trace, outcome })
}

fn decide_steps<'p, C: Credentials + ?Sized>(
    policy: &'p Policy,
    ticket: BodyTicket,
    body: &[u8],
    credentials: &C,
    random: u64,
    trace: &mut Trace<'p>,
) -> Result<Admission<'p>, Denial> {
    ticket.check_size(body.len() as u64)?;
    let facts = read_body(body).map_err(body_denial)?;
    let requested: &str = &facts.model;
    trace.requested = Some(requested.to_string());

    let resolution = resolve(policy, trace.key, trace.team, requested);
    trace.hops = resolution.hops.clone();
    trace.resolved = Some(resolution.resolved().to_string());

    let target = ModelTarget::new(policy, resolution.resolved());
    trace.grants = Some(check_access(
        policy,
        trace.key,
        trace.team,
        &resolution,
        &target,
    )?);

    let route = policy
        .route(&target, credentials, random)
        .map_err(|e| match e {
            RouteError::NoDeployment => Denial::ModelNotFound {
                model: requested.to_string(),
            },
            RouteError::NoCredential => Denial::CredentialUnavailable,
        })?;
    trace.candidates = route.candidates;

    let new_body = (route.upstream_model != requested)
        .then(|| rewrite_model(body, facts.model_span.clone(), &route.upstream_model));
    let credential = route
        .credential
        .as_deref()
        .map(|value| credential_header(&route.deployment.provider, value));
    Ok(Admission {
        deployment: route.deployment,
        upstream_model: route.upstream_model,
        credential,
        new_body,
    })
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
            "The request body has no 'model' field.".to_string(),
        ),
        BodyProblem::InvalidModel => (
            "invalid_model",
            "'model' must be a non-empty string of at most 512 bytes.".to_string(),
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
        let verdict = decide_body(&p, ticket(&p), br#"{"model":"fast","n":1}"#, &c, 7).unwrap();
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
        let verdict = decide_body(&p, ticket(&p), br#"{"model":"claude-x"}"#, &c, 0).unwrap();
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
        let code = |body: &[u8]| {
            decide_body(&p, ticket(&p), body, &c, 0)
                .unwrap()
                .outcome
                .unwrap_err()
                .code()
        };
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
        let verdict = decide_body(&p, ticket(&p), br#"{"model":"claude-x"}"#, &none, 0).unwrap();
        assert_eq!(verdict.outcome.unwrap_err(), Denial::CredentialUnavailable);
    }
}
