//! Usage (tokens) reported by an upstream, normalised the way LiteLLM does.
//!
//! The invariant: `prompt_tokens` *includes* cached reads and cache writes (OpenAI's convention).
//! Anthropic reports `input_tokens` *without* them, so its three numbers are added up.
//!
//! The service tier that served the request is read with the usage (OpenAI's top-level
//! `service_tier`, the Responses object's `service_tier`, Anthropic's `usage.service_tier`), and
//! so is the part of Anthropic's cache writes that lives an hour
//! (`cache_creation.ephemeral_1h_input_tokens`), since both change the price.

use serde::Deserialize;

use crate::core::admission::request::Endpoint;
use crate::core::money::cost::ServiceTier;

/// Token counts of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// All input tokens, including cached reads and cache writes.
    pub prompt_tokens: u64,
    /// Input tokens read from the provider's prompt cache (part of `prompt_tokens`).
    pub cached_tokens: u64,
    /// Input tokens written to the prompt cache (part of `prompt_tokens`).
    pub cache_creation_tokens: u64,
    /// All output tokens, including reasoning.
    pub completion_tokens: u64,
    /// Reasoning tokens (part of `completion_tokens`).
    pub reasoning_tokens: u64,
    /// Cache writes that live one hour (part of `cache_creation_tokens`).
    pub cache_creation_1h_tokens: u64,
    /// Audio input tokens (part of `prompt_tokens`; OpenAI `prompt_tokens_details.audio_tokens`).
    pub audio_input_tokens: u64,
    /// Audio output tokens (part of `completion_tokens`; OpenAI
    /// `completion_tokens_details.audio_tokens`).
    pub audio_output_tokens: u64,
    /// Server-side web searches the provider ran and bills per call (Anthropic
    /// `server_tool_use.web_search_requests`; the `web_search_call` items of an OpenAI Responses
    /// answer).
    pub web_search_requests: u64,
    /// The service tier the upstream reports it served the request in.
    pub service_tier: Option<ServiceTier>,
}

/// OpenAI chat/completions/embeddings `usage`.
#[derive(Debug, Default, Deserialize)]
struct OpenAiUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Debug, Default, Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    cache_write_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_tokens: Option<u64>,
    #[serde(default)]
    audio_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
    #[serde(default)]
    audio_tokens: Option<u64>,
}

/// OpenAI Responses `usage`.
#[derive(Debug, Default, Deserialize)]
struct ResponsesUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    output_tokens_details: Option<CompletionDetails>,
}

/// Anthropic `usage` (in a message, `message_start` or `message_delta`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AnthropicUsage {
    #[serde(default)]
    pub(crate) input_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) output_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) cache_creation: Option<AnthropicCacheCreation>,
    #[serde(default)]
    pub(crate) service_tier: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) server_tool_use: Option<AnthropicServerToolUse>,
}

/// Anthropic's server-side tool calls (cumulative, like `output_tokens`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AnthropicServerToolUse {
    #[serde(default)]
    pub(crate) web_search_requests: Option<u64>,
}

/// Anthropic's cache writes by lifetime.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AnthropicCacheCreation {
    #[serde(default)]
    pub(crate) ephemeral_5m_input_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) ephemeral_1h_input_tokens: Option<u64>,
}

impl Usage {
    /// OpenAI-convention counts (prompt already includes cache reads and writes).
    fn openai(
        prompt_tokens: u64,
        completion_tokens: u64,
        prompt: Option<PromptDetails>,
        completion: Option<CompletionDetails>,
    ) -> Usage {
        let prompt = prompt.unwrap_or_default();
        Usage {
            prompt_tokens,
            cached_tokens: prompt.cached_tokens.unwrap_or(0),
            cache_creation_tokens: prompt
                .cache_write_tokens
                .or(prompt.cache_creation_tokens)
                .unwrap_or(0),
            completion_tokens,
            reasoning_tokens: completion
                .as_ref()
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
            audio_input_tokens: prompt.audio_tokens.unwrap_or(0),
            audio_output_tokens: completion.and_then(|d| d.audio_tokens).unwrap_or(0),
            ..Usage::default()
        }
    }
}

impl From<OpenAiUsage> for Usage {
    fn from(u: OpenAiUsage) -> Usage {
        Usage::openai(
            u.prompt_tokens,
            u.completion_tokens,
            u.prompt_tokens_details,
            u.completion_tokens_details,
        )
    }
}

