"""Runs real Envoy with the native Tollgate module (target/release/libtollgate.so, built with
`cargo build --release --lib --features native`) on 127.0.0.1, for tests/e2e/test_native_abi.py.

Renders envoy/native.template.yaml with the filter inline or delivered by ECDS from a watched
file, starts Envoy by PID in its own session, and stops it by PID. Every wait is bounded.
"""

import json
import os
import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import h2.config
import h2.connection
import h2.events

from raw_clients import H2Response
from stack import ENVOY, ROOT, free_port, render_clusters, stop_process

MODULE_DIR = Path(os.environ.get("TOLLGATE_NATIVE_DIR") or ROOT / "target" / "release")
TEMPLATE = ROOT / "envoy" / "native.template.yaml"
FILTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter"
INDENT = " " * 12


def module_filter(settings):
    """The DynamicModuleFilter typed_config; `settings` (a dict, or raw text) is the StringValue."""
    value = settings if isinstance(settings, str) else json.dumps(settings)
    return {
        "@type": FILTER_TYPE,
        "dynamic_module_config": {"name": "tollgate", "do_not_close": True},
        "filter_name": "tollgate",
        "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": value},
    }


class NativeEnvoy:
    """One Envoy process with the native module, inline (`ecds=False`) or by ECDS."""

    def __init__(self, workdir, clusters, settings, ecds=False, concurrency=2):
        self.workdir = Path(workdir)
        self.listen_port, self.admin_port = free_port(), free_port()
        self.ecds_path = self.workdir / "ecds" / "tollgate.json"
        self.ecds_path.parent.mkdir(parents=True, exist_ok=True)
        self.swaps = 0
        if ecds:
            self._write_ecds(settings, "initial")
            discovery = {"config_source": {"resource_api_version": "V3",
                                           "path_config_source": {"path": str(self.ecds_path)}},
                         "type_urls": [FILTER_TYPE]}
            filter_text = f"{INDENT}config_discovery: {json.dumps(discovery)}"
        else:
            filter_text = f"{INDENT}typed_config: {json.dumps(module_filter(settings))}"
        text = TEMPLATE.read_text()
        for key, value in {"{{LISTEN_PORT}}": str(self.listen_port), "{{ADMIN_PORT}}": str(self.admin_port),
                           "{{FILTER}}": filter_text, "{{CLUSTERS}}": render_clusters(clusters)}.items():
            text = text.replace(key, value)
        bootstrap = self.workdir / "envoy.yaml"
        bootstrap.write_text(text)
        self.log_path = self.workdir / "envoy.log"
        self.log = open(self.log_path, "wb")
        env = dict(os.environ, ENVOY_DYNAMIC_MODULES_SEARCH_PATH=str(MODULE_DIR))
        self.process = subprocess.Popen(
            [str(ENVOY), "-c", str(bootstrap), "--concurrency", str(concurrency), "--use-dynamic-base-id",
             "--disable-hot-restart", "--log-level", "info", "--component-log-level", "dynamic_modules:debug"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        self._wait_ready()

    def _write_ecds(self, settings, version_info):
        self.swaps += 1
        resource = {"version_info": version_info, "resources": [{
            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": "tollgate", "typed_config": module_filter(settings)}]}
        tmp = self.ecds_path.parent / f".tollgate-{self.swaps}.tmp"
        tmp.write_text(json.dumps(resource))
        os.rename(tmp, self.ecds_path)

    def _wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"envoy exited early:\n{self.log_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1) as r:
                    if r.status == 200:
                        with socket.create_connection(("127.0.0.1", self.listen_port), timeout=1):
                            return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"envoy not ready after {timeout}s:\n{self.log_text()[-4000:]}")

    def log_text(self):
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern, timeout=10):
        """The first match of regex `pattern` in Envoy's log, waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log_text())
            if match:
                return match
            time.sleep(0.05)
        raise AssertionError(f"log line {pattern!r} not seen in {timeout}s:\n{self.log_text()[-3000:]}")

    def stats(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/stats", timeout=5) as r:
            return dict(line.partition(": ")[::2] for line in r.read().decode().splitlines())

    def counter(self, name):
        value = self.stats().get(name, "0")
        return int(value) if value.isdigit() else 0

    def push(self, settings, version_info, timeout=15):
        """Delivers new filter settings by ECDS; returns True (accepted) or False (rejected)."""
        prefix = "extension_config_discovery.http_filter.tollgate."
        success, rejected = self.counter(prefix + "update_success"), self.counter(prefix + "update_rejected")
        self._write_ecds(settings, version_info)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.counter(prefix + "update_success") > success:
                return True
            if self.counter(prefix + "update_rejected") > rejected:
                return False
            time.sleep(0.05)
        raise AssertionError(f"{version_info} neither accepted nor rejected in {timeout}s")

    def stop(self):
        stop_process(self.process)
        self.log.close()


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
