"""Issue 11 (Phase 2 · 4/5): rate limits through real Envoy (two workers sharing the counters), in
both forms: requests per minute with the OpenAI rate-limit headers, tokens per minute counted from
the real usage of JSON and streamed answers, requests in flight, deployment capacity, and the
official OpenAI SDK honouring `retry-after`."""

import json
import threading
import time

import openai
import pytest

from conftest import start_stack
from policies import base_policy, bearer, chat
from raw_clients import h2_request, open_stream, read_to_end
from stack import avoid_minute_edge, key_hash, wait_until

RPM_KEY = "sk-e2e-rate-rpm"
TPM_KEY = "sk-e2e-rate-tpm"
BURST_KEY = "sk-e2e-rate-burst"
PARALLEL_KEY = "sk-e2e-rate-parallel"
CAPACITY_KEY = "sk-e2e-rate-capacity"
FREE_KEY = "sk-e2e-rate-free"


def policy(version="r1"):
    p = base_policy(version)
    p["model_list"] += [
        # One model on two deployments (two upstream mocks) with per-minute capacity 3 and 2.
        {"model_name": "capped-model", "cluster": "openai", "model_info": {"id": "capped-a"},
         "litellm_params": {"model": "openai/gpt-4o", "api_key_env": "OPENAI_API_KEY", "rpm": 3}},
        {"model_name": "capped-model", "cluster": "openrouter", "model_info": {"id": "capped-b"},
         "litellm_params": {"model": "openai/gpt-4o", "api_key_env": "OPENAI_API_KEY", "rpm": 2}},
    ]
    p["keys"] += [
        {"key_hash": key_hash(RPM_KEY), "key_alias": "rpm-ten", "rpm_limit": 10},
        {"key_hash": key_hash(TPM_KEY), "key_alias": "tpm-hundred", "tpm_limit": 100},
        {"key_hash": key_hash(BURST_KEY), "key_alias": "tpm-burst", "tpm_limit": 1000},
        {"key_hash": key_hash(PARALLEL_KEY), "key_alias": "two-at-once", "max_parallel_requests": 2},
        {"key_hash": key_hash(CAPACITY_KEY), "key_alias": "capacity"},
        {"key_hash": key_hash(FREE_KEY), "key_alias": "unlimited"},
    ]
    return p


@pytest.fixture(scope="module")
def envoy(request, upstreams):
    stack = start_stack(request, upstreams, policy(), concurrency=2)
    yield stack
    stack.stop()


def post(stack, key, body, extra=None, timeout=15):
    headers = dict(bearer(key), **(extra or {}))
    return stack.request("POST", "/v1/chat/completions", headers, body, timeout=timeout)


def test_rpm_ten_pass_the_eleventh_is_refused_and_the_sdk_waits_for_the_window(envoy, upstreams):
    avoid_minute_edge(48)
    remaining = []
    for _ in range(10):
        r = post(envoy, RPM_KEY, chat("gpt-4o"))
        assert r.status == 200, r
        assert r.headers["x-ratelimit-limit-requests"] == "10"
        remaining.append(int(r.headers["x-ratelimit-remaining-requests"]))
        assert r.headers["x-ratelimit-reset-requests"].endswith("s")
    assert remaining == list(range(9, -1, -1)), "both workers count on one counter"
    refused = post(envoy, RPM_KEY, chat("gpt-4o"))
    assert refused.status == 429, refused
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_exceeded", "rpm"), error
    assert "key 'rpm-ten': 10 requests per minute" in error["message"], error
    wait = int(refused.headers["retry-after"])
    assert 1 <= wait <= 60
    assert refused.headers["x-ratelimit-limit-requests"] == "10"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-should-retry" not in refused.headers, "a rate limit is worth retrying"
    # Over HTTP/2 too.
    h2 = h2_request(envoy.listen_port, [(":method", "POST"), (":path", "/v1/chat/completions"),
                                        (":scheme", "http"), (":authority", "x"),
                                        ("authorization", f"Bearer {RPM_KEY}"),
                                        ("content-type", "application/json")],
                    [json.dumps(chat("gpt-4o")).encode()])
    assert h2.status == 429, h2
    assert len([r for r in upstreams["openai"].requests() if r["path"] == "/v1/chat/completions"]) == 10
    # The official SDK waits retry-after and succeeds once the window opens.
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{envoy.listen_port}/v1", api_key=RPM_KEY,
                           max_retries=3, timeout=90)
    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Hello"}])
    waited = time.monotonic() - started
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert raw.headers["x-ratelimit-remaining-requests"] == "9", "a fresh window"
    assert raw.retries_taken >= 1, "the SDK was refused first and retried"
    assert waited >= min(wait, 60) - 2.5, f"the SDK waited {waited:.1f}s of a {wait}s retry-after"


