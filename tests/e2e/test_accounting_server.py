"""Issue 10, item 7: the reference accounting server against hostile HTTP and unauthenticated or
forged writers, as a real process on 127.0.0.1. Every socket loop is bounded in time."""

import json
import socket
import time

import pytest

from conftest import accounting_server
from stack import ACCOUNTING_READER_TOKEN, ACCOUNTING_WRITER_TOKEN, request, wait_until

HEAD_TIMEOUT_S = 10  # src/bin/tollgate/accounting/http.rs HEAD_TIMEOUT


@pytest.fixture(scope="module")
def server():
    server = accounting_server("accounting-hostile")
    yield server
    server.stop()


def raw(port, data, wait=2.0):
    """Sends raw bytes and reads whatever comes back within `wait` seconds (or until closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(data)
        out, deadline = b"", time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
        return out


def healthy(server):
    started = time.monotonic()
    r = request(server.port, "GET", "/health", timeout=3)
    return r.status == 200 and time.monotonic() - started < 2


def event(event_id, cost=1000, end_user="u"):
    return {"specversion": "1.0", "id": event_id, "source": "t", "type": "tollgate.spend",
            "time": "2026-12-01T00:00:00.000Z", "subject": "k", "datacontenttype": "application/json",
            "data": {"policy_version": "v", "key_hash": "ab" * 32, "key_alias": "k", "team_id": None,
                     "user_id": None, "end_user": end_user, "endpoint": "chat_completions",
                     "requested_model": "m", "resolved_model": "m", "deployment": "d", "provider": "openai",
                     "upstream_model": "m", "stream": False,
                     "usage": {"prompt_tokens": 1, "completion_tokens": 1, "cached_tokens": 0,
                               "cache_creation_tokens": 0, "reasoning_tokens": 0, "estimated": False},
                     "cost_nano_usd": cost, "cost_source": "cost_map", "status": "ok", "http_status": 200,
                     "budgets": [{"budget": "key:k", "window_start": 0}]}}


def post_batch(server, events, token=ACCOUNTING_WRITER_TOKEN, batch_id="b-1"):
    headers = {"content-type": "application/json", "x-tollgate-batch-id": batch_id}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return request(server.port, "POST", "/v1/spend/batch", headers, json.dumps(events))


def test_the_chunked_body_that_crashed_the_old_server_is_refused_and_it_keeps_serving(server):
    raw(server.port, b"POST /v1/spend/batch HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n"
                     b"authorization: Bearer " + ACCOUNTING_WRITER_TOKEN.encode() + b"\r\n\r\n"
                     b"1\r\n[\r\nffffffffffffffff\r\n", wait=2)
    assert server.process.poll() is None, "the server is still running (a release build aborts on a panic)"
    assert healthy(server)
    log = (server.workdir / "accounting.log").read_text(errors="replace")
    assert "panicked" not in log, "no overflow, no out-of-range slice (a debug build survives a panic)"


def test_huge_heads_and_bodies_are_refused(server):
    answer = raw(server.port, b"GET /health HTTP/1.1\r\nhost: a\r\nx-long: " + b"a" * 200_000 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
    answer = raw(server.port, b"GET /" + b"a" * 200_000 + b" HTTP/1.1\r\nhost: a\r\n\r\n")
    assert answer.startswith((b"HTTP/1.1 431", b"HTTP/1.1 414", b"HTTP/1.1 400")), answer[:100]
    big = b"[" + b" " * (9 * 1024 * 1024) + b"]"
    r = request(server.port, "POST", "/v1/spend/batch",
                {"authorization": f"Bearer {ACCOUNTING_WRITER_TOKEN}", "content-type": "application/json"}, big)
    assert r.status == 413, r
    assert healthy(server)


def test_idle_and_slowloris_connections_neither_starve_others_nor_stay_forever(server):
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(100)]
    slow = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(20)]
    try:
        for s in slow:
            s.sendall(b"POST /v1/spend/batch HTTP/1.1\r\nhost: a\r\n")
        started = time.monotonic()
        closed = set()
        while time.monotonic() - started < HEAD_TIMEOUT_S + 8 and len(closed) < len(slow):
            assert healthy(server), "other clients are answered while the slow ones hold connections"
            for i, s in enumerate(slow):
                if i in closed:
                    continue
                try:
                    s.sendall(b"x-drip: 1\r\n")  # one header line a second, never the blank line
                except OSError:
                    closed.add(i)
            time.sleep(1)
        assert len(closed) == len(slow), "slowloris connections are cut off after the head timeout"
        for s in idle:
            s.settimeout(3)
            try:
                assert s.recv(1) == b"", "an idle connection is closed"
            except ConnectionResetError:
                pass
    finally:
        for s in idle + slow:
            s.close()
    assert healthy(server)


def test_writers_and_readers_need_their_own_tokens(server):
    assert post_batch(server, [event("auth-1")], token=None).status == 401
    forged = post_batch(server, [event("auth-2")], token="forged-token-forged-token")
    assert forged.status == 401 and forged.json()["error"]["type"] == "authentication_error"
    assert post_batch(server, [event("auth-3")], token=ACCOUNTING_READER_TOKEN).status == 403
    assert not {"auth-1", "auth-2", "auth-3"} & set(server.event_ids()), "nothing refused was stored"
    writer = {"authorization": f"Bearer {ACCOUNTING_WRITER_TOKEN}"}
    assert request(server.port, "GET", "/v1/spend/report", writer).status == 403
    assert request(server.port, "GET", "/v1/spend/report").status == 401
    assert request(server.port, "GET", "/v1/spend/budgets?since=0").status == 401
    assert request(server.port, "GET", "/v1/spend/budgets?since=0", writer).status == 200
    assert request(server.port, "GET", "/v1/spend/report", server.reader_headers()).status == 200


def test_invalid_event_values_are_refused_one_by_one(server):
    ok = event("values-ok")
    negative = event("values-negative", cost=-5)
    huge_cost = event("values-huge", cost=10**16)
    long_user = event("values-long-user", end_user="x" * 5000)
    tokens = event("values-tokens")
    tokens["data"]["usage"]["prompt_tokens"] = 10**12
    r = post_batch(server, [ok, negative, huge_cost, long_user, tokens], batch_id="values")
    assert r.status == 200, r
    reply = r.json()
    assert reply["batch_id"] == "values"
    assert reply["acknowledged"] == ["values-ok"]
    assert sorted(x["id"] for x in reply["rejected"]) == sorted(
        ["values-negative", "values-huge", "values-long-user", "values-tokens"])
    assert "values-ok" in server.event_ids() and "values-huge" not in server.event_ids()
    again = post_batch(server, [ok], batch_id="values-again").json()
    assert (again["acknowledged"], again["duplicates"]) == (["values-ok"], 1)


def test_a_server_without_tokens_refuses_to_start(tmp_path):
    from stack import TOLLGATE_CLI
    import subprocess
    result = subprocess.run([str(TOLLGATE_CLI), "accounting", "--listen", "127.0.0.1:0", "--db",
                             str(tmp_path / "x.db")], capture_output=True, text=True, timeout=30,
                            env={"PATH": "/usr/bin:/bin"})
    assert result.returncode != 0 and "writer tokens" in result.stderr, result.stderr


def threshold(event_id):
    return {"specversion": "1.0", "id": event_id, "source": "t", "type": "tollgate.budget.threshold",
            "time": "2026-12-01T00:00:00.000Z", "subject": "k", "datacontenttype": "application/json",
            "data": {"policy_version": "v", "threshold": "soft_budget", "budget": "team:t", "scope": "team",
                     "holder": "t", "model": None, "window_start": 0, "threshold_nano_usd": 1,
                     "limit_nano_usd": None, "spend_nano_usd": 2}}


def test_a_writer_cannot_poison_batches_nul_ids_shared_ids_or_an_overflowing_window(server):
    """From a review: on PostgreSQL each of these once failed every retry of a batch, or
    acknowledged an event it never stored."""
    nul = post_batch(server, [event("nul\u0000id"), event("beside-nul")], batch_id="nul").json()
    assert nul["acknowledged"] == ["beside-nul"] and nul["rejected"][0]["reason"].endswith("NUL character")
    shared = post_batch(server, [threshold("same-id"), event("same-id")], batch_id="shared").json()
    assert (shared["accepted"], shared["duplicates"]) == (2, 0), shared
    assert "same-id" in server.event_ids(), "the spend event was stored beside the alert"
    # A window pushed to the largest integer by a hostile writer (9,224 events at the $1M cap)
    # saturates; an honest filter's batch on the same window still goes in.
    cap = 10 ** 15
    hostile = [dict(event(f"cap-{i}", cost=cap), data=dict(event("x")["data"], cost_nano_usd=cap,
                    budgets=[{"budget": "team:hot", "window_start": 0}])) for i in range(9_300)]
    for i in range(0, len(hostile), 1_000):
        assert post_batch(server, hostile[i:i + 1_000], batch_id=f"cap-{i}").status == 200
    honest = dict(event("honest", cost=5), data=dict(event("x")["data"], cost_nano_usd=5,
                  budgets=[{"budget": "team:hot", "window_start": 0}]))
    reply = post_batch(server, [honest], batch_id="honest")
    assert reply.status == 200, reply
    assert reply.json()["budgets"] == [{"budget": "team:hot", "window_start": 0, "spend_nano_usd": 2 ** 63 - 1}]
    report = request(server.port, "GET", "/v1/spend/report", server.reader_headers(), timeout=30)
    assert report.status == 200, report
    grouped = request(server.port, "GET", "/v1/spend/report?group_by=team", server.reader_headers(), timeout=30)
    assert grouped.status == 200 and grouped.json()["rows"][0]["cost_nano_usd"] >= 9 * 10 ** 18, grouped


def test_a_browser_cannot_be_made_to_post_spend(server):
    """From a review: a cross-site form posts text/plain, and a browser may remember a token
    typed into the spend page's prompt; neither reaches the batch endpoint."""
    import base64
    body = json.dumps([event("csrf-1")])
    form = {"authorization": f"Bearer {ACCOUNTING_WRITER_TOKEN}", "content-type": "text/plain"}
    assert request(server.port, "POST", "/v1/spend/batch", form, body).status == 415
    basic = base64.b64encode(f"x:{ACCOUNTING_WRITER_TOKEN}".encode()).decode()
    remembered = {"authorization": f"Basic {basic}", "content-type": "application/json"}
    assert request(server.port, "POST", "/v1/spend/batch", remembered, body).status == 401
    assert "csrf-1" not in server.event_ids()
    forged = threshold("budget-0123456789abcdef0123456789abcdef")
    reply = post_batch(server, [forged], batch_id="forged").json()
    assert reply["rejected"] and "accounting service" in reply["rejected"][0]["reason"], reply
