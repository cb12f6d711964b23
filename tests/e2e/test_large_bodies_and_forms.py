"""Bodies larger than one read, in every framing a client can choose (HTTP/1.1 content-length,
HTTP/1.1 chunked in many pieces, HTTP/2 in many DATA frames past the first flow-control window,
HTTP/2 ending in trailers): the decision is made on the whole body, the upstream receives the
whole rewritten body, nothing goes before the decision. And what only the native module has:
the ABI check at load, one compiled policy for every worker."""

import json
import re

import pytest

from conftest import start_stack
from policies import AGENT_ALIAS, AGENT_TARGET, KEYS, base_policy
from raw_clients import h1_raw, h2_post
from stack import FORM

BIG = "lorem ipsum dolor sit amet " * 4000  # ~108 kB of message content


@pytest.fixture(scope="module")
def envoy(request, upstreams):
    policy = base_policy("big")
    policy["settings"]["max_request_body_bytes"] = 1 << 20
    stack = start_stack(request, upstreams, policy, concurrency=2)
    yield stack
    stack.stop()


def big_chat(model=AGENT_ALIAS):
    return json.dumps({"model": model, "messages": [{"role": "user", "content": BIG}]}).encode()


def assert_whole_body_went_upstream(upstreams):
    seen = upstreams["openrouter"].requests()
    assert len(seen) == 1, [len(s["body"]) for s in seen]
    sent = json.loads(seen[0]["body"])
    assert sent["model"] == AGENT_TARGET.removeprefix("openrouter/"), "the alias was resolved on the whole body"
    assert sent["messages"][0]["content"] == BIG, "the whole body was forwarded"
    assert upstreams["openai"].requests() == []


def h2_headers(port, key, extra=()):
    return [(":method", "POST"), (":path", "/v1/chat/completions"), (":authority", f"127.0.0.1:{port}"),
            (":scheme", "http"), ("authorization", f"Bearer {key}"), ("content-type", "application/json"), *extra]


def test_a_large_http1_body_is_decided_whole(envoy, upstreams):
    resp = envoy.request("POST", "/v1/chat/completions",
                         {"authorization": f"Bearer {KEYS['alias_only']}", "content-type": "application/json"},
                         big_chat())
    assert resp.status == 200, resp
    assert_whole_body_went_upstream(upstreams)


def test_a_large_chunked_body_in_many_pieces_is_decided_whole(envoy, upstreams):
    body = big_chat()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {KEYS['alias_only']}\r\n"
            "content-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n").encode()
    pieces = [body[i:i + 10_000] for i in range(0, len(body), 10_000)]
    raw = head + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    status, _, answer = h1_raw(envoy.listen_port, raw)
    assert status == 200, answer
    assert_whole_body_went_upstream(upstreams)


def test_a_large_http2_body_past_the_flow_control_window_is_decided_whole(envoy, upstreams):
    resp = h2_post(envoy.listen_port, h2_headers(envoy.listen_port, KEYS["alias_only"]), big_chat())
    assert resp.status == 200, resp
    assert_whole_body_went_upstream(upstreams)


def test_a_large_http2_body_ending_in_trailers_is_decided_whole_and_the_trailer_key_removed(envoy, upstreams):
    resp = h2_post(envoy.listen_port, h2_headers(envoy.listen_port, KEYS["alias_only"]), big_chat(),
                   trailers=[("x-api-key", KEYS["alias_only"])])
    assert resp.status == 200, resp
    assert_whole_body_went_upstream(upstreams)
    assert KEYS["alias_only"] not in json.dumps(upstreams["openrouter"].requests()[0]["headers"])


def test_a_large_body_for_a_model_the_key_may_not_use_is_refused_before_anything_goes(envoy, upstreams):
    resp = h2_post(envoy.listen_port, h2_headers(envoy.listen_port, KEYS["neither"]), big_chat("claude-sonnet-4-6"))
    assert resp.status == 403, resp
    assert all(mock.requests() == [] for mock in upstreams.values())


@pytest.mark.skipif(FORM != "native", reason="the dynamic module's own load checks")
def test_the_native_module_matches_the_envoy_abi_and_compiles_once_for_every_worker(envoy):
    log = envoy.log_tail(400)
    assert "Dynamic module ABI version v0.2.0 matched." in log, log
    assert "deprecated" not in log
    # Two workers, one compiled policy (the Wasm filter compiles one per worker VM).
    assert len(re.findall(r"accepted version big:", log)) == 1, log


@pytest.mark.skipif(FORM != "wasm", reason="the Wasm filter compiles in each worker's VM")
def test_the_wasm_filter_compiles_the_policy_in_each_worker_vm(envoy):
    log = envoy.log_tail(400)
    assert len(re.findall(r"accepted version big:", log)) >= 2, log
