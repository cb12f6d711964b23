"""Issue 2/4: metering, cost, budgets and spend reporting through real Envoy and the reference
accounting server (scenarios 1–5; the two-replica scenario 6 is in test_budget_replicas.py)."""

import json
import socket
import threading
import time

import pytest

from conftest import accounting_server, start_stack
from policies import MONEY_KEYS, UNPRICED_MODEL, bearer, chat, money_policy, nano_cost
from stack import request, stat_name, wait_until


@pytest.fixture(scope="module")
def accounting():
    server = accounting_server("accounting-money")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def money(request, upstreams, accounting):
    stack = start_stack(request, upstreams, money_policy("m1"), extra_clusters={"accounting": accounting.port})
    yield stack
    stack.stop()


def events_for(accounting, alias, at_least, timeout=10):
    def enough():
        found = [e for e in accounting.events() if e["data"]["key_alias"] == alias]
        return found if len(found) >= at_least else None
    return wait_until(enough, timeout, message=f"{at_least} spend events for {alias}")


def sse_events(body):
    out = []
    for block in body.decode().split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data:"):
                out.append(line[5:].strip())
    return out


def test_a_small_budget_admits_until_spent_and_the_server_total_is_exact(money, accounting, upstreams):
    per_request = nano_cost("gpt-4o", 12, 5)
    assert per_request == 80_000
    admitted = 0
    refusal = None
    for _ in range(30):
        r = money.request("POST", "/v1/chat/completions", bearer(MONEY_KEYS["small"]), chat("gpt-4o"))
        if r.status == 200:
            admitted += 1
            continue
        refusal = r
        break
    assert refusal is not None, "the budget never refused"
    assert refusal.status == 429, refusal
    error = refusal.json()["error"]
    assert error["type"] == "insufficient_quota" and error["code"] == "budget_exceeded"
    assert "key 'small-budget'" in error["message"] and "$0.001 budget" in error["message"]
    # Requests pass while spend < $0.001: 13 × $0.00008 = $0.00104 is the first total at or above it.
    assert admitted == 13
    events = events_for(accounting, "small-budget", admitted)
    assert len(events) == admitted
    assert all(e["data"]["cost_nano_usd"] == per_request for e in events)
    [total] = [b for b in accounting.budgets() if b["budget"].startswith("key:") and
               b["budget"].endswith(events[0]["data"]["key_hash"])]
    assert total["spend_nano_usd"] == admitted * per_request
    wait_until(lambda: money.counter("wasmcustom.tollgate_budget_refusals_key") >= 1, timeout=3, message="wasmcustom.tollgate_budget_refusals_key")


def test_an_unpriced_model_is_not_free(money, accounting, upstreams):
    refused = money.request("POST", "/v1/chat/completions", bearer(MONEY_KEYS["unpriced"]), chat(UNPRICED_MODEL))
    assert refused.status == 403, refused
    assert refused.json()["error"]["code"] == "model_unpriced"
    assert upstreams["openai"].requests() == []

    money.push_policy(money_policy("m1-default-price", unpriced={
        "mode": "default_price", "input_cost_per_token": 1e-05, "output_cost_per_token": 3e-05}), "m1dp")
    priced = money.request("POST", "/v1/chat/completions", bearer(MONEY_KEYS["unpriced"]), chat(UNPRICED_MODEL))
    assert priced.status == 200, priced
    [event] = [e for e in events_for(accounting, "unpriced-budget", 1)
               if e["data"]["policy_version"] == "m1-default-price"]
    assert event["data"]["cost_source"] == "default_price"
    assert event["data"]["cost_nano_usd"] == 12 * 10_000 + 5 * 30_000

    money.push_policy(money_policy("m1-track", unpriced={"mode": "track"}), "m1t")
    tracked = money.request("POST", "/v1/chat/completions", bearer(MONEY_KEYS["unpriced"]), chat(UNPRICED_MODEL))
    assert tracked.status == 200, tracked
    [event] = [e for e in events_for(accounting, "unpriced-budget", 2)
               if e["data"]["policy_version"] == "m1-track"]
    assert (event["data"]["cost_source"], event["data"]["cost_nano_usd"]) == ("unpriced", 0)
    wait_until(lambda: money.counter("wasmcustom.tollgate_spend_unpriced") >= 1, timeout=3, message="wasmcustom.tollgate_spend_unpriced")
    money.push_policy(money_policy("m1"), "m1-back")


