"""Issue 10, items 8 and 9: a key reaches only deployments its grants name, and no team alias
redirects it, through real Envoy (requests, `/v1/models` and the upstream's view agree)."""

import json

import pytest

from conftest import start_stack
from policies import ACCESS_KEYS, UPSTREAM_ENV, access_policy, bearer, chat

BASIC_SECRET = f"Bearer {UPSTREAM_ENV['OPENAI_API_KEY']}"
PREMIUM_SECRET = f"Bearer {UPSTREAM_ENV['OPENAI_VAULT_KEY']}"


@pytest.fixture(scope="module")
def stack(request, upstreams):
    s = start_stack(request, upstreams, access_policy())
    yield s
    s.stop()


def ask(stack, key, model):
    return stack.request("POST", "/v1/chat/completions", bearer(ACCESS_KEYS[key]), chat(model))


def listed(stack, key):
    resp = stack.request("GET", "/v1/models", bearer(ACCESS_KEYS[key]))
    assert resp.status == 200, resp
    return {m["id"] for m in resp.json()["data"]}


def test_a_basic_grant_never_reaches_the_premium_deployment(stack, upstreams):
    for _ in range(10):
        resp = ask(stack, "basic", "openai/o1-pro")
        assert resp.status == 200, resp
    seen = upstreams["openai"].requests()
    assert len(seen) == 10
    for request in seen:
        assert request["headers"]["authorization"] == BASIC_SECRET, "routed to the premium credential"
        assert json.loads(request["body"])["model"] == "o1-pro"


def test_a_premium_grant_routes_to_the_premium_deployment_only_where_it_serves(stack, upstreams):
    assert ask(stack, "premium", "openai/o1-pro").status == 200
    [seen] = upstreams["openai"].requests()
    assert seen["headers"]["authorization"] == PREMIUM_SECRET
    assert json.loads(seen["body"])["model"] == "o1-pro"
    # gpt-4.1 is served only by the basic deployment: the premium group does not reach it.
    denied = ask(stack, "premium", "openai/gpt-4.1")
    assert denied.status == 403 and denied.json()["error"]["code"] == "model_not_allowed"
    assert len(upstreams["openai"].requests()) == 1


def test_key_and_team_must_grant_the_same_deployment(stack, upstreams):
    # The key may use premium deployments, its team only basic ones: no deployment serving
    # o1-pro is granted by both, so the request is refused instead of reaching premium.
    resp = ask(stack, "split", "openai/o1-pro")
    assert resp.status == 403, resp
    assert resp.json()["error"]["code"] == "model_not_allowed"
    assert upstreams["openai"].requests() == []
    assert "o1-pro" not in listed(stack, "split")
    assert "o1-pro" in listed(stack, "premium")


def test_a_team_alias_shadowing_a_listed_name_does_not_redirect_the_key(stack, upstreams):
    direct = ask(stack, "shadowed", "gpt-4o")
    assert direct.status == 403
    shadowed = ask(stack, "shadowed", "gpt-4o-mini")
    assert shadowed.status == 403, shadowed
    error = shadowed.json()["error"]
    assert error["code"] == "model_not_allowed" and "gpt-4o-mini" in error["message"]
    assert upstreams["openai"].requests() == []
    assert "gpt-4o-mini" not in listed(stack, "shadowed")
