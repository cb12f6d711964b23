"""The Phase 2 · 3/5 endpoints (the Azure path form, stored responses, count_tokens, models
retrieve) under the gate-bypass attacks of test_gate_bypass.py: HTTP/2 and trailers, compressed
and duplicated headers, internal headers, path and query tricks. Each checks what reached the
upstreams. Written by the Phase 2 · 3/5 review."""

import gzip
import json

import pytest

from affinity_marks import unmark_id
from conftest import start_stack
from policies import REASONING_MODEL, bearer
from raw_clients import h1_raw, h2_request
from test_endpoints import KEYS, created, endpoints_policy, error_of, nothing_sent, sent


@pytest.fixture(scope="module")
def envoy(request, upstreams):
    stack = start_stack(request, upstreams, endpoints_policy())
    yield stack
    stack.stop()


AZURE = "/openai/deployments/{}/chat/completions?api-version=2024-10-21"


def h2(envoy, method, path, key, body=None, trailers=None, extra=()):
    headers = [(":method", method), (":path", path), (":scheme", "http"), (":authority", "gw"),
               ("authorization", f"Bearer {key}"), ("content-type", "application/json"), *extra]
    frames = [json.dumps(body).encode()] if body is not None else []
    return h2_request(envoy.listen_port, headers, frames, trailers)


def test_the_azure_path_decides_over_http2_and_trailers(envoy, upstreams):
    body = {"model": "fast", "messages": []}
    for trailers in (None, [("x-trailer", "1")]):
        r = h2(envoy, "POST", AZURE.format("gpt-4o"), KEYS["azure"], body, trailers)
        assert r.status == 403, r
    r = h2(envoy, "POST", AZURE.format("fast"), KEYS["azure"], {"model": "gpt-4o", "messages": []},
           [("x-trailer", "1")])
    assert r.status == 200, r
    (got,) = sent(upstreams)
    assert got["json"]["model"] == "gpt-4o-mini" and got["path"] == "/v1/chat/completions"


def test_internal_headers_and_query_tricks_do_not_steer_the_azure_form(envoy, upstreams):
    spoof = {"x-tollgate-cluster": "anthropic", "x-envoy-original-path": "/v1/embeddings",
             "x-envoy-upstream-rq-timeout-ms": "1"}
    for query in ["api-version=1&api-version=2", "API-VERSION=1", "api%2Dversion=x", "x=1"]:
        path = f"/openai/deployments/fast/chat/completions?{query}"
        r = envoy.request("POST", path, dict(bearer(KEYS["azure"]), **spoof), {"messages": []})
        assert r.status == 200, (query, r)
    got = sent(upstreams)
    assert [g["path"] for g in got] == ["/v1/chat/completions"] * 3 + ["/v1/chat/completions?x=1"], got
    # Only the filter's own routing header and Envoy's own timeout go on (the spoofed values never).
    internal = {(k, v) for g in got for k, v in g["headers"].items() if k.startswith(("x-tollgate", "x-envoy"))}
    assert internal <= {("x-tollgate-cluster", "openai"), ("x-envoy-expected-rq-timeout-ms", "300000")}, internal
    assert sent(upstreams, "anthropic") == []
    # A fragment: Envoy refuses the request itself.
    r = envoy.request("POST", "/openai/deployments/fast/chat/completions?x=1#/../gpt-4o", bearer(KEYS["azure"]),
                      {"messages": []})
    assert r.status == 400, r
    # Forms that are not the deployment path are not served as it.
    for path in ["/openai//deployments/gpt-4o/chat/completions", "/OpenAI/deployments/gpt-4o/chat/completions",
                 "/openai/deployments/gpt-4o/chat%2Fcompletions", "/openai/deployments/gpt-4o/chat/completions//",
                 "/openai/deployments/gpt-4o/chat/completions;x", "/openai/deployments/gpt-4o/responses"]:
        r = envoy.request("POST", path, bearer(KEYS["azure"]), {"model": "fast", "messages": []})
        assert r.status in (400, 403, 404), (path, r)
        assert r.status != 200
    upstreams["openai"].clear()
    assert nothing_sent(upstreams)


