"""Scenarios 3 and 4: aliases are resolved before access checks; credentials are swapped."""

import json

import pytest

from policies import AGENT_ALIAS, AGENT_TARGET, KEYS, UPSTREAM_ENV, bearer, chat


def test_alias_passes_for_a_key_allowed_only_the_target(envoy, upstreams):
    resp = envoy.request("POST", "/v1/chat/completions", bearer(KEYS["target_only"]), chat(AGENT_ALIAS))
    assert resp.status == 200, resp
    [seen] = upstreams["openrouter"].requests()
    assert json.loads(seen["body"])["model"] == "qwen/qwen3.5-flash-02-23"
    assert resp.json()["model"] == "qwen/qwen3.5-flash-02-23"


def test_alias_passes_for_a_key_allowed_only_the_alias_name(envoy, upstreams):
    resp = envoy.request("POST", "/v1/chat/completions", bearer(KEYS["alias_only"]), chat(AGENT_ALIAS))
    assert resp.status == 200, resp
    assert len(upstreams["openrouter"].requests()) == 1
    # Granting the alias grants exactly its target, not the target's name.
    direct = envoy.request("POST", "/v1/chat/completions", bearer(KEYS["alias_only"]), chat(AGENT_TARGET))
    assert direct.status == 403


def test_alias_is_refused_for_a_key_allowed_neither(envoy, upstreams):
    resp = envoy.request("POST", "/v1/chat/completions", bearer(KEYS["neither"]), chat(AGENT_ALIAS))
    assert resp.status == 403
    error = resp.json()["error"]
    assert error["code"] == "model_not_allowed"
    assert AGENT_ALIAS in error["message"]
    assert "gpt-4o" not in error["message"]  # never the allow-list
    assert upstreams["openrouter"].requests() == []


def test_upstream_sees_the_configured_credential_never_the_virtual_key(envoy, upstreams):
    for header in ({"authorization": f"Bearer {KEYS['all']}"}, {"x-api-key": KEYS["all"]}, {"api-key": KEYS["all"]}):
        resp = envoy.request("POST", "/v1/chat/completions", dict(header, **{"content-type": "application/json"}),
                             chat("gpt-4o"))
        assert resp.status == 200, resp
    anthropic = envoy.request("POST", "/v1/messages", {"x-api-key": KEYS["all"], "anthropic-version": "2023-06-01"},
                              chat("claude-sonnet-4-6", max_tokens=16))
    assert anthropic.status == 200, anthropic

    openai_seen = upstreams["openai"].requests()
    assert len(openai_seen) == 3
    for seen in openai_seen:
        assert seen["headers"]["authorization"] == f"Bearer {UPSTREAM_ENV['OPENAI_API_KEY']}"
        assert "x-api-key" not in seen["headers"] and "api-key" not in seen["headers"]
        assert "x-tollgate-cluster" not in seen["headers"], "the route removes it after routing"
    [anthropic_seen] = upstreams["anthropic"].requests()
    assert anthropic_seen["headers"]["x-api-key"] == UPSTREAM_ENV["ANTHROPIC_API_KEY"]
    assert "authorization" not in anthropic_seen["headers"]
    assert anthropic_seen["headers"]["anthropic-version"] == "2023-06-01"
    everything = "".join(str(r) for m in upstreams.values() for r in m.requests())
    assert KEYS["all"] not in everything


def test_rewritten_body_keeps_everything_but_the_model(envoy, upstreams):
    body = chat(AGENT_ALIAS, temperature=0.25, metadata={"note": "model AgentX-LLM stays here"})
    resp = envoy.request("POST", "/v1/chat/completions", bearer(KEYS["target_only"]), body)
    assert resp.status == 200
    [seen] = upstreams["openrouter"].requests()
    sent = json.loads(seen["body"])
    assert sent == dict(body, model="qwen/qwen3.5-flash-02-23")
    assert int(seen["headers"]["content-length"]) == len(seen["body"].encode())


def test_models_endpoint_lists_what_the_key_may_use(envoy):
    resp = envoy.request("GET", "/v1/models", bearer(KEYS["alias_only"]))
    assert resp.status == 200
    assert [m["id"] for m in resp.json()["data"]] == [AGENT_ALIAS]
    wild = envoy.request("GET", "/v1/models", bearer(KEYS["anthropic_wild"])).json()
    ids = {m["id"] for m in wild["data"]}
    assert "claude-sonnet-4-6" in ids and "gpt-4o" not in ids
    assert all(m["object"] == "model" for m in wild["data"])


def test_models_retrieve_answers_only_what_the_key_may_use(envoy, upstreams):
    # Phase 2 · 3/5 item 16: the SDKs' models.retrieve (GET /v1/models/{id}), with the OpenAI SDK.
    import openai
    client = openai.OpenAI(api_key=KEYS["anthropic_wild"], base_url=f"http://127.0.0.1:{envoy.listen_port}/v1",
                           max_retries=0)
    model = client.models.retrieve("claude-sonnet-4-6")
    assert (model.id, model.object, model.owned_by) == ("claude-sonnet-4-6", "model", "anthropic")
    with pytest.raises(openai.NotFoundError) as refused:
        client.models.retrieve("gpt-4o")  # exists, but not for this key: indistinguishable from absent
    assert refused.value.body["code"] == "model_not_found", refused.value.body
    slashed = envoy.request("GET", "/v1/models/anthropic%2Fclaude-sonnet-4-6", bearer(KEYS["anthropic_wild"]))
    assert slashed.status == 200 and slashed.json()["id"] == "anthropic/claude-sonnet-4-6", slashed
    unknown = envoy.request("GET", "/v1/models/sk-not-a-key", {})
    assert unknown.status == 401, unknown
    assert all(m.requests() == [] for m in upstreams.values())


def test_models_retrieve_of_an_id_longer_than_a_model_name_is_not_found(envoy, upstreams):
    # A request naming this model would be refused (400 invalid_model, over 512 bytes); the id was
    # read as its first 512 bytes, so anthropic/* answered 200 for a model nobody can call.
    for name in ["anthropic/" + "a" * 600, "anthropic%2F" + "a" * 600, "anthropic/" + "%61" * 600]:
        r = envoy.request("GET", f"/v1/models/{name}", bearer(KEYS["anthropic_wild"]))
        assert r.status == 404, (r.status, r.body[:200])
        error = r.json()["error"]
        assert error["code"] == "model_not_found" and len(error["message"]) < 300, error
    r = envoy.request("POST", "/v1/chat/completions", bearer(KEYS["anthropic_wild"]), chat("anthropic/" + "a" * 600))
    assert (r.status, r.json()["error"]["code"]) == (400, "invalid_model"), r
    assert all(m.requests() == [] for m in upstreams.values())


def test_non_utf8_authorization_is_malformed_and_never_forwarded(envoy, upstreams):
    # Authorization takes precedence; an undecodable one must not be skipped in favour of x-api-key.
    headers = {"authorization": b"Bearer sk-\xff\xfe", "x-api-key": KEYS["all"], "content-type": "application/json"}
    resp = envoy.request("POST", "/v1/chat/completions", headers, chat("gpt-4o"))
    assert resp.status == 401, resp
    assert resp.json()["error"]["code"] == "invalid_api_key"
    assert upstreams["openai"].requests() == []
