"""A hostile (or merely broken) accounting peer for the e2e tests, on 127.0.0.1: it speaks the
protocol of docs/accounting-api.md when `mode` is "honest", and otherwise answers batches in the
ways a broken or forged peer might: 200 with garbage or `{}`, another batch's id, a partial
acceptance, or a refusal (413) of any batch holding a poisoned event. It records every batch."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from stack import free_port


class HostileAccounting:
    def __init__(self, mode="honest", poison=None):
        self.mode = mode
        self.poison = poison  # end_user value whose events make a batch "unacceptable" (413)
        self.lock = threading.Lock()
        self.batches = []  # (batch id header, [event ids]) as received
        self.stored = {}  # id -> event, for events this peer acknowledged as stored
        self.headers_seen = []
        self.rejected_in = {}  # id -> index of the batch whose answer rejected it
        self.port = free_port()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self.reply(200, {"cursor": 0, "budgets": []})

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                status, answer = peer.answer(dict(self.headers), body)
                self.reply(status, answer)

            def reply(self, status, answer):
                data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, headers, body):
        events = json.loads(body)
        ids = [e["id"] for e in events]
        batch_id = {k.lower(): v for k, v in headers.items()}.get("x-tollgate-batch-id", "")
        with self.lock:
            self.batches.append((batch_id, ids))
            self.headers_seen.append(headers)
            mode = self.mode
        if mode == "garbage":
            return 200, b"garbage"
        if mode == "empty":
            return 200, {}
        if mode == "other-batch":
            return 200, {"batch_id": batch_id + "-not", "acknowledged": ids, "budgets": []}
        if self.poison is not None and any(e["data"]["end_user"] == self.poison for e in events):
            return 413, {"error": {"message": "this batch cannot be stored", "type": "invalid_request_error",
                                   "param": None, "code": None}}
        acknowledged, rejected = ids, []
        if mode == "partial":
            # Store the first half, reject one event explicitly, name the rest nowhere.
            half = len(events) // 2
            acknowledged = ids[:half]
            rejected = [{"id": ids[half], "reason": "refused by the hostile peer"}] if half < len(ids) else []
        with self.lock:
            for event in events:
                if event["id"] in acknowledged:
                    self.stored.setdefault(event["id"], event)
            for r in rejected:
                self.rejected_in[r["id"]] = len(self.batches) - 1
        return 200, {"batch_id": batch_id, "acknowledged": acknowledged, "accepted": len(acknowledged),
                     "duplicates": 0, "rejected": rejected, "budgets": []}

    def set_mode(self, mode):
        with self.lock:
            self.mode = mode

    def sent_ids(self):
        with self.lock:
            return [i for _, ids in self.batches for i in ids]

    def stored_ids(self):
        with self.lock:
            return set(self.stored)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
