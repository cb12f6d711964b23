//! Request facts: which endpoint, which credential, which model. Read from borrowed header
//! values and body bytes; only the fields a decision needs are parsed.

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;
use serde_json::value::RawValue;

/// Client credential headers; all are removed before a request goes upstream.
pub const CLIENT_CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "x-api-key", "api-key"];

/// The request header that carries the chosen Envoy cluster (`cluster_header` routes).
pub const ROUTE_HEADER: &str = "x-tollgate-cluster";

/// The response header naming the policy version that decided the request.
pub const VERSION_HEADER: &str = "x-tollgate-policy-version";

/// Longest model name accepted in a request body.
pub const MAX_MODEL_NAME_BYTES: usize = 512;

/// Longest body `user` accepted: it goes into every spend event and names an end-user budget
/// ledger, so it is bounded like any other client string that reaches them.
pub const MAX_END_USER_BYTES: usize = 256;

/// Longest credential accepted in a header.
const MAX_KEY_BYTES: usize = 512;

/// The API a request path belongs to (see [`crate::core::admission::path`] for the forms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// OpenAI `POST /v1/chat/completions`.
    ChatCompletions,
    /// OpenAI `POST /v1/completions`.
    Completions,
    /// OpenAI `POST /v1/embeddings`.
    Embeddings,
    /// OpenAI `POST /v1/responses`.
    Responses,
    /// Anthropic `POST /v1/messages`.
    Messages,
    /// Anthropic `POST /v1/messages/count_tokens`: free, so neither reserved nor metered.
    CountTokens,
    /// `GET` / `DELETE /v1/responses/{id}`: routed by the id's affinity mark, not metered.
    StoredResponse,
    /// `GET /v1/responses/{id}/input_items`: routed by the id's affinity mark, not metered.
    ResponseInputItems,
    /// `GET /v1/models`, answered by the filter.
    ListModels,
    /// `GET /v1/models/{id}` (the SDKs' `models.retrieve`), answered by the filter.
    RetrieveModel,
    /// Anything else.
    Unsupported,
}

impl Endpoint {
    /// Classifies a request path (query string ignored; the `/v1` prefix is optional; a path
    /// whose Azure deployment name cannot be read is `Unsupported` here, and refused with 400
    /// by the decision).
    pub fn classify(path: &str) -> Endpoint {
        crate::core::admission::path::RequestPath::parse(path)
            .map_or(Endpoint::Unsupported, |p| p.endpoint)
    }

    /// The HTTP method the endpoint is served on (the first, when it takes several).
    pub fn method(self) -> &'static str {
        match self {
            Endpoint::ListModels
            | Endpoint::RetrieveModel
            | Endpoint::StoredResponse
            | Endpoint::ResponseInputItems => "GET",
            _ => "POST",
        }
    }

    /// Every method the endpoint takes, as the 405 message names them.
    pub fn methods(self) -> &'static str {
        match self {
            Endpoint::StoredResponse => "GET or DELETE",
            other => other.method(),
        }
    }

    /// Whether `method` is one the endpoint takes (any case).
    pub fn accepts(self, method: &str) -> bool {
        method.eq_ignore_ascii_case(self.method())
            || (self == Endpoint::StoredResponse && method.eq_ignore_ascii_case("DELETE"))
    }

    /// Whether the answer is metered and charged (count_tokens and stored responses are free
    /// at the provider, and a stored response's usage was charged when it was made).
    pub fn is_metered(self) -> bool {
        !matches!(
            self,
            Endpoint::CountTokens | Endpoint::StoredResponse | Endpoint::ResponseInputItems
        )
    }

    /// A short stable name for logs and explain output.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Responses => "responses",
            Endpoint::Messages => "messages",
            Endpoint::CountTokens => "count_tokens",
            Endpoint::StoredResponse => "stored_response",
            Endpoint::ResponseInputItems => "response_input_items",
            Endpoint::ListModels => "list_models",
            Endpoint::RetrieveModel => "retrieve_model",
            Endpoint::Unsupported => "unsupported",
        }
    }
}

