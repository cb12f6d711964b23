"""Issue 14, item 16: endpoints LiteLLM serves that clients rely on, through real Envoy, with the
official SDKs: the Azure OpenAI path form (`AzureOpenAI` clients), `GET`/`DELETE
/v1/responses/{id}` and `…/input_items` (routed by the id's tenant-sealed affinity mark), and
Anthropic's `/v1/messages/count_tokens` (checked like messages, free). Each attacker case checks
that nothing reached an upstream."""

import json
import time

import anthropic
import openai
import pytest

from affinity_marks import unmark_id
from conftest import start_stack
from policies import REASONING_MODEL, UPSTREAM_ENV, affinity_policy, bearer, key_hash
from stack import wait_until

KEYS = {
    "azure": "sk-e2e-endpoints-azure",  # fast (-> gpt-4o-mini), text-embedding-3-small, anthropic/*
    "red": "sk-e2e-endpoints-red",  # team red, o4-mini
    "red_4o": "sk-e2e-endpoints-red-4o",  # team red too (same tenant), gpt-4o only
    "blue": "sk-e2e-endpoints-blue",  # team blue, o4-mini: another tenant, same credentials
    "spent": "sk-e2e-endpoints-spent",  # anthropic/*, a budget one request uses up
}


def endpoints_policy():
    policy = affinity_policy("e1")
    policy["model_list"] += [
        {"model_name": "gpt-4o-mini", "litellm_params": {"model": "openai/gpt-4o-mini",
                                                         "api_key_env": "OPENAI_API_KEY"},
         "cluster": "openai", "model_info": {"id": "openai-gpt-4o-mini"}},
        {"model_name": "text-embedding-3-small",
         "litellm_params": {"model": "openai/text-embedding-3-small", "api_key_env": "OPENAI_API_KEY"},
         "cluster": "openai", "model_info": {"id": "openai-embed"}},
    ]
    policy["model_group_alias"]["fast"] = "gpt-4o-mini"
    policy["teams"] += [{"team_id": "red", "models": []}, {"team_id": "blue", "models": []}]
    policy["keys"] += [
        {"key_hash": key_hash(KEYS["azure"]), "key_alias": "endpoints-azure",
         "models": ["fast", "text-embedding-3-small", "anthropic/*"]},
        {"key_hash": key_hash(KEYS["red"]), "key_alias": "endpoints-red", "team_id": "red",
         "models": [REASONING_MODEL]},
        {"key_hash": key_hash(KEYS["red_4o"]), "key_alias": "endpoints-red-4o", "team_id": "red",
         "models": ["gpt-4o"]},
        {"key_hash": key_hash(KEYS["blue"]), "key_alias": "endpoints-blue", "team_id": "blue",
         "models": [REASONING_MODEL]},
        {"key_hash": key_hash(KEYS["spent"]), "key_alias": "endpoints-spent", "models": ["anthropic/*"],
         "max_budget": 0.000001},
    ]
    return policy


@pytest.fixture(scope="module")
def envoy(request, upstreams):
    stack = start_stack(request, upstreams, endpoints_policy())
    yield stack
    stack.stop()


def base(envoy):
    return f"http://127.0.0.1:{envoy.listen_port}"


def azure_client(envoy, key, **extra):
    return openai.AzureOpenAI(azure_endpoint=base(envoy), api_key=key, api_version="2024-10-21",
                              max_retries=0, **extra)


def openai_client(envoy, key):
    return openai.OpenAI(base_url=base(envoy) + "/v1", api_key=key, max_retries=0)


def sent(upstreams, name="openai"):
    return [dict(r, json=json.loads(r["body"]) if r["body"] else None) for r in upstreams[name].requests()]


def nothing_sent(upstreams):
    return all(not m.requests() for m in upstreams.values())


def error_of(response):
    assert response.headers["content-type"] == "application/json", response
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    return error


# --- The Azure path form ----------------------------------------------------------------------

