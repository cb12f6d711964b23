"""Issue 4/4: the soak run. Mixed traffic through two Envoy workers for SOAK_SECONDS (60 in
./scripts/test, 240 in ./scripts/soak), a new config version every few seconds (every fifth one
invalid, so refused), and the accounting server down for the middle third.

It holds when: no request that should pass fails, every metered request has exactly one spend
event in the accounting database (none lost, none counted twice), nothing was dropped, and
Envoy's resident memory is flat after warm-up. The figures are printed and written to
.run/e2e/soak/summary.json.
"""

import json
import os
import random
import re
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import accounting_server, start_stack
from policies import KEYS, MONEY_KEYS, bearer, chat, money_policy
from stack import request, stat_name

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "60"))
SWAP_EVERY_S = float(os.environ.get("SOAK_SWAP_SECONDS", "3"))
CLIENTS = 4
# Growth allowed between the median resident size of the second quarter and the largest of the
# last quarter. Old policy versions leaking (several MiB each, per worker, a swap every 3 s) or
# a per-request leak of even 1 KiB would each exceed it within a minute.
FLAT_MEMORY_SLACK_MIB = 24

ACCOUNTING = {"flush_interval_ms": 200, "batch_max_events": 50, "timeout_ms": 1000, "poll_interval_ms": 500}


def version(n):
    policy = money_policy(f"soak-{n}", accounting=ACCOUNTING)
    policy["model_group_alias"]["soak-fast"] = "gpt-4o"
    if n % 5 == 4:
        policy["cost_map"] = dict(policy["cost_map"], **{"broken-model": {
            "litellm_provider": "openai", "input_cost_per_token": -1}})
    return policy


# What each kind of request sends and must get back. `event` says whether a spend event must exist.
def traffic(kind, tag):
    meter = bearer(MONEY_KEYS["meter"])
    return {
        "chat": (meter, "/v1/chat/completions", chat("gpt-4o", user=tag), 200, True),
        "chat_stream": (meter, "/v1/chat/completions", chat("gpt-4o", user=tag, stream=True), 200, True),
        "alias": (meter, "/v1/chat/completions", chat("soak-fast", user=tag), 200, True),
        "responses_stream": (meter, "/v1/responses",
                             {"model": "gpt-4o", "input": "hi", "stream": True, "user": tag}, 200, True),
        "messages": (meter, "/v1/messages", chat("claude-sonnet-4-6", max_tokens=64), 200, True),
        "messages_stream": (meter, "/v1/messages", chat("claude-sonnet-4-6", max_tokens=64, stream=True), 200, True),
        "denied_model": (bearer(KEYS["neither"]), "/v1/chat/completions", chat("claude-sonnet-4-6", user=tag), 403,
                         False),
        "unknown_key": (bearer("sk-soak-unknown"), "/v1/chat/completions", chat("gpt-4o", user=tag), 401, False),
    }[kind]


KINDS = ["chat", "chat", "chat_stream", "chat_stream", "alias", "responses_stream", "messages", "messages_stream",
         "denied_model", "unknown_key"]


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.fixture(scope="module")
def accounting():
    server = accounting_server("accounting-soak")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def soak(request, upstreams, accounting):
    stack = start_stack(request, upstreams, version(0), extra_clusters={"accounting": accounting.port},
                        concurrency=2, wasm_log_level="info", access_log=False)
    yield stack
    stack.stop()


