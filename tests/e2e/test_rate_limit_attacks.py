"""Review of the rate limits (Phase 2 · 4/5) as an attacker holding one valid key, through real
Envoy (two workers): spellings and aliases of limited models, HTTP/1.1 pipelining, HTTP/2 streams
reset mid-way, client disconnects before the body ends, refused requests leaving counts behind,
endpoints that skip the limits, config swaps mid-stream, end users shared between tenants, and
held slots lapsing under long streams (each was a finding of the review, fixed or documented)."""

import json
import socket
import threading
import time

import h2.config
import h2.connection
import h2.events
import pytest

from conftest import accounting_server, start_stack
from policies import (REASONING_MODEL, accounting_section, affinity_policy, bearer, chat, key_hash)
from raw_clients import open_stream, read_to_end
from stack import avoid_minute_edge, wait_until

SPELL = "sk-e2e-rla-spellings"       # model_rpm_limit gpt-4o, model_tpm_limit openai/gpt-4o
ALIASED = "sk-e2e-rla-aliased"       # key alias cheap -> gpt-4o; model_rpm_limit gpt-4o: 2
ALIAS_NAMED = "sk-e2e-rla-alias-named"  # model_rpm_limit written under the alias name
PREFIX = "sk-e2e-rla-prefix"         # anthropic/*; model_rpm_limit claude-sonnet-4-6: 3
PAR = "sk-e2e-rla-parallel"          # max_parallel_requests 2 (HTTP/2 streams)
TEAM_A = "sk-e2e-rla-team-a"         # rpm 3, team with max_parallel 1
TEAM_B = "sk-e2e-rla-team-b"         # same team, no own limit
STORED = "sk-e2e-rla-stored"         # rpm 2 and max_parallel 1 on o4-mini (Responses)
SWAP = "sk-e2e-rla-swap"             # max_parallel 1, across a policy swap
TENANT_X = "sk-e2e-rla-tenant-x"     # team x
TENANT_Y = "sk-e2e-rla-tenant-y"     # team y (another tenant)
PIPE = "sk-e2e-rla-pipe"             # rpm 3, HTTP/1.1 pipelining
DISC = "sk-e2e-rla-disconnect"       # rpm 3 and max_parallel 1: requests that never complete
AZURE = "sk-e2e-rla-azure"           # as ALIASED, on the Azure path form
TPM = "sk-e2e-rla-tpm"               # tpm 100: streams that try to hide their usage
TPM_DUP = "sk-e2e-rla-tpm-dup"       # tpm 100: duplicated stream_options
TPM_WIDE = "sk-e2e-rla-tpm-wide"     # tpm 10,000 on gpt-4o (16,384 output cap)