def test_the_azure_sdk_is_served_on_the_deployment_path_and_goes_upstream_canonical(envoy, upstreams):
    client = azure_client(envoy, KEYS["azure"])
    chat = client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
    assert chat.choices[0].message.content == "Hello from mock."
    embedded = client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert embedded.data[0].embedding == [0.1, 0.2, 0.3]
    completed = client.completions.create(model="fast", prompt="hello")
    assert completed.choices[0].text == "Hello from mock."
    got = sent(upstreams)
    assert [r["path"] for r in got] == ["/v1/chat/completions", "/v1/embeddings", "/v1/completions"]
    assert [r["json"]["model"] for r in got] == ["gpt-4o-mini", "text-embedding-3-small", "gpt-4o-mini"]
    for r in got:
        assert r["headers"]["authorization"] == f"Bearer {UPSTREAM_ENV['OPENAI_API_KEY']}"
        assert "api-key" not in r["headers"], "the client's key never goes upstream"
        assert KEYS["azure"] not in json.dumps(r)
    # A provider-qualified name: the SDK writes its `/` as %2F; it routes like the plain form.
    claude = client.chat.completions.create(model="anthropic/claude-sonnet-4-6",
                                            messages=[{"role": "user", "content": "hi"}])
    assert claude.choices
    (to_anthropic,) = sent(upstreams, "anthropic")
    assert to_anthropic["path"] == "/v1/chat/completions"
    assert to_anthropic["json"]["model"] == "claude-sonnet-4-6"
    assert to_anthropic["headers"]["x-api-key"] == UPSTREAM_ENV["ANTHROPIC_API_KEY"]


def test_the_path_names_the_model_and_the_body_cannot_walk_around_it(envoy, upstreams):
    # The path names gpt-4o, which this key may not use; the body names its allowed alias.
    r = envoy.request("POST", "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
                      bearer(KEYS["azure"]), {"model": "fast", "messages": []})
    assert r.status == 403, r
    assert error_of(r)["code"] == "model_not_allowed"
    assert "gpt-4o" in error_of(r)["message"]
    # The same through the SDK: a client bound to deployment gpt-4o, asking for "fast".
    bound = azure_client(envoy, KEYS["azure"], azure_deployment="gpt-4o")
    with pytest.raises(openai.PermissionDeniedError):
        bound.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
    assert nothing_sent(upstreams)
    # The other way round: the path's allowed alias is what the upstream gets, not the body's model.
    r = envoy.request("POST", "/openai/deployments/fast/chat/completions?api-version=2024-10-21",
                      bearer(KEYS["azure"]), {"model": "gpt-4o", "messages": []})
    assert r.status == 200, r
    r = envoy.request("POST", "/openai/deployments/fast/chat/completions",
                      bearer(KEYS["azure"]), {"messages": [], "model": None})
    assert r.status == 200, r
    bodies = [g["json"] for g in sent(upstreams)]
    assert [b["model"] for b in bodies] == ["gpt-4o-mini", "gpt-4o-mini"]
    assert all(list(b).count("model") == 1 for b in bodies)
    assert all('"model": null' not in g["body"] and '"model":null' not in g["body"] for g in sent(upstreams))


def test_the_query_reaches_nothing_and_credentials_in_it_are_removed(envoy, upstreams):
    path = (f"/openai/deployments/fast/chat/completions?api-version=2024-10-21"
            f"&api-key={KEYS['azure']}&x=1")
    r = envoy.request("POST", path, {"content-type": "application/json"}, {"messages": []})
    assert r.status == 401, "a key in the query is not a credential"
    r = envoy.request("POST", path, bearer(KEYS["azure"]), {"messages": []})
    assert r.status == 200, r
    (got,) = sent(upstreams)
    assert got["path"] == "/v1/chat/completions?x=1"
    assert KEYS["azure"] not in json.dumps(got)


@pytest.mark.parametrize("name", [
    "",                       # empty
    "%20",                    # blank
    "..%2F..%2Fv1",           # encoded traversal
    "fast%2F..%2Fx",          # a traversal inside a name
    "a/../fast",              # a literal one
    "a//b",                   # an empty segment
    "%2E%2E",                 # an encoded '..'
    "fast%252Fx",             # double encoding
    "fast%00",                # a control character
    "fast%5Cx",               # a backslash
    "%ff%fe",                 # not UTF-8
    "a" * 600,                # longer than a model name
    "%41" * 5000,             # very long once encoded
])
def test_a_hostile_deployment_name_is_a_clear_400(envoy, upstreams, name):
    r = envoy.request("POST", f"/openai/deployments/{name}/chat/completions?api-version=2024-10-21",
                      bearer(KEYS["azure"]), {"model": "fast", "messages": []})
    assert r.status == 400, r
    error = error_of(r)
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "invalid_model", "model")
    assert "deployment name" in error["message"]
    assert nothing_sent(upstreams)


