//! Request paths: which endpoint a `:path` calls, what the path itself names (the Azure form's
//! deployment, a stored response's id, a model id), and which path goes upstream.
//!
//! Served forms (each also with a trailing `/`; the query is not part of the match):
//! - `/v1/<endpoint>` and `/<endpoint>`: forwarded as sent.
//! - Azure OpenAI's `/openai/deployments/<name>/{chat/completions,completions,embeddings}`
//!   (the `AzureOpenAI` SDKs' form, as LiteLLM serves it): `<name>` is the requested model;
//!   it may hold `/` (`openai/gpt-4o`, LiteLLM's `{model:path}`), and `/chat/completions` is
//!   matched before `/completions`.
//! - `/openai/v1/responses…` (LiteLLM's) and `/openai/responses…` (the `AzureOpenAI` SDKs').
//! - `/v1/responses/<id>` (GET, DELETE) and `/v1/responses/<id>/input_items` (GET).
//!
//! The Azure and stored-response forms go upstream on their canonical `/v1/…` path, with the
//! client's query less `api-version` (Azure's; the deployment's API version is the operator's
//! route), so a path form can never reach an upstream path the plain form would not.

use crate::core::admission::client_headers::percent_decode_with;
use crate::core::admission::request::{Endpoint, MAX_MODEL_NAME_BYTES};

/// Longest stored-response id read from a path (marked ids are at most 64 characters).
const MAX_RESPONSE_ID_BYTES: usize = 256;

/// Names under `/responses/` that are other endpoints, not stored-response ids.
const RESPONSES_SUBRESOURCES: [&str; 2] = ["input_tokens", "compact"];

/// A path that names its model in a way no model name can be read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathProblem {
    /// The Azure form's deployment name, once percent-decoded, is empty, longer than a model
    /// name may be, not UTF-8, has an empty, `.` or `..` segment, or holds a `\`, `?`, `#`,
    /// `%` (double encoding) or control character.
    InvalidDeploymentName,
}

/// What a request path calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPath {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// The model the path names (the Azure form's deployment; `GET /v1/models/{id}`'s id),
    /// percent-decoded.
    pub model: Option<String>,
    /// The stored response the path names (as the client sent it, percent-decoded).
    pub response_id: Option<String>,
    /// The path goes upstream in its canonical form, not as sent.
    canonical: bool,
    /// The client's query string, `api-version` removed (empty: none).
    query: String,
}

impl RequestPath {
    /// Reads a `:path` (the query string as the client sent it, after credential scrubbing).
    pub fn parse(path: &str) -> Result<RequestPath, PathProblem> {
        let (base, query) = match path.split_once('?') {
            Some((base, query)) => (base, query),
            None => (path, ""),
        };
        let base = base.split('#').next().unwrap_or(base);
        let query = query.split('#').next().unwrap_or(query);
        let trimmed = base.strip_suffix('/').unwrap_or(base);
        let mut out = RequestPath {
            endpoint: Endpoint::Unsupported,
            model: None,
            response_id: None,
            canonical: false,
            query: without_api_version(query),
        };
        if let Some(rest) = trimmed.strip_prefix("/openai/deployments/") {
            let ops = [
                ("/chat/completions", Endpoint::ChatCompletions),
                ("/completions", Endpoint::Completions),
                ("/embeddings", Endpoint::Embeddings),
            ];
            let Some((name, endpoint)) = ops
                .iter()
                .find_map(|&(op, endpoint)| rest.strip_suffix(op).map(|name| (name, endpoint)))
            else {
                return Ok(out);
            };
            out.endpoint = endpoint;
            out.model = Some(deployment_name(name)?);
            out.canonical = true;
            return Ok(out);
        }
        let (azure, rest) = match trimmed.strip_prefix("/openai") {
            Some(rest) if rest.starts_with('/') => (true, rest),
            _ => (false, trimmed),
        };
        let rest = match rest.strip_prefix("/v1") {
            Some(after) if after.starts_with('/') => after,
            _ => rest,
        };
        out.canonical = azure;
        if let Some(after) = rest.strip_prefix("/responses/") {
            let (id, endpoint) = match after.strip_suffix("/input_items") {
                Some(id) => (id, Endpoint::ResponseInputItems),
                None => (after, Endpoint::StoredResponse),
            };
            if id.is_empty() || id.contains('/') || RESPONSES_SUBRESOURCES.contains(&id) {
                return Ok(out);
            }
            let decoded = percent_decode_with(id, false, MAX_RESPONSE_ID_BYTES + 1);
            out.endpoint = endpoint;
            out.response_id = Some(String::from_utf8_lossy(&decoded).into_owned());
            out.canonical = true;
            return Ok(out);
        }
        out.endpoint = match rest {
            "/responses" => Endpoint::Responses,
            _ if azure => Endpoint::Unsupported,
            "/chat/completions" => Endpoint::ChatCompletions,
            "/completions" => Endpoint::Completions,
            "/embeddings" => Endpoint::Embeddings,
            "/messages" => Endpoint::Messages,
            "/messages/count_tokens" => Endpoint::CountTokens,
            "/models" => Endpoint::ListModels,
            _ => match rest.strip_prefix("/models/") {
                Some(id) if !id.is_empty() => {
                    // One byte over the limit is kept, so that a longer id is not read as its
                    // first 512 bytes (no model has a longer name: it is answered as absent).
                    let decoded = percent_decode_with(id, false, MAX_MODEL_NAME_BYTES + 1);
                    out.model = Some(String::from_utf8_lossy(&decoded).into_owned());
                    Endpoint::RetrieveModel
                }
                _ => Endpoint::Unsupported,
            },
        };
        Ok(out)
    }

