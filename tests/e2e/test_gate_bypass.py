"""Issue 10 (1/5), the adapter's part: a client holding a valid key tries to walk around the
decision through real Envoy: HTTP/2 and HTTP/1.1 trailers, its own x-tollgate-* headers,
provider tenant selectors and credentials in headers or the query, compressed bodies both ways,
and SDK retries of final refusals. Each test fails on the build before the fix
(TOLLGATE_WASM=<old wasm> runs the suite against another build)."""

import gzip
import json
import re
import socket
import time

import openai
import pytest

from conftest import start_stack
from policies import AGENT_ALIAS, AGENT_TARGET, KEYS, base_policy, bearer, chat
from raw_clients import chunked_with_trailers, h1_raw, h2_request
from stack import wait_until

UPSTREAM_OPENAI = "Bearer upstream-openai-secret"
UPSTREAM_OPENROUTER = "Bearer upstream-openrouter-secret"
NOT_ALLOWED = "claude-sonnet-4-6"  # the "neither" key may only call gpt-4o


def gate_policy(version="g1", client_headers=None):
    policy = base_policy(version)
    if client_headers is not None:
        policy["settings"]["client_headers"] = client_headers
    return policy


@pytest.fixture(scope="module")
def envoy(request, upstreams):
    stack = start_stack(request, upstreams, gate_policy())
    yield stack
    stack.stop()


def h2_headers(port, key, path="/v1/chat/completions", extra=()):
    return [(":method", "POST"), (":path", path), (":authority", f"127.0.0.1:{port}"), (":scheme", "http"),
            ("authorization", f"Bearer {key}"), ("content-type", "application/json"), *extra]


def only_request(mock):
    seen = mock.requests()
    assert len(seen) == 1, seen
    return seen[0]


# --- 1. Trailers: the stream ends only after the decision ------------------------------------

def test_h2_trailers_cannot_skip_the_access_decision(envoy, upstreams):
    body = json.dumps(chat(NOT_ALLOWED)).encode()
    resp = h2_request(envoy.listen_port,
                      h2_headers(envoy.listen_port, KEYS["neither"], extra=[("x-tollgate-cluster", "anthropic")]),
                      [body], trailers=[("x-client-trailer", "1")])
    assert resp.status == 403, resp
    assert resp.json()["error"]["code"] == "model_not_allowed"
    assert upstreams["anthropic"].requests() == [] and upstreams["openai"].requests() == []


def test_h2_trailers_are_decided_on_the_complete_body_and_edited(envoy, upstreams):
    body = json.dumps(chat(AGENT_ALIAS)).encode()
    half = len(body) // 2
    resp = h2_request(envoy.listen_port, h2_headers(envoy.listen_port, KEYS["alias_only"]),
                      [body[:half], body[half:]],
                      trailers=[("authorization", f"Bearer {KEYS['alias_only']}"), ("x-tollgate-cluster", "openai")])
    assert resp.status == 200, resp
    seen = only_request(upstreams["openrouter"])
    assert seen["headers"]["authorization"] == UPSTREAM_OPENROUTER
    assert json.loads(seen["body"])["model"] == AGENT_TARGET.removeprefix("openrouter/")
    assert KEYS["alias_only"] not in json.dumps(seen)
    assert upstreams["openai"].requests() == []


def test_h2_trailers_without_a_body_are_refused_as_missing_body(envoy, upstreams):
    resp = h2_request(envoy.listen_port, h2_headers(envoy.listen_port, KEYS["all"]), [],
                      trailers=[("x-client-trailer", "1")])
    assert resp.status == 400 and resp.json()["error"]["code"] == "missing_body", resp
    assert upstreams["openai"].requests() == []


def test_h1_chunked_trailers_cannot_skip_the_access_decision(envoy, upstreams):
    raw = chunked_with_trailers("/v1/chat/completions",
                                {"authorization": f"Bearer {KEYS['neither']}", "content-type": "application/json",
                                 "x-tollgate-cluster": "anthropic"},
                                chat(NOT_ALLOWED), {"x-client-trailer": "1"})
    status, _, body = h1_raw(envoy.listen_port, raw)
    assert status == 403, body
    assert json.loads(body)["error"]["code"] == "model_not_allowed"
    assert upstreams["anthropic"].requests() == []


