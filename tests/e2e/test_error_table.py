"""Scenario 5: every row of the README's error table, observed through Envoy."""

import http.client
import json

import pytest

from policies import KEYS, bearer, chat
from stack import wait_until

JSON = {"content-type": "application/json"}


def expect(resp, status, code, version="v1"):
    assert resp.status == status, resp
    assert resp.headers["content-type"] == "application/json"
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code, error
    if version:
        assert resp.headers["x-tollgate-policy-version"] == version
    return error


def test_missing_key(envoy):
    e = expect(envoy.request("POST", "/v1/chat/completions", JSON, chat("gpt-4o")), 401, "invalid_api_key")
    assert e["type"] == "authentication_error" and "No API key" in e["message"]


def test_malformed_key(envoy):
    for headers in ({"authorization": "Basic abc"}, {"authorization": "Bearer not-an-sk-key"}, {"x-api-key": "abc"}):
        e = expect(envoy.request("POST", "/v1/chat/completions", dict(headers, **JSON), chat("gpt-4o")),
                   401, "invalid_api_key")
        assert "Malformed" in e["message"]


def test_unknown_key(envoy):
    e = expect(envoy.request("POST", "/v1/chat/completions", bearer("sk-never-issued"), chat("gpt-4o")),
               401, "invalid_api_key")
    assert e["message"] == "Invalid API key provided."


def test_expired_key(envoy):
    e = expect(envoy.request("POST", "/v1/chat/completions", bearer(KEYS["expired"]), chat("gpt-4o")),
               401, "key_expired")
    assert "2020-01-01T00:00:00Z" in e["message"]


def test_blocked_key_and_blocked_team(envoy):
    expect(envoy.request("POST", "/v1/chat/completions", bearer(KEYS["blocked"]), chat("gpt-4o")), 401, "key_blocked")
    e = expect(envoy.request("POST", "/v1/chat/completions", bearer(KEYS["frozen_team"]), chat("gpt-4o")),
               401, "team_blocked")
    assert "Frozen" in e["message"]


def test_model_not_allowed(envoy):
    e = expect(envoy.request("POST", "/v1/chat/completions", bearer(KEYS["neither"]), chat("claude-sonnet-4-6")),
               403, "model_not_allowed")
    assert e["param"] == "model" and e["type"] == "permission_error"


def test_model_not_found(envoy):
    e = expect(envoy.request("POST", "/v1/chat/completions", bearer(KEYS["all"]), chat("mistral-large-latest")),
               404, "model_not_found")
    assert "mistral-large-latest" in e["message"]


@pytest.mark.parametrize("body,code", [
    (b'{"model": "gpt-4o", "messages": [', "invalid_json"),
    (b'{"messages": []}', "missing_model"),
    (b'{"model": 42}', "invalid_model"),
    (b'{"model": "a", "model": "b"}', "invalid_json"),
    (b'\xff\xfe{"model": "gpt-4o"}', "invalid_json"),
    (b'{"model": "gpt-4o", "user": "' + b"u" * 257 + b'"}', "invalid_user"),
    (b'{"model": "gpt-4o", "user": "a\\u0000b"}', "invalid_user"),
])
def test_invalid_request(envoy, body, code):
    e = expect(envoy.request("POST", "/v1/chat/completions", bearer(KEYS["all"]), body), 400, code)
    assert e["type"] == "invalid_request_error"


def test_empty_body(envoy):
    expect(envoy.request("POST", "/v1/chat/completions", bearer(KEYS["all"]), b""), 400, "missing_body")


def test_body_too_large_by_content_length_and_by_chunks(envoy, upstreams):
    big = json.dumps(chat("gpt-4o", padding="x" * 70000)).encode()
    expect(envoy.request("POST", "/v1/chat/completions", bearer(KEYS["all"]), big), 413, "request_too_large")
    # Without content-length the limit is enforced while buffering the chunked upload.
    conn = http.client.HTTPConnection("127.0.0.1", envoy.listen_port, timeout=10)
    try:
        conn.request("POST", "/v1/chat/completions", body=(big[i:i + 8192] for i in range(0, len(big), 8192)),
                     headers=bearer(KEYS["all"]), encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 413
        assert json.loads(resp.read())["error"]["code"] == "request_too_large"
    finally:
        conn.close()
    assert upstreams["openai"].requests() == []


def test_unknown_endpoint_and_wrong_method(envoy):
    expect(envoy.request("POST", "/v1/files", bearer(KEYS["all"]), b"{}"), 404, "unknown_url")
    expect(envoy.request("GET", "/v1/chat/completions", bearer(KEYS["all"])), 405, "method_not_allowed")


def test_missing_upstream_credential_is_503_not_a_leak(envoy, upstreams):
    expect(envoy.request("POST", "/v1/chat/completions", bearer(KEYS["nocred"]), chat("nocred-model")),
           503, "upstream_credential_unavailable")
    assert upstreams["openai"].requests() == []


def test_denials_are_counted_by_reason(envoy):
    envoy.request("POST", "/v1/chat/completions", bearer(KEYS["neither"]), chat("claude-sonnet-4-6"))
    wait_until(lambda: envoy.counter("wasmcustom.tollgate_requests_denied_model_not_allowed") >= 1, timeout=3, message="wasmcustom.tollgate_requests_denied_model_not_allowed")
    wait_until(lambda: envoy.counter("wasmcustom.tollgate_requests_denied_invalid_api_key") >= 1, timeout=3, message="wasmcustom.tollgate_requests_denied_invalid_api_key")


def test_no_policy_yet_fails_closed_with_503(request, upstreams):
    from conftest import start_stack
    stack = start_stack(request, upstreams, "", name="empty-policy")
    try:
        expect(stack.request("POST", "/v1/chat/completions", bearer(KEYS["all"]), chat("gpt-4o")),
               503, "policy_unavailable", version=None)
    finally:
        stack.stop()


def test_the_access_log_carries_the_filter_summary(envoy, upstreams):
    ok = envoy.request("POST", "/v1/chat/completions", bearer(KEYS["all"]), chat("gpt-4o"))
    assert ok.status == 200
    refused = envoy.request("POST", "/v1/chat/completions", bearer("sk-e2e-nobody"), chat("gpt-4o"))
    assert refused.status == 401

    def lines():
        # Envoy flushes file access logs about once a second.
        text = envoy.access_log_path.read_text() if envoy.access_log_path.exists() else ""
        found = [line for line in text.splitlines() if "decision=" in line]
        done = any("key=all" in line for line in found) and any("invalid_api_key" in line for line in found)
        return found if done else None
    found = wait_until(lines, timeout=10, message="access log lines")
    allowed = [line for line in found if "decision=allowed" in line and "key=all" in line]
    assert allowed and "resolved=gpt-4o" in allowed[-1] and "prompt_tokens=12" in allowed[-1], found
    assert "cost_usd=0.00008" in allowed[-1] and "upstream=openai" in allowed[-1], allowed[-1]
    assert any("decision=denied" in line and "code=invalid_api_key" in line and " 401 " in line
               for line in found), found


def test_previous_response_not_issued_to_this_tenant(envoy, upstreams):
    # An id this gateway did not seal for the caller's tenant (here a raw one) is unknown to it.
    body = {"model": "gpt-4o", "input": "hi", "previous_response_id": "resp_0123abcd"}
    e = expect(envoy.request("POST", "/v1/responses", bearer(KEYS["all"]), body), 404, "previous_response_not_found")
    assert e["param"] == "previous_response_id" and e["type"] == "invalid_request_error"
    assert upstreams["openai"].requests() == []