    /// The path to send upstream in place of the client's (`None`: the client's goes as it
    /// is). `response_id` is the stored response's original (unmarked) id.
    pub fn upstream(&self, response_id: Option<&str>) -> Option<String> {
        if !self.canonical {
            return None;
        }
        let mut path = match (self.endpoint, response_id) {
            (Endpoint::StoredResponse, Some(id)) => format!("/v1/responses/{id}"),
            (Endpoint::ResponseInputItems, Some(id)) => {
                format!("/v1/responses/{id}/input_items")
            }
            (Endpoint::ChatCompletions, _) => "/v1/chat/completions".into(),
            (Endpoint::Completions, _) => "/v1/completions".into(),
            (Endpoint::Embeddings, _) => "/v1/embeddings".into(),
            (Endpoint::Responses, _) => "/v1/responses".into(),
            _ => return None,
        };
        if !self.query.is_empty() {
            path.push('?');
            path.push_str(&self.query);
        }
        Some(path)
    }
}

/// The query without its `api-version` parameters (name compared after percent-decoding, in
/// any case); the rest in order.
fn without_api_version(query: &str) -> String {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(name, _)| name);
            let name = percent_decode_with(name, true, 64);
            !name.eq_ignore_ascii_case(b"api-version")
        })
        .collect();
    kept.join("&")
}