def test_h1_chunked_trailers_are_decided_and_the_credential_swapped(envoy, upstreams):
    raw = chunked_with_trailers("/v1/chat/completions",
                                {"authorization": f"Bearer {KEYS['all']}", "content-type": "application/json"},
                                chat("gpt-4o"), {"x-api-key": KEYS["all"]})
    status, _, body = h1_raw(envoy.listen_port, raw)
    assert status == 200, body
    seen = only_request(upstreams["openai"])
    assert seen["headers"]["authorization"] == UPSTREAM_OPENAI
    assert KEYS["all"] not in json.dumps(seen)


# --- 2. Tollgate's internal headers come only from the filter --------------------------------

def test_client_internal_headers_never_reach_a_route_or_an_upstream(envoy, upstreams):
    headers = dict(bearer(KEYS["all"]), **{"x-tollgate-cluster": "anthropic", "x-tollgate-future": "1"})
    resp = envoy.request("POST", "/v1/chat/completions", headers, chat("gpt-4o"))
    assert resp.status == 200, resp
    seen = only_request(upstreams["openai"])
    # Routed by the filter's value (openai, not the client's anthropic); the route removes the
    # header once the router has read it, so the provider never learns the cluster's name.
    assert "x-tollgate-cluster" not in seen["headers"]
    assert "x-tollgate-future" not in seen["headers"]
    assert upstreams["anthropic"].requests() == []


def test_a_refused_request_does_not_log_the_clients_cluster(envoy, upstreams):
    headers = dict(bearer("sk-e2e-nobody-gate"), **{"x-tollgate-cluster": "openai"})
    assert envoy.request("POST", "/v1/chat/completions", headers, chat("gpt-4o")).status == 401

    def line():
        text = envoy.access_log_path.read_text() if envoy.access_log_path.exists() else ""
        return next((l for l in text.splitlines() if "invalid_api_key" in l and " 401 " in l), None)
    found = wait_until(line, timeout=10, message="the refused request's access-log line")
    assert "upstream=-" in found, found


