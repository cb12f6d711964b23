"""A hostile (or buggy) accounting peer answers budget polls with budgets the policy does not
have, new names every time. Totals are taken in only for budgets of the serving version
(`Policy::has_budget`), so the ledgers keep one slot per budget of the policy and Envoy's memory
does not grow at the peer's pace. Fails when Envoy's RSS grows by more than 32 MiB during 12 s
of polls (before the fix: about 130 MiB in the native form). Found by the Phase 2 · 2/5 review."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import start_stack
from policies import MONEY_KEYS, bearer, chat, money_policy
from stack import free_port

PER_POLL = 6000
ACCOUNTING = {"flush_interval_ms": 100, "batch_max_events": 8, "timeout_ms": 2000, "poll_interval_ms": 100}


class PollFlooder:
    def __init__(self):
        self.port = free_port()
        self.polls = 0
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                peer.polls += 1
                n = peer.polls
                budgets = [{"budget": f"key:{n:08x}{i:056x}", "window_start": 1796169600,
                            "window_end": 1796256000, "spend_nano_usd": 1} for i in range(PER_POLL)]
                self.answer({"cursor": n, "budgets": budgets})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                ids = [e["id"] for e in json.loads(body)]
                self.answer({"batch_id": self.headers.get("x-tollgate-batch-id"), "acknowledged": ids,
                             "budgets": []})

            def answer(self, obj):
                data = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.fixture
def flooded(request, upstreams):
    peer = PollFlooder()
    stack = start_stack(request, upstreams, money_policy("flood1", accounting=ACCOUNTING), name="poll-foreign-budgets",
                        extra_clusters={"accounting": peer.port})
    yield peer, stack
    stack.stop()
    peer.stop()


def test_polled_budgets_the_policy_does_not_have_do_not_grow_memory_without_limit(flooded):
    peer, stack = flooded
    r = stack.request("POST", "/v1/chat/completions", bearer(MONEY_KEYS["meter"]), chat("gpt-4o"))
    assert r.status == 200, r
    time.sleep(1)
    before, polls_before = rss_kib(stack.process.pid), peer.polls
    time.sleep(12)
    after, polls = rss_kib(stack.process.pid), peer.polls - polls_before
    assert stack.process.poll() is None, stack.log_tail()
    grown = (after - before) // 1024
    print(f"{polls} polls x {PER_POLL} foreign budgets: RSS {before // 1024} -> {after // 1024} MiB")
    assert grown < 32, f"Envoy's RSS grew by {grown} MiB over {polls} polls of {PER_POLL} foreign budgets each"
