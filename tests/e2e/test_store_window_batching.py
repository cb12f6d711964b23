"""The reference accounting server's one-upsert-per-window batching, driven over HTTP
with hand-made batches (form-independent: no Envoy). Totals must equal what one-event-per-batch
ingestion gives, whatever the mix inside a batch."""

import copy
import json
import time

import pytest

from conftest import accounting_server
from stack import ACCOUNTING_WRITER_TOKEN, request

TEMPLATE = {
    "specversion": "1.0", "id": "x", "source": "tollgate/window-batching", "type": "tollgate.spend",
    "time": "2026-12-02T15:22:11.118Z", "subject": "k", "datacontenttype": "application/json",
    "data": {"policy_version": "v1", "key_hash": "ab" * 32, "key_alias": "k", "team_id": "t", "user_id": None,
             "end_user": None, "endpoint": "chat_completions", "requested_model": "gpt-4o",
             "resolved_model": "gpt-4o", "deployment": "d", "provider": "openai", "upstream_model": "gpt-4o",
             "stream": False, "usage": {"prompt_tokens": 1, "completion_tokens": 1, "cached_tokens": 0,
                                        "cache_creation_tokens": 0, "reasoning_tokens": 0, "estimated": False},
             "cost_nano_usd": 0, "cost_source": "cost_map", "status": "ok", "http_status": 200, "budgets": []},
}
# Today's window (00:00 UTC): the server lists only windows still open, so a fixed date would
# make the test fail once that day is over.
W = int(time.time()) // 86400 * 86400


def event(eid, cost, *budgets):
    e = copy.deepcopy(TEMPLATE)
    e["id"] = eid
    e["data"]["cost_nano_usd"] = cost
    e["data"]["budgets"] = [dict(budget=b, window_start=s, **({"window_end": end} if end else {}))
                            for b, s, end in budgets]
    return e


def post(server, batch_id, events):
    r = request(server.port, "POST", "/v1/spend/batch",
                {"authorization": f"Bearer {ACCOUNTING_WRITER_TOKEN}", "x-tollgate-batch-id": batch_id,
                 "content-type": "application/cloudevents-batch+json"}, json.dumps(events))
    assert r.status == 200, r
    return r.json()


def totals(server):
    return {(b["budget"], b["window_start"]): b["spend_nano_usd"] for b in server.budgets()}


BATCHES = [
    # the same event twice in one batch, on two budgets
    [event("a", 10, ("key:k", W, W + 86400), ("team:t", W, W + 86400)),
     event("a", 10, ("key:k", W, W + 86400), ("team:t", W, W + 86400))],
    # an event already stored, again, beside a new one on the same windows
    [event("a", 10, ("key:k", W, W + 86400)), event("b", 5, ("key:k", W, W + 86400), ("team:t", W, W + 86400))],
    # two windows of one budget, and window ends that differ for one window start
    [event("c", 7, ("key:k", W + 86400, W + 2 * 86400)), event("d", 3, ("key:k", W, W + 3600)),
     event("e", 2, ("key:k", 0, None))],
    # one event counting the same window twice (a writer bug): refused alone, the other counted
    [event("f", 4, ("team:t", W, W + 86400), ("team:t", W, W + 86400)), event("g", 1, ("team:t", W, W + 86400))],
]
REFUSED = {"f"}


@pytest.mark.parametrize("split", [False, True], ids=["one-batch-each", "one-event-per-batch"])
def test_per_window_batching_gives_the_totals_of_one_event_per_batch(split, request):
    server = accounting_server(f"window-batching-store-{split}")
    try:
        n = 0
        for batch in BATCHES:
            for part in ([[e] for e in batch] if split else [batch]):
                n += 1
                reply = post(server, f"b{n}", part)
                # every valid event of the batch is acknowledged, duplicates included
                assert set(reply["acknowledged"]) == {e["id"] for e in part} - REFUSED, reply
                assert {r["id"] for r in reply.get("rejected", [])} == {e["id"] for e in part} & REFUSED, reply
        got = totals(server)
        expected = {("key:k", W): 10 + 5 + 3, ("team:t", W): 10 + 5 + 1,
                    ("key:k", W + 86400): 7, ("key:k", 0): 2}
        assert got == expected, got
    finally:
        server.stop()