/// What the filter reads from request headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestHead<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:path`.
    pub path: &'a str,
    /// `authorization`.
    pub authorization: Option<&'a str>,
    /// `x-api-key` (Anthropic SDKs).
    pub x_api_key: Option<&'a str>,
    /// `api-key` (Azure OpenAI SDKs).
    pub api_key: Option<&'a str>,
    /// `content-length`, when present and numeric.
    pub content_length: Option<u64>,
    /// `content-encoding` of the request body, when present.
    pub content_encoding: Option<&'a str>,
    /// `x-tollgate-tags` and `x-litellm-tags` (spend attribution), when present.
    pub tag_headers: [Option<&'a str>; 2],
}

/// Why no usable credential was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialProblem {
    /// No credential header at all.
    Missing,
    /// A credential header that is not `Bearer sk-…` / `sk-…`.
    Malformed,
}

impl<'a> RequestHead<'a> {
    /// The virtual key: `Authorization: Bearer`, then `x-api-key`, then `api-key`.
    pub fn credential(&self) -> Result<&'a str, CredentialProblem> {
        let raw = if let Some(auth) = self.authorization {
            let (scheme, token) = auth.trim().split_once(' ').unwrap_or((auth, ""));
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(CredentialProblem::Malformed);
            }
            token.trim()
        } else if let Some(key) = self.x_api_key.or(self.api_key) {
            key.trim()
        } else {
            return Err(CredentialProblem::Missing);
        };
        let well_formed = raw.starts_with("sk-")
            && raw.len() > 3
            && raw.len() <= MAX_KEY_BYTES
            && raw.bytes().all(|b| b.is_ascii_graphic());
        if well_formed {
            Ok(raw)
        } else {
            Err(CredentialProblem::Malformed)
        }
    }
}

/// What a decision needs from the JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyFacts<'a> {
    /// The model the client asked for: the body's `model` (unescaped), or the one the path
    /// names (the Azure form).
    pub model: Cow<'a, str>,
    /// Where the body's `model` is, for the edit that sets the upstream model.
    pub model_slot: ModelSlot<'a>,
    /// `"stream": true`.
    pub stream: bool,
    /// Byte range of the `stream_options` value, when present.
    pub stream_options_span: Option<Range<usize>>,
    /// `stream_options.include_usage` is `true`.
    pub include_usage: bool,
    /// The output cap the client set (`max_completion_tokens`, `max_tokens` or
    /// `max_output_tokens`, the first present), used for budget reservations.
    pub max_output_tokens: Option<u64>,
    /// The end user (`user` string field, OpenAI-style), used for end-user budgets.
    pub end_user: Option<Cow<'a, str>>,
    /// `n` (answers asked for), when a whole number (a fraction rounds up).
    pub n: Option<u64>,
    /// `best_of` (completions' candidates, each billed), when a whole number.
    pub best_of: Option<u64>,
    /// `service_tier` as sent (priced by [`crate::core::money::cost::ServiceTier::parse`]).
    pub service_tier: Option<Cow<'a, str>>,
    /// `previous_response_id` or `conversation` is set: the provider bills stored input the
    /// body does not show.
    pub continues_conversation: bool,
    /// `background` is present with a value other than `false` or `null` (a Responses call whose
    /// result is fetched later; refused, as it cannot be metered).
    pub background: bool,
    /// `prompt` is a list of prompts (strings or token arrays): their number (text completions
    /// answer each one); `None` for a single prompt or no `prompt`.
    pub prompts: Option<u64>,
    /// LiteLLM's `metadata.tags` (spend attribution), as sent.
    pub tags: Vec<Cow<'a, str>>,
    /// The edit that removes `tags` from `metadata` before the upstream sees it (providers
    /// refuse a list there), when the body has them.
    pub tags_edit: Option<(Range<usize>, Vec<u8>)>,
}

/// Where the body's `model` sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSlot<'a> {
    /// The `model` value's byte range (quotes included) and, when it is a string, its text.
    Value {
        /// Byte range of the value.
        span: Range<usize>,
        /// The string it holds (None: not a string, so it is always replaced).
        text: Option<Cow<'a, str>>,
    },
    /// No `model` member (the path named the model): it is inserted after the `{` at `at`.
    Missing {
        /// The offset just after the object's `{`.
        at: usize,
        /// The object has no members (no `,` after the inserted one).
        empty: bool,
    },
}