def test_streams_are_metered_and_the_client_sees_only_what_it_asked_for(money, accounting, upstreams):
    key = bearer(MONEY_KEYS["meter"])
    r = money.request("POST", "/v1/chat/completions", key, chat("gpt-4o", stream=True))
    assert r.status == 200, r
    assert "content-length" not in r.headers
    data = sse_events(r.body)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert len(chunks) == 4 and all("usage" not in c for c in chunks), chunks
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Hello from mock."
    [seen] = upstreams["openai"].requests()
    assert json.loads(seen["body"])["stream_options"] == {"include_usage": True}

    asked = money.request("POST", "/v1/chat/completions", key,
                          chat("gpt-4o", stream=True, stream_options={"include_usage": True}))
    assert any(json.loads(d).get("usage") for d in sse_events(asked.body)[:-1]), "asked-for usage is kept"

    anthropic = money.request("POST", "/v1/messages", key, chat("claude-sonnet-4-6", max_tokens=64, stream=True))
    assert anthropic.status == 200, anthropic
    responses = money.request("POST", "/v1/responses", key, {"model": "gpt-4o", "input": "hi", "stream": True})
    assert responses.status == 200, responses
    assert "response.completed" in responses.body.decode()

    events = events_for(accounting, "meter", 4)
    by_endpoint = {}
    for e in events:
        by_endpoint.setdefault(e["data"]["endpoint"], []).append(e["data"])
    chat_event = by_endpoint["chat_completions"][0]
    assert (chat_event["usage"]["prompt_tokens"], chat_event["usage"]["completion_tokens"]) == (12, 5)
    assert chat_event["cost_nano_usd"] == nano_cost("gpt-4o", 12, 5)
    assert chat_event["stream"] and chat_event["status"] == "ok" and not chat_event["usage"]["estimated"]
    assert chat_event["team_id"] == "metered" and chat_event["user_id"] == "alice"
    assert chat_event["budgets"][0]["budget"] == "team:metered"
    [msg] = by_endpoint["messages"]
    assert (msg["usage"]["prompt_tokens"], msg["usage"]["completion_tokens"]) == (10, 5)
    assert msg["cost_nano_usd"] == nano_cost("claude-sonnet-4-6", 10, 5)
    assert msg["provider"] == "anthropic"
    [resp] = by_endpoint["responses"]
    assert (resp["usage"]["prompt_tokens"], resp["usage"]["completion_tokens"]) == (12, 5)
    assert resp["cost_nano_usd"] == nano_cost("gpt-4o", 12, 5)


def test_cut_streams_and_upstream_errors_are_recorded_with_their_status(money, accounting, upstreams):
    key = bearer(MONEY_KEYS["meter"])
    failed = money.request("POST", "/v1/chat/completions", dict(key, **{"x-mock-status": "503"}), chat("gpt-4o"))
    assert failed.status == 503
    # The upstream resets after 2 events: no usage ever comes.
    try:
        money.request("POST", "/v1/chat/completions", dict(key, **{"x-mock-cut-after": "2"}),
                      chat("gpt-4o", stream=True, user="cut-upstream"))
    except Exception:
        pass
    # The client goes away mid-stream.
    body = json.dumps(chat("gpt-4o", stream=True, user="cut-client")).encode()
    with socket.create_connection(("127.0.0.1", money.listen_port), timeout=5) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                  + f"authorization: Bearer {MONEY_KEYS['meter']}\r\nx-mock-delay-ms: 300\r\n".encode()
                  + f"content-length: {len(body)}\r\n\r\n".encode() + body)
        assert b"200" in s.recv(65536)
    def find(pred):
        return wait_until(lambda: [e["data"] for e in accounting.events()
                                   if e["data"]["key_alias"] == "meter" and pred(e["data"])],
                          timeout=10, message="event")[0]
    error = find(lambda d: d["http_status"] == 503)
    assert (error["status"], error["cost_nano_usd"], error["usage"]["prompt_tokens"]) == ("upstream_error", 0, 0)
    cut = find(lambda d: d["end_user"] == "cut-upstream")
    assert cut["status"] == "upstream_error" and cut["usage"]["estimated"] and cut["cost_nano_usd"] > 0
    gone = find(lambda d: d["end_user"] == "cut-client")
    assert gone["status"] == "client_disconnect" and gone["usage"]["estimated"] and gone["cost_nano_usd"] > 0


def test_an_accounting_outage_loses_and_duplicates_nothing(money, accounting, upstreams):
    key = bearer(MONEY_KEYS["meter"])
    before = set(accounting.event_ids())
    accounting.stop()
    sent = 0
    for i in range(25):
        r = money.request("POST", "/v1/chat/completions", key, chat("gpt-4o", user=f"outage-{i}"))
        assert r.status == 200, r
        sent += 1
    wait_until(lambda: money.counter("wasmcustom.tollgate_spend_batches_retried") >= 2, timeout=10,
               message="failed sends while accounting is down")
    accounting.start()
    wait_until(lambda: len(set(accounting.event_ids()) - before) >= sent, timeout=20,
               message="events delivered after the outage")
    time.sleep(1)
    after = accounting.event_ids()
    assert len(after) == len(set(after)), "no duplicates"
    new = [e for e in accounting.events() if e["id"] not in before]
    assert len(new) == sent
    assert sorted(e["data"]["end_user"] for e in new) == sorted(f"outage-{i}" for i in range(25))
    assert money.counter("wasmcustom.tollgate_spend_events_dropped") == 0