def policy(version="rla1"):
    p = affinity_policy(version)
    p["teams"] += [
        {"team_id": "rla-team", "team_alias": "RLA", "models": [], "max_parallel_requests": 1},
        {"team_id": "rla-x", "team_alias": "Tenant X", "models": []},
        {"team_id": "rla-y", "team_alias": "Tenant Y", "models": []},
    ]
    p["end_users"] = [{"user_id": "shared-customer", "rpm_limit": 2}]
    p["keys"] += [
        {"key_hash": key_hash(SPELL), "key_alias": "rla-spell", "models": ["gpt-4o"],
         "model_rpm_limit": {"gpt-4o": 100}, "model_tpm_limit": {"openai/gpt-4o": 50}},
        {"key_hash": key_hash(ALIASED), "key_alias": "rla-aliased", "models": ["cheap", "gpt-4o"],
         "aliases": {"cheap": "gpt-4o"}, "model_rpm_limit": {"gpt-4o": 2}},
        {"key_hash": key_hash(ALIAS_NAMED), "key_alias": "rla-alias-named", "models": ["cheap"],
         "aliases": {"cheap": "gpt-4o"}, "model_rpm_limit": {"cheap": 1}},
        {"key_hash": key_hash(PREFIX), "key_alias": "rla-prefix", "models": ["anthropic/*"],
         "model_rpm_limit": {"claude-sonnet-4-6": 3}},
        {"key_hash": key_hash(PAR), "key_alias": "rla-par", "models": ["gpt-4o"], "max_parallel_requests": 2},
        {"key_hash": key_hash(TEAM_A), "key_alias": "rla-team-a", "team_id": "rla-team", "rpm_limit": 3},
        {"key_hash": key_hash(TEAM_B), "key_alias": "rla-team-b", "team_id": "rla-team"},
        {"key_hash": key_hash(STORED), "key_alias": "rla-stored", "models": [REASONING_MODEL],
         "rpm_limit": 2, "max_parallel_requests": 1},
        {"key_hash": key_hash(SWAP), "key_alias": "rla-swap", "models": ["gpt-4o"], "max_parallel_requests": 1},
        {"key_hash": key_hash(TENANT_X), "key_alias": "rla-x", "team_id": "rla-x", "models": ["gpt-4o"]},
        {"key_hash": key_hash(TENANT_Y), "key_alias": "rla-y", "team_id": "rla-y", "models": ["gpt-4o"]},
        {"key_hash": key_hash(PIPE), "key_alias": "rla-pipe", "models": ["gpt-4o"], "rpm_limit": 3},
        {"key_hash": key_hash(DISC), "key_alias": "rla-disc", "models": ["gpt-4o"], "rpm_limit": 3,
         "max_parallel_requests": 1},
        {"key_hash": key_hash(AZURE), "key_alias": "rla-azure", "models": ["cheap", "gpt-4o"],
         "aliases": {"cheap": "gpt-4o"}, "model_rpm_limit": {"gpt-4o": 2}},
        {"key_hash": key_hash(TPM), "key_alias": "rla-tpm", "models": ["gpt-4o"], "tpm_limit": 100},
        {"key_hash": key_hash(TPM_DUP), "key_alias": "rla-tpm-dup", "models": ["gpt-4o"], "tpm_limit": 100},
        {"key_hash": key_hash(TPM_WIDE), "key_alias": "rla-tpm-wide", "models": ["gpt-4o"], "tpm_limit": 10000},
    ]
    return p


@pytest.fixture(scope="module")
def envoy(request, upstreams):
    stack = start_stack(request, upstreams, policy(), concurrency=2)
    yield stack
    stack.stop()


def post(stack, key, body, extra=None, path="/v1/chat/completions", timeout=15):
    return stack.request("POST", path, dict(bearer(key), **(extra or {})), body, timeout=timeout)


def upstream_calls(upstreams, name="openai", suffix="/chat/completions"):
    return len([r for r in upstreams[name].requests() if r["path"].endswith(suffix)])


USAGE_60 = {"x-mock-usage": json.dumps({"prompt_tokens": 40, "completion_tokens": 20, "total_tokens": 60})}


# --- Per-model limits: spellings and aliases ---------------------------------------------------

def test_a_model_tpm_limit_in_the_other_spelling_still_counts(envoy):
    """model_rpm_limit {"gpt-4o"} and model_tpm_limit {"openai/gpt-4o"} are two entries for the
    same model: both count (the first fix looked up only the first spelling found)."""
    avoid_minute_edge()
    first = post(envoy, SPELL, chat("gpt-4o", max_tokens=5), USAGE_60)
    assert first.status == 200, first
    time.sleep(0.2)
    second = post(envoy, SPELL, chat("gpt-4o", max_tokens=5))
    assert second.status == 429, ("60 real tokens on a 50-token per-model tpm limit", second,
                                  second.headers.get("x-ratelimit-limit-tokens"))


def test_an_alias_counts_on_the_per_model_limit_of_the_model_it_reaches(envoy, upstreams):
    avoid_minute_edge()
    assert post(envoy, ALIASED, chat("cheap")).status == 200
    assert post(envoy, ALIASED, chat("cheap")).status == 200
    refused = post(envoy, ALIASED, chat("gpt-4o"))
    assert refused.status == 429, refused
    error = refused.json()["error"]
    assert error["code"] == "rpm" and "on model 'gpt-4o'" in error["message"], error
    assert upstream_calls(upstreams) == 2


