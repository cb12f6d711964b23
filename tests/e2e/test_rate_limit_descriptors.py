"""Issue 11: composing with Envoy's own rate limiting. With `settings.rate_limit_descriptors`, an
admitted request carries who and what it is (`x-tollgate-key`, `-team`, `-user`, `-end-user`,
`-model`) for the rate-limit filters placed after Tollgate; route `rate_limits` actions turn them
into descriptors. Proved with Envoy's local_ratelimit filter (the global ratelimit filter reads
the same route actions); clients cannot forge the headers, and the upstream never sees them."""

import pytest

from conftest import start_stack
from policies import base_policy, bearer, chat
from stack import key_hash

LIMITED_KEY = "sk-e2e-descriptor-limited"
OTHER_KEY = "sk-e2e-descriptor-other"
LOCAL_RATELIMIT = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
ALWAYS = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}


def policy():
    p = base_policy("d1")
    p["settings"]["rate_limit_descriptors"] = True
    p["keys"] += [
        {"key_hash": key_hash(LIMITED_KEY), "key_alias": "descriptor-limited", "team_id": "platform"},
        {"key_hash": key_hash(OTHER_KEY), "key_alias": "descriptor-other", "team_id": "platform"},
    ]
    return p


def local_ratelimit():
    http_filter = {"name": "envoy.filters.http.local_ratelimit",
                   "typed_config": {"@type": LOCAL_RATELIMIT, "stat_prefix": "tollgate_descriptors"}}
    rate_limits = [{"actions": [
        {"request_headers": {"header_name": "x-tollgate-key", "descriptor_key": "tollgate_key"}},
        {"request_headers": {"header_name": "x-tollgate-model", "descriptor_key": "tollgate_model"}},
    ]}]
    per_route = {"envoy.filters.http.local_ratelimit": {
        "@type": LOCAL_RATELIMIT, "stat_prefix": "tollgate_descriptors",
        "token_bucket": {"max_tokens": 1000, "tokens_per_fill": 1000, "fill_interval": "1s"},
        "filter_enabled": dict(ALWAYS, runtime_key="descriptors_enabled"),
        "filter_enforced": dict(ALWAYS, runtime_key="descriptors_enforced"),
        "descriptors": [{
            "entries": [{"key": "tollgate_key", "value": key_hash(LIMITED_KEY)},
                        {"key": "tollgate_model", "value": "gpt-4o"}],
            "token_bucket": {"max_tokens": 2, "tokens_per_fill": 2, "fill_interval": "3600s"},
        }],
    }}
    return http_filter, rate_limits, per_route


@pytest.fixture(scope="module")
def envoy(request, upstreams):
    stack = start_stack(request, upstreams, policy(), after_tollgate=local_ratelimit())
    yield stack
    stack.stop()


def ask(envoy, key, model="gpt-4o", extra=None):
    return envoy.request("POST", "/v1/chat/completions", dict(bearer(key), **(extra or {})), chat(model))


def test_envoy_local_ratelimit_limits_a_key_and_model_by_tollgate_descriptors(envoy, upstreams):
    statuses = [ask(envoy, LIMITED_KEY).status for _ in range(3)]
    assert statuses == [200, 200, 429], statuses
    # Another model of the same key, and the same model of another key, are other descriptors.
    assert ask(envoy, LIMITED_KEY, "anthropic/claude-sonnet-4-6").status == 200
    assert ask(envoy, OTHER_KEY).status == 200
    for seen in upstreams["openai"].requests():
        assert not any(h.lower().startswith("x-tollgate-") for h in seen["headers"]), seen["headers"]


def test_a_client_cannot_forge_the_descriptor_headers(envoy):
    # Claiming to be the limited key (already out of tokens) does not get this key limited...
    forged = {"x-tollgate-key": key_hash(LIMITED_KEY), "x-tollgate-model": "gpt-4o"}
    assert [ask(envoy, OTHER_KEY, extra=forged).status for _ in range(3)] == [200] * 3
    # ...and claiming to be another key does not free the limited one.
    assert ask(envoy, LIMITED_KEY, extra={"x-tollgate-key": key_hash(OTHER_KEY)}).status == 429
