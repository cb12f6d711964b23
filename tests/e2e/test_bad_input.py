"""Issue 4/4: the bad-input table. Every row ends in a clear answer (an OpenAI-style error, or
the request handled correctly), through real Envoy, and the Wasm VM never crashes: the
`wasm.envoy.wasm.runtime.v8` VM reload counters stay at zero (the filter runs with
failure_policy FAIL_RELOAD, so a crash would be recovered by a reload and show there)."""

import copy
import http.client
import json
import socket

import pytest

from policies import KEYS, base_policy, bearer, chat
from stack import wait_until

ALL = bearer(KEYS["all"])

BODY_ROWS = [
    # (name, body bytes, expected status, expected code or None for success)
    ("truncated JSON", b'{"model": "gpt-4o", "messages": [', 400, "invalid_json"),
    ("not an object", b'["gpt-4o"]', 400, "invalid_json"),
    ("invalid UTF-8", b'{"model": "gpt-4o\xff\xfe"}', 400, "invalid_json"),
    ("trailing garbage", b'{"model": "gpt-4o"} {"model": "x"}', 400, "invalid_json"),
    ("model null", b'{"model": null}', 400, "missing_model"),
    ("model number", b'{"model": 4}', 400, "invalid_model"),
    ("model object", b'{"model": {"name": "gpt-4o"}}', 400, "invalid_model"),
    ("model empty", b'{"model": ""}', 400, "invalid_model"),
    ("model whitespace", b'{"model": "   "}', 400, "invalid_model"),
    ("model 600 bytes", json.dumps({"model": "m" * 600}).encode(), 400, "invalid_model"),
    ("model path traversal", b'{"model": "../../etc/passwd"}', 404, "model_not_found"),
    ("model control characters", b'{"model": "gpt\\u0000-4o\\n"}', 404, "model_not_found"),
    ("model escaped to a real name", b'{"model": "gpt\\u002d4o", "messages": []}', 200, None),
    ("duplicate model key", b'{"model": "gpt-4o", "model": "claude-sonnet-4-6"}', 400, "invalid_json"),
    # Tollgate reads past any depth and forwards; the mock upstream's JSON parser gives up (400).
    ("deeply nested (30k levels)", b'{"model": "gpt-4o", "x": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
     400, "bad_json"),
    ("huge body over the limit", json.dumps({"model": "gpt-4o", "pad": "x" * 70_000}).encode(), 413,
     "request_too_large"),
    ("stream flag of the wrong type", b'{"model": "gpt-4o", "stream": "yes", "max_tokens": -5}', 200, None),
    # Left for the upstream to refuse (its own 400 passes through, recorded at zero cost).
    ("stream_options of the wrong type", b'{"model": "gpt-4o", "stream": true, "stream_options": 7}', 400,
     "invalid_type"),
]


def vm_failures(envoy):
    stats = envoy.stats()
    return {k: v for k, v in stats.items()
            if ("vm_reload" in k or "runtime.v8.failed" in k or "plugin_failed" in k) and v not in ("0", "")}


@pytest.mark.parametrize("name,body,status,code", BODY_ROWS, ids=[r[0] for r in BODY_ROWS])
def test_bad_bodies_get_clear_answers(envoy, upstreams, name, body, status, code):
    r = envoy.request("POST", "/v1/chat/completions", ALL, body)
    assert r.status == status, (name, r)
    if code:
        error = r.json()["error"]
        assert error["code"] == code and error["message"], (name, error)


def test_odd_headers_get_clear_answers(envoy, upstreams):
    # Two authorization headers: Envoy joins them with a comma, which is no valid key: refused,
    # and nothing reaches the upstream.
    conn = http.client.HTTPConnection("127.0.0.1", envoy.listen_port, timeout=10)
    conn.putrequest("POST", "/v1/chat/completions")
    conn.putheader("authorization", f"Bearer {KEYS['all']}")
    conn.putheader("authorization", "Bearer sk-never-issued")
    conn.putheader("content-type", "application/json")
    body = json.dumps(chat("gpt-4o")).encode()
    conn.putheader("content-length", str(len(body)))
    conn.endheaders(body)
    both = conn.getresponse()
    both.read()
    conn.close()
    assert both.status == 401
    assert upstreams["openai"].requests() == []
    # A 64 KiB header: Envoy refuses it (431) before the filter; nothing crashes.
    with socket.create_connection(("127.0.0.1", envoy.listen_port), timeout=10) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 65536 + b"\r\n\r\n")
        assert b" 431 " in s.recv(4096)
    # A non-UTF-8 key is refused as malformed.
    with socket.create_connection(("127.0.0.1", envoy.listen_port), timeout=10) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer sk-\xff\xfe\r\n"
                  b"content-length: 2\r\n\r\n{}")
        assert b" 401 " in s.recv(4096)


BAD_CONFIGS = [
    ("unknown field", lambda p: p["keys"][0].update(max_budgte=5), "keys[0]"),
    ("NaN price (not JSON)", "nan", ""),
    ("negative price", lambda p: p["cost_map"].update({"gpt-4o": {"litellm_provider": "openai",
                                                                  "input_cost_per_token": -1e-6}}), "cost_map"),
    ("huge price", lambda p: p["cost_map"].update({"gpt-4o": {"litellm_provider": "openai",
                                                              "input_cost_per_token": 1e300}}), "cost_map"),
    ("negative budget", lambda p: p["keys"][0].update(max_budget=-1), "keys[0].max_budget"),
    ("huge budget", lambda p: p["keys"][0].update(max_budget=1e300), "keys[0].max_budget"),
    ("budget window without unit", lambda p: p["keys"][0].update(max_budget=1, budget_duration="30"),
     "keys[0].budget_duration"),
    ("string limit", lambda p: p["settings"].update(max_request_body_bytes="4MB"), "settings"),
]


@pytest.mark.parametrize("name,change,path", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_configs_are_refused_whole_with_the_path(envoy, upstreams, name, change, path):
    if change == "nan":
        bad = json.dumps(base_policy("bad")).replace('"max_request_body_bytes": 65536',
                                                    '"max_request_body_bytes": NaN')
    else:
        policy = copy.deepcopy(base_policy("bad"))
        change(policy)
        bad = policy
    assert envoy.push_policy(bad, f"bad-{name}", expect_accepted=False) is False
    if path:
        wait_until(lambda: path in envoy.log_tail(200), timeout=5, message=f"the path {path} in the log")
    still = envoy.request("POST", "/v1/chat/completions", ALL, chat("gpt-4o"))
    assert still.status == 200 and still.headers["x-tollgate-policy-version"] == "v1"


def test_no_row_crashed_the_vm(envoy, upstreams):
    r = envoy.request("POST", "/v1/chat/completions", ALL, chat("gpt-4o"))
    assert r.status == 200
    assert vm_failures(envoy) == {}, vm_failures(envoy)
