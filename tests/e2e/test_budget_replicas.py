"""Scenario 6 of issue 2/4: two Envoy replicas share one accounting server and one key budget.

Each replica counts its own spend at once (shared data) and learns the other's through the
accounting server: at its next batch acknowledgement or poll. The README derives the overshoot
bound this test checks: (N-1) x r x c x L + N x W, with N replicas, r requests/s per replica,
c the cost of one request, L = flush_interval + poll_interval (+ slack for the round trips), and
W one request's worst-case reservation. Without cross-replica reconciliation each replica would
spend the whole budget on its own, an overshoot of a full budget, which the test also rules out.
"""

import json
import threading
import time

import pytest

from conftest import accounting_server, start_stack
from policies import MONEY_KEYS, bearer, chat, money_policy, nano_cost
from stack import ROOT, wait_until

BUDGET_USD = 0.01
FLUSH_MS, POLL_MS = 200, 500


@pytest.fixture(scope="module")
def accounting():
    server = accounting_server("accounting-replicas")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def replicas(request, upstreams, accounting):
    policy = money_policy("r1", shared_budget=BUDGET_USD,
                          accounting={"flush_interval_ms": FLUSH_MS, "poll_interval_ms": POLL_MS})
    stacks = [start_stack(request, upstreams, policy, name=f"replica-{i}",
                          extra_clusters={"accounting": accounting.port}, concurrency=2)
              for i in range(2)]
    yield stacks
    for stack in stacks:
        stack.stop()


def test_two_replicas_overshoot_a_shared_budget_by_at_most_the_documented_bound(replicas, accounting):
    body = chat("gpt-4o", max_tokens=5)
    results = {i: {"admitted": 0, "refused": 0, "seconds": 0.0} for i in range(len(replicas))}

    def drive(i):
        start = time.monotonic()
        while time.monotonic() - start < 30:
            r = replicas[i].request("POST", "/v1/chat/completions", bearer(MONEY_KEYS["shared"]), body)
            if r.status == 200:
                results[i]["admitted"] += 1
            else:
                assert r.status == 429, r
                results[i]["refused"] += 1
                break
        results[i]["seconds"] = time.monotonic() - start

    threads = [threading.Thread(target=drive, args=(i,)) for i in range(len(replicas))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=40)
    admitted = sum(r["admitted"] for r in results.values())
    assert all(r["refused"] == 1 for r in results.values()), results

    per_request = nano_cost("gpt-4o", 12, 5)
    events = wait_until(lambda: (lambda e: e if len(e) >= admitted else None)(
        [e for e in accounting.events() if e["data"]["key_alias"] == "shared-budget"]),
        timeout=15, message="all spend events")
    assert len(events) == admitted
    assert len({e["id"] for e in events}) == admitted, "event ids are unique across workers and replicas"
    total = sum(e["data"]["cost_nano_usd"] for e in events)
    assert total == admitted * per_request
    limit = int(BUDGET_USD * 1e9)
    overshoot = max(0, total - limit)

    n = len(replicas)
    rate = max(r["admitted"] / r["seconds"] for r in results.values())
    lag = (FLUSH_MS + POLL_MS) / 1000 + 0.1
    prompt_estimate = -(-len(json.dumps(body)) // 4)
    worst = prompt_estimate * 2_500 + 5 * 10_000
    bound = (n - 1) * rate * per_request * lag + n * worst
    report = {"replicas": n, "admitted": admitted, "per_replica": results, "rate_per_replica": rate,
              "total_nano": total, "limit_nano": limit, "overshoot_nano": overshoot,
              "bound_nano": bound, "lag_s": lag, "worst_case_nano": worst}
    (ROOT / ".run" / "e2e" / "replica-overshoot.json").write_text(json.dumps(report, indent=2))
    assert total >= limit, "the budget was reached"
    assert overshoot <= bound, report
    assert overshoot < limit, "each replica spent the budget on its own"
