"""The native module's ABI bindings, proven in real Envoy 1.40 with the placeholder behind them.

Needs `cargo build --release --lib --features native` (target/release/libtollgate.so). The
placeholder passes no traffic: every request is answered 503 `adapter_not_wired` after the
module has read the whole body, and its `x-tollgate-native-*` headers say what it saw.
"""

import hashlib
import http.client
import os
import re
import socket
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from mock_upstream import MockUpstream  # noqa: E402
from native_stack import MODULE_DIR, NativeEnvoy, h2_post  # noqa: E402
from raw_clients import h1_raw, chunked_with_trailers  # noqa: E402
from stack import ROOT, clean_dir, request, wait_until  # noqa: E402

NOT_WIRED = (b'{"error":{"message":"tollgate native module: adapter not wired yet","type":"server_error",'
             b'"param":null,"code":"adapter_not_wired"}}')
BODY = os.urandom(100_000)
SHA = hashlib.sha256(BODY).hexdigest()

pytestmark = pytest.mark.skipif(not (MODULE_DIR / "libtollgate.so").exists(),
                                reason="build it: cargo build --release --lib --features native")


@pytest.fixture(scope="module")
def upstream():
    mock = MockUpstream("upstream")
    yield mock
    mock.stop()


@pytest.fixture(scope="module")
def native(upstream):
    settings = {"label": "inline", "callout_cluster": "upstream", "callout_path": "/__requests"}
    stack = NativeEnvoy(clean_dir(ROOT / ".run" / "e2e" / "native_inline"), {"upstream": upstream.port}, settings)
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def native_ecds(upstream):
    stack = NativeEnvoy(clean_dir(ROOT / ".run" / "e2e" / "native_ecds"), {"upstream": upstream.port},
                        {"label": "ecds-1"}, ecds=True, concurrency=1)
    yield stack
    stack.stop()


def assert_not_wired(status, headers, body, body_bytes=0, digest=None):
    assert status == 503, (status, body[:200])
    assert body == NOT_WIRED
    assert headers["content-type"] == "application/json"
    assert headers["x-tollgate-native-body-bytes"] == str(body_bytes)
    assert headers["x-tollgate-native-body-sha256"] == (digest or hashlib.sha256(b"").hexdigest())
    # The module's response hook did not run for its own local reply (the adapter answered it).
    assert "x-tollgate-native-saw-response" not in headers


def test_module_loads_with_the_matching_abi_version(native):
    log = native.log_text()
    assert "Dynamic module ABI version v0.2.0 matched." in log
    assert "is deprecated" not in log
    assert re.search(r"config_new instance=\d+ label=inline filter=tollgate thread=envoy metrics=true", log)


def test_get_is_answered_by_the_module_and_echoes_a_request_header(native, upstream):
    upstream.clear()
    r = request(native.listen_port, "GET", "/v1/models", {"x-tollgate-echo": "echo-me 42"})
    assert_not_wired(r.status, r.headers, r.body)
    assert r.headers["x-tollgate-echo"] == "echo-me 42"
    assert r.headers["x-tollgate-native-protocol"] == "HTTP/1.1"
    assert r.headers["x-tollgate-native-body-hooks"] == "0"
    assert upstream.requests() == [], "the placeholder passes no traffic"


def test_health_route_skips_the_module(native):
    r = request(native.listen_port, "GET", "/health")
    assert (r.status, r.body) == (200, b"ok\n")


def test_100kb_body_with_content_length_is_read_whole_over_http1(native):
    r = request(native.listen_port, "POST", "/v1/chat/completions", {"content-type": "application/json"}, BODY)
    assert_not_wired(r.status, r.headers, r.body, len(BODY), SHA)


def test_100kb_chunked_body_in_many_pieces_is_read_whole_over_http1(native):
    def pieces():
        for start in range(0, len(BODY), 10_000):
            time.sleep(0.005)
            yield BODY[start:start + 10_000]

    conn = http.client.HTTPConnection("127.0.0.1", native.listen_port, timeout=10)
    try:
        conn.request("POST", "/v1/chat/completions", body=pieces(), headers={"x-tollgate-echo": "h1"},
                     encode_chunked=True)
        resp = conn.getresponse()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        assert_not_wired(resp.status, headers, resp.read(), len(BODY), SHA)
    finally:
        conn.close()
    assert int(headers["x-tollgate-native-body-hooks"]) > 1, "several body hooks, one answer at the end"


def test_100kb_body_is_read_whole_over_http2(native):
    headers = [(":method", "POST"), (":path", "/v1/chat/completions"), (":scheme", "http"),
               (":authority", "tollgate.test"), ("x-tollgate-echo", "h2")]
    r = h2_post(native.listen_port, headers, BODY)
    assert_not_wired(r.status, r.headers, r.body, len(BODY), SHA)
    assert r.headers["x-tollgate-native-protocol"] == "HTTP/2"
    assert r.headers["x-tollgate-echo"] == "h2"
    assert int(r.headers["x-tollgate-native-body-hooks"]) > 1


