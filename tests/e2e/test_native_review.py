"""Review of issue 12 (the native module): a client holding a valid key, and an operator, try to
break the request gate, the memory boundary and the money of the form that runs in Envoy's own
threads. Runs against both forms (TOLLGATE_FORM); written for `native`, with 2 workers."""

import json
import socket
import threading
import time
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest

from conftest import accounting_server, start_stack
from policies import KEYS, MONEY_KEYS, base_policy, bearer, chat, money_policy, nano_cost
from raw_clients import h2_request
from stack import wait_until

UPSTREAM_OPENAI = "Bearer upstream-openai-secret"
NOT_ALLOWED = "claude-sonnet-4-6"  # the "neither" key may only call gpt-4o


@pytest.fixture(scope="module")
def envoy(request, upstreams):
    policy = base_policy("nr1")
    # Above the listener's per_connection_buffer_limit_bytes (8 MiB), so Envoy's own limit is hit.
    policy["settings"]["max_request_body_bytes"] = 16 * 1024 * 1024
    stack = start_stack(request, upstreams, policy, concurrency=2)
    yield stack
    stack.stop()


def h2_headers(port, key, path="/v1/chat/completions", extra=()):
    return [(":method", "POST"), (":path", path), (":authority", f"127.0.0.1:{port}"), (":scheme", "http"),
            ("authorization", f"Bearer {key}"), ("content-type", "application/json"), *extra]


def assert_clean(seen):
    """An upstream request carries the gateway's credential, the filter's route header only, and
    no virtual key anywhere."""
    text = json.dumps(seen)
    assert "sk-e2e" not in text, seen
    assert seen["headers"].get("authorization") in (UPSTREAM_OPENAI, None), seen["headers"]
    internal = {k for k in seen["headers"] if k.startswith("x-tollgate-")}
    assert internal <= {"x-tollgate-cluster"}, internal


def alive(envoy):
    assert envoy.process.poll() is None, envoy.log_tail()
    r = envoy.request("POST", "/v1/chat/completions", bearer(KEYS["all"]), chat("gpt-4o"))
    assert r.status == 200, r