impl From<ResponsesUsage> for Usage {
    fn from(u: ResponsesUsage) -> Usage {
        Usage::openai(
            u.input_tokens,
            u.output_tokens,
            u.input_tokens_details,
            u.output_tokens_details,
        )
    }
}

impl AnthropicUsage {
    /// Folds this report into `usage`: `message_start` carries input and cache counts,
    /// `message_delta` carries the cumulative output count (and, in newer API versions, input).
    pub(crate) fn merge_into(&self, usage: &mut Usage) {
        let cached = self.cache_read_input_tokens;
        let by_lifetime = self.cache_creation.as_ref();
        let one_hour = by_lifetime.and_then(|c| c.ephemeral_1h_input_tokens);
        let created = self.cache_creation_input_tokens.or_else(|| {
            let c = by_lifetime?;
            Some(
                c.ephemeral_5m_input_tokens
                    .unwrap_or(0)
                    .saturating_add(c.ephemeral_1h_input_tokens.unwrap_or(0)),
            )
        });
        if let Some(tier) = self.service_tier.as_ref().and_then(|t| t.as_str()) {
            usage.service_tier = Some(ServiceTier::parse(tier));
        }
        if let Some(input) = self.input_tokens {
            usage.cached_tokens = cached.unwrap_or(usage.cached_tokens);
            usage.cache_creation_tokens = created.unwrap_or(usage.cache_creation_tokens);
            usage.cache_creation_1h_tokens = one_hour.unwrap_or(usage.cache_creation_1h_tokens);
            usage.prompt_tokens = input
                .saturating_add(usage.cached_tokens)
                .saturating_add(usage.cache_creation_tokens);
        }
        if let Some(output) = self.output_tokens {
            usage.completion_tokens = output;
        }
        if let Some(searches) = self
            .server_tool_use
            .as_ref()
            .and_then(|s| s.web_search_requests)
        {
            usage.web_search_requests = searches;
        }
    }
}

#[derive(Deserialize)]
struct WithUsage<U> {
    usage: Option<U>,
    /// Read leniently: a tier that is not a string leaves the usage readable.
    #[serde(default)]
    service_tier: Option<serde_json::Value>,
    /// A Responses object's output items, kept raw: only their `type` is read (web searches).
    #[serde(default)]
    output: Option<Box<serde_json::value::RawValue>>,
}

impl<U: Into<Usage>> WithUsage<U> {
    /// The usage with the tier reported beside it, and the web searches among the output items.
    fn into_usage(self) -> Option<Usage> {
        let mut usage: Usage = self.usage?.into();
        if let Some(tier) = self.service_tier.as_ref().and_then(|t| t.as_str()) {
            usage.service_tier = Some(ServiceTier::parse(tier));
        }
        if let Some(output) = &self.output {
            usage.web_search_requests = web_search_calls(output.get());
        }
        Some(usage)
    }
}

/// The `web_search_call` items of a Responses `output` array (0 when it is not an array of
/// objects): OpenAI bills each call of its web search tool.
fn web_search_calls(output: &str) -> u64 {
    #[derive(Deserialize)]
    struct Item<'a> {
        #[serde(rename = "type", borrow, default)]
        kind: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_str::<Vec<Item>>(output)
        .map(|items| {
            let calls = items
                .iter()
                .filter(|i| i.kind.as_deref() == Some("web_search_call"));
            calls.count() as u64
        })
        .unwrap_or(0)
}

/// Usage from a complete (non-streamed) JSON response body of `endpoint`.
pub fn usage_from_json(endpoint: Endpoint, body: &[u8]) -> Option<Usage> {
    match endpoint {
        Endpoint::ChatCompletions | Endpoint::Completions | Endpoint::Embeddings => {
            let parsed: WithUsage<OpenAiUsage> = serde_json::from_slice(body).ok()?;
            parsed.into_usage()
        }
        Endpoint::Responses => {
            let parsed: WithUsage<ResponsesUsage> = serde_json::from_slice(body).ok()?;
            parsed.into_usage()
        }
        Endpoint::Messages => {
            let parsed: WithUsage<AnthropicUsage> = serde_json::from_slice(body).ok()?;
            let mut usage = Usage::default();
            parsed.usage?.merge_into(&mut usage);
            Some(usage)
        }
        // Not metered (free, or answered by the filter).
        Endpoint::CountTokens
        | Endpoint::StoredResponse
        | Endpoint::ResponseInputItems
        | Endpoint::ListModels
        | Endpoint::RetrieveModel
        | Endpoint::Unsupported => None,
    }
}

