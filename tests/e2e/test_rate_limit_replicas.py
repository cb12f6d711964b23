"""Issue 11 proof 5: two Envoy processes share one key's rate limit through the accounting cluster
(each reports what it counted with its spend events and polls every replica's totals), and the
overshoot stays within the documented bound: about the requests the other replica admits within
one reconciliation lag (flush + poll + a request's duration), never more than one limit per
extra replica."""

import math
import threading
import time

import pytest

from conftest import accounting_server, start_stack
from policies import accounting_section, base_policy, bearer, chat
from stack import avoid_minute_edge, key_hash

PACED_KEY = "sk-e2e-replica-rpm-paced"
BURST_KEY = "sk-e2e-replica-rpm-burst"
TOKENS_KEY = "sk-e2e-replica-tpm"
LIMIT = 20
FLUSH_MS, POLL_MS = 100, 200


def policy(version="rr1"):
    p = base_policy(version)
    p["keys"] += [
        {"key_hash": key_hash(PACED_KEY), "key_alias": "replica-paced", "rpm_limit": LIMIT},
        {"key_hash": key_hash(BURST_KEY), "key_alias": "replica-burst", "rpm_limit": LIMIT},
        {"key_hash": key_hash(TOKENS_KEY), "key_alias": "replica-tokens", "tpm_limit": 170},
    ]
    p["accounting"] = accounting_section(flush_interval_ms=FLUSH_MS, poll_interval_ms=POLL_MS)
    return p


@pytest.fixture(scope="module")
def accounting():
    server = accounting_server("accounting-rate-replicas")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def replicas(request, upstreams, accounting):
    stacks = [start_stack(request, upstreams, policy(), name=f"rate-replica-{i}",
                          extra_clusters={"accounting": accounting.port}) for i in range(2)]
    yield stacks
    for stack in stacks:
        stack.stop()


def test_paced_traffic_on_two_replicas_overshoots_by_at_most_one_lag_of_requests(replicas):
    avoid_minute_edge(45)
    interval = 0.1  # one request every 100 ms, alternating replicas: 10 requests/s in all
    admitted, slowest = 0, 0.0
    for i in range(2 * LIMIT):
        started = time.monotonic()
        r = replicas[i % 2].request("POST", "/v1/chat/completions", bearer(PACED_KEY), chat("gpt-4o"))
        slowest = max(slowest, time.monotonic() - started)
        assert r.status in (200, 429), r
        if r.status == 200:
            admitted += 1
        else:
            assert r.json()["error"]["code"] == "rpm"
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
    lag = (FLUSH_MS + POLL_MS) / 1000 + slowest
    bound = LIMIT + math.ceil(lag / interval)
    print(f"\nrate-limit replicas, paced: {admitted} admitted of {2 * LIMIT} "
          f"(limit {LIMIT}, bound {bound}, lag {lag:.2f}s)")
    assert LIMIT <= admitted <= bound, (admitted, bound)
    assert admitted < 2 * LIMIT, "the replicas saw each other's requests"


def test_a_simultaneous_burst_on_two_replicas_stays_within_one_limit_per_replica(replicas):
    avoid_minute_edge(45)
    results = []
    lock = threading.Lock()

    def one(stack):
        r = stack.request("POST", "/v1/chat/completions", bearer(BURST_KEY), chat("gpt-4o"), timeout=20)
        with lock:
            results.append(r.status)

    threads = [threading.Thread(target=one, args=(replicas[i % 2],)) for i in range(3 * LIMIT)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    admitted = results.count(200)
    print(f"\nrate-limit replicas, simultaneous burst: {admitted} admitted of {3 * LIMIT} (limit {LIMIT})")
    assert len(results) == 3 * LIMIT and set(results) <= {200, 429}, results
    # Faster than one reconciliation: each replica may fill the limit alone, never more.
    assert LIMIT <= admitted <= 2 * LIMIT, admitted


def test_tokens_counted_on_one_replica_refuse_on_the_other(replicas):
    avoid_minute_edge(50)
    a, b = replicas
    # 60 real tokens each (the mock's usage override): two on replica a use 120 of 170.
    big = dict(bearer(TOKENS_KEY), **{"x-mock-usage": '{"prompt_tokens": 40, "completion_tokens": 20}'})
    for _ in range(3):
        assert a.request("POST", "/v1/chat/completions", big, chat("gpt-4o", max_tokens=5)).status == 200
    # 180 tokens counted on a: once reconciled, b refuses although it counted nothing itself.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        r = b.request("POST", "/v1/chat/completions", bearer(TOKENS_KEY), chat("gpt-4o", max_tokens=5))
        if r.status == 429:
            break
        time.sleep(0.1)
    assert r.status == 429, r
    assert r.json()["error"]["code"] == "tpm"
    assert "key 'replica-tokens'" in r.json()["error"]["message"]