class H2Client:
    """One h2c connection, driven by hand: several streams, resets, data after a reply."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.flush()
        self.status, self.body, self.ended = {}, {}, set()
        self.timeout = timeout

    def flush(self):
        self.sock.sendall(self.conn.data_to_send())

    def pump(self, until, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while not until() and time.monotonic() < deadline:
            data = self.sock.recv(65536)
            if not data:
                break
            for event in self.conn.receive_data(data):
                sid = getattr(event, "stream_id", None)
                if isinstance(event, h2.events.ResponseReceived):
                    self.status[sid] = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    self.body[sid] = self.body.get(sid, b"") + event.data
                    self.conn.acknowledge_received_data(event.flow_controlled_length, sid)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    self.ended.add(sid)
            self.flush()
        return until()

    def close(self):
        self.sock.close()


# --- 1. Nothing forwarded before a decision, nothing forwarded half-edited ------------------

def test_h1_pipelined_refusal_at_headers_does_not_let_its_body_or_the_next_request_through(envoy, upstreams):
    refused = json.dumps(chat("gpt-4o")).encode()
    allowed = json.dumps(chat("gpt-4o")).encode()
    raw = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\nauthorization: Bearer sk-e2e-nobody\r\n"
           f"x-tollgate-cluster: openai\r\ncontent-type: application/json\r\n"
           f"content-length: {len(refused)}\r\n\r\n").encode() + refused
    raw += (f"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {KEYS['all']}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(allowed)}\r\n"
            f"connection: close\r\n\r\n").encode() + allowed
    with socket.create_connection(("127.0.0.1", envoy.listen_port), timeout=10) as sock:
        sock.sendall(raw)
        received, deadline = b"", time.monotonic() + 10
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    assert received.startswith(b"HTTP/1.1 401"), received[:300]
    for seen in upstreams["openai"].requests():
        assert_clean(seen)
    assert len(upstreams["openai"].requests()) <= 1


def test_h2_many_concurrent_streams_on_two_workers_are_each_decided(envoy, upstreams):
    kinds = [("allowed", KEYS["all"], "gpt-4o", [("x-tollgate-cluster", "anthropic")]),
             ("denied", KEYS["neither"], NOT_ALLOWED, [("x-tollgate-cluster", "anthropic")]),
             ("unknown", "sk-e2e-nobody", "gpt-4o", [("x-tollgate-cluster", "openai")])]
    expected = {"allowed": 200, "denied": 403, "unknown": 401}
    results, errors, bodies = [], [], []

    def connection(index):
        try:
            client = H2Client(envoy.listen_port)
            sent = {}
            for n in range(30):
                kind, key, model, extra = kinds[(n + index) % 3]
                sid = client.conn.get_next_available_stream_id()
                body = json.dumps(chat(model)).encode()
                client.conn.send_headers(sid, h2_headers(envoy.listen_port, key, extra=extra))
                client.conn.send_data(sid, body[:10])
                sent[sid] = (kind, body[10:])
            client.flush()
            for sid, (_, rest) in sent.items():  # the rest of every body, interleaved
                client.conn.send_data(sid, rest, end_stream=True)
            client.flush()
            assert client.pump(lambda: set(sent) <= client.ended), "not every stream ended"
            results.extend((kind, client.status.get(sid)) for sid, (kind, _) in sent.items())
            bodies.extend(client.body.get(sid, b"")[:200] for sid in sent if client.status.get(sid) == 503)
            client.close()
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=connection, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert len(results) == 120
    wrong = [(kind, status) for kind, status in results if status != expected[kind]]
    assert not wrong, (wrong[:3], bodies[:3])
    allowed = sum(1 for kind, _ in results if kind == "allowed")
    seen = wait_until(lambda: len(upstreams["openai"].requests()) >= allowed and upstreams["openai"].requests(),
                      timeout=5, message="the allowed requests upstream")
    assert len(seen) == allowed and upstreams["anthropic"].requests() == []
    for request in seen:
        assert_clean(request)
        assert "x-tollgate-cluster" not in request["headers"]  # routed to openai, then removed


def test_h2_body_after_a_local_reply_goes_nowhere(envoy, upstreams):
    client = H2Client(envoy.listen_port)
    sid = client.conn.get_next_available_stream_id()
    client.conn.send_headers(sid, h2_headers(envoy.listen_port, "sk-e2e-nobody",
                                             extra=[("x-tollgate-cluster", "openai")]))
    client.flush()
    assert client.pump(lambda: sid in client.status), "no early reply"
    assert client.status[sid] == 401
    try:  # Envoy may have reset the stream already; both are fine
        client.conn.send_data(sid, json.dumps(chat("gpt-4o")).encode(), end_stream=True)
        client.flush()
    except h2.exceptions.StreamClosedError:
        pass
    second = client.conn.get_next_available_stream_id()
    client.conn.send_headers(second, h2_headers(envoy.listen_port, KEYS["all"]))
    client.conn.send_data(second, json.dumps(chat("gpt-4o")).encode(), end_stream=True)
    client.flush()
    assert client.pump(lambda: second in client.ended)
    client.close()
    assert client.status[second] == 200
    [seen] = upstreams["openai"].requests()
    assert_clean(seen)


def test_a_trailers_only_request_is_refused_not_forwarded(envoy, upstreams):
    resp = h2_request(envoy.listen_port, h2_headers(envoy.listen_port, KEYS["all"]), [],
                      trailers=[("x-client-trailer", "1"), ("authorization", f"Bearer {KEYS['all']}")])
    assert resp.status == 400, resp
    assert resp.json()["error"]["code"] == "missing_body"
    assert upstreams["openai"].requests() == []


def test_a_headers_only_request_with_end_stream_is_refused(envoy, upstreams):
    resp = h2_request(envoy.listen_port, h2_headers(envoy.listen_port, KEYS["all"]))
    assert resp.status == 400 and resp.json()["error"]["code"] == "missing_body", resp
    assert upstreams["openai"].requests() == []


@pytest.mark.parametrize("key, model, status", [(KEYS["all"], "gpt-4o", 200), (KEYS["neither"], NOT_ALLOWED, 403)])
def test_expect_100_continue(envoy, upstreams, key, model, status):
    body = json.dumps(chat(model)).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {key}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\nexpect: 100-continue\r\n"
            f"connection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", envoy.listen_port), timeout=10) as sock:
        sock.sendall(head)
        interim = sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100"), interim
        sock.sendall(body)
        received, deadline = b"", time.monotonic() + 10
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    assert received.startswith(f"HTTP/1.1 {status}".encode()), received[:300]
    seen = upstreams["openai"].requests() + upstreams["anthropic"].requests()
    assert len(seen) == (1 if status == 200 else 0)
    for request in seen:
        assert_clean(request)


def test_a_body_above_envoys_buffer_limit_is_refused_by_envoy_not_forwarded(envoy, upstreams):
    big = json.dumps(chat("gpt-4o", padding="x" * (9 * 1024 * 1024))).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {KEYS['all']}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(big)}\r\nconnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", envoy.listen_port), timeout=20) as sock:
        try:
            sock.sendall(head + big)
        except OSError:
            pass  # Envoy may answer and close before the whole body is written
        received = sock.recv(65536)
    assert received.startswith(b"HTTP/1.1 413"), received[:300]
    assert upstreams["openai"].requests() == []
    alive(envoy)


def test_a_client_reset_in_the_middle_of_the_body_forwards_nothing(envoy, upstreams):
    for _ in range(20):
        client = H2Client(envoy.listen_port)
        sid = client.conn.get_next_available_stream_id()
        body = json.dumps(chat("gpt-4o")).encode()
        client.conn.send_headers(sid, h2_headers(envoy.listen_port, KEYS["all"]))
        client.conn.send_data(sid, body[: len(body) // 2])
        client.flush()
        client.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        client.flush()
        client.close()
    time.sleep(0.3)
    assert upstreams["openai"].requests() == []
    alive(envoy)


# --- 3/4. Config swaps under traffic on two workers: every allowed request is one event ------

@pytest.fixture(scope="module")
def accounting():
    server = accounting_server("accounting-native-review")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def money(request, upstreams, accounting):
    stack = start_stack(request, upstreams, money_policy("nrm0"), name="native-review-money",
                        extra_clusters={"accounting": accounting.port}, concurrency=2)
    yield stack
    stack.stop()


def test_config_swaps_under_traffic_lose_and_double_count_no_spend(money, accounting, upstreams):
    stop, statuses, lock = threading.Event(), [], threading.Lock()

    def traffic():
        while not stop.is_set():
            r = money.request("POST", "/v1/chat/completions", bearer(MONEY_KEYS["meter"]), chat("gpt-4o"))
            with lock:
                statuses.append(r.status)

    threads = [threading.Thread(target=traffic) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for n in range(1, 13):
            money.push_policy(money_policy(f"nrm{n}"), f"nrm{n}")
            time.sleep(0.15)
    finally:
        stop.set()
        for thread in threads:
            thread.join(20)
    assert money.process.poll() is None, money.log_tail()
    ok = statuses.count(200)
    assert ok > 0 and set(statuses) == {200}, sorted(set(statuses))

    def events():
        found = [e for e in accounting.events() if e["data"]["key_alias"] == "meter"]
        return found if len(found) >= ok else None
    found = wait_until(events, timeout=15, message=f"{ok} spend events")
    time.sleep(1.5)  # a duplicate would arrive with a later batch
    found = [e for e in accounting.events() if e["data"]["key_alias"] == "meter"]
    assert len(found) == ok, (len(found), ok)
    assert len({e["id"] for e in found}) == ok
    # Replaced versions' tick threads end within one period (1 s here: the flush interval).
    wait_until(lambda: tick_threads(money) <= 1, timeout=5, message="one tollgate-tick thread left")


def tick_threads(stack):
    count = 0
    for comm in Path(f"/proc/{stack.process.pid}/task").glob("*/comm"):
        try:
            count += comm.read_text().strip() == "tollgate-tick"
        except OSError:
            pass
    return count


def test_two_workers_hammering_one_budget_overshoot_by_at_most_the_requests_in_flight(money, accounting):
    money.push_policy(money_policy("nrm-budget"), "nrm-budget")
    per_request = nano_cost("gpt-4o", 12, 5)
    limit = 1_000_000  # the small key's $0.001
    concurrent = 8
    statuses, lock = [], threading.Lock()

    def worker():
        for _ in range(10):
            r = money.request("POST", "/v1/chat/completions", bearer(MONEY_KEYS["small"]), chat("gpt-4o"))
            with lock:
                statuses.append(r.status)

    threads = [threading.Thread(target=worker) for _ in range(concurrent)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    admitted = statuses.count(200)
    assert set(statuses) <= {200, 429}, statuses
    # Sequentially 13 pass (the 13th crosses the limit). In flight, reservations hold room, so
    # fewer may pass (observed: 11); never more than one extra per request in flight.
    assert 1 <= admitted <= 13 + concurrent - 1, admitted
    assert admitted * per_request <= limit + concurrent * per_request
    events = wait_until(lambda: (lambda found: found if len(found) >= admitted else None)(
        [e for e in accounting.events() if e["data"]["key_alias"] == "small-budget"]),
        timeout=10, message=f"{admitted} events")
    assert len(events) == admitted and all(e["data"]["cost_nano_usd"] == per_request for e in events)
