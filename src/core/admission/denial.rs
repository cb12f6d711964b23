//! Every refusal the filter can answer with: status, OpenAI error type, code and message.
//! This is the one place HTTP statuses of refusals live.

use serde_json::json;

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No credential header.
    MissingKey,
    /// A credential that is not a well-formed `sk-` key, or an `Authorization` without `Bearer`.
    MalformedKey,
    /// A well-formed key that this version does not know.
    UnknownKey,
    /// The key's `expires` instant has passed.
    KeyExpired {
        /// The expiry instant, RFC 3339.
        expired_at: String,
    },
    /// The key is blocked.
    KeyBlocked,
    /// The key's team is blocked.
    TeamBlocked {
        /// The team's name.
        team: String,
    },
    /// The key (or its team) may not call this model.
    ModelNotAllowed {
        /// The model name the client sent.
        model: String,
    },
    /// No deployment serves the (resolved) model.
    ModelNotFound {
        /// The model name the client sent.
        model: String,
    },
    /// The body is not what the endpoint needs.
    InvalidRequest {
        /// A specific machine-readable code (`invalid_json`, `missing_model`, …).
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The body asks for something the gateway cannot meter (`background: true` Responses, whose
    /// result is fetched later from an endpoint Tollgate does not serve).
    UnsupportedParameter {
        /// The body field (`background`).
        param: &'static str,
    },
    /// The body is larger than `settings.max_request_body_bytes`.
    BodyTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The endpoint exists but not for this method.
    MethodNotAllowed {
        /// The method the endpoint takes.
        allowed: &'static str,
    },
    /// A path Tollgate does not serve.
    UnknownEndpoint,
    /// No valid policy version has been loaded yet.
    PolicyUnavailable,
    /// The chosen deployment's credential variable is not set in the VM.
    CredentialUnavailable,
    /// An applicable budget is already spent (or fully reserved by requests in flight).
    BudgetExceeded {
        /// `key`, `team`, `user` or `end_user`.
        scope: &'static str,
        /// The budget holder's name (key alias, team alias, user id).
        name: String,
        /// For a per-model budget, the model (or access group, or wildcard) it is written for.
        model: Option<std::sync::Arc<str>>,
        /// Limit in nano-dollars.
        limit_nano: u64,
        /// Spend counted so far in this window, in nano-dollars.
        spend_nano: u64,
        /// Held by requests in flight, in nano-dollars.
        reserved_nano: u64,
        /// When the window resets (RFC 3339), if it does.
        resets_at: Option<String>,
        /// Seconds until the window resets, if it does (for `retry-after`).
        resets_in_seconds: Option<u64>,
    },
    /// A rate limit (requests or tokens per window, requests in flight) of the request's key,
    /// team, user, end user, or of every deployment that could serve it, is reached.
    RateLimited {
        /// `key`, `team`, `user`, `end_user` or `deployment`.
        scope: &'static str,
        /// What the limit counts.
        kind: crate::core::limits::rules::LimitKind,
        /// The holder's name (key alias, team alias, user id; for deployments, the model asked
        /// for).
        name: String,
        /// For a per-model limit, the model it is written for.
        model: Option<std::sync::Arc<str>>,
        /// The limit.
        limit: u64,
        /// Counted (and held by requests in flight) in this window.
        used: u64,
        /// Seconds until there is room (the window's end; 1 for requests in flight).
        resets_in_seconds: u64,
    },
    /// The request body is compressed (`content-encoding` other than `identity`): the filter
    /// must read the body it decides on, and does not decompress requests.
    UnsupportedContentEncoding {
        /// The client's `content-encoding`.
        encoding: String,
    },
    /// The model has no known price and a budget applies (`settings.unpriced_models.mode: deny`).
    UnpricedModel {
        /// The model name the client sent.
        model: String,
    },
    /// A Responses follow-up carries an id or encrypted content whose affinity mark is damaged.
    InvalidAffinityMark,
    /// A Responses follow-up belongs to an encryption boundary no deployment serves any more
    /// (always for `previous_response_id`; for encrypted input items under `affinity_fallback:
    /// fail`).
    AffinityUnavailable,
    /// A Responses follow-up names state (`previous_response_id`, or an input item's id or
    /// encrypted content), or `GET /v1/responses/{id}` an id, that was not issued to this
    /// tenant: refused as the provider refuses an unknown id, revealing nothing about whose it
    /// is.
    ResponseStateNotFound {
        /// `previous_response_id`, `input` or `response_id` (the path's id).
        param: &'static str,
    },
    /// A Responses follow-up carries state, but no affinity secret is configured to verify it.
    AffinitySecretUnavailable,
    /// The gateway itself failed to handle the request (a host call refused); never the client's fault.
    GatewayError {
        /// A specific machine-readable code (`request_body_unreadable`, `request_not_editable`, …).
        code: &'static str,
    },
}

/// A budget's or rate limit's holder for messages: `key 'search-backend'`, `team 'Search' on
/// model 'gpt-4o'`.
fn holder_name(scope: &str, name: &str, model: Option<&str>) -> String {
    let mut holder = match scope {
        "key" => format!("key '{name}'"),
        "team" => format!("team '{name}'"),
        "user" => format!("user '{name}'"),
        _ => format!("end user '{name}'"),
    };
    if let Some(model) = model {
        holder.push_str(&format!(" on model '{model}'"));
    }
    holder
}

impl Denial {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Denial::MissingKey
            | Denial::MalformedKey
            | Denial::UnknownKey
            | Denial::KeyExpired { .. }
            | Denial::KeyBlocked
            | Denial::TeamBlocked { .. } => 401,
            Denial::ModelNotAllowed { .. } | Denial::UnpricedModel { .. } => 403,
            Denial::BudgetExceeded { .. } | Denial::RateLimited { .. } => 429,
            Denial::ModelNotFound { .. }
            | Denial::UnknownEndpoint
            | Denial::ResponseStateNotFound { .. } => 404,
            Denial::MethodNotAllowed { .. } => 405,
            Denial::InvalidRequest { .. }
            | Denial::UnsupportedParameter { .. }
            | Denial::InvalidAffinityMark => 400,
            Denial::AffinityUnavailable => 409,
            Denial::BodyTooLarge { .. } => 413,
            Denial::UnsupportedContentEncoding { .. } => 415,
            Denial::PolicyUnavailable
            | Denial::CredentialUnavailable
            | Denial::AffinitySecretUnavailable => 503,
            Denial::GatewayError { .. } => 500,
        }
    }

    /// The OpenAI error `type`.
    pub fn error_type(&self) -> &'static str {
        if let Denial::RateLimited { .. } = self {
            return "rate_limit_exceeded";
        }
        match self.status() {
            401 => "authentication_error",
            403 => "permission_error",
            429 => "insufficient_quota",
            500 => "api_error",
            503 => "service_unavailable",
            _ => "invalid_request_error",
        }
    }

    /// The OpenAI error `code`; also the `reason` in metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::MissingKey | Denial::MalformedKey | Denial::UnknownKey => "invalid_api_key",
            Denial::KeyExpired { .. } => "key_expired",
            Denial::KeyBlocked => "key_blocked",
            Denial::TeamBlocked { .. } => "team_blocked",
            Denial::ModelNotAllowed { .. } => "model_not_allowed",
            Denial::ModelNotFound { .. } => "model_not_found",
            Denial::InvalidRequest { code, .. } => code,
            Denial::UnsupportedParameter { .. } => "unsupported_parameter",
            Denial::BodyTooLarge { .. } => "request_too_large",
            Denial::UnsupportedContentEncoding { .. } => "unsupported_content_encoding",
            Denial::MethodNotAllowed { .. } => "method_not_allowed",
            Denial::UnknownEndpoint => "unknown_url",
            Denial::PolicyUnavailable => "policy_unavailable",
            Denial::CredentialUnavailable => "upstream_credential_unavailable",
            Denial::BudgetExceeded { .. } => "budget_exceeded",
            Denial::RateLimited { kind, .. } => kind.name(),
            Denial::InvalidAffinityMark => "invalid_affinity_mark",
            Denial::AffinityUnavailable => "affinity_unavailable",
            Denial::ResponseStateNotFound {
                param: "previous_response_id",
            } => "previous_response_not_found",
            Denial::ResponseStateNotFound {
                param: "response_id",
            } => "response_not_found",
            Denial::ResponseStateNotFound { .. } => "item_not_found",
            Denial::AffinitySecretUnavailable => "affinity_secret_unavailable",
            Denial::UnpricedModel { .. } => "model_unpriced",
            Denial::GatewayError { code } => code,
        }
    }

    /// The OpenAI error `param`.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            Denial::ModelNotAllowed { .. }
            | Denial::ModelNotFound { .. }
            | Denial::UnpricedModel { .. } => Some("model"),
            Denial::InvalidRequest {
                code: "missing_model" | "invalid_model",
                ..
            } => Some("model"),
            Denial::ResponseStateNotFound { param } | Denial::UnsupportedParameter { param } => {
                Some(param)
            }
            Denial::InvalidRequest {
                code: "invalid_user",
                ..
            } => Some("user"),
            _ => None,
        }
    }

    /// The human-readable message. Never names an allow-list or a credential.
    pub fn message(&self) -> String {
        match self {
            Denial::MissingKey => {
                "No API key provided. Send it as 'Authorization: Bearer sk-...', \
                                   'x-api-key' or 'api-key'."
                    .into()
            }
            Denial::MalformedKey => "Malformed API key: expected 'Authorization: Bearer sk-...' \
                                     (or an sk- key in 'x-api-key' / 'api-key')."
                .into(),
            Denial::UnknownKey => "Invalid API key provided.".into(),
            Denial::KeyExpired { expired_at } => format!("This API key expired at {expired_at}."),
            Denial::KeyBlocked => "This API key is blocked.".into(),
            Denial::TeamBlocked { team } => {
                format!("The team '{team}' of this API key is blocked.")
            }
            Denial::ModelNotAllowed { model } => {
                format!("The model '{model}' is not allowed for this API key.")
            }
            Denial::ModelNotFound { model } => {
                format!("The model '{model}' does not exist or is not served by this gateway.")
            }
            Denial::InvalidRequest { message, .. } => message.clone(),
            Denial::UnsupportedParameter { param } => format!(
                "'{param}' is not supported by this gateway: a background response is generated \
                 and fetched later, outside the gateway's metering and budgets; send the request \
                 without '{param}' (or with '{param}': false)."
            ),
            Denial::BodyTooLarge { limit } => {
                format!("Request body is larger than the {limit}-byte limit.")
            }
            Denial::UnsupportedContentEncoding { encoding } => format!(
                "Compressed request bodies are not accepted (content-encoding '{encoding}'); \
                 send the JSON body uncompressed."
            ),
            Denial::MethodNotAllowed { allowed } => {
                format!("This endpoint only accepts {allowed}.")
            }
            Denial::UnknownEndpoint => "Unknown endpoint for this gateway.".into(),
            Denial::PolicyUnavailable => {
                "No valid gateway policy is loaded yet; try again shortly.".into()
            }
            Denial::CredentialUnavailable => {
                "The gateway has no upstream credential for this model; contact the operator."
                    .into()
            }
            Denial::BudgetExceeded {
                scope,
                name,
                model,
                limit_nano,
                spend_nano,
                reserved_nano,
                resets_at,
                ..
            } => {
                let holder = holder_name(scope, name, model.as_deref());
                let mut message = format!(
                    "Budget exceeded for {holder}: spend ${} of a ${} budget",
                    usd(*spend_nano),
                    usd(*limit_nano)
                );
                if *reserved_nano > 0 {
                    message.push_str(&format!(
                        ", plus ${} reserved by requests in flight",
                        usd(*reserved_nano)
                    ));
                }
                match resets_at {
                    Some(at) => message.push_str(&format!("; the budget resets at {at}.")),
                    None => message.push('.'),
                }
                message
            }
            Denial::RateLimited { .. } => self.rate_message(),
            Denial::InvalidAffinityMark => {
                "A response id or encrypted content in this request was \
                 altered after this gateway issued it; send the values exactly as received."
                    .into()
            }
            Denial::AffinityUnavailable => "This conversation's earlier turns were produced by a \
                 deployment (credential) this gateway no longer serves, so they cannot be \
                 continued; start a new conversation (or resend it without previous_response_id \
                 and encrypted reasoning items)."
                .into(),
            Denial::ResponseStateNotFound {
                param: "previous_response_id",
            } => "Previous response not found: it does not exist or was not issued to this \
                  API key's team (or key)."
                .into(),
            Denial::ResponseStateNotFound {
                param: "response_id",
            } => "Response not found: it does not exist or was not issued to this API key's \
                  team (or key) by this gateway."
                .into(),
            Denial::ResponseStateNotFound { .. } => {
                "An input item refers to reasoning or a response that does not exist or was not \
                 issued to this API key's team (or key); send the values exactly as received."
                    .into()
            }
            Denial::AffinitySecretUnavailable => {
                "The gateway cannot continue Responses conversations: its affinity secret is \
                 not configured; contact the operator."
                    .into()
            }
            Denial::UnpricedModel { model } => format!(
                "The model '{model}' has no known price and this request is under a budget; \
                 the operator must price it (cost_map or model_info) before it can be used."
            ),
            Denial::GatewayError { .. } => {
                "The gateway failed to handle this request; it was not forwarded.".into()
            }
        }
    }

    /// The message of a [`Denial::RateLimited`]: the holder and its limit, never another
    /// tenant's; for deployments, only that the model has no capacity left.
    fn rate_message(&self) -> String {
        use crate::core::limits::rules::LimitKind;
        let Denial::RateLimited {
            scope,
            kind,
            name,
            model,
            limit,
            used,
            resets_in_seconds,
        } = self
        else {
            return String::new();
        };
        if *scope == "deployment" {
            let what = if kind.counts_tokens() {
                "tokens"
            } else {
                "requests"
            };
            return format!(
                "Rate limit reached for model '{name}': every deployment serving it has used \
                 its {what} for this minute; retry in {resets_in_seconds} s."
            );
        }
        let holder = holder_name(scope, name, model.as_deref());
        match (kind, kind.period()) {
            (LimitKind::Parallel, _) | (_, None) => format!(
                "Rate limit reached for {holder}: at most {limit} requests in flight at once \
                 ({used} in flight); retry when one ends."
            ),
            (_, Some(period)) => {
                let unit = kind.unit();
                let counted = if kind.counts_tokens() {
                    format!("{used} used or held by requests in flight")
                } else {
                    format!("{used} made")
                };
                format!(
                    "Rate limit reached for {holder}: {limit} {unit} per {} ({counted} this {}); \
                     retry in {resets_in_seconds} s.",
                    period.name(),
                    period.name()
                )
            }
        }
    }

    /// Headers that tell clients (the OpenAI and Anthropic SDKs read both) whether retrying
    /// can help: `x-should-retry: false` for refusals that stay refusals, `retry-after`
    /// (seconds) where a time is known. Other 5xx keep the SDKs' own retry behaviour.
    pub fn retry_headers(&self) -> Vec<(&'static str, String)> {
        const FINAL: (&str, &str) = ("x-should-retry", "false");
        let final_only = || vec![(FINAL.0, FINAL.1.to_string())];
        match self {
            Denial::BudgetExceeded {
                limit_nano,
                spend_nano,
                resets_in_seconds,
                ..
            } => {
                if spend_nano >= limit_nano {
                    // Spent: nothing changes before the window resets (if it ever does).
                    let mut headers = final_only();
                    if let Some(seconds) = resets_in_seconds {
                        headers.push(("retry-after", seconds.max(&1).to_string()));
                    }
                    headers
                } else {
                    // Held by requests in flight: room comes back as they settle.
                    vec![("retry-after", "1".to_string())]
                }
            }
            Denial::RateLimited {
                scope,
                kind,
                limit,
                resets_in_seconds,
                ..
            } => {
                // Room comes back when the window resets (a slot in flight: when one ends).
                let mut headers = vec![("retry-after", resets_in_seconds.max(&1).to_string())];
                // A deployment's capacity is shared: its numbers are no tenant's to see.
                let tenant = *scope != "deployment";
                if tenant && *kind != crate::core::limits::rules::LimitKind::Parallel {
                    headers.extend(crate::core::limits::headers::refused_headers(
                        kind.counts_tokens(),
                        *limit,
                        *resets_in_seconds,
                    ));
                }
                headers
            }
            Denial::PolicyUnavailable => vec![("retry-after", "1".to_string())],
            Denial::GatewayError { .. } => Vec::new(),
            _ => final_only(),
        }
    }

    /// The response body: `{"error":{"message","type","param","code"}}`.
    pub fn body(&self) -> String {
        json!({
            "error": {
                "message": self.message(),
                "type": self.error_type(),
                "param": self.param(),
                "code": self.code(),
            }
        })
        .to_string()
    }
}

