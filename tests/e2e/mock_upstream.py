"""Mock OpenAI/Anthropic-compatible upstream that records every request it receives.

Answers with real response shapes (JSON, or SSE when the body says "stream": true) for
/v1/chat/completions, /v1/completions, /v1/embeddings, /v1/responses, /v1/messages and
/v1/messages/count_tokens; stored responses answer GET and DELETE /v1/responses/{id} and
GET /v1/responses/{id}/input_items, for the credential that created them only (404 otherwise).
GET /__requests returns what was received; DELETE /__requests forgets it.

Test controls, sent as request headers (Envoy passes them through):
  x-mock-status: 429        answer with this error status and an OpenAI-style error body
  x-mock-delay-ms: 200      wait this long between streamed events
  x-mock-cut-after: 2       send this many streamed events, then reset the connection
  x-mock-gzip: honor        gzip the answer when the request's accept-encoding allows gzip (as real
                            servers do); `always` gzips it whatever the request asked for
  x-mock-usage: {json}      merged into the answer's usage (JSON answers, the final stream event,
                            Anthropic's message_start)
  x-mock-service-tier: x    the service tier the answer reports; without it a request's
                            `service_tier` is echoed as OpenAI does ("auto" → "default")
  x-mock-response-end: t    the type of a Responses stream's last event (response.incomplete, ...)

Every answer carries provider rate-limit headers (x-ratelimit-*, anthropic-ratelimit-*) about the
shared upstream credential, as the real providers send them.

Run standalone (used by ./scripts/run):  python3 mock_upstream.py openai=18081 anthropic=18082
"""

import base64
import gzip
import hashlib
import json
import secrets
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer




class MockServer(ThreadingHTTPServer):
    """The standard threading server with a listen backlog for bursts: Envoy opens dozens of
    upstream connections at once under concurrent streams, and the default backlog (5) makes
    some of them time out before they are accepted."""

    request_queue_size = 256

def usage_openai(model):
    return {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}


def chat_completion(model):
    return {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from mock."},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": usage_openai(model),
    }


def chat_chunks(model, include_usage):
    base = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    chunks = [
        dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]),
        dict(base, choices=[{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}]),
        dict(base, choices=[{"index": 0, "delta": {"content": " from mock."}, "finish_reason": None}]),
        dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]),
    ]
    if include_usage:
        chunks.append(dict(base, choices=[], usage=usage_openai(model)))
    return [f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"]


def anthropic_message(model):
    return {
        "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": "Hello from mock."}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 0,
                  "cache_creation_input_tokens": 0},
    }


