"""Issue 13, alerts: a budget window crossing 50/80/100% raises one alert each, found by the
accounting service where the total is authoritative, and delivered to a webhook (a real HTTP
receiver on 127.0.0.1) with retries; a filter's soft-budget threshold is delivered too. Through
real Envoy, on SQLite (and on PostgreSQL in the PostgreSQL pass)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import start_stack
from policies import MONEY_KEYS, bearer, chat, money_policy
from stack import ROOT, AccountingServer, clean_dir, wait_until
from test_accounting_server import post_batch, threshold


class Receiver:
    """A webhook receiver that answers 500 to the first `fail_first` attempts."""

    def __init__(self, fail_first=0):
        self.lock = threading.Lock()
        self.received, self.fail_first = [], fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver.lock:
                    receiver.received.append((dict(self.headers.items()), json.loads(body)))
                    failing = len(receiver.received) <= receiver.fail_first
                self.send_response(500 if failing else 204)
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self):
        with self.lock:
            return [body for _, body in self.received]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver():
    r = Receiver(fail_first=1)
    yield r
    r.stop()


@pytest.fixture(scope="module")
def accounting(receiver):
    server = AccountingServer(clean_dir(ROOT / ".run" / "e2e" / "accounting-alerts"),
                              extra_args=["--alert-webhook", receiver.url])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(request, upstreams, accounting):
    stack = start_stack(request, upstreams, money_policy("alerts-1"), extra_clusters={"accounting": accounting.port})
    yield stack
    stack.stop()


def test_a_budget_window_raises_50_80_and_100_percent_once_each_and_they_reach_the_webhook(
        gateway, accounting, receiver):
    key = bearer(MONEY_KEYS["small"])  # $0.001 over gpt-4o at $0.00008 a request
    statuses = [gateway.request("POST", "/v1/chat/completions", key, chat("gpt-4o")).status for _ in range(16)]
    assert statuses.count(200) == 13 and statuses[13:] == [429, 429, 429], statuses

    def raised():
        alerts = [a for a in accounting.report()["alerts"] if a["holder"] == "small-budget"]
        return alerts if len(alerts) >= 3 else None
    alerts = wait_until(raised, timeout=15, message="three alerts")
    assert sorted(a["threshold"] for a in alerts) == ["percent_100", "percent_50", "percent_80"]
    assert len(alerts) == 3, "one per share per window"
    assert {a["limit_nano_usd"] for a in alerts} == {1_000_000}
    for a in alerts:
        share = int(a["threshold"].removeprefix("percent_"))
        assert a["threshold_nano_usd"] == 1_000_000 * share // 100
        assert a["spend_nano_usd"] >= a["threshold_nano_usd"], a

    def delivered():
        events = [b for b in receiver.bodies() if b.get("key_alias") == "small-budget"]
        ids = {b["tollgate"]["alert_id"] for b in events}
        return events if len(ids) == 3 and len(events) >= 4 else None  # one retried
    bodies = wait_until(delivered, timeout=20, message="three alerts delivered, one of them twice")
    by_id = {}
    for body in bodies:
        by_id.setdefault(body["tollgate"]["alert_id"], []).append(body)
    assert sorted(b[0]["event"] for b in by_id.values()) == ["budget_crossed", "threshold_crossed",
                                                             "threshold_crossed"]
    first = receiver.received[0]
    assert first[0].get("x-tollgate-alert-id") == first[1]["tollgate"]["alert_id"]
    assert any(len(b) == 2 for b in by_id.values()), "the one answered 500 was tried again"
    assert all(b[0]["event_group"] == "key" and b[0]["max_budget"] == 0.001 for b in by_id.values())
    assert "of its budget" in bodies[0]["text"]

    def settled():
        rows = accounting.report()["alert_deliveries"]
        return rows if len(rows) >= 3 and all(r["state"] == "delivered" for r in rows) else None
    rows = wait_until(settled, timeout=20, message="deliveries recorded")
    assert sorted(r["attempts"] for r in rows)[-1] == 2


def test_a_filters_soft_budget_threshold_is_delivered_once_however_often_it_is_sent(accounting, receiver):
    for attempt in range(3):  # three replicas report the same window's threshold
        assert post_batch(accounting, [threshold("soft-window-1")], batch_id=f"soft-{attempt}").status == 200

    def got():
        return [b for b in receiver.bodies() if b["tollgate"]["alert_id"] == "soft-window-1"] or None
    bodies = wait_until(got, timeout=15, message="the soft-budget alert delivered")
    assert bodies[0]["event"] == "soft_budget_crossed" and bodies[0]["team_id"] == "t"
    import time
    time.sleep(2.5)
    assert len([b for b in receiver.bodies() if b["tollgate"]["alert_id"] == "soft-window-1"]) == 1
