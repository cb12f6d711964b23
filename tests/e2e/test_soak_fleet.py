"""Issue 13, proof 2: the soak mix through two Envoy processes whose `accounting` cluster is two
`tollgate accounting` instances on one real PostgreSQL, with one instance killed (SIGKILL, as a
crash: a batch may be committed and never answered) a third of the way in and started again at
two thirds.

It holds when every metered request has exactly one spend event in PostgreSQL, every budget
window's total equals the sum of its events, both instances answer the same totals, and neither
Envoy dropped an event. Runs FLEET_SOAK_SECONDS (40 in ./scripts/test). Figures go to
.run/e2e/soak-fleet/summary.json."""

import json
import os
import random
import threading
import time
from collections import Counter, defaultdict

import pytest

from conftest import start_stack
from postgres_server import PostgresServer
from stack import ROOT, AccountingServer, clean_dir, request
from test_soak import ACCOUNTING, KINDS, traffic
from policies import money_policy

SOAK_SECONDS = float(os.environ.get("FLEET_SOAK_SECONDS", "40"))
CLIENTS = 4


@pytest.fixture(scope="module")
def fleet(request, upstreams):
    workdir = clean_dir(ROOT / ".run" / "e2e" / "soak-fleet")
    postgres = PostgresServer(workdir / "postgres")
    url = postgres.create_database("fleet")
    accounting = [AccountingServer(clean_dir(workdir / f"accounting-{i}"), db=url) for i in (0, 1)]
    policy = money_policy("fleet-1", accounting=dict(ACCOUNTING, source="tollgate/fleet"))
    policy["model_group_alias"]["soak-fast"] = "gpt-4o"
    envoys = [start_stack(request, upstreams, policy, name=f"soak-fleet-envoy-{i}",
                          extra_clusters={"accounting": [a.port for a in accounting]},
                          wasm_log_level="info", access_log=False) for i in (0, 1)]
    yield postgres, accounting, envoys
    for stack in envoys:
        stack.stop()
    for server in accounting:
        server.stop()
    postgres.stop()


def test_two_envoys_two_accounting_instances_one_postgres_and_a_crash(fleet):
    postgres, (steady, crashing), envoys = fleet
    start = time.monotonic()
    stop_at = start + SOAK_SECONDS
    lock = threading.Lock()
    sent = Counter()
    failures = []
    tags = []
    untagged = Counter()

    def client(n):
        rng = random.Random(n)
        i = 0
        while time.monotonic() < stop_at:
            kind = rng.choice(KINDS)
            tag = f"fleet-{n}-{i}"
            i += 1
            headers, path, body, want, event = traffic(kind, tag)
            stack = envoys[i % 2]
            try:
                r = request(stack.listen_port, "POST", path, headers, body, timeout=15)
                ok, detail = r.status == want, r
            except Exception as e:  # a transport error is a failure of a request that should pass
                ok, detail = False, repr(e)
            with lock:
                sent[kind] += 1
                if not ok:
                    failures.append((kind, tag, detail))
                elif event and body.get("user") == tag:
                    tags.append(tag)
                elif event:
                    untagged[kind] += 1

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    killed_at = restarted_at = None
    while time.monotonic() < stop_at:
        now = time.monotonic()
        if killed_at is None and now >= start + SOAK_SECONDS / 3:
            crashing.kill()
            killed_at = round(now - start, 1)
        elif restarted_at is None and killed_at is not None and now >= start + 2 * SOAK_SECONDS / 3:
            crashing.start()
            restarted_at = round(now - start, 1)
        time.sleep(0.2)
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a client did not finish"
    assert not failures, failures[:10]
    expected = len(tags) + sum(untagged.values())

    database = "fleet"
    deadline = time.monotonic() + 60
    while postgres.query(database, "SELECT COUNT(*) FROM events")[0][0] < expected and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(1.5)  # anything extra (a duplicate) would arrive now
    events = [json.loads(row[0]) for row in postgres.query(database, "SELECT json FROM events")]
    by_tag = Counter(e["data"]["end_user"] for e in events if e["data"]["end_user"])
    missing = [t for t in tags if by_tag[t] == 0]
    twice = {t: c for t, c in by_tag.items() if c > 1}

    # Every window's total is the sum of the events that count against it.
    summed = defaultdict(int)
    for e in events:
        for b in e["data"]["budgets"]:
            summed[(b["budget"], b["window_start"])] += e["data"]["cost_nano_usd"]
    stored = {(budget, start): spend for budget, start, spend in
              postgres.query(database, "SELECT budget, window_start, spend_nano_usd FROM budget_windows")}
    reports = [a.report(timeout=30) for a in (steady, crashing)]
    dropped = [stack.counter("wasmcustom.tollgate_spend_events_dropped") for stack in envoys]
    retried = [stack.counter("wasmcustom.tollgate_spend_batches_retried") for stack in envoys]
    summary = {"seconds": SOAK_SECONDS, "requests": dict(sent), "requests_total": sum(sent.values()),
               "events_expected": expected, "events_stored": len(events), "killed_at_s": killed_at,
               "restarted_at_s": restarted_at, "spend_events_dropped": dropped, "spend_batches_retried": retried,
               "windows": len(stored)}
    (ROOT / ".run" / "e2e" / "soak-fleet" / "summary.json").write_text(json.dumps(summary, indent=1))
    print("\nfleet soak:", json.dumps(summary))

    assert killed_at is not None and restarted_at is not None, summary
    assert not missing, f"{len(missing)} requests without a spend event, e.g. {missing[:5]}"
    assert not twice, f"counted more than once: {list(twice.items())[:5]}"
    assert set(by_tag) == set(tags), "events for requests that were never sent"
    assert len(events) == expected, summary
    assert stored == dict(summed), "a window total differs from the sum of its events"
    assert reports[0]["budget_windows"] == reports[1]["budget_windows"], "the instances disagree"
    assert reports[0]["events"] == len(events)
    assert dropped == [0, 0], summary
    assert request(crashing.port, "GET", "/ready").status == 200
