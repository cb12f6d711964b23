"""Issue 10, items 8, 9 and 12, through real Envoy: a key reaches only deployments its grants
name, no team alias redirects it (requests, `/v1/models` and the upstream's view agree), and
Responses state issued to one tenant cannot be used by another."""

import json

import pytest

from affinity_marks import unmark_content, unmark_id
from conftest import start_stack
from policies import (ACCESS_KEYS, REASONING_MODEL, TENANT_KEYS, UPSTREAM_ENV, access_policy, bearer, chat,
                      tenant_policy)

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
    # openai/o1* is the most specific pattern serving o1-pro, and it is premium's: a basic key
    # is refused (as LiteLLM's access-groups docs show), never routed to either credential.
    for _ in range(3):
        resp = ask(stack, "basic", "openai/o1-pro")
        assert resp.status == 403, resp
        assert resp.json()["error"]["code"] == "model_not_allowed"
    assert upstreams["openai"].requests() == []
    assert "o1-pro" not in listed(stack, "basic")
    # What only the basic pattern serves still goes to the basic credential.
    assert ask(stack, "basic", "openai/gpt-4.1").status == 200
    [seen] = upstreams["openai"].requests()
    assert seen["headers"]["authorization"] == BASIC_SECRET
    assert json.loads(seen["body"])["model"] == "gpt-4.1"


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


# --- Item 12: Responses state is bound to its tenant ---------------------------------------------

TENANT_VERSION = "t1"


@pytest.fixture(scope="module")
def tenants(request, upstreams):
    s = start_stack(request, upstreams, tenant_policy(TENANT_VERSION), name="adversarial-tenants")
    yield s
    s.stop()


def respond(stack, key, input_items, **extra):
    body = dict({"model": REASONING_MODEL, "input": input_items}, **extra)
    return stack.request("POST", "/v1/responses", bearer(TENANT_KEYS[key]), body)


def first_turn(stack, key, **extra):
    r = respond(stack, key, [{"role": "user", "content": "hi"}], include=["reasoning.encrypted_content"],
                **extra)
    assert r.status == 200, r
    return r.json()


def responses_seen(upstreams):
    return [r for r in upstreams["openai"].requests() if r["path"].startswith("/v1/responses")]


def test_another_tenant_cannot_continue_a_response_by_its_id(tenants, upstreams):
    marked = first_turn(tenants, "red", store=True)["id"]
    original, _ = unmark_id(marked)
    follow = [{"role": "user", "content": "and then?"}]
    # The same team continues it.
    assert respond(tenants, "red2", follow, previous_response_id=marked).status == 200
    upstreams["openai"].clear()
    # Another team, a key without a team, and the original id decoded from the mark: all refused
    # as the provider refuses an unknown id, before anything reaches an upstream.
    for key, previous in (("blue", marked), ("solo", marked), ("blue", original)):
        r = respond(tenants, key, follow, previous_response_id=previous)
        assert r.status == 404, (key, r)
        error = r.json()["error"]
        assert (error["code"], error["param"]) == ("previous_response_not_found", "previous_response_id")
        assert "red" not in error["message"]
    assert responses_seen(upstreams) == []


def test_another_tenants_encrypted_reasoning_never_reaches_the_upstream(tenants, upstreams):
    output = first_turn(tenants, "red", store=False)["output"]
    reasoning = [item for item in output if item.get("type") == "reasoning"]
    assert reasoning and all(unmark_content(item["encrypted_content"])[1] for item in reasoning)
    history = [{"role": "user", "content": "hi"}] + output + [{"role": "user", "content": "more"}]
    upstreams["openai"].clear()
    # The owner's tenant replays it: forwarded, restored to the original.
    assert respond(tenants, "red2", history, store=False).status == 200
    [own] = responses_seen(upstreams)
    assert unmark_content(reasoning[0]["encrypted_content"])[0] in own["body"]
    upstreams["openai"].clear()
    # Another tenant replays it: the items are removed (default strip), the turn goes on.
    assert respond(tenants, "blue", history, store=False).status == 200
    [foreign] = responses_seen(upstreams)
    assert '"encrypted_content"' not in foreign["body"] and '"rs_' not in foreign["body"]
    # Under affinity_fallback: fail it is refused instead.
    tenants.push_policy(tenant_policy("t2", affinity_fallback="fail"), "t2")
    try:
        upstreams["openai"].clear()
        r = respond(tenants, "blue", history, store=False)
        assert r.status == 404 and r.json()["error"]["code"] == "item_not_found", r
        assert responses_seen(upstreams) == []
    finally:
        tenants.push_policy(tenant_policy("t1-back"), "t1-back")


