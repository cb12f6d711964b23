"""Issue 10 (money2): requests that would escape metering or their worst case.

- A request that ends before its answer is charged its worst case: a client that closes the
  connection before a non-streamed answer arrives, or Envoy's route timeout cutting a long call
  (504, `response.code_details` `response_timeout` in Envoy 1.40), leaves the provider generating
  and billing the whole answer. Tollgate charges such a request what it reserved (the uncapped
  worst case), flags the event estimated and counts it in `tollgate_spend_charged_reserved_<why>`.
  An upstream that never got the request (connection refused) costs nothing.
- `background: true` (a Responses call whose result is fetched later, unmetered) is refused with
  400 `unsupported_parameter`, also when the key is duplicated.
- A text completion's `prompt` list reserves one worst-case answer per prompt.
- The web searches of a Responses answer (`web_search_call` output items) are charged per call at
  the model's `search_context_cost_per_query` (medium); without a price the event is estimated.

The slow provider here is a small server of this file (it answers after `x-slow-ms`), so that the
mock upstreams stay as they are.
"""

import json
import math
import socket
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import accounting_server, start_stack
from policies import REAL_COST_MAP, bearer, chat, money_policy
from stack import free_port, key_hash, wait_until

KEYS = {
    "left": "sk-e2e-unfinished-left",        # $0.01 per day: the worst case is far above it
    "timeout": "sk-e2e-unfinished-timeout",  # no budget
    "refused": "sk-e2e-unfinished-refused",  # no budget, routed to a closed port
    "prompts": "sk-e2e-unfinished-prompts",  # $0.003 per day
    "background": "sk-e2e-unfinished-background",  # no budget
    "search": "sk-e2e-unfinished-search",  # gpt-4.1 and gpt-4o, no budget
}
COMPLETION = 4000


class SlowProvider(BaseHTTPRequestHandler):
    """Generates for `x-slow-ms`, then answers a chat completion of COMPLETION tokens (it bills
    them whether anyone is still waiting or not)."""

    billed = []
    seen = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        SlowProvider.seen.append(self.rfile.read(int(self.headers.get("content-length") or 0)))
        time.sleep(int(self.headers.get("x-slow-ms") or 0) / 1000)
        SlowProvider.billed.append(COMPLETION)
        body = (self.headers.get("x-answer") or json.dumps(
            {"id": "c", "object": "chat.completion", "model": "gpt-4o", "choices": [],
             "usage": {"prompt_tokens": 12, "completion_tokens": COMPLETION}})).encode()
        try:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass


def unfinished_policy(version):
    policy = money_policy(version)
    policy["model_list"].append(
        {"model_name": "gpt-4o-nowhere", "litellm_params": {"model": "openai/gpt-4o",
                                                            "api_key_env": "OPENAI_API_KEY"},
         "cluster": "nowhere", "model_info": {"id": "openai-nowhere"}})
    policy["model_list"].append(
        {"model_name": "gpt-4.1", "litellm_params": {"model": "openai/gpt-4.1", "api_key_env": "OPENAI_API_KEY"},
         "cluster": "openai", "model_info": {"id": "openai-gpt-4.1"}})
    policy["keys"] += [
        {"key_hash": key_hash(KEYS["search"]), "key_alias": "unfinished-search",
         "models": ["gpt-4.1", "gpt-4o"]},
        {"key_hash": key_hash(KEYS["left"]), "key_alias": "unfinished-left", "max_budget": 0.01,
         "budget_duration": "1d", "models": ["gpt-4o"]},
        {"key_hash": key_hash(KEYS["timeout"]), "key_alias": "unfinished-timeout", "models": ["gpt-4o"]},
        {"key_hash": key_hash(KEYS["refused"]), "key_alias": "unfinished-refused",
         "models": ["gpt-4o-nowhere"]},
        {"key_hash": key_hash(KEYS["prompts"]), "key_alias": "unfinished-prompts", "max_budget": 0.003,
         "budget_duration": "1d", "models": ["gpt-4o"]},
        {"key_hash": key_hash(KEYS["background"]), "key_alias": "unfinished-background",
         "models": ["gpt-4o"]},
    ]
    return policy


@pytest.fixture(scope="module")
def slow():
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowProvider)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def accounting():
    server = accounting_server("accounting-unfinished")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gate(request, upstreams, slow, accounting):
    clusters = {"openai": slow.server_address[1], "accounting": accounting.port,
                "nowhere": free_port()}  # nothing listens there: connection refused
    stack = start_stack(request, upstreams, unfinished_policy("u1"), extra_clusters=clusters,
                        route_timeout="1s")
    yield stack
    stack.stop()