/// Nano-dollars as a USD amount with up to 9 decimals, trailing zeros trimmed (at least 2).
pub fn usd(nano: u64) -> String {
    let whole = nano / 1_000_000_000;
    let frac = format!("{:09}", nano % 1_000_000_000);
    let trimmed = frac.trim_end_matches('0');
    let decimals = if trimmed.len() < 2 {
        &frac[..2]
    } else {
        trimmed
    };
    format!("{whole}.{decimals}")
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn budget(spend_nano: u64, resets_in_seconds: Option<u64>) -> Denial {
        Denial::BudgetExceeded {
            scope: "key",
            name: "k".into(),
            model: None,
            limit_nano: 100,
            spend_nano,
            reserved_nano: 50,
            resets_at: None,
            resets_in_seconds,
        }
    }

    #[test]
    fn final_refusals_tell_sdks_not_to_retry_and_when_room_comes_back() {
        let header = |d: &Denial, name: &str| {
            d.retry_headers()
                .into_iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v)
        };
        let spent = budget(100, Some(3600));
        assert_eq!(header(&spent, "x-should-retry").as_deref(), Some("false"));
        assert_eq!(header(&spent, "retry-after").as_deref(), Some("3600"));
        let forever = budget(120, None);
        assert_eq!(header(&forever, "x-should-retry").as_deref(), Some("false"));
        assert_eq!(header(&forever, "retry-after"), None);
        let held = budget(60, Some(3600));
        assert_eq!(
            header(&held, "x-should-retry"),
            None,
            "in-flight holds settle"
        );
        assert_eq!(header(&held, "retry-after").as_deref(), Some("1"));
        for final_denial in [
            Denial::CredentialUnavailable,
            Denial::AffinityUnavailable,
            Denial::UnknownKey,
        ] {
            assert_eq!(
                header(&final_denial, "x-should-retry").as_deref(),
                Some("false")
            );
        }
        assert_eq!(header(&Denial::PolicyUnavailable, "x-should-retry"), None);
        let gateway = Denial::GatewayError {
            code: "budget_store_unavailable",
        };
        assert!(gateway.retry_headers().is_empty());
    }

    #[test]
    fn body_is_openai_error_shape() {
        let body: serde_json::Value = serde_json::from_str(
            &Denial::ModelNotAllowed {
                model: "AgentX-LLM".into(),
            }
            .body(),
        )
        .unwrap();
        assert_eq!(
            body,
            json!({"error":{"message":"The model 'AgentX-LLM' is not allowed for this API key.",
                            "type":"permission_error","param":"model","code":"model_not_allowed"}})
        );
    }

    #[test]
    fn budget_refusal_names_the_budget_limit_and_spend() {
        let denial = Denial::BudgetExceeded {
            scope: "team",
            name: "search".into(),
            model: None,
            limit_nano: 5_000_000_000,
            spend_nano: 5_000_123_000,
            reserved_nano: 0,
            resets_at: Some("2026-12-01T00:00:00Z".into()),
            resets_in_seconds: Some(60),
        };
        let body: serde_json::Value = serde_json::from_str(&denial.body()).unwrap();
        assert_eq!(denial.status(), 429);
        assert_eq!(body["error"]["type"], "insufficient_quota");
        assert_eq!(body["error"]["code"], "budget_exceeded");
        assert_eq!(
            body["error"]["message"],
            "Budget exceeded for team 'search': spend $5.000123 of a $5.00 budget; \
             the budget resets at 2026-12-01T00:00:00Z."
        );
        assert_eq!(usd(0), "0.00");
        assert_eq!(usd(1), "0.000000001");
        assert_eq!(usd(12_340_000_000), "12.34");
    }

    #[test]
    fn statuses_and_codes_follow_the_table() {
        let table = [
            (Denial::MissingKey, 401, "invalid_api_key"),
            (Denial::MalformedKey, 401, "invalid_api_key"),
            (Denial::UnknownKey, 401, "invalid_api_key"),
            (
                Denial::KeyExpired {
                    expired_at: "t".into(),
                },
                401,
                "key_expired",
            ),
            (Denial::KeyBlocked, 401, "key_blocked"),
            (
                Denial::TeamBlocked { team: "t".into() },
                401,
                "team_blocked",
            ),
            (
                Denial::ModelNotAllowed { model: "m".into() },
                403,
                "model_not_allowed",
            ),
            (
                Denial::ModelNotFound { model: "m".into() },
                404,
                "model_not_found",
            ),
            (
                Denial::InvalidRequest {
                    code: "invalid_json",
                    message: "x".into(),
                },
                400,
                "invalid_json",
            ),
            (
                Denial::UnsupportedParameter {
                    param: "background",
                },
                400,
                "unsupported_parameter",
            ),
            (Denial::BodyTooLarge { limit: 1 }, 413, "request_too_large"),
            (Denial::PolicyUnavailable, 503, "policy_unavailable"),
            (
                Denial::UnpricedModel { model: "m".into() },
                403,
                "model_unpriced",
            ),
            (
                Denial::CredentialUnavailable,
                503,
                "upstream_credential_unavailable",
            ),
        ];
        for (denial, status, code) in table {
            assert_eq!(
                (denial.status(), denial.code()),
                (status, code),
                "{denial:?}"
            );
        }
    }
}