impl BodyFacts<'_> {
    /// The edit that makes the body's `model` read `upstream`; None when it already does.
    pub fn model_edit(&self, upstream: &str) -> Option<(Range<usize>, Vec<u8>)> {
        match &self.model_slot {
            ModelSlot::Value {
                text: Some(text), ..
            } if text == upstream => None,
            ModelSlot::Value { span, .. } => Some(model_edit(span.clone(), upstream)),
            ModelSlot::Missing { at, empty } => {
                let (_, value) = model_edit(0..0, upstream);
                let mut bytes = b"\"model\":".to_vec();
                bytes.extend(value);
                if !empty {
                    bytes.push(b',');
                }
                Some((*at..*at, bytes))
            }
        }
    }
}

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyProblem {
    /// Empty body.
    Empty,
    /// Not a JSON object (the message says where).
    InvalidJson(String),
    /// No `model` field.
    MissingModel,
    /// `model` is not a non-empty string of reasonable length.
    InvalidModel,
    /// `user` is a string longer than [`MAX_END_USER_BYTES`] or holding control characters.
    InvalidUser,
    /// `metadata.tags` is not a list of strings.
    InvalidTags,
}

#[derive(Deserialize)]
struct BodyView<'a> {
    /// Present (null included: a path-named model must replace a `"model":null` too, or the
    /// upstream could read a second `model` member) or absent.
    #[serde(borrow, default, deserialize_with = "present")]
    model: Option<&'a RawValue>,
    #[serde(borrow)]
    stream: Option<&'a RawValue>,
    #[serde(borrow)]
    stream_options: Option<&'a RawValue>,
    #[serde(borrow)]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    max_output_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    user: Option<&'a RawValue>,
    #[serde(borrow)]
    n: Option<&'a RawValue>,
    #[serde(borrow)]
    best_of: Option<&'a RawValue>,
    #[serde(borrow)]
    service_tier: Option<&'a RawValue>,
    #[serde(borrow)]
    previous_response_id: Option<&'a RawValue>,
    #[serde(borrow)]
    conversation: Option<&'a RawValue>,
    #[serde(borrow)]
    background: Option<&'a RawValue>,
    #[serde(borrow)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
    /// Read only so that a duplicated `input` is refused (the affinity check reads one copy).
    #[serde(borrow)]
    #[allow(dead_code)]
    input: Option<&'a RawValue>,
}

/// A member that is present, whatever its value (`null` too).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct StreamOptionsView {
    include_usage: Option<bool>,
}

/// Reads the request body: it must be a JSON object with a string `model`.
///
/// The whole document is validated (so the upstream never sees JSON we could not parse), a
/// duplicated `model` key is refused (so we and the upstream cannot disagree on which one counts),
/// and the span of the value is returned so the model can be rewritten without re-serialising.
/// The other fields are read leniently: a wrongly typed `stream` or `max_tokens` is the
/// upstream's to refuse.
pub fn read_body(body: &[u8]) -> Result<BodyFacts<'_>, BodyProblem> {
    read_body_as(body, None)
}