def test_pipelined_http1_requests_are_each_decided(envoy, upstreams):
    allowed = json.dumps(chat("gpt-4o")).encode()
    refused = json.dumps(chat(NOT_ALLOWED)).encode()
    raw = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {KEYS['all']}\r\n"
           f"content-type: application/json\r\ncontent-length: {len(allowed)}\r\n\r\n").encode() + allowed
    raw += (f"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {KEYS['neither']}\r\n"
            f"x-tollgate-cluster: anthropic\r\ncontent-type: application/json\r\n"
            f"content-length: {len(refused)}\r\nconnection: close\r\n\r\n").encode() + refused
    with socket.create_connection(("127.0.0.1", envoy.listen_port), timeout=10) as sock:
        sock.sendall(raw)
        received = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    statuses = [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", received)]
    assert statuses == [200, 403], received[:600]
    assert len(upstreams["openai"].requests()) == 1 and upstreams["anthropic"].requests() == []


# --- 4. Headers and query parameters that steer the provider ---------------------------------

STEERING = {"openai-organization": "org-attacker", "openai-project": "proj-attacker",
            "cookie": f"session={KEYS['all']}", "proxy-authorization": f"Bearer {KEYS['all']}",
            "x-goog-api-key": KEYS["all"], "x-goog-user-project": "attacker-project",
            "x-api-key-2": KEYS["all"], "x-debug-echo": f"token={KEYS['all']}"}
FEATURES = {"anthropic-version": "2023-06-01", "anthropic-beta": "prompt-caching-2024-07-31",
            "openai-beta": "assistants=v2"}


def test_tenant_selectors_and_credential_carriers_are_removed_feature_headers_pass(envoy, upstreams):
    headers = dict(bearer(KEYS["all"]), **STEERING, **FEATURES)
    resp = envoy.request("POST", "/v1/chat/completions?api-version=2024-10-21&api-key=" + KEYS["all"]
                         + "&key=" + KEYS["all"] + "&token=" + KEYS["all"] + "&auth=Bearer%20" + KEYS["all"],
                         headers, chat("gpt-4o"))
    assert resp.status == 200, resp
    seen = only_request(upstreams["openai"])
    for name in STEERING:
        assert name not in seen["headers"], name
    for name, value in FEATURES.items():
        assert seen["headers"][name] == value
    assert seen["path"] == "/v1/chat/completions?api-version=2024-10-21"
    assert KEYS["all"] not in json.dumps(seen)


def test_an_operator_can_forward_a_tenant_selector_but_never_a_credential(request, upstreams):
    policy = gate_policy("g-forward", {"forward": ["openai-project"], "remove": ["x-internal-debug"]})
    stack = start_stack(request, upstreams, policy, name="gate_forward")
    try:
        headers = dict(bearer(KEYS["all"]), **STEERING, **{"x-internal-debug": "1"})
        assert stack.request("POST", "/v1/chat/completions", headers, chat("gpt-4o")).status == 200
        seen = only_request(upstreams["openai"])
        assert seen["headers"]["openai-project"] == "proj-attacker"
        assert "openai-organization" not in seen["headers"] and "x-internal-debug" not in seen["headers"]
        assert "cookie" not in seen["headers"]
        bad = gate_policy("g-bad", {"forward": ["authorization"]})
        stack.push_policy(bad, "g-bad", expect_accepted=False)
        assert "settings.client_headers.forward[0]" in stack.log_tail(200)
    finally:
        stack.stop()


# --- 3. Compression both ways ----------------------------------------------------------------

def test_upstreams_are_asked_for_identity_so_metering_and_stripping_hold(envoy, upstreams):
    time.sleep(1.2)  # stats of earlier requests reach Envoy on the root tick
    recorded = envoy.counter("wasmcustom.tollgate_spend_events_recorded")
    estimated = envoy.counter("wasmcustom.tollgate_spend_estimated")
    headers = dict(bearer(KEYS["all"]), **{"accept-encoding": "gzip, deflate, br", "x-mock-gzip": "honor"})
    resp = envoy.request("POST", "/v1/chat/completions", headers, chat("gpt-4o", stream=True))
    assert resp.status == 200, resp
    assert only_request(upstreams["openai"])["headers"]["accept-encoding"] == "identity"
    assert "content-encoding" not in resp.headers
    text = resp.body.decode()
    assert '"usage"' not in text and text.rstrip().endswith("data: [DONE]"), text
    # Metered from the real usage, not estimated: wait for its spend to be recorded.
    wait_until(lambda: envoy.counter("wasmcustom.tollgate_spend_events_recorded") > recorded, timeout=5,
               message="the streamed request's spend")
    assert envoy.counter("wasmcustom.tollgate_spend_estimated") == estimated, "metered from compressed bytes"


def test_a_still_compressed_answer_passes_untouched_and_is_counted(envoy, upstreams):
    before = envoy.counter("wasmcustom.tollgate_responses_encoded")
    headers = dict(bearer(KEYS["all"]), **{"x-mock-gzip": "always"})
    resp = envoy.request("POST", "/v1/chat/completions", headers, chat("gpt-4o"))
    assert resp.status == 200, resp
    assert resp.headers.get("content-encoding") == "gzip"
    answer = json.loads(gzip.decompress(resp.body))
    assert answer["usage"]["completion_tokens"] == 5
    wait_until(lambda: envoy.counter("wasmcustom.tollgate_responses_encoded") > before, timeout=5,
               message="tollgate_responses_encoded")


def test_a_compressed_request_body_gets_a_clear_error(envoy, upstreams):
    headers = dict(bearer(KEYS["all"]), **{"content-encoding": "gzip"})
    resp = envoy.request("POST", "/v1/chat/completions", headers, gzip.compress(json.dumps(chat("gpt-4o")).encode()))
    assert resp.status == 415, resp
    error = resp.json()["error"]
    assert error["code"] == "unsupported_content_encoding" and "gzip" in error["message"]
    assert upstreams["openai"].requests() == []


# --- 13. Final refusals are not retried by the SDKs ------------------------------------------

def test_the_openai_sdk_does_not_retry_a_final_refusal(envoy, upstreams):
    name = "wasmcustom.tollgate_requests_denied_upstream_credential_unavailable"
    before = envoy.counter(name)
    client = openai.OpenAI(api_key=KEYS["nocred"], base_url=f"http://127.0.0.1:{envoy.listen_port}/v1",
                           max_retries=2, timeout=10)
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model="nocred-model", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == 503
    assert raised.value.response.headers["x-should-retry"] == "false"
    # Stats reach Envoy on the root tick: wait for them, then check exactly one attempt.
    wait_until(lambda: envoy.counter(name) > before, timeout=5, message=name)
    time.sleep(1.2)
    assert envoy.counter(name) - before == 1, "the SDK retried a final refusal"
    assert time.monotonic() - started < 5