def test_a_per_model_limit_written_under_an_alias_name_counts_requests_naming_it(envoy):
    """model_rpm_limit {"cheap": 1} where cheap is the key's alias: it counts the requests that
    name the alias (as LiteLLM's limiter counts the name asked for), besides the limits of the
    model it reaches; a name no request can name or reach is warned about at compile time."""
    avoid_minute_edge()
    assert post(envoy, ALIAS_NAMED, chat("cheap")).status == 200
    second = post(envoy, ALIAS_NAMED, chat("cheap"))
    assert second.status == 429, second


def test_the_azure_path_form_counts_the_model_it_names_after_aliases(envoy):
    avoid_minute_edge()
    path = "/openai/deployments/cheap/chat/completions?api-version=2024-10-21"
    headers = {"api-key": AZURE, "content-type": "application/json"}
    body = {"messages": [{"role": "user", "content": "hi"}]}
    statuses = [envoy.request("POST", path, headers, body).status for _ in range(3)]
    assert statuses == [200, 200, 429], statuses


def anthropic_post(envoy, key, model, path="/v1/messages"):
    body = {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    return envoy.request("POST", path, headers, body)


def test_both_spellings_and_count_tokens_count_on_one_per_model_limit(envoy, upstreams):
    avoid_minute_edge()
    assert anthropic_post(envoy, PREFIX, "claude-sonnet-4-6").status == 200
    assert anthropic_post(envoy, PREFIX, "anthropic/claude-sonnet-4-6").status == 200
    counted = anthropic_post(envoy, PREFIX, "claude-sonnet-4-6", "/v1/messages/count_tokens")
    assert counted.status == 200, counted
    for model in ("claude-sonnet-4-6", "anthropic/claude-sonnet-4-6"):
        refused = anthropic_post(envoy, PREFIX, model)
        assert refused.status == 429 and refused.json()["error"]["code"] == "rpm", refused
    refused = anthropic_post(envoy, PREFIX, "claude-sonnet-4-6", "/v1/messages/count_tokens")
    assert refused.status == 429, refused


# --- Streams that try to hide their usage ---------------------------------------------------------

def test_a_stream_asking_for_no_usage_is_still_counted_by_its_real_usage(envoy):
    avoid_minute_edge()
    body = chat("gpt-4o", max_tokens=5, stream=True, stream_options={"include_usage": False})
    for _ in range(2):
        r = post(envoy, TPM, body, USAGE_60)
        assert r.status == 200 and b'"usage"' not in r.body, r
    time.sleep(0.3)
    refused = post(envoy, TPM, chat("gpt-4o", max_tokens=5))
    assert refused.status == 429 and "120 used" in refused.json()["error"]["message"], refused.json()


def test_duplicated_stream_options_cannot_hide_the_usage(envoy):
    avoid_minute_edge()
    raw = (b'{"model":"gpt-4o","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}],'
           b'"stream_options":{"include_usage":true},"stream_options":{"include_usage":false}}')
    r = post(envoy, TPM_DUP, raw, USAGE_60)
    if r.status == 400:
        return  # refused outright: fine
    assert r.status == 200, r
    time.sleep(0.3)
    r2 = post(envoy, TPM_DUP, raw, USAGE_60)
    time.sleep(0.3)
    third = post(envoy, TPM_DUP, chat("gpt-4o", max_tokens=5))
    assert third.status == 429, ("two streams of 60 real tokens on a 100-token limit", r2, third)


def test_a_tpm_limit_below_the_worst_case_admits_one_request_at_a_time(envoy):
    """Documented (README, Rate limits): tpm_limit 10,000 on gpt-4o, whose output cap is 16,384: a
    request without max_tokens holds the whole limit while it runs, so a second concurrent one is
    refused though nothing is used yet; with max_tokens the two fit side by side."""
    avoid_minute_edge()
    held = open_stream(envoy.listen_port, TPM_WIDE, 400)
    try:
        second = post(envoy, TPM_WIDE, chat("gpt-4o"))
        capped = post(envoy, TPM_WIDE, chat("gpt-4o", max_tokens=50))
    finally:
        read_to_end(held)
    assert second.status == 429 and second.json()["error"]["code"] == "tpm", second
    assert "used or held by requests in flight" in second.json()["error"]["message"]
    assert capped.status == 429, "the first request still holds all 10,000"
    time.sleep(0.3)
    assert post(envoy, TPM_WIDE, chat("gpt-4o", max_tokens=50)).status == 200


# --- HTTP/2: many streams on one connection, resets mid-request and mid-stream ------------------

def h2_connection(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def h2_headers(key, extra=()):
    return [(":method", "POST"), (":path", "/v1/chat/completions"), (":scheme", "http"),
            (":authority", "x"), ("authorization", f"Bearer {key}"),
            ("content-type", "application/json"), *extra]


def h2_collect(sock, conn, streams, until, timeout=10):
    """Reads events until `until(state)`; state[stream] = {"status", "body", "ended"}."""
    state = {s: {"status": None, "body": b"", "ended": False} for s in streams}
    deadline = time.monotonic() + timeout
    sock.settimeout(0.5)
    while time.monotonic() < deadline and not until(state):
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        if not data:
            break
        for event in conn.receive_data(data):
            sid = getattr(event, "stream_id", None)
            if sid not in state:
                continue
            if isinstance(event, h2.events.ResponseReceived):
                state[sid]["status"] = int(dict(event.headers)[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                state[sid]["body"] += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, sid)
            elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                state[sid]["ended"] = True
        sock.sendall(conn.data_to_send())
    return state


def test_h2_streams_on_one_connection_share_the_parallel_limit_and_resets_free_slots(envoy):
    sock, conn = h2_connection(envoy.listen_port)
    try:
        body = json.dumps(chat("gpt-4o", stream=True)).encode()
        streams = []
        for _ in range(5):
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, h2_headers(PAR, [("x-mock-delay-ms", "1500")]))
            conn.send_data(sid, body, end_stream=True)
            streams.append(sid)
        sock.sendall(conn.data_to_send())
        state = h2_collect(sock, conn, streams, lambda st: all(v["status"] for v in st.values()))
        statuses = [state[s]["status"] for s in streams]
        assert sorted(statuses) == [200, 200, 429, 429, 429], statuses
        # Reset the two admitted streams mid-stream: their slots must come back.
        for s in streams:
            if state[s]["status"] == 200:
                conn.reset_stream(s)
        sock.sendall(conn.data_to_send())
        # A request whose body never ends (reset before END_STREAM) holds nothing either.
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, h2_headers(PAR))
        conn.send_data(sid, body[:10], end_stream=False)
        sock.sendall(conn.data_to_send())
        time.sleep(0.2)
        conn.reset_stream(sid)
        sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    for _ in range(3):
        wait_until(lambda: post(envoy, PAR, chat("gpt-4o")).status == 200, timeout=5,
                   message="slots freed by RST_STREAM")
    # Both slots are free at once: two slow streams may run together again.
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        post(envoy, PAR, chat("gpt-4o", stream=True), {"x-mock-delay-ms": "300"}).status)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert results == [200, 200], results