/// [`read_body`] for a request whose path names its model (`path_model`, the Azure form): that
/// is the model requested, checked and routed, and the body's own `model`, when present, is
/// read only to be replaced with the upstream model (so the upstream acts on what was checked).
pub fn read_body_as<'a>(
    body: &'a [u8],
    path_model: Option<&'a str>,
) -> Result<BodyFacts<'a>, BodyProblem> {
    let first = body.iter().position(|b| !b.is_ascii_whitespace());
    if first.is_none() {
        return Err(BodyProblem::Empty);
    }
    let view: BodyView = serde_json::from_slice(body).map_err(|e| {
        let message = e.to_string();
        BodyProblem::InvalidJson(message)
    })?;
    if first.and_then(|at| body.get(at)) != Some(&b'{') {
        return Err(BodyProblem::InvalidJson(
            "expected a JSON object at line 1".to_string(),
        ));
    }
    let (model, model_slot) = match (path_model, view.model) {
        (Some(named), raw) => {
            let slot = match raw {
                Some(raw) => ModelSlot::Value {
                    span: span_of(body, raw).ok_or(BodyProblem::InvalidModel)?,
                    text: json_string(raw),
                },
                None => {
                    let at = first.map_or(0, |at| at + 1);
                    let rest = body.get(at..).unwrap_or_default();
                    let next = rest.iter().find(|b| !b.is_ascii_whitespace());
                    ModelSlot::Missing {
                        at,
                        empty: next == Some(&b'}'),
                    }
                }
            };
            (Cow::Borrowed(named), slot)
        }
        (None, raw) => {
            let raw = raw
                .filter(|raw| raw.get() != "null")
                .ok_or(BodyProblem::MissingModel)?;
            let span = span_of(body, raw).ok_or(BodyProblem::InvalidModel)?;
            let model = json_string(raw).ok_or(BodyProblem::InvalidModel)?;
            if model.trim().is_empty() || model.len() > MAX_MODEL_NAME_BYTES {
                return Err(BodyProblem::InvalidModel);
            }
            let slot = ModelSlot::Value {
                span,
                text: Some(model.clone()),
            };
            (model, slot)
        }
    };
    let stream = view.stream.is_some_and(|raw| raw.get() == "true");
    let include_usage = view
        .stream_options
        .and_then(|raw| serde_json::from_str::<StreamOptionsView>(raw.get()).ok())
        .and_then(|options| options.include_usage)
        .unwrap_or(false);
    let end_user = view.user.and_then(json_string);
    if end_user.is_none() && view.user.is_some_and(|raw| raw.get().starts_with('"')) {
        // A string that does not decode (a lone surrogate escape) names no budget we can see.
        return Err(BodyProblem::InvalidUser);
    }
    if end_user
        .as_deref()
        .is_some_and(|user| user.len() > MAX_END_USER_BYTES || user.chars().any(char::is_control))
    {
        return Err(BodyProblem::InvalidUser);
    }
    let max_output_tokens = [
        view.max_completion_tokens,
        view.max_tokens,
        view.max_output_tokens,
    ]
    .into_iter()
    .flatten()
    .find_map(|raw| serde_json::from_str::<u64>(raw.get()).ok());
    let (tags, tags_edit) = super::metadata_tags::metadata_tags(body, view.metadata, span_of)?;
    Ok(BodyFacts {
        model,
        model_slot,
        stream,
        stream_options_span: view.stream_options.and_then(|raw| span_of(body, raw)),
        include_usage,
        max_output_tokens,
        end_user,
        n: view.n.and_then(count),
        best_of: view.best_of.and_then(count),
        service_tier: view.service_tier.and_then(json_string),
        continues_conversation: [view.previous_response_id, view.conversation]
            .into_iter()
            .flatten()
            .any(|raw| raw.get() != "null"),
        background: view
            .background
            .is_some_and(|raw| !matches!(raw.get(), "false" | "null")),
        prompts: view.prompt.and_then(prompt_count),
        tags,
        tags_edit,
    })
}

/// How many prompts a `prompt` value holds when it is a list of them: an array of strings or of
/// token arrays counts its elements; a string or a flat array of token integers is one prompt.
fn prompt_count(raw: &RawValue) -> Option<u64> {
    let items = serde_json::from_str::<Vec<&RawValue>>(raw.get()).ok()?;
    let is_token = |item: &&RawValue| {
        item.get()
            .starts_with(|c: char| c == '-' || c.is_ascii_digit())
    };
    if items.is_empty() || items.iter().all(is_token) {
        return None;
    }
    Some(items.len() as u64)
}

/// A non-negative number as a count (a fraction rounds up, so `2.5` answers count as 3).
fn count(raw: &RawValue) -> Option<u64> {
    let value = serde_json::from_str::<f64>(raw.get()).ok()?;
    // `as` saturates: 1e300 becomes u64::MAX.
    (value.is_finite() && value >= 0.0).then(|| value.ceil() as u64)
}

