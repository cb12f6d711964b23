//! Whether Tollgate can reach a LiteLLM provider, and where. Tollgate forwards the client's
//! OpenAI or Anthropic request unchanged (model rewritten, credential swapped) to an Envoy
//! cluster; it translates no wire format and signs nothing. So a provider is reachable when it
//! speaks those APIs (natively or through its OpenAI-compatible endpoint), and the import says
//! what a provider needs beyond that (a path rewrite, Envoy's request signing) or that it is
//! out of reach.

use super::upstream::Upstream;

/// How a provider's requests can go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// OpenAI's or Anthropic's API at this address (a known provider's default).
    Known(&'static str),
    /// No default address is known: the operator defines the cluster (an OpenAI-compatible
    /// endpoint), as for any `api_base`.
    Unknown,
    /// Needs something Tollgate does not do; the text says what.
    Needs(&'static str),
}

/// Providers Tollgate reaches at their published API base, with the variable LiteLLM reads
/// their key from (litellm 1.109.1's provider code): `(provider, base, key variable)`.
pub const DEFAULT_BASES: [(&str, &str, &str); 14] = [
    ("openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
    (
        "text-completion-openai",
        "https://api.openai.com/v1",
        "OPENAI_API_KEY",
    ),
    (
        "anthropic",
        "https://api.anthropic.com/v1",
        "ANTHROPIC_API_KEY",
    ),
    ("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    ("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    (
        "deepseek",
        "https://api.deepseek.com/v1",
        "DEEPSEEK_API_KEY",
    ),
    (
        "together_ai",
        "https://api.together.xyz/v1",
        "TOGETHERAI_API_KEY",
    ),
    (
        "fireworks_ai",
        "https://api.fireworks.ai/inference/v1",
        "FIREWORKS_AI_API_KEY",
    ),
    (
        "openrouter",
        "https://openrouter.ai/api/v1",
        "OPENROUTER_API_KEY",
    ),
    ("xai", "https://api.x.ai/v1", "XAI_API_KEY"),
    (
        "perplexity",
        "https://api.perplexity.ai",
        "PERPLEXITYAI_API_KEY",
    ),
    ("cerebras", "https://api.cerebras.ai/v1", "CEREBRAS_API_KEY"),
    (
        "deepinfra",
        "https://api.deepinfra.com/v1/openai",
        "DEEPINFRA_API_KEY",
    ),
    (
        "gemini",
        "https://generativelanguage.googleapis.com/v1beta/openai",
        "GEMINI_API_KEY",
    ),
];

const AWS_SIGNED: &str = "requests to it are signed with AWS SigV4 and use its own API: \
    Tollgate forwards OpenAI/Anthropic requests unchanged and signs nothing, so it works only \
    with Envoy's aws_request_signing filter on its cluster in front of an OpenAI-compatible \
    endpoint of that service; otherwise keep this deployment on LiteLLM";

const GOOGLE_OAUTH: &str = "Vertex AI needs a Google OAuth access token (Envoy's gcp_authn \
    filter on its cluster) and its OpenAI-compatible endpoint \
    (/v1/projects/<project>/locations/<location>/endpoints/openapi); Tollgate does neither by \
    itself, so set that up in Envoy or keep this deployment on LiteLLM";

const LITELLM_INTERNAL: &str = "a LiteLLM-internal route with no upstream of its own; it has no \
    Tollgate equivalent";

/// How `provider` (with `upstream_model`, its model after the prefix) can be reached.
pub fn reach(provider: &str, upstream_model: &str) -> Reach {
    match provider {
        "bedrock" | "sagemaker" | "sagemaker_chat" | "sagemaker_nova" => Reach::Needs(AWS_SIGNED),
        "vertex_ai" | "vertex_ai_beta" => Reach::Needs(GOOGLE_OAUTH),
        "auto_router" => Reach::Needs(LITELLM_INTERNAL),
        "openai" if upstream_model.starts_with("responses/") => Reach::Needs(
            "LiteLLM's openai/responses/ bridge (a chat request sent to the Responses API); \
             Tollgate forwards requests unchanged: call /v1/responses instead",
        ),
        _ => DEFAULT_BASES
            .iter()
            .find(|(name, _, _)| *name == provider)
            .map_or(Reach::Unknown, |(_, base, _)| Reach::Known(base)),
    }
}

/// What the operator must add on the route to `upstream` for Tollgate's `/v1/...` paths to
/// arrive where `provider` serves them (`None`: nothing, the base is `/v1` or the host root).
/// An Azure OpenAI resource serves the OpenAI API under `/openai/v1` (its v1 API).
pub fn path_rewrite(provider: &str, upstream: &Upstream) -> Option<String> {
    match (provider, upstream.path.as_str()) {
        ("azure" | "azure_text", "" | "/openai") => {
            Some("prefix_rewrite /v1 -> /openai/v1 (Azure OpenAI's v1 API)".into())
        }
        (_, "" | "/v1") => None,
        (_, path) => Some(format!("prefix_rewrite /v1 -> {path}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_providers_have_addresses_and_the_rest_say_what_they_need() {
        assert_eq!(
            reach("openai", "gpt-4o"),
            Reach::Known("https://api.openai.com/v1")
        );
        assert!(matches!(reach("groq", "llama"), Reach::Known(b) if b.ends_with("/openai/v1")));
        assert_eq!(reach("hosted_vllm", "llama"), Reach::Unknown);
        assert!(
            matches!(reach("bedrock", "anthropic.claude"), Reach::Needs(t) if t.contains("aws_request_signing"))
        );
        assert!(matches!(reach("vertex_ai", "gemini"), Reach::Needs(t) if t.contains("gcp_authn")));
        assert!(matches!(
            reach("openai", "responses/gpt-5"),
            Reach::Needs(_)
        ));
        let groq = Upstream::parse("https://api.groq.com/openai/v1").unwrap();
        assert_eq!(
            path_rewrite("groq", &groq).unwrap(),
            "prefix_rewrite /v1 -> /openai/v1"
        );
        assert_eq!(
            path_rewrite("openai", &Upstream::parse("http://h:8000/v1/").unwrap()),
            None
        );
        let azure = Upstream::parse("https://eu.openai.azure.com/").unwrap();
        assert!(path_rewrite("azure", &azure)
            .unwrap()
            .contains("/openai/v1"));
    }
}