# --- Refusals and unfinished requests leave nothing behind --------------------------------------

def test_a_refusal_by_the_team_leaves_no_count_on_the_key(envoy):
    avoid_minute_edge()
    held = open_stream(envoy.listen_port, TEAM_B, 500)
    try:
        for _ in range(5):
            r = post(envoy, TEAM_A, chat("gpt-4o"))
            assert r.status == 429 and r.json()["error"]["code"] == "parallel", r
            assert "team 'RLA'" in r.json()["error"]["message"]
    finally:
        read_to_end(held)
    remaining = []
    for _ in range(3):
        r = wait_until(lambda: (x := post(envoy, TEAM_A, chat("gpt-4o"))).status == 200 and x, timeout=5,
                       message="the team slot freed")
        remaining.append(r.headers["x-ratelimit-remaining-requests"])
    assert remaining == ["2", "1", "0"], remaining


def test_requests_that_never_finish_their_body_or_are_refused_early_count_nothing(envoy, upstreams):
    avoid_minute_edge()
    port = envoy.listen_port
    body = json.dumps(chat("gpt-4o")).encode()
    # HTTP/1.1: headers and half the body, then the client goes away.
    for _ in range(4):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                  + f"authorization: Bearer {DISC}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
                  + body[: len(body) // 2])
        time.sleep(0.05)
        s.close()
    # Compressed, too large, bad JSON: refused before any limit is counted.
    assert post(envoy, DISC, b"\x1f\x8b\x08\x00", {"content-encoding": "gzip"}).status == 415
    assert post(envoy, DISC, b'{"model":"gpt-4o","messages":[' + b" " * 70000 + b"]}").status == 413
    assert post(envoy, DISC, b'{"model":"gpt-4o",').status == 400
    # Client-supplied rate headers and Tollgate's internal names change nothing.
    spoof = {"x-ratelimit-remaining-requests": "999", "x-ratelimit-limit-requests": "999",
             "x-tollgate-cluster": "openai", "x-tollgate-policy-version": "other"}
    remaining = []
    for _ in range(3):
        r = post(envoy, DISC, chat("gpt-4o"), spoof)
        assert r.status == 200, r
        remaining.append(r.headers["x-ratelimit-remaining-requests"])
    assert remaining == ["2", "1", "0"], remaining
    refused = post(envoy, DISC, chat("gpt-4o"), spoof)
    assert refused.status == 429 and refused.headers["x-ratelimit-limit-requests"] == "3", refused
    assert upstream_calls(upstreams) == 3


def test_http1_pipelined_requests_each_count(envoy, upstreams):
    avoid_minute_edge()
    body = json.dumps(chat("gpt-4o")).encode()
    one = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
           + f"authorization: Bearer {PIPE}\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body)
    s = socket.create_connection(("127.0.0.1", envoy.listen_port), timeout=10)
    s.sendall(one * 5)
    reader = s.makefile("rb")
    statuses = []
    try:
        for _ in range(5):
            line = reader.readline()
            if not line:
                break
            statuses.append(int(line.split()[1]))
            headers = {}
            while (h := reader.readline().decode().rstrip("\r\n")):
                name, _, value = h.partition(":")
                headers[name.strip().lower()] = value.strip()
            if headers.get("transfer-encoding") == "chunked":
                while True:
                    size = int(reader.readline().strip(), 16)
                    reader.read(size + 2)
                    if size == 0:
                        break
            else:
                reader.read(int(headers.get("content-length", 0)))
    finally:
        s.close()
    # Envoy may close the connection after a local reply; whatever was answered, 3 at most pass.
    assert statuses[:3] == [200, 200, 200] and all(x == 429 for x in statuses[3:]), statuses
    assert upstream_calls(upstreams) == 3


# --- Endpoints that skip the limits --------------------------------------------------------------

def test_reading_stored_responses_counts_on_the_keys_limits(envoy, upstreams):
    """GET /v1/responses/{id} (and DELETE, input_items) reaches the provider: it counts on the
    key's rpm and holds a slot in flight like any request."""
    avoid_minute_edge()
    created = post(envoy, STORED, {"model": REASONING_MODEL, "input": "hi"}, path="/v1/responses")
    assert created.status == 200, created
    rid = created.json()["id"]
    statuses = [envoy.request("GET", f"/v1/responses/{rid}", bearer(STORED)).status for _ in range(6)]
    reads = len([r for r in upstreams["openai"].requests() if r["path"].startswith("/v1/responses/")])
    # rpm 2: the create plus one read, then 429s.
    assert statuses.count(200) <= 1, (statuses, f"{reads} reads reached the provider")


# --- A policy swap while a request is in flight ------------------------------------------------

def test_a_slot_held_across_a_policy_swap_counts_and_is_released(envoy):
    held = open_stream(envoy.listen_port, SWAP, 500)
    try:
        assert post(envoy, SWAP, chat("gpt-4o")).status == 429
        envoy.push_policy(policy("rla2"), "rla2")
        r = post(envoy, SWAP, chat("gpt-4o"))
        assert r.headers.get("x-tollgate-policy-version") == "rla2", r.headers
        assert r.status == 429, ("the new version sees the old version's request in flight", r)
    finally:
        assert b"[DONE]" in read_to_end(held)
    wait_until(lambda: post(envoy, SWAP, chat("gpt-4o")).status == 200, timeout=5,
               message="the slot released by the old version's request")
    envoy.push_policy(policy("rla3"), "rla3")
    assert post(envoy, SWAP, chat("gpt-4o")).status == 200


# --- One tenant and another tenant's end user -----------------------------------------------------

def test_end_users_are_one_namespace_for_every_tenant_as_documented(envoy):
    """Documented (README, Rate limits): end_users[] are global, as LiteLLM's customers are: a
    limit on end user "shared-customer" counts every key's requests naming it. Operators who give
    each team its own customers name them per team (e.g. "search/customer-42")."""
    avoid_minute_edge()
    for _ in range(2):
        assert post(envoy, TENANT_X, chat("gpt-4o", user="shared-customer")).status == 200
    other = post(envoy, TENANT_Y, chat("gpt-4o", user="shared-customer"))
    assert other.status == 429 and other.json()["error"]["code"] == "rpm", other
    assert "end user 'shared-customer'" in other.json()["error"]["message"]
    assert "Tenant X" not in other.json()["error"]["message"] and "rla-x" not in other.body.decode()


# --- A held slot must not lapse while its stream is still open ------------------------------------

LONG = "sk-e2e-rla-long"


@pytest.fixture(scope="module")
def short_ttl(request, upstreams):
    p = policy("rla-ttl")
    p["settings"]["reservation_ttl_seconds"] = 5
    p["keys"].append({"key_hash": key_hash(LONG), "key_alias": "rla-long", "models": ["gpt-4o"],
                      "max_parallel_requests": 1})
    stack = start_stack(request, upstreams, p, name="rate-limit-attacks-ttl", concurrency=2)
    yield stack
    stack.stop()


def test_max_parallel_holds_for_a_stream_longer_than_the_reservation_ttl(short_ttl):
    """The slot in flight is held with reservation_ttl_seconds' expiry (rounded up to the next
    minute). A stream that outlives it keeps its slot: each chunk moves the hold to a later expiry.
    With a 5 s TTL, a stream started at second ~40 (events every 4 s, about 24 s) crosses the minute
    its first hold expires at; without the renewal a second request gets in right after it."""
    if not 38 <= time.time() % 60 <= 42:
        time.sleep((40 - time.time() % 60) % 60)
    held = open_stream(short_ttl.listen_port, LONG, 4_000)
    started = time.monotonic()
    try:
        assert post(short_ttl, LONG, chat("gpt-4o")).status == 429
        admitted_at = None
        while time.monotonic() - started < 22:
            if post(short_ttl, LONG, chat("gpt-4o")).status == 200:
                admitted_at = time.monotonic() - started
                break
            time.sleep(1)
        assert admitted_at is None, f"a second request was admitted {admitted_at:.0f}s into the first stream"
    finally:
        assert b"[DONE]" in read_to_end(held)
    wait_until(lambda: post(short_ttl, LONG, chat("gpt-4o")).status == 200, timeout=5,
               message="the slot freed when the stream ended")


# --- Huge token counts: the event must still reach the accounting cluster ---------------------------

HUGE = "sk-e2e-rla-huge-n"


@pytest.fixture(scope="module")
def with_accounting(request, upstreams):
    server = accounting_server("accounting-rate-limit-attacks")
    p = policy("rla-acc")
    p["accounting"] = accounting_section()
    p["keys"].append({"key_hash": key_hash(HUGE), "key_alias": "rla-huge", "models": ["gpt-4o"],
                      "tpm_limit": 1_000_000, "max_budget": 5000, "budget_duration": "1d"})
    stack = start_stack(request, upstreams, p, name="rate-limit-attacks-acc",
                        extra_clusters={"accounting": server.port})
    yield stack, server
    stack.stop()
    server.stop()


def test_a_request_charged_its_reservation_is_still_reported(with_accounting):
    """n × max_tokens is unbounded (n=1,000,000 × 16,384 = 1.6e10 tokens). An answer charged its
    reservation (unreadable, client left, upstream timeout) counts that many tokens on the tpm
    line; the event's data.limits count exceeds MAX_EVENT_TOKENS (1e10) and the accounting server
    rejects the whole event: its spend never reaches the other replicas (cost alone is capped at
    MAX_EVENT_COST_NANO, the limit count is not)."""
    stack, server = with_accounting
    r = post(stack, HUGE, chat("gpt-4o", n=1_000_000, max_tokens=16384), {"x-mock-gzip": "always"})
    assert r.status == 200, r
    wait_until(lambda: stack.counter("wasmcustom.tollgate_spend_events_acknowledged") >= 1
               or stack.counter("wasmcustom.tollgate_spend_events_rejected") >= 1, timeout=15,
               message="the event answered")
    time.sleep(0.5)
    rejected = stack.counter("wasmcustom.tollgate_spend_events_rejected")
    stored = [e for e in server.events() if key_hash(HUGE) in json.dumps(e)]
    assert rejected == 0 and stored, (rejected, len(server.events()))


# --- A hostile accounting peer answering made-up limit totals -------------------------------------

POLLED = "sk-e2e-rla-polled"      # rpm 3, max_parallel 1: the peer names it in other windows
INFLATED = "sk-e2e-rla-inflated"  # rpm 3: the peer claims a huge total in its current window


class LimitForger:
    """Acknowledges batches (with forged totals for other windows) and answers every poll with
    thousands of made-up limit totals, the policy's own limits in other windows, a parallel
    "window" and a huge count for one key's current minute."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from stack import free_port
        self.port = free_port()
        self.polls = 0
        peer = self

        def forged():
            now = int(time.time())
            minute = now - now % 60
            polled = f"key:{key_hash(POLLED)}"
            out = [{"limit": f"key:{'%064x' % i}/rpm", "window_start": minute, "window_end": minute + 60,
                    "count": 2**63} for i in range(2000)]
            out += [{"limit": f"{polled}/rpm", "window_start": w, "window_end": w + 60, "count": 2**64 - 1}
                    for w in (minute + 60, minute - 60, 0, 10**12)]
            out += [{"limit": f"{polled}/parallel", "window_start": 0, "window_end": 1, "count": 10**9},
                    {"limit": f"{polled}/rpm/{minute}", "window_start": minute, "window_end": minute + 60,
                     "count": 10**9},
                    {"limit": f"key:{key_hash(INFLATED)}/rpm", "window_start": minute,
                     "window_end": minute + 60, "count": 2**64 - 1}]
            return out

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                peer.polls += 1
                self.answer({"cursor": peer.polls, "budgets": [], "limits": forged()})

            def do_POST(self):
                events = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
                self.answer({"batch_id": self.headers.get("x-tollgate-batch-id"),
                             "acknowledged": [e["id"] for e in events], "budgets": [], "limits": forged()})

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


@pytest.fixture(scope="module")
def forged(request, upstreams):
    peer = LimitForger()
    p = policy("rla-forged")
    p["accounting"] = accounting_section(poll_interval_ms=100, flush_interval_ms=100)
    p["keys"] += [
        {"key_hash": key_hash(POLLED), "key_alias": "rla-polled", "models": ["gpt-4o"], "rpm_limit": 3,
         "max_parallel_requests": 1},
        {"key_hash": key_hash(INFLATED), "key_alias": "rla-inflated", "models": ["gpt-4o"], "rpm_limit": 3},
    ]
    stack = start_stack(request, upstreams, p, name="rate-limit-attacks-forged", concurrency=2,
                        extra_clusters={"accounting": peer.port})
    yield stack, peer
    stack.stop()
    peer.stop()


def test_forged_limit_totals_for_other_windows_and_names_change_nothing(forged):
    stack, peer = forged
    avoid_minute_edge(40)
    wait_until(lambda: peer.polls >= 5, timeout=10, message="polls answered")
    remaining = []
    for _ in range(3):
        r = post(stack, POLLED, chat("gpt-4o"))
        assert r.status == 200, r.json()
        remaining.append(r.headers["x-ratelimit-remaining-requests"])
        time.sleep(0.3)  # batches acknowledged (with forged totals) in between
    assert remaining == ["2", "1", "0"], remaining
    assert post(stack, POLLED, chat("gpt-4o")).status == 429
    # The peer is authoritative for a limit's current window: its total refuses (by design).
    refused = post(stack, INFLATED, chat("gpt-4o"))
    assert refused.status == 429, refused
    assert "key 'rla-inflated'" in refused.json()["error"]["message"]
    assert stack.process.poll() is None