def test_names_that_only_look_like_paths_are_model_names(envoy, upstreams):
    for name in ["fast%2Fchat%2Fcompletions", "openai%2Fgpt-4o"]:
        r = envoy.request("POST", f"/openai/deployments/{name}/embeddings", bearer(KEYS["azure"]),
                          {"input": "x"})
        assert r.status in (403, 404), r
        assert error_of(r)["code"] in ("model_not_allowed", "model_not_found")
    r = envoy.request("POST", "/openai/deployments/fast/images/generations", bearer(KEYS["azure"]), {})
    assert (r.status, error_of(r)["code"]) == (404, "unknown_url")
    assert nothing_sent(upstreams)


# --- Stored responses -------------------------------------------------------------------------

def created(envoy, key, n=1, **extra):
    client = openai_client(envoy, key)
    return [client.responses.create(model=REASONING_MODEL, input=f"hi {i}", **extra) for i in range(n)]


def test_a_stored_response_is_read_from_the_credential_that_created_it(envoy, upstreams):
    client = openai_client(envoy, KEYS["red"])
    responses = created(envoy, KEYS["red"], n=8)
    assert all(r.id.startswith("resp_ts") for r in responses)
    creators = {r.id: g["headers"]["authorization"] for r, g in zip(responses, sent(upstreams))}
    assert len(set(creators.values())) == 2, "both credentials served (the pin matters)"
    for r in responses:
        upstreams["openai"].clear()
        read = client.responses.retrieve(r.id)
        assert read.id == r.id, "re-marked as it was issued"
        assert read.output_text == "Hello from mock."
        (got,) = sent(upstreams)
        assert got["method"] == "GET"
        assert got["path"] == f"/v1/responses/{unmark_id(r.id)[0]}"
        assert got["headers"]["authorization"] == creators[r.id]
        items = client.responses.input_items.list(r.id)
        assert items.data and items.data[0].type == "message"
    # Azure's forms of the same (the AzureOpenAI SDK's /openai/responses/{id}?api-version=…).
    first = responses[0]
    upstreams["openai"].clear()
    read = azure_client(envoy, KEYS["red"]).responses.retrieve(first.id)
    assert read.id == first.id
    assert sent(upstreams)[0]["path"] == f"/v1/responses/{unmark_id(first.id)[0]}"
    r = envoy.request("GET", f"/openai/v1/responses/{first.id}", bearer(KEYS["red"]))
    assert r.status == 200 and r.json()["id"] == first.id, r
    # Delete, then it is gone (the provider's own 404 passes through).
    deleted = client.responses.delete(first.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)


def spend_events(envoy):
    return envoy.counter("wasmcustom.tollgate_spend_events_recorded")


def settled_spend_events(envoy):
    """The spend-event count once earlier requests' events are all in (unchanged for 1 s)."""
    last = spend_events(envoy)
    for _ in range(20):
        time.sleep(1)
        now = spend_events(envoy)
        if now == last:
            return now
        last = now
    raise AssertionError("spend events never settled")


def test_reading_a_response_is_not_metered_or_charged(envoy, upstreams):
    (response,) = created(envoy, KEYS["red"])
    recorded = settled_spend_events(envoy)
    client = openai_client(envoy, KEYS["red"])
    for _ in range(3):
        client.responses.retrieve(response.id)
    wait_until(lambda: "endpoint=stored_response" in envoy.access_log_path.read_text(), timeout=15,
               message="the relayed access-log line")
    assert spend_events(envoy) == recorded
    line = [ln for ln in envoy.access_log_path.read_text().splitlines() if "endpoint=stored_response" in ln][-1]
    assert "metered=false" in line and "deployment=o4-" in line, line