def nano(usd):
    return int((usd * Decimal(10**9)).to_integral_value(rounding="ROUND_HALF_UP"))


def worst_case(body):
    """gpt-4o's worst case, computed from the real cost map: a quarter of the body's bytes (rounded
    up) as input, the request's max_tokens as output."""
    entry = REAL_COST_MAP["gpt-4o"]
    prompt = math.ceil(len(body) / 4)
    return nano(Decimal(repr(entry["input_cost_per_token"])) * prompt
                + Decimal(repr(entry["output_cost_per_token"])) * body_cap(body))


def body_cap(body):
    return json.loads(body)["max_tokens"]


def event_for(accounting, alias, user, timeout=15):
    def found():
        hits = [e["data"] for e in accounting.events()
                if e["data"]["key_alias"] == alias and e["data"].get("end_user") == user]
        return hits[0] if hits else None
    return wait_until(found, timeout, message=f"a spend event of {alias} for {user}")


def send_and_leave(gate, key, body, slow_ms, stay=0.3):
    """Sends a non-streamed request and closes the connection before the answer arrives."""
    with socket.create_connection(("127.0.0.1", gate.listen_port), timeout=5) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\nauthorization: Bearer " + key.encode()
                  + b"\r\ncontent-type: application/json\r\nx-slow-ms: " + str(slow_ms).encode()
                  + b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        time.sleep(stay)


def test_a_client_that_leaves_before_the_answer_is_charged_the_worst_case(gate, accounting):
    body = json.dumps(chat("gpt-4o", max_tokens=COMPLETION, user="left-1")).encode()
    before = gate.counter("wasmcustom.tollgate_spend_charged_reserved_client_left")
    send_and_leave(gate, KEYS["left"], body, slow_ms=800)
    event = event_for(accounting, "unfinished-left", "left-1")
    assert event["status"] == "client_disconnect", event
    assert event["usage"]["estimated"] is True, event
    assert event["cost_nano_usd"] == worst_case(body), (
        f"charged {event['cost_nano_usd']} for an answer the provider bills in full "
        f"(worst case {worst_case(body)})")
    wait_until(lambda: gate.counter("wasmcustom.tollgate_spend_charged_reserved_client_left") > before,
               timeout=5, message="the charged_reserved metric")
    # The worst case ($0.04) is above the $0.01 budget: it is spent, so the next call is refused.
    again = gate.request("POST", "/v1/chat/completions", bearer(KEYS["left"]),
                         chat("gpt-4o", max_tokens=10, user="left-2"))
    assert again.status == 429, f"the budget still admits after an unfinished $0.04 call: {again}"


def test_a_route_timeout_is_charged_the_worst_case(gate, accounting):
    body = chat("gpt-4o", max_tokens=COMPLETION, user="timeout-1")
    headers = dict(bearer(KEYS["timeout"]), **{"x-slow-ms": "2500"})
    r = gate.request("POST", "/v1/chat/completions", headers, body, timeout=10)
    assert r.status == 504, r
    event = event_for(accounting, "unfinished-timeout", "timeout-1")
    assert (event["status"], event["http_status"]) == ("upstream_error", 504), event
    assert event["usage"]["estimated"] is True, event
    assert event["cost_nano_usd"] == worst_case(json.dumps(body).encode()), event
    assert gate.counter("wasmcustom.tollgate_spend_charged_reserved_upstream_timeout") >= 1


def test_an_upstream_that_refused_the_connection_costs_nothing(gate, accounting):
    # Envoy's own 503 (connection refused): the provider never saw the request.
    body = chat("gpt-4o-nowhere", max_tokens=COMPLETION, user="refused-1")
    r = gate.request("POST", "/v1/chat/completions", bearer(KEYS["refused"]), body)
    assert r.status == 503, r
    event = event_for(accounting, "unfinished-refused", "refused-1")
    assert (event["status"], event["cost_nano_usd"], event["usage"]["estimated"]) == ("upstream_error", 0, False), event


@pytest.mark.parametrize("body", [
    b'{"model":"gpt-4o","input":"hi","background":true}',
    b'{"model":"gpt-4o","input":"hi","background":false,"background":true}',
], ids=["background", "duplicated"])
def test_a_background_response_is_refused_before_it_reaches_the_provider(gate, body):
    before = len(SlowProvider.seen)
    r = gate.request("POST", "/v1/responses", bearer(KEYS["background"]), body)
    assert r.status == 400, f"a background response went through, unmetered: {r}"
    error = r.json()["error"]
    if b"false" in body:
        assert error["code"] == "invalid_json", error
    else:
        assert (error["type"], error["code"], error["param"]) == (
            "invalid_request_error", "unsupported_parameter", "background"), error
    assert r.headers.get("x-should-retry") == "false", r.headers
    assert len(SlowProvider.seen) == before, "the provider saw it"
    plain = gate.request("POST", "/v1/responses", bearer(KEYS["background"]),
                         {"model": "gpt-4o", "input": "hi", "background": False})
    assert plain.status == 200, plain