def test_without_the_secret_follow_ups_fail_closed(tenants, upstreams):
    marked = first_turn(tenants, "red", store=True)["id"]
    tenants.push_policy(tenant_policy("t3", affinity_secret_env="TOLLGATE_SECRET_NOT_SET"), "t3")
    try:
        upstreams["openai"].clear()
        r = respond(tenants, "red", [{"role": "user", "content": "x"}], previous_response_id=marked)
        assert r.status == 503 and r.json()["error"]["code"] == "affinity_secret_unavailable", r
        assert responses_seen(upstreams) == []
        # A first turn still works, unmarked (nothing could vouch for a mark).
        answer = first_turn(tenants, "red", store=True)
        assert unmark_id(answer["id"])[1] is None
    finally:
        tenants.push_policy(tenant_policy("t1-again"), "t1-again")


def _raw_follow_up(previous, items_json):
    return ('{"model":"%s","previous_response_id":"%s","input":%s}' % (REASONING_MODEL, previous, items_json))


def test_an_escaped_id_is_read_as_the_provider_reads_it(tenants, upstreams):
    marked = first_turn(tenants, "red", store=True)["id"]
    original, _ = unmark_id(marked)
    follow = json.dumps([{"role": "user", "content": "and then?"}])
    upstreams["openai"].clear()
    # Another tenant escapes one character of the raw id: still not theirs.
    sneaky = original.replace("_", "\\u005f", 1)
    r = tenants.request("POST", "/v1/responses", bearer(TENANT_KEYS["blue"]), _raw_follow_up(sneaky, follow))
    assert r.status == 404 and r.json()["error"]["code"] == "previous_response_not_found", r
    assert responses_seen(upstreams) == []
    # The owner's JSON library escapes its own mark: restored, not sent upstream still marked.
    own = marked.replace("_", "\\u005f")
    r = tenants.request("POST", "/v1/responses", bearer(TENANT_KEYS["red2"]), _raw_follow_up(own, follow))
    assert r.status == 200, r
    [seen] = responses_seen(upstreams)
    assert json.loads(seen["body"])["previous_response_id"] == original


def test_a_duplicated_input_cannot_hide_another_tenants_state(tenants, upstreams):
    output = first_turn(tenants, "red", store=False)["output"]
    raw_items = [dict(item, id=unmark_id(item["id"])[0], encrypted_content=unmark_content(item["encrypted_content"])[0])
                 for item in output if item.get("type") == "reasoning"]
    assert raw_items
    upstreams["openai"].clear()
    body = '{"model":"%s","input":"ignored","input":%s}' % (REASONING_MODEL, json.dumps(raw_items, separators=(",", ":")))
    r = tenants.request("POST", "/v1/responses", bearer(TENANT_KEYS["blue"]), body)
    assert r.status == 400 and r.json()["error"]["code"] == "invalid_json", r
    twice = json.dumps(raw_items, separators=(",", ":")).replace('"id":', '"id":"msg_1","id":', 1)
    r = tenants.request("POST", "/v1/responses", bearer(TENANT_KEYS["blue"]),
                        '{"model":"%s","input":%s}' % (REASONING_MODEL, twice))
    assert r.status == 400 and r.json()["error"]["code"] == "invalid_json", r
    assert responses_seen(upstreams) == []