def test_another_tenant_cannot_use_a_response_id(envoy, upstreams):
    (response,) = created(envoy, KEYS["red"])
    upstreams["openai"].clear()
    blue = openai_client(envoy, KEYS["blue"])
    with pytest.raises(openai.NotFoundError) as refused:
        blue.responses.retrieve(response.id)
    assert refused.value.code == "response_not_found"
    for method, path in [("DELETE", f"/v1/responses/{response.id}"),
                         ("GET", f"/v1/responses/{response.id}/input_items"),
                         ("GET", f"/v1/responses/{unmark_id(response.id)[0]}")]:
        r = envoy.request(method, path, bearer(KEYS["blue"]))
        assert (r.status, error_of(r)["code"]) == (404, "response_not_found"), (method, path, r)
    # The raw original id is vouched for by no one, not even its own tenant.
    r = envoy.request("GET", f"/v1/responses/{unmark_id(response.id)[0]}", bearer(KEYS["red"]))
    assert (r.status, error_of(r)["code"]) == (404, "response_not_found"), r
    # A changed character: the checksum or the seal fails.
    last = response.id[-1]
    damaged = response.id[:-1] + ("B" if last == "A" else "A")
    r = envoy.request("GET", f"/v1/responses/{damaged}", bearer(KEYS["red"]))
    assert r.status in (400, 404) and error_of(r)["code"] in ("invalid_affinity_mark", "response_not_found"), r
    # Same tenant (team red), but this key may not use the model that deployment serves.
    r = envoy.request("GET", f"/v1/responses/{response.id}", bearer(KEYS["red_4o"]))
    assert (r.status, error_of(r)["code"]) == (403, "model_not_allowed"), r
    # No key, a wrong method, a body.
    assert envoy.request("GET", f"/v1/responses/{response.id}").status == 401
    r = envoy.request("POST", f"/v1/responses/{response.id}", bearer(KEYS["red"]), {})
    assert (r.status, error_of(r)["code"]) == (405, "method_not_allowed"), r
    r = envoy.request("GET", f"/v1/responses/{response.id}", bearer(KEYS["red"]), {"model": "gpt-4o"})
    assert (r.status, error_of(r)["code"]) == (400, "unexpected_body"), r
    assert nothing_sent(upstreams)


# --- Anthropic count_tokens -------------------------------------------------------------------

def anthropic_client(envoy, key):
    return anthropic.Anthropic(base_url=base(envoy), api_key=key, max_retries=0)


def test_count_tokens_is_checked_routed_and_free(envoy, upstreams):
    recorded = settled_spend_events(envoy)
    client = anthropic_client(envoy, KEYS["azure"])
    counted = client.messages.count_tokens(model="claude-sonnet-4-6",
                                           messages=[{"role": "user", "content": "Hello, Claude"}])
    assert counted.input_tokens > 0
    (got,) = sent(upstreams, "anthropic")
    assert got["path"] == "/v1/messages/count_tokens"
    assert got["json"]["model"] == "claude-sonnet-4-6"
    assert got["headers"]["x-api-key"] == UPSTREAM_ENV["ANTHROPIC_API_KEY"]
    assert KEYS["azure"] not in json.dumps(got)
    wait_until(lambda: "endpoint=count_tokens" in envoy.access_log_path.read_text(), timeout=15,
               message="the relayed access-log line")
    assert spend_events(envoy) == recorded, "nothing metered"
    # Access as for /v1/messages.
    upstreams["anthropic"].clear()
    with pytest.raises(anthropic.PermissionDeniedError):
        anthropic_client(envoy, KEYS["red"]).messages.count_tokens(
            model="claude-sonnet-4-6", messages=[{"role": "user", "content": "hi"}])
    assert nothing_sent(upstreams)


def test_a_used_up_budget_refuses_count_tokens_which_holds_nothing(envoy, upstreams):
    client = anthropic_client(envoy, KEYS["spent"])
    messages = [{"role": "user", "content": "hi"}]
    for _ in range(3):  # free: counting never uses the budget up
        assert client.messages.count_tokens(model="claude-sonnet-4-6", messages=messages).input_tokens
    client.messages.create(model="claude-sonnet-4-6", max_tokens=16, messages=messages)
    upstreams["anthropic"].clear()
    with pytest.raises(anthropic.RateLimitError) as refused:
        client.messages.count_tokens(model="claude-sonnet-4-6", messages=messages)
    assert refused.value.response.json()["error"]["code"] == "budget_exceeded"
    assert nothing_sent(upstreams)
