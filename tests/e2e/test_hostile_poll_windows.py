"""A hostile (or broken) accounting peer answers budget polls with the policy's *own* budgets,
but in windows the budget is not in: a window start just after the current one, or far in the
future. A budget's ledger slot holds one window and moves on to a newer one when told of it,
so such a total used to move the slot out of the current window: the spend and reservations
of the current window were forgotten, and every later request of that window updated nothing
(the slot had "moved on"), so the budget never refused again. A poll naming a soft budget in
made-up windows also raised a threshold event (and a log line) per made-up window.
Polled totals are now taken in only for the window each budget is in at the time of the poll.
Found by the Phase 2 · 3/5 review."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import start_stack
from policies import bearer, chat, key_hash, money_policy
from stack import free_port

KEY = "sk-e2e-hostile-poll-small"  # $0.001, never resets (window 0)
DAILY = "sk-e2e-hostile-poll-daily"  # $0.001 a day
SOFT = "sk-e2e-hostile-poll-soft"  # a soft budget only
ACCOUNTING = {"flush_interval_ms": 100, "batch_max_events": 8, "timeout_ms": 2000, "poll_interval_ms": 100}
DAY = 86_400


class WindowShifter:
    """Answers batches honestly; answers every poll with the policy's budgets in other windows."""

    def __init__(self):
        self.port = free_port()
        self.polls = 0
        self.thresholds = []
        self.totals = {}
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                peer.polls += 1
                today = int(time.time()) // DAY * DAY
                budgets = [
                    {"budget": f"key:{key_hash(KEY)}", "window_start": 1, "spend_nano_usd": 0},
                    {"budget": f"key:{key_hash(DAILY)}", "window_start": today + 1,
                     "window_end": today + DAY, "spend_nano_usd": 0},
                ]
                budgets += [{"budget": f"key:{key_hash(SOFT)}", "window_start": 1000 * peer.polls + i,
                             "spend_nano_usd": 10**9} for i in range(50)]
                self.answer({"cursor": 0, "budgets": budgets})

            def do_POST(self):
                events = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
                peer.thresholds += [e for e in events if e.get("type") == "tollgate.budget.threshold"]
                # Batches are answered honestly, with the totals of the windows they touched.
                touched = {}
                for e in events:
                    for b in e["data"].get("budgets") or []:
                        window = (b["budget"], b["window_start"], b.get("window_end"))
                        peer.totals[window] = peer.totals.get(window, 0) + e["data"].get("cost_nano_usd", 0)
                        touched[window] = peer.totals[window]
                totals = [{"budget": b, "window_start": s, "window_end": e, "spend_nano_usd": t}
                          for (b, s, e), t in touched.items()]
                self.answer({"batch_id": self.headers.get("x-tollgate-batch-id"),
                             "acknowledged": [e["id"] for e in events], "budgets": totals})

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


def shifted_policy():
    policy = money_policy("shift1", accounting=ACCOUNTING)
    policy["keys"] += [
        {"key_hash": key_hash(KEY), "key_alias": "hostile-poll-small", "max_budget": 0.001, "models": ["gpt-4o"]},
        {"key_hash": key_hash(DAILY), "key_alias": "hostile-poll-daily", "max_budget": 0.001,
         "budget_duration": "1d", "models": ["gpt-4o"]},
        {"key_hash": key_hash(SOFT), "key_alias": "hostile-poll-soft", "soft_budget": 0.5, "models": ["gpt-4o"]},
    ]
    return policy


@pytest.fixture(scope="module")
def shifted(request, upstreams):
    peer = WindowShifter()
    stack = start_stack(request, upstreams, shifted_policy(), name="hostile-poll-windows",
                        extra_clusters={"accounting": peer.port})
    yield peer, stack
    stack.stop()
    peer.stop()


@pytest.mark.parametrize("key", [KEY, DAILY])
def test_a_polled_total_for_another_window_does_not_erase_the_current_one(shifted, key):
    peer, stack = shifted
    deadline = time.time() + 10
    while peer.polls < 3 and time.time() < deadline:
        time.sleep(0.1)
    assert peer.polls >= 3, "the filter never polled"
    admitted = 0
    for _ in range(30):
        r = stack.request("POST", "/v1/chat/completions", bearer(key), chat("gpt-4o"))
        if r.status != 200:
            assert r.status == 429 and r.json()["error"]["code"] == "budget_exceeded", r
            break
        admitted += 1
        time.sleep(0.15)  # a poll between requests
    # 13 x $0.00008 is the first total at or above $0.001 (test_money.py).
    assert admitted == 13, f"{admitted} requests admitted under a $0.001 budget"


def test_made_up_windows_of_a_soft_budget_raise_no_threshold_events(shifted):
    peer, stack = shifted
    polls = peer.polls
    deadline = time.time() + 10
    while peer.polls < polls + 5 and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1)  # a flush after the last poll
    assert peer.thresholds == [], f"{len(peer.thresholds)} threshold events for windows the budget is not in"