def test_streams_open_during_a_config_swap_finish_on_their_version_and_are_reported(money, accounting, upstreams):
    key = dict(bearer(MONEY_KEYS["meter"]), **{"x-mock-delay-ms": "250"})
    results = {}

    def slow(i):
        results[i] = request(money.listen_port, "POST", "/v1/chat/completions", key,
                             chat("gpt-4o", stream=True, user=f"swap-{i}"), timeout=20)

    threads = [threading.Thread(target=slow, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    wait_until(lambda: len(upstreams["openai"].requests()) >= 3, timeout=5, message="streams open")
    money.push_policy(money_policy("m2"), "m2")
    after = money.request("POST", "/v1/chat/completions", bearer(MONEY_KEYS["meter"]), chat("gpt-4o"))
    assert after.headers["x-tollgate-policy-version"] == "m2"
    for t in threads:
        t.join(timeout=20)
    for i in range(3):
        assert results[i].status == 200
        assert results[i].headers["x-tollgate-policy-version"] == "m1"
        assert sse_events(results[i].body)[-1] == "[DONE]"
    swapped = wait_until(lambda: [e["data"] for e in accounting.events()
                                  if (e["data"]["end_user"] or "").startswith("swap-")] or None,
                         timeout=10, message="swap events")
    wait_until(lambda: len([e for e in accounting.events()
                            if (e["data"]["end_user"] or "").startswith("swap-")]) == 3, timeout=10,
               message="all three swap events")
    swapped = [e["data"] for e in accounting.events() if (e["data"]["end_user"] or "").startswith("swap-")]
    assert {d["policy_version"] for d in swapped} == {"m1"}
    assert all(d["status"] == "ok" and d["cost_nano_usd"] == nano_cost("gpt-4o", 12, 5) for d in swapped)


def test_full_batches_leave_without_waiting_for_the_flush_interval(money, accounting, upstreams):
    # A long flush interval and tiny batches: only "send when a batch fills" can deliver in time,
    # and it must be sent from the root context (an answer to a call made from a stream's
    # callbacks goes to that stream, which is gone, and the batch would stay in flight).
    money.push_policy(money_policy("m-batch", accounting={"batch_max_events": 2, "flush_interval_ms": 60000,
                                                          "poll_interval_ms": 0, "timeout_ms": 5000}),
                     "m-batch")
    for i in range(10):
        r = money.request("POST", "/v1/chat/completions", bearer(MONEY_KEYS["meter"]), chat("gpt-4o", user=f"batch-{i}"))
        assert r.status == 200, r
    wait_until(lambda: len([e for e in accounting.events()
                            if (e["data"]["end_user"] or "").startswith("batch-")]) == 10,
               timeout=3, message="ten events in full batches")
    # Each answered batch is a sample of the batch-latency histogram.
    latency = money.stats().get(stat_name("wasmcustom.tollgate_spend_batch_latency_ms"), "")
    assert "P50(" in latency, latency
    money.push_policy(money_policy("m1"), "m1-after-batch")


def test_events_buffered_under_a_replaced_version_are_sent_by_the_next(money, accounting, upstreams):
    # Nothing would send these events for a minute under their own version: they stay in the
    # VM's outbox, and the next version (200 ms flush) delivers them promptly.
    money.push_policy(money_policy("m-drain", accounting={"batch_max_events": 1000, "flush_interval_ms": 60000,
                                                          "poll_interval_ms": 0}), "m-drain")
    for i in range(5):
        r = money.request("POST", "/v1/chat/completions", bearer(MONEY_KEYS["meter"]), chat("gpt-4o", user=f"drain-{i}"))
        assert r.status == 200, r
    time.sleep(0.5)
    assert not [e for e in accounting.events() if (e["data"]["end_user"] or "").startswith("drain-")]
    money.push_policy(money_policy("m1"), "m1-after-drain")
    drained = wait_until(lambda: (lambda found: found if len(found) == 5 else None)(
        [e for e in accounting.events() if (e["data"]["end_user"] or "").startswith("drain-")]),
        timeout=5, message="the old version's buffered events")
    assert {e["data"]["policy_version"] for e in drained} == {"m-drain"}