def test_body_ending_in_trailers_is_read_in_the_trailers_hook(native):
    headers = [(":method", "POST"), (":path", "/v1/chat/completions"), (":scheme", "http"),
               (":authority", "tollgate.test")]
    r = h2_post(native.listen_port, headers, BODY, trailers=[("x-end", "1")])
    assert_not_wired(r.status, r.headers, r.body, len(BODY), SHA)
    status, h1_headers, body = h1_raw(native.listen_port, chunked_with_trailers(
        "/v1/chat/completions", {}, b'{"model":"m"}', {"x-end": "1"}))
    assert_not_wired(status, h1_headers, body, 13, hashlib.sha256(b'{"model":"m"}').hexdigest())


def test_stream_complete_reads_the_local_reply_details_on_a_worker(native):
    request(native.listen_port, "GET", "/v1/models")
    native.wait_log(r"stream_complete worker=\d+ code=Some\(503\) details=tollgate_adapter_not_wired "
                    r"thread=wrk:worker_\d+")


def test_config_callout_is_sent_and_answered_on_the_main_thread(native):
    native.wait_log(r"config_scheduled callout to upstream: Ok\(\d+\) thread=envoy")
    native.wait_log(r"callout \d+ answered status=Some\(200\) failed=None body_bytes=\d+ "
                    r"body_start=\"\[.*thread=envoy")


def test_one_config_serves_every_worker_and_metrics_count(native):
    before = native.stats()
    seen = set()
    for _ in range(24):
        r = request(native.listen_port, "GET", "/v1/models")
        seen.add((r.headers["x-tollgate-native-config"], r.headers["x-tollgate-native-worker"]))
    assert {config for config, _ in seen} == {"1:inline"}, seen
    assert len(re.findall(r"config_new instance=", native.log_text())) == 1
    name = next(k for k in native.stats() if k.endswith("native_requests"))
    completed = next(k for k in native.stats() if k.endswith("native_streams_completed"))
    assert int(native.stats()[name]) >= int(before.get(name, 0)) + 24
    wait_until(lambda: int(native.stats()[completed]) >= int(before.get(completed, 0)) + 24,
               message="the main thread counted every completed stream")
    print("workers seen:", sorted(worker for _, worker in seen), "stats:", name, completed)


def test_ecds_delivers_the_module_config(native_ecds):
    r = request(native_ecds.listen_port, "GET", "/v1/models")
    assert_not_wired(r.status, r.headers, r.body)
    assert r.headers["x-tollgate-native-config"].endswith(":ecds-1")


def test_ecds_update_makes_a_new_config_and_frees_the_old_after_its_last_stream(native_ecds):
    old = request(native_ecds.listen_port, "GET", "/v1/models").headers["x-tollgate-native-config"]
    sock = socket.create_connection(("127.0.0.1", native_ecds.listen_port), timeout=10)
    try:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\ncontent-length: 10\r\n\r\n01234")
        time.sleep(0.3)  # the stream (and its filter, on the old config) exists now
        assert native_ecds.push({"label": "ecds-2"}, "v2")
        native_ecds.wait_log(r"config_new instance=\d+ label=ecds-2")
        time.sleep(0.3)
        assert not re.search(r"config_destroy instance=\d+ label=ecds-1", native_ecds.log_text()), \
            "the old config lives while a stream holds it"
        sock.sendall(b"56789")
        reader = sock.makefile("rb")
        head = reader.readline()
        assert b" 503 " in head
        lines = []
        while (line := reader.readline().strip()):
            lines.append(line.decode())
        headers = dict(line.lower().split(": ", 1) for line in lines)
        assert headers["x-tollgate-native-config"] == old, "a stream keeps the config it started with"
        assert headers["x-tollgate-native-body-bytes"] == "10"
    finally:
        sock.close()
    destroyed = native_ecds.wait_log(r"config_destroy instance=\d+ label=ecds-1 thread=(\S+)")
    print("old config destroyed on thread", destroyed.group(1))
    new = request(native_ecds.listen_port, "GET", "/v1/models").headers["x-tollgate-native-config"]
    assert new.endswith(":ecds-2") and new != old


def test_ecds_rejects_a_config_the_module_refuses(native_ecds):
    assert native_ecds.push("{not json", "bad") is False
    native_ecds.wait_log(r"filter_config refused")
    r = request(native_ecds.listen_port, "GET", "/v1/models")
    assert r.headers["x-tollgate-native-config"].endswith(":ecds-2"), "the last good config stays"


def test_stop_all_iteration_and_buffer_withholds_the_body_hooks(native_ecds):
    """StopAllIterationAndBuffer from the headers hook: Envoy buffers the body but does not call
    this filter's body hooks until it resumes (continue_decoding), so no answer ever comes."""
    assert native_ecds.push({"label": "ecds-3", "hold": "stop_all_and_buffer"}, "v3")
    head = f"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\ncontent-length: {len(BODY)}\r\n\r\n".encode()
    sock = socket.create_connection(("127.0.0.1", native_ecds.listen_port), timeout=2)
    try:
        sock.sendall(head + BODY)
        with pytest.raises(socket.timeout):
            sock.recv(1024)
    finally:
        sock.close()
    native_ecds.wait_log(r"stream_complete worker=\d+ code=None details=downstream_remote_disconnect")
    assert native_ecds.push({"label": "ecds-4"}, "v4")


def test_program_init_runs_once_per_process_across_ecds_updates(native_ecds):
    assert native_ecds.log_text().count("Dynamic module ABI version v0.2.0 matched.") == 1
    assert len(re.findall(r"config_new instance=", native_ecds.log_text())) >= 4