/// The Azure form's deployment name: percent-decoded (an encoded `/` is a `/` of the name, as
/// the SDKs encode it), and refused when it could read as anything but one model name. It is
/// only ever a model name: the upstream path is canonical, never built from it.
fn deployment_name(raw: &str) -> Result<String, PathProblem> {
    let bad = PathProblem::InvalidDeploymentName;
    // `%2F` is a `/` of the name: the OpenAI SDKs write `openai/gpt-4o` as `openai%2Fgpt-4o`.
    let decoded = percent_decode_with(raw, false, MAX_MODEL_NAME_BYTES + 1);
    if decoded.len() > MAX_MODEL_NAME_BYTES {
        return Err(bad);
    }
    let name = String::from_utf8(decoded).map_err(|_| bad)?;
    let forbidden = |c: char| c.is_control() || matches!(c, '\\' | '?' | '#' | '%');
    if name.trim().is_empty() || name.contains(forbidden) {
        return Err(bad);
    }
    if name
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(bad);
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn parse(path: &str) -> RequestPath {
        RequestPath::parse(path).unwrap()
    }

    #[test]
    fn the_azure_form_names_its_model_and_goes_upstream_canonical() {
        let p = parse("/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21");
        assert_eq!(p.endpoint, Endpoint::ChatCompletions);
        assert_eq!(p.model.as_deref(), Some("gpt-4o"));
        assert_eq!(p.upstream(None).as_deref(), Some("/v1/chat/completions"));
        let p = parse("/openai/deployments/text-embedding-3-small/embeddings/");
        assert_eq!(
            (p.endpoint, p.model.as_deref()),
            (Endpoint::Embeddings, Some("text-embedding-3-small"))
        );
        let p = parse("/openai/deployments/davinci/completions?Api-Version=1&x=2");
        assert_eq!(p.endpoint, Endpoint::Completions);
        assert_eq!(p.upstream(None).as_deref(), Some("/v1/completions?x=2"));
        // LiteLLM's {model:path}: a provider-qualified name, `/chat/completions` matched first.
        let p = parse("/openai/deployments/openai/gpt-4o/chat/completions");
        assert_eq!(p.model.as_deref(), Some("openai/gpt-4o"));
        assert_eq!(p.endpoint, Endpoint::ChatCompletions);
        let p = parse("/openai/deployments/gpt%2D4o/chat/completions");
        assert_eq!(p.model.as_deref(), Some("gpt-4o"));
        // How the OpenAI SDK writes a provider-qualified name.
        let p = parse("/openai/deployments/openai%2Fgpt-4o/embeddings");
        assert_eq!(p.model.as_deref(), Some("openai/gpt-4o"));
        let p = parse("/openai/deployments/x/images/generations");
        assert_eq!(p.endpoint, Endpoint::Unsupported);
    }

    #[test]
    fn hostile_deployment_names_are_refused() {
        let long = format!("/openai/deployments/{}/chat/completions", "a".repeat(513));
        let longest = format!("/openai/deployments/{}/chat/completions", "a".repeat(512));
        assert!(RequestPath::parse(&longest).is_ok());
        for bad in [
            "/openai/deployments//chat/completions",
            "/openai/deployments/%20/chat/completions",
            "/openai/deployments/../chat/completions",
            "/openai/deployments/a/../b/chat/completions",
            "/openai/deployments/./chat/completions",
            "/openai/deployments/a//b/chat/completions",
            "/openai/deployments/..%2Fx/chat/completions",
            "/openai/deployments/gpt-4o%2f%2fx/embeddings",
            "/openai/deployments/a%2F.%2Fb/embeddings",
            "/openai/deployments/a%5Cb/chat/completions",
            "/openai/deployments/a%252Fb/chat/completions",
            "/openai/deployments/a%00b/chat/completions",
            "/openai/deployments/a%0Ab/chat/completions",
            "/openai/deployments/%ff%fe/chat/completions",
            "/openai/deployments/a%3Fb/chat/completions",
            "/openai/deployments/%2E%2E/chat/completions",
            long.as_str(),
        ] {
            assert_eq!(
                RequestPath::parse(bad),
                Err(PathProblem::InvalidDeploymentName),
                "{bad}"
            );
        }
        let huge = format!(
            "/openai/deployments/{}/chat/completions",
            "%41".repeat(20_000)
        );
        assert!(RequestPath::parse(&huge).is_err());
    }

    #[test]
    fn stored_responses_and_azure_responses_forms() {
        let p = parse("/v1/responses/resp_tsabc?include[]=x&api-version=1");
        assert_eq!(p.endpoint, Endpoint::StoredResponse);
        assert_eq!(p.response_id.as_deref(), Some("resp_tsabc"));
        assert_eq!(
            p.upstream(Some("resp_00")).as_deref(),
            Some("/v1/responses/resp_00?include[]=x")
        );
        let p = parse("/openai/responses/resp_1/input_items?api-version=2025-03-01-preview");
        assert_eq!(p.endpoint, Endpoint::ResponseInputItems);
        assert_eq!(
            p.upstream(Some("resp_0")).as_deref(),
            Some("/v1/responses/resp_0/input_items")
        );
        let p = parse("/responses/resp_1/");
        assert_eq!(p.endpoint, Endpoint::StoredResponse);
        let p = parse("/openai/v1/responses?api-version=preview");
        assert_eq!(p.endpoint, Endpoint::Responses);
        assert_eq!(p.upstream(None).as_deref(), Some("/v1/responses"));
        assert_eq!(parse("/openai/responses").endpoint, Endpoint::Responses);
        assert_eq!(parse("/v1/responses").upstream(None), None, "as sent");
        assert_eq!(parse("/v1/responses/").endpoint, Endpoint::Responses);
        for other in [
            "/v1/responses/a/b",
            "/v1/responses/resp_1/cancel",
            "/v1/responses/input_tokens",
            "/v1/responses/compact",
            "/openai/chat/completions",
            "/openai/v1/chat/completions",
            "/openai/v1/messages",
            "/openaix/responses",
        ] {
            assert_eq!(parse(other).endpoint, Endpoint::Unsupported, "{other}");
        }
    }

    #[test]
    fn plain_forms_are_forwarded_as_sent() {
        let p = parse("/v1/messages/count_tokens?beta=true");
        assert_eq!(p.endpoint, Endpoint::CountTokens);
        assert_eq!(p.upstream(None), None);
        assert_eq!(
            parse("/messages/count_tokens/").endpoint,
            Endpoint::CountTokens
        );
        let p = parse("/v1/models/openai%2Fgpt-4o");
        assert_eq!(
            (p.endpoint, p.model.as_deref()),
            (Endpoint::RetrieveModel, Some("openai/gpt-4o"))
        );
        assert_eq!(
            parse("/v1/chat/completions?api-version=1").upstream(None),
            None
        );
        // A model id longer than a model name is not cut down to one.
        let long = parse(&format!("/v1/models/openai/{}", "a".repeat(600)));
        assert!(long.model.unwrap().len() > MAX_MODEL_NAME_BYTES);
    }
}