/// Where a borrowed raw value sits in `body`.
fn span_of(body: &[u8], raw: &RawValue) -> Option<Range<usize>> {
    let text = raw.get();
    let start = (text.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
    let span = start..start.checked_add(text.len())?;
    (body.get(span.clone()) == Some(text.as_bytes())).then_some(span)
}

/// A JSON string value, borrowed when it has no escapes.
fn json_string(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    match serde_json::from_str::<&str>(text) {
        Ok(borrowed) => Some(Cow::Borrowed(borrowed)),
        Err(_) => serde_json::from_str::<String>(text).ok().map(Cow::Owned),
    }
}

/// Applies non-overlapping replacements (`range` of `body` → bytes) in one copy.
pub fn splice(body: &[u8], mut edits: Vec<(Range<usize>, Vec<u8>)>) -> Vec<u8> {
    edits.sort_by_key(|(range, _)| range.start);
    let extra: usize = edits.iter().map(|(_, bytes)| bytes.len()).sum();
    let mut out = Vec::with_capacity(body.len() + extra);
    let mut at = 0;
    for (range, bytes) in edits {
        if range.start < at {
            continue;
        }
        out.extend_from_slice(body.get(at..range.start).unwrap_or_default());
        out.extend_from_slice(&bytes);
        at = range.end;
    }
    out.extend_from_slice(body.get(at..).unwrap_or_default());
    out
}

/// The edit that replaces the `model` value with `new_model` (JSON-escaped).
pub fn model_edit(span: Range<usize>, new_model: &str) -> (Range<usize>, Vec<u8>) {
    let encoded = serde_json::Value::String(new_model.to_string()).to_string();
    (span, encoded.into_bytes())
}

/// The body with the `model` value replaced by `new_model` (JSON-escaped).
pub fn rewrite_model(body: &[u8], span: Range<usize>, new_model: &str) -> Vec<u8> {
    splice(body, vec![model_edit(span, new_model)])
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn head<'a>(
        auth: Option<&'a str>,
        x: Option<&'a str>,
        api: Option<&'a str>,
    ) -> RequestHead<'a> {
        RequestHead {
            method: "POST",
            path: "/v1/chat/completions",
            authorization: auth,
            x_api_key: x,
            api_key: api,
            ..RequestHead::default()
        }
    }

    #[test]
    fn endpoints_are_classified_with_or_without_v1() {
        assert_eq!(
            Endpoint::classify("/v1/chat/completions"),
            Endpoint::ChatCompletions
        );
        assert_eq!(
            Endpoint::classify("/chat/completions?x=1"),
            Endpoint::ChatCompletions
        );
        assert_eq!(Endpoint::classify("/v1/messages"), Endpoint::Messages);
        assert_eq!(Endpoint::classify("/v1/responses"), Endpoint::Responses);
        assert_eq!(Endpoint::classify("/v1/embeddings"), Endpoint::Embeddings);
        assert_eq!(Endpoint::classify("/completions"), Endpoint::Completions);
        assert_eq!(Endpoint::classify("/v1/models"), Endpoint::ListModels);
        assert_eq!(
            Endpoint::classify("/v1/models/gpt-4o"),
            Endpoint::RetrieveModel
        );
        assert_eq!(
            Endpoint::classify("/v1/models/openai/gpt-4o?x=1"),
            Endpoint::RetrieveModel
        );
        assert_eq!(Endpoint::classify("/v1/models/"), Endpoint::ListModels);
        assert_eq!(Endpoint::classify("/v1/files"), Endpoint::Unsupported);
        assert_eq!(
            Endpoint::classify("/v1/chat/completionsX"),
            Endpoint::Unsupported
        );
    }

    #[test]
    fn credential_comes_from_any_of_three_headers_bearer_first() {
        assert_eq!(
            head(Some("Bearer sk-a"), Some("sk-b"), None).credential(),
            Ok("sk-a")
        );
        assert_eq!(
            head(Some("bearer  sk-a "), None, None).credential(),
            Ok("sk-a")
        );
        assert_eq!(
            head(None, Some("sk-b"), Some("sk-c")).credential(),
            Ok("sk-b")
        );
        assert_eq!(head(None, None, Some("sk-c")).credential(), Ok("sk-c"));
    }

    #[test]
    fn missing_and_malformed_credentials_are_told_apart() {
        assert_eq!(
            head(None, None, None).credential(),
            Err(CredentialProblem::Missing)
        );
        for bad in [
            "Basic abc",
            "Bearer",
            "Bearer abc",
            "Bearer sk-",
            "Bearer sk-a b\u{7f}",
        ] {
            assert_eq!(
                head(Some(bad), None, None).credential(),
                Err(CredentialProblem::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            head(None, Some("not-a-key"), None).credential(),
            Err(CredentialProblem::Malformed)
        );
    }

    #[test]
    fn body_model_and_span_are_read() {
        let body = br#"{"messages":[],"model":"gpt-4o","stream":true}"#;
        let facts = read_body(body).unwrap();
        assert_eq!(facts.model, "gpt-4o");
        let ModelSlot::Value { span, .. } = &facts.model_slot else {
            panic!("{:?}", facts.model_slot)
        };
        assert_eq!(&body[span.clone()], br#""gpt-4o""#);
        assert_eq!(facts.model_edit("gpt-4o"), None);
    }

    #[test]
    fn escaped_model_is_unescaped() {
        let facts = read_body(br#"{"model":"gpt\u002d4o"}"#).unwrap();
        assert_eq!(facts.model, "gpt-4o");
    }

    #[test]
    fn bad_bodies_are_refused_with_a_reason() {
        assert_eq!(read_body(b""), Err(BodyProblem::Empty));
        assert_eq!(
            read_body(br#"{"messages":[]}"#),
            Err(BodyProblem::MissingModel)
        );
        assert_eq!(read_body(br#"{"model":4}"#), Err(BodyProblem::InvalidModel));
        assert_eq!(
            read_body(br#"{"model":null}"#),
            Err(BodyProblem::MissingModel)
        );
        assert_eq!(
            read_body(br#"{"model":""}"#),
            Err(BodyProblem::InvalidModel)
        );
        assert!(matches!(
            read_body(b"{\"model\":\"a\""),
            Err(BodyProblem::InvalidJson(_))
        ));
        for not_object in [
            &b"[1,2]"[..],
            br#"["gpt-4o",true,null,null,null,null,null]"#,
        ] {
            assert!(matches!(
                read_body(not_object),
                Err(BodyProblem::InvalidJson(_))
            ));
        }
        assert!(matches!(
            read_body(br#"{"model":"a","model":"b"}"#),
            Err(BodyProblem::InvalidJson(_))
        ));
        for twice in [
            &br#"{"model":"a","input":"x","input":[]}"#[..],
            br#"{"model":"a","previous_response_id":"x","previous_response_id":"y"}"#,
            br#"{"model":"a","user":"x","user":"y"}"#,
        ] {
            assert!(matches!(read_body(twice), Err(BodyProblem::InvalidJson(_))));
        }
        assert!(matches!(
            read_body(b"{\"model\":\"\xff\"}"),
            Err(BodyProblem::InvalidJson(_))
        ));
    }

    #[test]
    fn stream_caps_and_end_user_are_read() {
        let body = br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},
                        "max_tokens":50,"user":"u-1"}"#;
        let facts = read_body(body).unwrap();
        assert!(facts.stream && facts.include_usage);
        assert_eq!(facts.max_output_tokens, Some(50));
        assert_eq!(facts.end_user.as_deref(), Some("u-1"));
        let span = facts.stream_options_span.unwrap();
        assert_eq!(&body[span], br#"{"include_usage":true}"#);

        let facts =
            read_body(br#"{"model":"m","max_completion_tokens":7,"max_tokens":9}"#).unwrap();
        assert_eq!(facts.max_output_tokens, Some(7));
        assert!(!facts.stream && !facts.include_usage && facts.end_user.is_none());
        let facts =
            read_body(br#"{"model":"m","stream":"yes","max_output_tokens":-1,"user":3}"#).unwrap();
        assert!(!facts.stream);
        assert_eq!(facts.max_output_tokens, None);
        assert_eq!(facts.end_user, None);
    }

    #[test]
    fn a_long_or_control_character_user_is_refused() {
        let body = |user: &str| format!(r#"{{"model":"m","user":{}}}"#, serde_json::json!(user));
        assert_eq!(
            read_body(br#"{"model":"m","user":"customer-42\udc00"}"#),
            Err(BodyProblem::InvalidUser),
            "a lone surrogate cannot slip past the end-user budget"
        );
        let longest = "u".repeat(MAX_END_USER_BYTES);
        let accepted = body(&longest);
        let facts = read_body(accepted.as_bytes()).unwrap();
        assert_eq!(facts.end_user.as_deref(), Some(longest.as_str()));
        for bad in [
            "u".repeat(MAX_END_USER_BYTES + 1),
            "é".repeat(MAX_END_USER_BYTES / 2 + 1),
            "a\nb".to_string(),
            "a\u{0}b".to_string(),
            "a\u{7f}".to_string(),
        ] {
            assert_eq!(
                read_body(body(&bad).as_bytes()).err(),
                Some(BodyProblem::InvalidUser),
                "{bad:?}"
            );
        }
        assert!(read_body(br#"{"model":"m","user":"tab\there"}"#).is_err());
    }

    #[test]
    fn splice_applies_edits_in_order() {
        let body = b"0123456789";
        let out = splice(body, vec![(6..8, b"xy".to_vec()), (1..2, b"ABC".to_vec())]);
        assert_eq!(out, b"0ABC2345xy89");
        assert_eq!(splice(body, vec![(3..3, b"-".to_vec())]), b"012-3456789");
    }

    #[test]
    fn deeply_nested_bodies_are_read_without_recursion() {
        // Fields other than `model` are skipped iteratively, so depth cannot exhaust the stack.
        let depth = 200_000;
        let deep = format!(
            "{{\"x\":{}{},\"model\":\"a\"}}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        assert_eq!(read_body(deep.as_bytes()).unwrap().model, "a");
        let unbalanced = format!("{{\"model\":\"a\",\"x\":{}}}", "[".repeat(depth));
        assert!(matches!(
            read_body(unbalanced.as_bytes()),
            Err(BodyProblem::InvalidJson(_))
        ));
    }

    #[test]
    fn rewrite_replaces_only_the_model_value() {
        let body = br#"{"model":"fast","messages":[{"content":"model"}]}"#;
        let facts = read_body(body).unwrap();
        let ModelSlot::Value { span, .. } = facts.model_slot else {
            panic!()
        };
        let out = rewrite_model(body, span, "qwen/\"q\"");
        assert_eq!(
            out,
            br#"{"model":"qwen/\"q\"","messages":[{"content":"model"}]}"#
        );
    }

    #[test]
    fn a_path_model_wins_and_the_body_model_is_replaced_or_inserted() {
        let edited = |body: &[u8]| {
            let facts = read_body_as(body, Some("gpt-4o")).unwrap();
            assert_eq!(facts.model, "gpt-4o");
            let edit = facts.model_edit("gpt-4o-2024").unwrap();
            let out = splice(body, vec![edit]);
            let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
            (value["model"].clone(), value)
        };
        let (model, _) = edited(br#"{"model":"allowed-model","messages":[]}"#);
        assert_eq!(model, "gpt-4o-2024");
        let (model, value) = edited(br#" { "messages":[1] }"#);
        assert_eq!(
            (model, value["messages"][0].clone()),
            ("gpt-4o-2024".into(), 1.into())
        );
        let (model, _) = edited(b"{ }");
        assert_eq!(model, "gpt-4o-2024");
        let (model, _) = edited(br#"{"model":{"x":1},"input":"a"}"#);
        assert_eq!(
            model, "gpt-4o-2024",
            "a non-string body model is replaced too"
        );
        let same = read_body_as(br#"{"model":"gpt-4o"}"#, Some("gpt-4o")).unwrap();
        assert_eq!(same.model_edit("gpt-4o"), None);
        assert!(matches!(
            read_body_as(br#"{"model":"a","model":"b"}"#, Some("gpt-4o")),
            Err(BodyProblem::InvalidJson(_))
        ));
        assert_eq!(read_body_as(b"", Some("m")), Err(BodyProblem::Empty));
        assert!(read_body_as(b"[]", Some("m")).is_err());
    }

    #[test]
    fn worst_case_facts_are_read_leniently() {
        let facts = read_body(
            br#"{"model":"m","n":4,"best_of":2.5,"service_tier":"priority","previous_response_id":"resp_1"}"#,
        )
        .unwrap();
        assert_eq!((facts.n, facts.best_of), (Some(4), Some(3)));
        assert_eq!(facts.service_tier.as_deref(), Some("priority"));
        assert!(facts.continues_conversation);
        let facts =
            read_body(br#"{"model":"m","n":-1,"best_of":"x","previous_response_id":null,"conversation":{"id":"c"}}"#)
                .unwrap();
        assert_eq!((facts.n, facts.best_of), (None, None));
        assert!(
            facts.continues_conversation,
            "conversation state is billed too"
        );
        let facts = read_body(br#"{"model":"m","n":1e300,"previous_response_id":null}"#).unwrap();
        assert_eq!(facts.n, Some(u64::MAX));
        assert!(!facts.continues_conversation);
    }

    #[test]
    fn background_and_prompt_lists_are_read() {
        let background = |body: &[u8]| read_body(body).unwrap().background;
        assert!(background(br#"{"model":"m","background":true}"#));
        assert!(background(br#"{"model":"m","background":"yes"}"#));
        assert!(!background(br#"{"model":"m","background":false}"#));
        assert!(!background(br#"{"model":"m","background":null}"#));
        assert!(!background(br#"{"model":"m"}"#));
        assert!(read_body(br#"{"model":"m","background":false,"background":true}"#).is_err());

        let prompts = |body: &[u8]| read_body(body).unwrap().prompts;
        assert_eq!(prompts(br#"{"model":"m","prompt":"one"}"#), None);
        assert_eq!(
            prompts(br#"{"model":"m","prompt":[1,2,3]}"#),
            None,
            "token ids"
        );
        assert_eq!(prompts(br#"{"model":"m","prompt":[]}"#), None);
        assert_eq!(prompts(br#"{"model":"m","prompt":["a","b","c"]}"#), Some(3));
        assert_eq!(prompts(br#"{"model":"m","prompt":[[1,2],[3]]}"#), Some(2));
        assert_eq!(prompts(br#"{"model":"m","prompt":["a",[3]]}"#), Some(2));
        assert_eq!(prompts(br#"{"model":"m"}"#), None);
    }

    #[test]
    fn metadata_tags_are_read_and_taken_out_of_the_upstream_body() {
        let body = br#"{"model":"m","metadata":{"trace":"t-1","tags":["a","b"]},"user":"u"}"#;
        let facts = read_body(body).unwrap();
        assert_eq!(facts.tags, ["a", "b"]);
        let edit = facts.tags_edit.clone().unwrap();
        let out = splice(body, vec![edit]);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"model":"m","metadata":{"trace":"t-1"},"user":"u"}"#
        );
        for untouched in [
            &br#"{"model":"m","metadata":{"trace":"t"}}"#[..],
            br#"{"model":"m","metadata":"text"}"#,
            br#"{"model":"m","metadata":null}"#,
            br#"{"model":"m"}"#,
        ] {
            let facts = read_body(untouched).unwrap();
            assert!(facts.tags.is_empty() && facts.tags_edit.is_none());
        }
        for bad in [
            &br#"{"model":"m","metadata":{"tags":"a"}}"#[..],
            br#"{"model":"m","metadata":{"tags":[1]}}"#,
            br#"{"model":"m","metadata":{"tags":{"a":1}}}"#,
        ] {
            assert_eq!(read_body(bad).err(), Some(BodyProblem::InvalidTags));
        }
    }
}
