"""Issue 13, operations: the accounting server's Prometheus metrics, readiness, and a graceful
shutdown that finishes the batch in flight. On SQLite, and on PostgreSQL with
TOLLGATE_ACCOUNTING_STORE=postgres. Every socket loop is bounded in time."""

import json
import os
import signal
import socket
import time

import pytest

from conftest import accounting_server
from stack import ACCOUNTING_WRITER_TOKEN, request
from test_accounting_server import event, post_batch


@pytest.fixture()
def server():
    server = accounting_server("accounting-operations")
    yield server
    server.stop()


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " ") or line == name:
            return float(line.split()[-1])
    return 0.0


def test_metrics_count_events_batches_and_refusals(server):
    ok = [event("m1"), event("m2"), event("m1")]
    bad = dict(event("m3"), data=None)
    assert post_batch(server, ok + [bad]).status == 200
    assert post_batch(server, [event("m2")], batch_id="again").status == 200
    assert post_batch(server, [event("m4")], token="not-a-token-of-this-server").status == 401
    assert request(server.port, "GET", "/nowhere").status == 404
    r = request(server.port, "GET", "/metrics")
    assert r.status == 200 and r.headers["content-type"].startswith("application/openmetrics-text"), r
    text = r.body.decode()
    assert metric(text, 'tollgate_accounting_events_total{outcome="accepted"}') == 2
    assert metric(text, 'tollgate_accounting_events_total{outcome="duplicate"}') == 2
    assert metric(text, 'tollgate_accounting_events_total{outcome="rejected"}') == 1
    assert metric(text, 'tollgate_accounting_batches_total{status="200"}') == 2
    assert metric(text, 'tollgate_accounting_batches_total{status="401"}') == 1
    assert metric(text, 'tollgate_accounting_batch_seconds_count') == 3
    assert metric(text, 'tollgate_accounting_store_seconds_count{operation="ingest"}') == 2
    assert metric(text, 'tollgate_accounting_requests_refused_total{reason="unauthenticated"}') == 1
    assert metric(text, 'tollgate_accounting_requests_refused_total{reason="no_route"}') == 1
    assert "key:k" not in text and "sk-" not in text, "no budget or key names in metrics"
    assert request(server.port, "GET", "/ready").json() == {"status": "ready"}


def read_response(sock, timeout=10):
    sock.settimeout(timeout)
    data, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline and b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), b"0"))
    while len(body) < length and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head, body


def test_sigterm_finishes_the_batch_in_flight_then_exits(server):
    body = json.dumps([event("g1", cost=77), event("g2", cost=23)]).encode()
    head = (f"POST /v1/spend/batch HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ACCOUNTING_WRITER_TOKEN}\r\n"
            f"content-type: application/json\r\nx-tollgate-batch-id: graceful\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode()
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=5)  # an idle keep-alive peer
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as busy:
        busy.sendall(head + body[:40])
        time.sleep(0.3)
        os.killpg(server.process.pid, signal.SIGTERM)
        time.sleep(0.5)
        assert server.process.poll() is None, "it waits for the batch in flight"
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
        busy.sendall(body[40:])
        status, reply = read_response(busy)
    assert status.startswith(b"HTTP/1.1 200"), status
    assert json.loads(reply)["acknowledged"] == ["g1", "g2"]
    server.process.wait(timeout=10)
    assert server.process.returncode == 0
    idle.close()
    log = (server.workdir / "accounting.log").read_text()
    assert "finishing the requests in flight" in log and "stopped" in log
    server.log.close()
    server.start()
    assert sorted(server.event_ids()) == ["g1", "g2"], "the batch answered during shutdown was stored"