def test_a_prompt_list_reserves_one_answer_per_prompt(gate, accounting):
    key = KEYS["prompts"]
    # 4 prompts × up to 100 tokens at $1e-5: $0.004 reserved, above the $0.003 budget (one answer
    # would reserve $0.001 and leave room beside it).
    body = {"model": "gpt-4o", "prompt": ["a", "b", "c", "d"], "max_tokens": 100, "user": "prompts-1"}
    result = {}

    def run():
        result["response"] = gate.request("POST", "/v1/completions",
                                          dict(bearer(key), **{"x-slow-ms": "700"}), body, timeout=10)

    before = len(SlowProvider.seen)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_until(lambda: len(SlowProvider.seen) > before, timeout=5, message="the slow request upstream")
    refused = gate.request("POST", "/v1/completions", bearer(key),
                           {"model": "gpt-4o", "prompt": "e", "max_tokens": 100, "user": "prompts-2"})
    thread.join(10)
    assert result["response"].status == 200, result
    assert refused.status == 429, f"a second request fit beside a 4-prompt reservation: {refused}"
    assert "reserved" in refused.json()["error"]["message"], refused.json()


def test_responses_web_search_calls_are_charged_per_call(gate, accounting):
    answer = {"id": "resp_1", "object": "response", "status": "completed",
              "output": [{"type": "web_search_call", "id": "ws_1", "status": "completed"},
                         {"type": "web_search_call", "id": "ws_2", "status": "completed"},
                         {"type": "message", "role": "assistant", "content": []}],
              "usage": {"input_tokens": 10, "output_tokens": 5}}
    headers = dict(bearer(KEYS["search"]), **{"x-answer": json.dumps(answer)})
    before = gate.counter("wasmcustom.tollgate_spend_tool_calls_unpriced")
    for model in ("gpt-4.1", "gpt-4o"):
        r = gate.request("POST", "/v1/responses", headers, {"model": model, "input": "hi", "user": f"search-{model}"})
        assert r.status == 200, r

    def rate(model, field):
        return Decimal(repr(REAL_COST_MAP[model][field]))
    per_search = Decimal(repr(REAL_COST_MAP["gpt-4.1"]["search_context_cost_per_query"]["search_context_size_medium"]))
    event = event_for(accounting, "unfinished-search", "search-gpt-4.1")
    assert event["cost_nano_usd"] == nano(rate("gpt-4.1", "input_cost_per_token") * 10
                                          + rate("gpt-4.1", "output_cost_per_token") * 5 + per_search * 2), event
    assert not event["usage"]["estimated"], event
    # gpt-4o has no search price in the cost map: tokens charged, the event estimated and counted.
    event = event_for(accounting, "unfinished-search", "search-gpt-4o")
    assert event["usage"]["estimated"], event
    assert event["cost_nano_usd"] == nano(rate("gpt-4o", "input_cost_per_token") * 10
                                          + rate("gpt-4o", "output_cost_per_token") * 5), event
    wait_until(lambda: gate.counter("wasmcustom.tollgate_spend_tool_calls_unpriced") > before, timeout=5,
               message="tollgate_spend_tool_calls_unpriced")


def test_an_http2_client_that_resets_its_stream_is_charged_the_worst_case(gate, accounting):
    """Review finding: an HTTP/2 RST_STREAM ends the stream with `http2.remote_reset`, which used
    to be taken for the upstream's doing (charged the prompt only)."""
    import h2.config
    import h2.connection
    import h2.errors
    body = json.dumps(chat("gpt-4o", max_tokens=COMPLETION, user="h2-reset-1")).encode()
    with socket.create_connection(("127.0.0.1", gate.listen_port), timeout=5) as s:
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, [(":method", "POST"), (":path", "/v1/chat/completions"),
                                   (":authority", "t"), (":scheme", "http"),
                                   ("authorization", f"Bearer {KEYS['timeout']}"),
                                   ("content-type", "application/json"), ("x-slow-ms", "1500")])
        conn.send_data(stream, body, end_stream=True)
        s.sendall(conn.data_to_send())
        time.sleep(0.4)
        conn.reset_stream(stream, error_code=h2.errors.ErrorCodes.CANCEL)
        s.sendall(conn.data_to_send())
        time.sleep(0.3)
    event = event_for(accounting, "unfinished-timeout", "h2-reset-1")
    assert event["status"] == "client_disconnect", event
    assert event["cost_nano_usd"] == worst_case(body), event