def test_tpm_counts_the_real_usage_of_json_and_streamed_answers(envoy, upstreams):
    avoid_minute_edge(48)
    # Each request reserves its prompt estimate plus max_tokens 5 (well under 60), but the
    # answers report 60 tokens each: if reservations were what counted, a third would pass.
    big = {"x-mock-usage": json.dumps({"prompt_tokens": 40, "completion_tokens": 20, "total_tokens": 60})}
    first = post(envoy, TPM_KEY, chat("gpt-4o", max_tokens=5), big)
    assert first.status == 200, first
    reserved = 100 - int(first.headers["x-ratelimit-remaining-tokens"])
    assert 5 < reserved < 60, reserved
    streamed = post(envoy, TPM_KEY, chat("gpt-4o", max_tokens=5, stream=True), big)
    assert streamed.status == 200 and b"[DONE]" in streamed.body, streamed
    # The first request's 60 real tokens are counted; this one holds its own reservation (a
    # little larger: its body is longer).
    assert 0 < int(streamed.headers["x-ratelimit-remaining-tokens"]) <= 100 - 60 - reserved
    time.sleep(0.3)  # the stream settles at its end
    third = post(envoy, TPM_KEY, chat("gpt-4o", max_tokens=5))
    assert third.status == 429, third
    assert third.json()["error"]["code"] == "tpm"
    assert third.headers["x-ratelimit-limit-tokens"] == "100"
    assert third.headers["x-ratelimit-remaining-tokens"] == "0"
    assert "120 used or held" in third.json()["error"]["message"], third.json()


def test_a_concurrent_burst_stays_within_the_limit_plus_one_reservation(envoy, upstreams):
    avoid_minute_edge(40)
    slow = {"x-mock-delay-ms": "150"}
    results = []
    lock = threading.Lock()

    def one():
        try:
            r = post(envoy, BURST_KEY, chat("gpt-4o", max_tokens=200, stream=True), slow, timeout=30)
        except OSError as e:  # pragma: no cover - reported below
            r = e
        with lock:
            results.append(r)

    threads = [threading.Thread(target=one) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=40)
    assert len(results) == 16 and all(not isinstance(r, Exception) for r in results), results
    admitted = [r for r in results if r.status == 200]
    refused = [r for r in results if r.status != 200]
    assert all(r.status == 429 and r.json()["error"]["code"] == "tpm" for r in refused), refused
    reservation = 1000 - max(int(r.headers["x-ratelimit-remaining-tokens"]) for r in admitted)
    assert reservation > 200, reservation
    # Only a counter below the limit admits: the burst holds at most limit + one reservation.
    assert 1 <= len(admitted) * reservation <= 1000 + reservation, (len(admitted), reservation)
    assert refused, "16 × 200+ tokens cannot all fit in 1,000"


def test_max_parallel_two_refuses_a_third_and_frees_slots_when_streams_end_or_clients_go(envoy):
    port = envoy.listen_port
    a = open_stream(port, PARALLEL_KEY, 400)
    b = open_stream(port, PARALLEL_KEY, 400)
    third = post(envoy, PARALLEL_KEY, chat("gpt-4o"))
    assert third.status == 429, third
    error = third.json()["error"]
    assert error["code"] == "parallel" and "at most 2 requests in flight" in error["message"], error
    assert third.headers["retry-after"] == "1"
    assert b"[DONE]" in read_to_end(a)
    # One ended: the next passes.
    after = wait_until(lambda: (r := post(envoy, PARALLEL_KEY, chat("gpt-4o"))).status == 200 and r,
                       timeout=5, message="a freed slot")
    assert after.status == 200
    # A client that goes away frees its slot too.
    c = open_stream(port, PARALLEL_KEY, 400)
    c.close()
    assert b"[DONE]" in read_to_end(b)
    d = open_stream(port, PARALLEL_KEY, 50)
    wait_until(lambda: post(envoy, PARALLEL_KEY, chat("gpt-4o")).status == 200, timeout=10,
               message="the disconnected client's slot freed")
    read_to_end(d)


def test_traffic_moves_to_the_deployment_with_headroom_and_both_full_is_429(envoy, upstreams):
    avoid_minute_edge(48)
    served = []
    for _ in range(5):
        r = post(envoy, CAPACITY_KEY, chat("capped-model"))
        assert r.status == 200, r
        served.append(r.headers.get("x-mock-upstream"))
        assert "x-ratelimit-limit-requests" not in r.headers, "no tenant limit, and the provider's are removed"
    assert sorted(served) == ["openai"] * 3 + ["openrouter"] * 2, served
    full = post(envoy, CAPACITY_KEY, chat("capped-model"))
    assert full.status == 429, full
    error = full.json()["error"]
    assert error["code"] == "rpm" and "model 'capped-model'" in error["message"], error
    assert 1 <= int(full.headers["retry-after"]) <= 60
    assert not any(h.startswith("x-ratelimit") for h in full.headers), "shared capacity is not shown"


def test_provider_rate_headers_never_reach_the_client(envoy):
    r = post(envoy, FREE_KEY, chat("gpt-4o"))
    assert r.status == 200, r
    assert not any(h.startswith(("x-ratelimit", "anthropic-ratelimit")) for h in r.headers), r.headers
    streamed = post(envoy, FREE_KEY, chat("gpt-4o", stream=True))
    assert not any(h.startswith("x-ratelimit") for h in streamed.headers), streamed.headers


def test_refusals_are_counted_by_kind_and_scope_and_logged(envoy):
    def counter(name):
        return envoy.counter(f"wasmcustom.tollgate_rate_limit_refusals_{name}")
    wait_until(lambda: counter("key_rpm") >= 2 and counter("key_parallel") >= 1
               and counter("deployment_rpm") >= 1 and counter("key_tpm") >= 1, timeout=10,
               message="refusal counters by kind and scope")
    log = envoy.access_log_path.read_text()
    assert "code=rpm limit_scope=key" in log, log[-2000:]
    assert "ratelimit_remaining_requests=" in log
