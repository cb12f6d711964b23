"""Clients that control the wire: HTTP/2 cleartext (h2c, prior knowledge) frame by frame with the
`h2` library, and HTTP/1.1 written byte by byte, so a test can end a request with trailers,
split it, or send what no well-behaved client library would."""

import json
import socket
import time

import h2.config
import h2.connection
import h2.events


class H2Response:
    def __init__(self, status, headers, body, trailers):
        self.status = status
        self.headers = headers
        self.body = body
        self.trailers = trailers

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"H2Response({self.status}, {self.body[:300]!r})"


def h2_request(port, headers, data_frames=(), trailers=None, timeout=10):
    """One request on a fresh h2c connection: HEADERS (END_STREAM only when nothing follows),
    each of `data_frames` as a DATA frame, then `trailers` as a final HEADERS frame with
    END_STREAM (or END_STREAM on the last DATA frame when there are no trailers)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        stream = conn.get_next_available_stream_id()
        frames = list(data_frames)
        conn.send_headers(stream, headers, end_stream=not frames and not trailers)
        for i, frame in enumerate(frames):
            last = i == len(frames) - 1
            conn.send_data(stream, frame, end_stream=last and not trailers)
        if trailers:
            conn.send_headers(stream, trailers, end_stream=True)
        sock.sendall(conn.data_to_send())
        return _read_h2_response(sock, conn, stream, timeout)
    finally:
        sock.close()


def _read_h2_response(sock, conn, stream, timeout):
    status, headers, body, trailers = None, {}, b"", {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = sock.recv(65536)
        if not data:
            break
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                for name, value in event.headers:
                    name, value = _text(name), _text(value)
                    if name == ":status":
                        status = int(value)
                    else:
                        headers[name] = value
            elif isinstance(event, h2.events.TrailersReceived) and event.stream_id == stream:
                trailers = {_text(n): _text(v) for n, v in event.headers}
            elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                body += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, stream)
            elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)) and event.stream_id == stream:
                return H2Response(status, headers, body, trailers)
        sock.sendall(conn.data_to_send())
    raise TimeoutError(f"no complete h2 response on stream {stream} (status {status})")


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def h1_raw(port, raw, timeout=10):
    """Sends `raw` bytes on a fresh HTTP/1.1 connection and returns (status, headers, body) of
    the first response (content-length or chunked)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.sendall(raw)
        reader = sock.makefile("rb")
        status_line = reader.readline().decode()
        status = int(status_line.split()[1])
        headers = {}
        while True:
            line = reader.readline().decode().rstrip("\r\n")
            if not line:
                break
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(reader.readline().strip(), 16)
                if size == 0:
                    reader.readline()
                    break
                body += reader.read(size)
                reader.readline()
        else:
            body = reader.read(int(headers.get("content-length", 0)))
        return status, headers, body
    finally:
        sock.close()


def chunked_with_trailers(path, headers, body, trailers):
    """An HTTP/1.1 request with a chunked body that ends in trailers."""
    lines = [f"POST {path} HTTP/1.1", "host: tollgate.test", "transfer-encoding: chunked",
             f"trailer: {', '.join(trailers)}", "connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    tail = "".join(f"{k}: {v}\r\n" for k, v in trailers.items()).encode()
    return head + f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n" + tail + b"\r\n"


def h2_post(port, headers, body, frame=10_000, trailers=None, timeout=10):
    """One h2c request whose body may exceed the initial 64 KiB flow-control window: DATA frames
    of `frame` bytes are sent as Envoy's WINDOW_UPDATEs allow, then optional trailers."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, headers, end_stream=False)
        sock.sendall(conn.data_to_send())
        sent, result = 0, {"status": None, "headers": {}, "body": b"", "done": False}
        deadline = time.monotonic() + timeout
        while not result["done"] and time.monotonic() < deadline:
            while sent < len(body) and min(conn.local_flow_control_window(stream), conn.max_outbound_frame_size) > 0:
                size = min(frame, len(body) - sent, conn.local_flow_control_window(stream), conn.max_outbound_frame_size)
                last = sent + size == len(body)
                conn.send_data(stream, body[sent:sent + size], end_stream=last and not trailers)
                sent += size
                if last and trailers:
                    conn.send_headers(stream, trailers, end_stream=True)
                sock.sendall(conn.data_to_send())
                time.sleep(0.002)  # separate writes, so Envoy sees several DATA events
            data = sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                _take_event(conn, stream, event, result)
            sock.sendall(conn.data_to_send())
        if not result["done"]:
            raise TimeoutError(f"no complete h2 response (status {result['status']}, sent {sent})")
        return H2Response(result["status"], result["headers"], result["body"], {})
    finally:
        sock.close()


def _take_event(conn, stream, event, result):
    if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
        for name, value in event.headers:
            name, value = name.decode(), value.decode()
            if name == ":status":
                result["status"] = int(value)
            else:
                result["headers"][name] = value
    elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
        result["body"] += event.data
        conn.acknowledge_received_data(event.flow_controlled_length, stream)
    elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)) and event.stream_id == stream:
        result["done"] = True


def open_stream(port, key, delay_ms=400, model="gpt-4o"):
    """Starts a slow streamed chat completion over HTTP/1.1 (the mock waits `delay_ms` between
    events) and returns the socket once its response headers arrived."""
    body = json.dumps({"model": model, "stream": True,
                       "messages": [{"role": "user", "content": "Hello"}]}).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
              + f"authorization: Bearer {key}\r\nx-mock-delay-ms: {delay_ms}\r\n".encode()
              + f"content-length: {len(body)}\r\n\r\n".encode() + body)
    head = s.recv(65536)
    assert head.startswith(b"HTTP/1.1 200"), head
    return s


def read_to_end(s, timeout=30):
    """Reads a chunked answer on `s` to its last chunk (or the connection's end), then closes it."""
    s.settimeout(timeout)
    data = b""
    while b"0\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data