def anthropic_events(model):
    events = [
        ("message_start", {"type": "message_start", "message": dict(anthropic_message(model), content=[],
                                                                   usage={"input_tokens": 10, "output_tokens": 1})}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"output_tokens": 5}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    return [f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events]


def response_object(model):
    return {
        "id": "resp_mock0001", "object": "response", "created_at": int(time.time()), "status": "completed",
        "model": model,
        "output": [{"type": "message", "id": "msg_mock0001", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": "Hello from mock.", "annotations": []}]}],
        "usage": {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 17},
    }


# --- Responses API state bound to the caller's credential, as OpenAI / Azure do it ------------
# Response ids, reasoning item ids and encrypted reasoning content are signed with the upstream
# credential that produced them; a different credential cannot use them (400
# invalid_encrypted_content), which is what makes load-balancing a follow-up fail.

def _sig(secret, nonce):
    return hashlib.sha256(f"{secret}:{nonce}".encode()).hexdigest()[:16]


def new_id(prefix, secret):
    nonce = secrets.token_hex(16)
    return f"{prefix}_{nonce}{_sig(secret, nonce)}"


def id_valid(value, prefix, secret):
    body = value[len(prefix) + 1:] if isinstance(value, str) and value.startswith(prefix + "_") else ""
    return len(body) == 48 and body[32:] == _sig(secret, body[:32])


def new_encrypted(secret):
    nonce = secrets.token_bytes(24)
    return "gAAAAB" + base64.b64encode(nonce + hashlib.sha256(secret.encode() + nonce).digest()[:8]).decode()


def encrypted_valid(value, secret):
    try:
        raw = base64.b64decode(value[6:], validate=True) if value.startswith("gAAAAB") else b""
    except ValueError:
        return False
    return len(raw) == 32 and raw[24:] == hashlib.sha256(secret.encode() + raw[:24]).digest()[:8]


def responses_problem(req, secret):
    """Why this credential cannot serve the request's earlier state, or None."""
    previous = req.get("previous_response_id")
    if previous is not None and not id_valid(previous, "resp", secret):
        return f"Previous response with id '{previous}' not found."
    items = req.get("input") if isinstance(req.get("input"), list) else []
    for item in items:
        if not isinstance(item, dict) or item.get("type") != "reasoning":
            continue
        if not id_valid(item.get("id"), "rs", secret) or not encrypted_valid(item.get("encrypted_content", ""), secret):
            return f"The encrypted content for item {item.get('id')} could not be verified."
    return None


def signed_response(model, secret):
    final = response_object(model)
    final["id"] = new_id("resp", secret)
    if model.startswith("o"):
        final["output"].insert(0, {"type": "reasoning", "id": new_id("rs", secret), "summary": [],
                                   "encrypted_content": new_encrypted(secret)})
    return final


def response_events(model, final=None):
    final = final or response_object(model)
    created = dict(final, status="in_progress", output=[], usage=None)
    reasoning = [("response.output_item.done", {"type": "response.output_item.done", "sequence_number": 0,
                                                "output_index": 0, "item": item})
                 for item in final["output"] if item["type"] == "reasoning"]
    events = [
        ("response.created", {"type": "response.created", "sequence_number": 0, "response": created}),
        *reasoning,
        ("response.output_text.delta", {"type": "response.output_text.delta", "sequence_number": 1,
                                        "item_id": "msg_mock0001", "output_index": 0, "content_index": 0,
                                        "delta": "Hello"}),
        ("response.output_text.delta", {"type": "response.output_text.delta", "sequence_number": 2,
                                        "item_id": "msg_mock0001", "output_index": 0, "content_index": 0,
                                        "delta": " from mock."}),
        ("response.completed", {"type": "response.completed", "sequence_number": 3, "response": final}),
    ]
    return [f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events]


def money_overrides(headers, req, payload):
    """Applies x-mock-usage and the service tier (x-mock-service-tier, else the request's,
    echoed) to an answer object (chat/completions/Responses JSON, a Responses final object, an
    Anthropic message) in place, and returns it."""
    usage = headers.get("x-mock-usage")
    if usage and isinstance(payload.get("usage"), dict):
        payload["usage"].update(json.loads(usage))
    tier = headers.get("x-mock-service-tier") or req.get("service_tier")
    if isinstance(tier, str) and payload.get("type") != "message":
        payload["service_tier"] = "default" if tier == "auto" else tier
    return payload


def money_stream(headers, req, events):
    """The same for a stream's events (SSE text): the usage chunk / message_start / final
    Responses event, and x-mock-response-end."""
    out = []
    for event in events:
        head, _, data = event.rpartition("data: ")
        try:
            obj = json.loads(data)
        except ValueError:
            out.append(event)
            continue
        if isinstance(obj.get("response"), dict) and obj.get("type", "").startswith("response."):
            money_overrides(headers, req, obj["response"])
            end = headers.get("x-mock-response-end")
            if end and obj["type"] == "response.completed":
                obj["type"] = end
                obj["response"]["status"] = end.removeprefix("response.")
                head = head.replace("response.completed", end)
        elif obj.get("type") == "message_start":
            money_overrides(headers, req, obj["message"])
        elif "choices" in obj:
            money_overrides(headers, req, obj)
        out.append(f"{head}data: {json.dumps(obj)}\n\n")
    return out


def embeddings(model):
    return {"object": "list", "model": model,
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
            "usage": {"prompt_tokens": 4, "total_tokens": 4}}


def text_completion(model):
    return {"id": "cmpl-mock", "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [{"text": "Hello from mock.", "index": 0, "logprobs": None, "finish_reason": "stop"}],
            "usage": usage_openai(model)}


def response_not_found(response_id):
    """OpenAI's answer for a response id this credential does not know."""
    return {"error": {"message": f"Response with id '{response_id}' not found.",
                      "type": "invalid_request_error", "param": None, "code": None}}


def input_items(stored):
    """GET /v1/responses/{id}/input_items: the stored request's input as items (OpenAI's shape)."""
    given = stored.get("input_items") or []
    data = [dict({"id": f"msg_mockin{i:04d}", "type": "message", "status": "completed"}, **item)
            for i, item in enumerate(given)]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": False}


def count_tokens(req):
    """Anthropic's POST /v1/messages/count_tokens answer."""
    return {"input_tokens": 10 + len(json.dumps(req.get("messages", []))) // 4}


class Recorder:
    def __init__(self):
        self._lock = threading.Lock()
        self._items = []

    def add(self, item):
        with self._lock:
            self._items.append(item)

    def items(self):
        with self._lock:
            return list(self._items)

    def clear(self):
        with self._lock:
            self._items.clear()


def make_handler(name, recorder, stored):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _gzip(self):
            mode = self.headers.get("x-mock-gzip", "")
            accepted = "gzip" in self.headers.get("accept-encoding", "").lower()
            return mode == "always" or (mode == "honor" and accepted)

        def _send(self, status, payload, content_type="application/json"):
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            compress = self.command == "POST" and self._gzip()
            if compress:
                data = gzip.compress(data)
            self.send_response(status)
            self.send_header("content-type", content_type)
            if compress:
                self.send_header("content-encoding", "gzip")
            self.send_header("content-length", str(len(data)))
            self.send_header("x-mock-upstream", name)
            self._provider_limits()
            self.end_headers()
            self.wfile.write(data)

        def _provider_limits(self):
            # What real providers send about the (shared) upstream credential's own limits.
            self.send_header("x-ratelimit-limit-requests", "5000")
            self.send_header("x-ratelimit-remaining-requests", "4321")
            self.send_header("anthropic-ratelimit-requests-remaining", "4321")

        def _read_body(self):
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                out = b""
                while True:
                    size = int(self.rfile.readline().strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        return out
                    out += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("content-length") or 0))

        def do_GET(self):
            if self.path == "/__requests":
                return self._send(200, recorder.items())
            if self._stored_response():
                return None
            return self._send(404, {"error": {"message": "not found", "type": "invalid_request_error",
                                              "param": None, "code": None}})

        def do_DELETE(self):
            if self.path == "/__requests":
                recorder.clear()
                return self._send(200, {})
            if self._stored_response():
                return None
            return self._send(404, response_not_found(self.path))

        def _stored_response(self):
            """GET/DELETE /v1/responses/{id}[/input_items], answered for the credential that created
            the response only (its id is signed with it). False when the path is not one of these."""
            parts = self.path.split("?")[0].split("/")
            if parts[:3] != ["", "v1", "responses"] or len(parts) not in (4, 5):
                return False
            if len(parts) == 5 and (parts[4] != "input_items" or self.command != "GET"):
                return False
            recorder.add({"upstream": name, "method": self.command, "path": self.path,
                          "headers": {k.lower(): v for k, v in self.headers.items()}, "body": ""})
            response_id = parts[3]
            secret = self.headers.get("authorization", "").removeprefix("Bearer ").strip()
            entry = stored.get(response_id)
            if entry is None or entry["secret"] != secret or not id_valid(response_id, "resp", secret):
                self._send(404, response_not_found(response_id))
            elif len(parts) == 5:
                self._send(200, input_items(entry))
            elif self.command == "DELETE":
                stored.pop(response_id, None)
                self._send(200, {"id": response_id, "object": "response", "deleted": True})
            else:
                self._send(200, entry["response"])
            return True

        def do_POST(self):
            raw = self._read_body()
            recorder.add({"upstream": name, "method": "POST", "path": self.path,
                          "headers": {k.lower(): v for k, v in self.headers.items()},
                          "body": raw.decode("utf-8", "replace")})
            try:
                req = json.loads(raw or b"{}")
            except (ValueError, RecursionError):
                return self._send(400, {"error": {"message": "bad json", "type": "invalid_request_error",
                                                  "param": None, "code": "bad_json"}})
            model = req.get("model", "")
            path = self.path.split("?")[0]
            stream = bool(req.get("stream"))
            forced = self.headers.get("x-mock-status")
            if forced:
                return self._send(int(forced), {"error": {"message": "mock failure", "type": "server_error",
                                                          "param": None, "code": "mock"}})
            if path.endswith("/messages/count_tokens"):
                return self._send(200, count_tokens(req))
            if path.endswith("/messages"):
                if stream:
                    return self._stream(money_stream(self.headers, req, anthropic_events(model)))
                return self._send(200, money_overrides(self.headers, req, anthropic_message(model)))
            if path.endswith("/responses"):
                secret = self.headers.get("authorization", "").removeprefix("Bearer ").strip()
                problem = responses_problem(req, secret)
                if problem:
                    return self._send(400, {"error": {"message": problem, "type": "invalid_request_error",
                                                      "param": None, "code": "invalid_encrypted_content"}})
                final = signed_response(model, secret)
                if req.get("store", True) is not False:
                    given = req.get("input")
                    items = given if isinstance(given, list) else [
                        {"role": "user", "content": [{"type": "input_text", "text": str(given)}]}]
                    stored[final["id"]] = {"secret": secret, "response": final,
                                           "input_items": [i for i in items if isinstance(i, dict)]}
                if stream:
                    return self._stream(money_stream(self.headers, req, response_events(model, final)))
                return self._send(200, money_overrides(self.headers, req, final))
            if path.endswith("/embeddings"):
                return self._send(200, embeddings(model))
            if path.endswith("/chat/completions"):
                options = req.get("stream_options")
                if options is not None and not isinstance(options, dict):
                    return self._send(400, {"error": {"message": "Invalid type for 'stream_options'.",
                                                      "type": "invalid_request_error",
                                                      "param": "stream_options", "code": "invalid_type"}})
                if stream:
                    usage = bool((options or {}).get("include_usage"))
                    return self._stream(money_stream(self.headers, req, chat_chunks(model, usage)))
                return self._send(200, money_overrides(self.headers, req, chat_completion(model)))
            if path.endswith("/completions"):
                return self._send(200, money_overrides(self.headers, req, text_completion(model)))
            return self._send(404, {"error": {"message": "unknown path", "type": "invalid_request_error",
                                              "param": None, "code": None}})

        def _stream(self, events):
            delay = int(self.headers.get("x-mock-delay-ms") or 0) / 1000
            cut = self.headers.get("x-mock-cut-after")
            compressor = zlib.compressobj(wbits=31) if self._gzip() else None
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            if compressor:
                self.send_header("content-encoding", "gzip")
            self.send_header("transfer-encoding", "chunked")
            self.send_header("x-mock-upstream", name)
            self._provider_limits()
            self.end_headers()
            try:
                for i, event in enumerate(events):
                    if cut is not None and i >= int(cut):
                        # Reset mid-stream: no terminating chunk.
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    data = event.encode()
                    if compressor:
                        data = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                    if delay:
                        time.sleep(delay)
                if compressor:
                    tail = compressor.flush()
                    self.wfile.write(f"{len(tail):x}\r\n".encode() + tail + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                self.close_connection = True

    return Handler


class MockUpstream:
    """One named upstream on 127.0.0.1 (port 0 picks a free port), served from a thread; over TLS
    when `tls` (a server-side ssl.SSLContext) is given."""

    def __init__(self, name, port=0, bind="127.0.0.1", tls=None):
        self.name = name
        self.recorder = Recorder()
        # Responses created with `store` (the default), by id: what GET /v1/responses/{id} reads.
        self.stored = {}
        self.server = MockServer((bind, port), make_handler(name, self.recorder, self.stored))
        if tls is not None:
            # The handshake runs in accept(); a failed one is an OSError, which the server skips.
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def requests(self):
        return self.recorder.items()

    def clear(self):
        self.recorder.clear()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":
    # MOCK_BIND=0.0.0.0 only inside a container (docker compose); tests always use 127.0.0.1.
    import os
    bind = os.environ.get("MOCK_BIND", "127.0.0.1")
    mocks = [MockUpstream(n, int(p), bind) for n, p in (arg.split("=") for arg in sys.argv[1:])]
    for m in mocks:
        print(f"mock upstream {m.name} on 127.0.0.1:{m.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