def test_compressed_or_doubly_encoded_bodies_are_refused_on_the_new_endpoints(envoy, upstreams):
    packed = gzip.compress(json.dumps({"model": "fast", "messages": []}).encode())
    for path in [AZURE.format("fast"), "/v1/messages/count_tokens"]:
        r = envoy.request("POST", path, dict(bearer(KEYS["azure"]), **{"content-encoding": "gzip"}), packed)
        assert (r.status, error_of(r)["code"]) == (415, "unsupported_content_encoding"), (path, r)
    # Two content-encoding headers, the first one harmless.
    raw = (f"POST {AZURE.format('fast')} HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {KEYS['azure']}\r\n"
           f"content-type: application/json\r\ncontent-encoding: identity\r\ncontent-encoding: gzip\r\n"
           f"content-length: {len(packed)}\r\nconnection: close\r\n\r\n").encode() + packed
    status, _, body = h1_raw(envoy.listen_port, raw)
    assert status in (400, 415), (status, body)
    assert nothing_sent(upstreams)


def test_count_tokens_reaches_only_count_tokens(envoy, upstreams):
    body = {"model": "claude-sonnet-4-6", "max_tokens": 16, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}
    headers = dict(bearer(KEYS["azure"]), **{"anthropic-version": "2023-06-01"})
    for path in ["/v1/messages/count_tokens/..", "/v1/messages/count_tokens/../", "/v1/messages/count_tokens%2F..",
                 "/v1/messages//count_tokens", "/v1/messages/Count_Tokens", "/v1/messages/count_tokens;x"]:
        r = envoy.request("POST", path, headers, body)
        assert r.status in (400, 404), (path, r)
    assert nothing_sent(upstreams)
    r = envoy.request("POST", "/v1/messages/count_tokens?beta=true", headers, body)
    assert r.status == 200, r
    (got,) = sent(upstreams, "anthropic")
    assert got["path"] == "/v1/messages/count_tokens?beta=true"
    # Not a model the key may use: refused over HTTP/2 and trailers as well.
    r = h2(envoy, "POST", "/v1/messages/count_tokens", KEYS["red"], body, [("x-trailer", "1")],
           extra=[("anthropic-version", "2023-06-01")])
    assert r.status == 403, r


def test_a_stored_response_id_cannot_be_bent_into_another_path(envoy, upstreams):
    (response,) = created(envoy, KEYS["red"])
    upstreams["openai"].clear()
    original = unmark_id(response.id)[0]
    for path in [f"/v1/responses/{response.id}%2F..%2F..%2Fchat%2Fcompletions",
                 f"/v1/responses/{response.id}/../../chat/completions",
                 f"/v1/responses/{response.id}/cancel",
                 f"/v1/responses/{response.id}%3Fx"]:
        r = envoy.request("GET", path, bearer(KEYS["red"]))
        assert r.status in (400, 404), (path, r)
    assert nothing_sent(upstreams)
    # Over HTTP/2, with a body in trailers-ended DATA: still no body allowed.
    r = h2(envoy, "GET", f"/v1/responses/{response.id}", KEYS["red"], {"model": "x"}, [("x-trailer", "1")])
    assert r.status == 400, r
    r = h2(envoy, "GET", f"/v1/responses/{response.id}?include[]=x&api-version=1&api_key={KEYS['red']}",
           KEYS["red"])
    assert r.status == 200, r
    (got,) = sent(upstreams)
    assert got["path"] == f"/v1/responses/{original}?include[]=x", got["path"]
    assert KEYS["red"] not in json.dumps(got)


def test_a_huge_model_id_in_models_retrieve_is_bounded(envoy, upstreams):
    for path in ["/v1/models/" + "a" * 40_000, "/v1/models/" + "%41" * 15_000]:
        r = envoy.request("GET", path, bearer(KEYS["azure"]))
        assert r.status in (404, 414, 431), r
        assert len(r.body) < 2000
    r = h2(envoy, "GET", "/v1/models/fast", KEYS["azure"])
    assert r.status == 200 and r.json()["id"] == "fast", r
    assert nothing_sent(upstreams)


def test_a_responses_follow_up_of_a_stored_id_keeps_its_tenant(envoy, upstreams):
    (response,) = created(envoy, KEYS["red"])
    upstreams["openai"].clear()
    r = envoy.request("POST", "/openai/responses?api-version=1", bearer(KEYS["blue"]),
                      {"model": REASONING_MODEL, "input": "hi", "previous_response_id": response.id})
    assert (r.status, error_of(r)["code"]) == (404, "previous_response_not_found"), r
    assert nothing_sent(upstreams)