def test_soak_mixed_traffic_config_swaps_and_an_accounting_outage(soak, accounting, upstreams):
    start = time.monotonic()
    stop_at = start + SOAK_SECONDS
    lock = threading.Lock()
    sent = Counter()
    failures = []
    tags_with_events = []      # OpenAI-shaped requests carry a unique `user`: matched one to one
    untagged_with_events = Counter()

    def client(n):
        rng = random.Random(n)
        i = 0
        while time.monotonic() < stop_at:
            kind = rng.choice(KINDS)
            tag = f"soak-{n}-{i}"
            i += 1
            headers, path, body, want, event = traffic(kind, tag)
            try:
                r = request(soak.listen_port, "POST", path, headers, body, timeout=15)
                ok = r.status == want and (want != 200 or body.get("stream") is not True
                                           or r.body.rstrip().endswith((b"[DONE]", b"}")))
                detail = r
            except Exception as e:  # any transport error is a failure of a request that should pass
                ok, detail = False, repr(e)
            with lock:
                sent[kind] += 1
                if not ok:
                    failures.append((kind, tag, detail))
                elif event and body.get("user") == tag:
                    tags_with_events.append(tag)
                elif event:
                    untagged_with_events[kind] += 1

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
    for t in threads:
        t.start()

    memory = []        # (seconds since start, Envoy RSS KiB)
    swaps = Counter()
    outage = (start + SOAK_SECONDS / 3, start + 2 * SOAK_SECONDS / 3)
    down = False
    n = 0
    next_swap = start + SWAP_EVERY_S
    while time.monotonic() < stop_at:
        now = time.monotonic()
        memory.append((round(now - start, 1), rss_kib(soak.process.pid)))
        if not down and outage[0] <= now < outage[1]:
            accounting.stop()
            down = True
        elif down and now >= outage[1]:
            accounting.start()
            down = False
        if now >= next_swap:
            n += 1
            accepted = soak.push_policy(version(n), f"soak-{n}", expect_accepted=(n % 5 != 4))
            swaps["accepted" if accepted else "rejected"] += 1
            next_swap = time.monotonic() + SWAP_EVERY_S
        time.sleep(0.5)
    for t in threads:
        t.join(timeout=30)
    if down:
        accounting.start()
    assert not any(t.is_alive() for t in threads), "a client did not finish"

    expected = len(tags_with_events) + sum(untagged_with_events.values())

    # After an outage the sender backs off (up to 30 s between attempts). Whatever arrives by
    # then is checked below, so a shortfall is reported with its details.
    deadline = time.monotonic() + 60
    while len(accounting.event_ids()) < expected and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(1.5)  # anything extra (a duplicate) would arrive now
    events = [e["data"] for e in accounting.events()]
    stats = soak.stats()

    def counter(name):
        value = stats.get(stat_name(f"wasmcustom.{name}"), "0")
        return int(value) if value.isdigit() else 0

    by_tag = Counter(e["end_user"] for e in events if e["end_user"])
    untagged = Counter(("messages_stream" if e["stream"] else "messages") for e in events if not e["end_user"])
    summary = {
        "seconds": SOAK_SECONDS,
        "requests": dict(sent),
        "requests_total": sum(sent.values()),
        "failures": len(failures),
        "swaps": dict(swaps),
        "events_expected": expected,
        "events_stored": len(events),
        "spend_events_dropped": counter("tollgate_spend_events_dropped"),
        "spend_batches_retried": counter("tollgate_spend_batches_retried"),
        "rss_mib": {"first": memory[0][1] / 1024, "max": max(m for _, m in memory) / 1024,
                    "last": memory[-1][1] / 1024},
        "vm_failures": {k: v for k, v in stats.items()
                        if ("vm_reload" in k or "runtime.v8.failed" in k or "plugin_failed" in k) and v not in ("0", "")},
    }
    # Each accepted version logs its VM's heap in use and linear memory (per worker VM).
    vm_memory = [(float(heap), float(linear)) for heap, linear in re.findall(
        r"heap in use ([\d.]+) MiB, VM linear memory ([\d.]+) MiB", soak.log_path.read_text(errors="replace"))]
    summary["vm_mib_at_load"] = {"first": vm_memory[:2], "last": vm_memory[-2:], "versions_loaded": len(vm_memory)}
    out = soak.workdir / "summary.json"
    out.write_text(json.dumps(dict(summary, memory=memory), indent=1))
    print("\nsoak:", json.dumps(summary))

    assert not failures, failures[:10]
    if SOAK_SECONDS >= 6 * SWAP_EVERY_S:
        assert swaps["accepted"] >= 2 and swaps["rejected"] >= 1, swaps
    missing = [t for t in tags_with_events if by_tag[t] == 0]
    twice = {t: c for t, c in by_tag.items() if c > 1}
    assert not missing, f"{len(missing)} requests without a spend event, e.g. {missing[:5]}"
    assert not twice, f"counted more than once: {list(twice.items())[:5]}"
    assert set(by_tag) == set(tags_with_events), "events for requests that were never sent"
    assert untagged == untagged_with_events, (untagged, untagged_with_events)
    assert len(events) == expected
    assert summary["spend_events_dropped"] == 0
    assert summary["spend_batches_retried"] >= 1, "the outage was never felt"
    # Flat memory: after warm-up, resident size stops growing.
    quarter = len(memory) // 4
    second = sorted(m for _, m in memory[quarter:2 * quarter])
    settled = second[len(second) // 2]
    last_max = max(m for _, m in memory[3 * quarter:])
    assert last_max - settled <= FLAT_MEMORY_SLACK_MIB * 1024, (
        f"resident memory grew from {settled / 1024:.1f} MiB to {last_max / 1024:.1f} MiB")
    assert not summary["vm_failures"], summary["vm_failures"]