/// Folds a bare `usage` object of `endpoint`'s shape into `usage` (used when only the end of an
/// over-long event was kept). Returns true when it parsed.
pub fn merge_usage_object(endpoint: Endpoint, object: &[u8], usage: &mut Usage) -> bool {
    match endpoint {
        Endpoint::ChatCompletions | Endpoint::Completions | Endpoint::Embeddings => {
            serde_json::from_slice::<OpenAiUsage>(object)
                .map(|u| *usage = Usage::from(u))
                .is_ok()
        }
        Endpoint::Responses => serde_json::from_slice::<ResponsesUsage>(object)
            .map(|u| *usage = Usage::from(u))
            .is_ok(),
        Endpoint::Messages => serde_json::from_slice::<AnthropicUsage>(object)
            .map(|u| u.merge_into(usage))
            .is_ok(),
        Endpoint::CountTokens
        | Endpoint::StoredResponse
        | Endpoint::ResponseInputItems
        | Endpoint::ListModels
        | Endpoint::RetrieveModel
        | Endpoint::Unsupported => false,
    }
}

/// Usage from one streamed event's JSON (`data:` payload) of `endpoint`, folded into `usage`.
/// Returns true when the event carried usage.
pub fn merge_stream_event(endpoint: Endpoint, data: &[u8], usage: &mut Usage) -> bool {
    match endpoint {
        Endpoint::ChatCompletions | Endpoint::Completions => {
            match serde_json::from_slice::<WithUsage<OpenAiUsage>>(data)
                .ok()
                .and_then(WithUsage::into_usage)
            {
                Some(u) => {
                    *usage = u;
                    true
                }
                None => false,
            }
        }
        Endpoint::Responses => {
            #[derive(Deserialize)]
            struct Event {
                #[serde(rename = "type")]
                kind: String,
                response: Option<WithUsage<ResponsesUsage>>,
            }
            match serde_json::from_slice::<Event>(data) {
                Ok(Event {
                    kind,
                    response: Some(response),
                }) if kind.starts_with("response.") => match response.into_usage() {
                    Some(u) => {
                        *usage = u;
                        true
                    }
                    None => false,
                },
                _ => false,
            }
        }
        Endpoint::Messages => {
            #[derive(Deserialize)]
            struct Event {
                message: Option<WithUsage<AnthropicUsage>>,
                usage: Option<AnthropicUsage>,
            }
            let Ok(event) = serde_json::from_slice::<Event>(data) else {
                return false;
            };
            let reported = event.message.and_then(|m| m.usage).or(event.usage);
            match reported {
                Some(u) => {
                    u.merge_into(usage);
                    true
                }
                None => false,
            }
        }
        Endpoint::Embeddings
        | Endpoint::CountTokens
        | Endpoint::StoredResponse
        | Endpoint::ResponseInputItems
        | Endpoint::ListModels
        | Endpoint::RetrieveModel
        | Endpoint::Unsupported => false,
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn openai_chat_usage_keeps_cached_inside_prompt() {
        let body = br#"{"id":"x","choices":[],"usage":{"prompt_tokens":100,"completion_tokens":20,
            "total_tokens":120,"prompt_tokens_details":{"cached_tokens":40,"audio_tokens":0},
            "completion_tokens_details":{"reasoning_tokens":8}}}"#;
        let u = usage_from_json(Endpoint::ChatCompletions, body).unwrap();
        assert_eq!(
            u,
            Usage {
                prompt_tokens: 100,
                cached_tokens: 40,
                cache_creation_tokens: 0,
                completion_tokens: 20,
                reasoning_tokens: 8,
                ..Usage::default()
            }
        );
    }

    #[test]
    fn anthropic_input_excludes_caches_so_they_are_added() {
        let body = br#"{"type":"message","usage":{"input_tokens":10,"output_tokens":5,
            "cache_read_input_tokens":100,"cache_creation_input_tokens":50}}"#;
        let u = usage_from_json(Endpoint::Messages, body).unwrap();
        assert_eq!(
            u,
            Usage {
                prompt_tokens: 160,
                cached_tokens: 100,
                cache_creation_tokens: 50,
                completion_tokens: 5,
                reasoning_tokens: 0,
                ..Usage::default()
            }
        );
    }

    #[test]
    fn responses_usage_uses_input_and_output_names() {
        let body = br#"{"object":"response","usage":{"input_tokens":12,"input_tokens_details":{"cached_tokens":2},
            "output_tokens":5,"output_tokens_details":{"reasoning_tokens":3},"total_tokens":17}}"#;
        let u = usage_from_json(Endpoint::Responses, body).unwrap();
        assert_eq!(
            (
                u.prompt_tokens,
                u.cached_tokens,
                u.completion_tokens,
                u.reasoning_tokens
            ),
            (12, 2, 5, 3)
        );
    }

    #[test]
    fn anthropic_one_hour_cache_writes_and_tier_are_read() {
        let body = br#"{"type":"message","usage":{"input_tokens":10,"output_tokens":5,
            "cache_creation_input_tokens":1000,"cache_read_input_tokens":0,
            "cache_creation":{"ephemeral_5m_input_tokens":400,"ephemeral_1h_input_tokens":600},
            "service_tier":"standard"}}"#;
        let u = usage_from_json(Endpoint::Messages, body).unwrap();
        assert_eq!(
            (
                u.prompt_tokens,
                u.cache_creation_tokens,
                u.cache_creation_1h_tokens
            ),
            (1010, 1000, 600)
        );
        assert_eq!(u.service_tier, Some(ServiceTier::Standard));
        let mut streamed = Usage::default();
        assert!(merge_stream_event(
            Endpoint::Messages,
            br#"{"type":"message_start","message":{"usage":{"input_tokens":10,"output_tokens":1,
                "cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":300}}}}"#,
            &mut streamed
        ));
        assert_eq!(
            (
                streamed.prompt_tokens,
                streamed.cache_creation_tokens,
                streamed.cache_creation_1h_tokens
            ),
            (310, 300, 300)
        );
    }

    #[test]
    fn the_served_service_tier_is_read_beside_the_usage() {
        let chat = br#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1},"service_tier":"priority"}"#;
        assert_eq!(
            usage_from_json(Endpoint::ChatCompletions, chat)
                .unwrap()
                .service_tier,
            Some(ServiceTier::Priority)
        );
        let plain = br#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#;
        assert_eq!(
            usage_from_json(Endpoint::ChatCompletions, plain)
                .unwrap()
                .service_tier,
            None
        );
        // Responses: the response object's own field, not one inside its metadata.
        let mut u = Usage::default();
        assert!(merge_stream_event(
            Endpoint::Responses,
            br#"{"type":"response.completed","response":{"service_tier":"flex","metadata":{"service_tier":"priority"},
                "usage":{"input_tokens":7,"output_tokens":3}}}"#,
            &mut u
        ));
        assert_eq!(u.service_tier, Some(ServiceTier::Flex));
        let json = br#"{"object":"response","service_tier":"default","usage":{"input_tokens":1,"output_tokens":1},
            "metadata":{"service_tier":"flex"}}"#;
        assert_eq!(
            usage_from_json(Endpoint::Responses, json)
                .unwrap()
                .service_tier,
            Some(ServiceTier::Standard)
        );
        let mut chunk = Usage::default();
        assert!(merge_stream_event(
            Endpoint::ChatCompletions,
            br#"{"choices":[],"service_tier":"priority","usage":{"prompt_tokens":2,"completion_tokens":4}}"#,
            &mut chunk
        ));
        assert_eq!(chunk.service_tier, Some(ServiceTier::Priority));
    }

    #[test]
    fn openai_audio_tokens_are_read_inside_prompt_and_completion() {
        let body = br#"{"usage":{"prompt_tokens":100,"completion_tokens":50,
            "prompt_tokens_details":{"cached_tokens":0,"audio_tokens":60},
            "completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":40}}}"#;
        let u = usage_from_json(Endpoint::ChatCompletions, body).unwrap();
        assert_eq!(
            (
                u.prompt_tokens,
                u.audio_input_tokens,
                u.completion_tokens,
                u.audio_output_tokens
            ),
            (100, 60, 50, 40)
        );
        let responses = br#"{"usage":{"input_tokens":10,"output_tokens":5,
            "input_tokens_details":{"audio_tokens":7},"output_tokens_details":{"audio_tokens":2}}}"#;
        let u = usage_from_json(Endpoint::Responses, responses).unwrap();
        assert_eq!((u.audio_input_tokens, u.audio_output_tokens), (7, 2));
    }

    #[test]
    fn anthropic_web_searches_are_read_in_messages_and_streams() {
        let body = br#"{"type":"message","usage":{"input_tokens":10,"output_tokens":5,
            "server_tool_use":{"web_search_requests":3}}}"#;
        let u = usage_from_json(Endpoint::Messages, body).unwrap();
        assert_eq!(u.web_search_requests, 3);
        let mut streamed = Usage::default();
        for delta in [
            &br#"{"input_tokens":10,"output_tokens":1}"#[..],
            br#"{"output_tokens":50,"server_tool_use":{"web_search_requests":2}}"#,
        ] {
            let usage: AnthropicUsage = serde_json::from_slice(delta).unwrap();
            usage.merge_into(&mut streamed);
        }
        assert_eq!(
            (streamed.completion_tokens, streamed.web_search_requests),
            (50, 2)
        );
    }

    #[test]
    fn responses_web_search_calls_are_counted_in_answers_and_streams() {
        let body = br#"{"object":"response","output":[
            {"type":"web_search_call","id":"ws_1","status":"completed","action":{"type":"search","query":"q"}},
            {"type":"web_search_call","id":"ws_2","status":"completed"},
            {"type":"message","content":[{"type":"output_text","text":"web_search_call"}]}],
            "usage":{"input_tokens":10,"output_tokens":5}}"#;
        let u = usage_from_json(Endpoint::Responses, body).unwrap();
        assert_eq!((u.prompt_tokens, u.web_search_requests), (10, 2));
        let event =
            br#"{"type":"response.completed","response":{"output":[{"type":"web_search_call"}],
            "usage":{"input_tokens":1,"output_tokens":1}}}"#;
        let mut streamed = Usage::default();
        assert!(merge_stream_event(
            Endpoint::Responses,
            event,
            &mut streamed
        ));
        assert_eq!(streamed.web_search_requests, 1);
        let odd = br#"{"output":[1,"x"],"usage":{"input_tokens":1,"output_tokens":1}}"#;
        let u = usage_from_json(Endpoint::Responses, odd).unwrap();
        assert_eq!(
            u.web_search_requests, 0,
            "an odd output leaves the usage readable"
        );
    }

    #[test]
    fn embeddings_have_prompt_tokens_only() {
        let body = br#"{"object":"list","data":[],"usage":{"prompt_tokens":4,"total_tokens":4}}"#;
        let u = usage_from_json(Endpoint::Embeddings, body).unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (4, 0));
    }

    #[test]
    fn missing_or_malformed_usage_is_none() {
        assert_eq!(
            usage_from_json(Endpoint::ChatCompletions, br#"{"choices":[]}"#),
            None
        );
        assert_eq!(
            usage_from_json(Endpoint::ChatCompletions, b"not json"),
            None
        );
        assert_eq!(
            usage_from_json(
                Endpoint::ChatCompletions,
                br#"{"usage":{"prompt_tokens":-1}}"#
            ),
            None
        );
    }

    #[test]
    fn anthropic_stream_events_merge_start_and_delta() {
        let mut u = Usage::default();
        assert!(merge_stream_event(
            Endpoint::Messages,
            br#"{"type":"message_start","message":{"usage":{"input_tokens":10,"output_tokens":1,"cache_read_input_tokens":4}}}"#,
            &mut u
        ));
        assert!(!merge_stream_event(
            Endpoint::Messages,
            br#"{"type":"content_block_delta","delta":{"text":"usage"}}"#,
            &mut u
        ));
        assert!(merge_stream_event(
            Endpoint::Messages,
            br#"{"type":"message_delta","usage":{"output_tokens":42}}"#,
            &mut u
        ));
        assert_eq!(
            (u.prompt_tokens, u.cached_tokens, u.completion_tokens),
            (14, 4, 42)
        );
    }

    #[test]
    fn responses_stream_reads_usage_from_the_completed_event() {
        let mut u = Usage::default();
        assert!(!merge_stream_event(
            Endpoint::Responses,
            br#"{"type":"response.output_text.delta","delta":"hi"}"#,
            &mut u
        ));
        assert!(merge_stream_event(
            Endpoint::Responses,
            br#"{"type":"response.completed","response":{"id":"r","usage":{"input_tokens":7,"output_tokens":3}}}"#,
            &mut u
        ));
        assert_eq!((u.prompt_tokens, u.completion_tokens), (7, 3));
    }
}
