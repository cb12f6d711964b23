"""Runs real Envoy with the built Tollgate filter on 127.0.0.1, for tests, ./scripts/run and bench.

TOLLGATE_FORM picks the form: `wasm` (default; the proxy-wasm filter in V8) or `native` (the
Envoy dynamic module target/native/libtollgate.so). The same tests run against both.

Renders envoy/envoy.template.yaml, writes the ECDS resource that carries the filter and the policy,
starts Envoy as a child process and stops it by PID. Policy swaps write a new ECDS file beside the
watched one and rename it into place (Envoy only reloads on a rename). Every wait is bounded.
"""

import hashlib
import http.client
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENVOY = ROOT / ".venv" / "bin" / "envoy"
# TOLLGATE_WASM runs the suite against another build (e.g. the previous release, to see a new test fail).
WASM = Path(os.environ.get("TOLLGATE_WASM") or ROOT / "target" / "wasm32-wasip1" / "release" / "tollgate.wasm")
# TOLLGATE_NATIVE likewise names another build of the native module (its file must be libtollgate.so).
NATIVE = Path(os.environ.get("TOLLGATE_NATIVE") or ROOT / "target" / "native" / "libtollgate.so")
FORM = os.environ.get("TOLLGATE_FORM", "wasm")
if FORM not in ("wasm", "native"):
    raise SystemExit(f"TOLLGATE_FORM must be wasm or native, not {FORM!r}")
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
NATIVE_TYPE = "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter"
TOLLGATE_CLI = ROOT / "target" / "debug" / "tollgate"
# The labelled counters (prefix, label name), read from the core's catalog so the two never differ:
# the Wasm filter's stat is <prefix><label value>; the native module's is <prefix>by_<label name>
# with the value as an Envoy tag (flat name <prefix>by_<label>.<label>.<value>).
LABELLED_COUNTERS = re.findall(r'\("(tollgate_[a-z_]+_)", "([a-z]+)"\)',
                               (ROOT / "src" / "core" / "exchange" / "telemetry.rs").read_text())


def stat_name(name, form=None):
    """A test's stat name (written as the Wasm filter's, `wasmcustom.<name>`) in this form's naming."""
    if (form or FORM) == "wasm" or not name.startswith("wasmcustom."):
        return name
    bare = name[len("wasmcustom."):]
    for prefix, label in LABELLED_COUNTERS:
        if bare.startswith(prefix):
            return f"dynamicmodulescustom.{prefix}by_{label}.{label}.{bare[len(prefix):]}"
    if bare.startswith("tollgate_config_active_"):
        return f"dynamicmodulescustom.tollgate_config_active.version.{bare[len('tollgate_config_active_'):]}"
    return "dynamicmodulescustom." + bare
TEMPLATE = ROOT / "envoy" / "envoy.template.yaml"


def stop_process(process):
    """Stops a child started in its own session: SIGTERM to its group by PID, SIGKILL after 10 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def key_hash(key):
    return hashlib.sha256(key.encode()).hexdigest()


# Debian's (and Ubuntu's) bundle of the system's trusted CAs (package ca-certificates).
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


class TlsUpstream:
    """An upstream reached over TLS with its certificate checked: `host` is sent as SNI, must be a
    DNS name in the certificate's subject alt names (a wildcard SAN covers it, as in a browser),
    and is the Host the route writes (auto_host_rewrite); the chain must lead to a CA in the PEM
    bundle `ca`. `address` is where to connect (default: `host`, resolved by DNS; the tests point
    it at a TLS mock on 127.0.0.1). The upstream speaks HTTP/1.1 (ALPN http/1.1), as the mocks do."""

    def __init__(self, host, port=443, ca=SYSTEM_CA_BUNDLE, address=None):
        self.host, self.port, self.ca, self.address = host, port, str(ca), address or host


def render_clusters(clusters):
    """Clusters from {name: port} (127.0.0.1), {name: [port or (host, port), …]} (several
    instances, health-checked), {name: (host, port)} (resolved by DNS) or {name: TlsUpstream}."""
    lines = []
    for name, target in sorted(clusters.items()):
        if isinstance(target, TlsUpstream):
            lines += render_tls_cluster(name, target)
            continue
        if isinstance(target, list):
            lines += render_fleet_cluster(name, target)
            continue
        host, port = target if isinstance(target, tuple) else ("127.0.0.1", target)
        lines += [
            f"  - name: {name}",
            f"    type: {'STATIC' if host == '127.0.0.1' else 'STRICT_DNS'}",
            "    connect_timeout: 1s",
            "    load_assignment:",
            f"      cluster_name: {name}",
            "      endpoints:",
            "      - lb_endpoints:",
            "        - endpoint:",
            f"            address: {{ socket_address: {{ address: {host}, port_value: {port} }} }}",
        ]
    return "\n".join(lines)


def render_fleet_cluster(name, targets):
    """A cluster of several instances (ports on 127.0.0.1, or (host, port) resolved by DNS), e.g.
    accounting servers sharing one PostgreSQL, actively health-checked on `/ready` so that a
    stopped instance leaves the rotation within about a second."""
    endpoints = [target if isinstance(target, tuple) else ("127.0.0.1", target) for target in targets]
    static = all(host == "127.0.0.1" for host, _ in endpoints)
    return [
        f"  - name: {name}",
        f"    type: {'STATIC' if static else 'STRICT_DNS'}",
        "    connect_timeout: 1s",
        "    health_checks:",
        "    - timeout: 1s",
        "      interval: 0.5s",
        "      unhealthy_threshold: 1",
        "      healthy_threshold: 1",
        "      http_health_check: { path: /ready }",
        "    load_assignment:",
        f"      cluster_name: {name}",
        "      endpoints:",
        "      - lb_endpoints:",
        *(f"        - endpoint: {{ address: {{ socket_address: {{ address: {host}, port_value: {port} }} }} }}"
          for host, port in endpoints),
    ]


def render_tls_cluster(name, target):
    # LOGICAL_DNS (one connection target, re-resolved as DNS changes) is Envoy's advice for large
    # web services behind DNS, as the providers' APIs are; IPv4 first, since many hosts resolve
    # AAAA records they cannot reach.
    try:
        ipaddress.ip_address(target.address)
        static = True
    except ValueError:
        static = False
    host, ca = json.dumps(target.host), json.dumps(target.ca)
    return [
        f"  - name: {name}",
        f"    type: {'STATIC' if static else 'LOGICAL_DNS'}",
        *([] if static else ["    dns_lookup_family: V4_PREFERRED"]),
        "    connect_timeout: 5s",
        "    load_assignment:",
        f"      cluster_name: {name}",
        "      endpoints:",
        "      - lb_endpoints:",
        "        - endpoint:",
        f"            address: {{ socket_address: {{ address: {target.address}, port_value: {target.port} }} }}",
        f"            hostname: {host}",
        "    transport_socket:",
        "      name: envoy.transport_sockets.tls",
        "      typed_config:",
        '        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
        f"        sni: {host}",
        "        common_tls_context:",
        "          alpn_protocols: [http/1.1]",
        "          validation_context:",
        f"            trusted_ca: {{ filename: {ca} }}",
        "            match_typed_subject_alt_names:",
        f"            - {{ san_type: DNS, matcher: {{ exact: {host} }} }}",
    ]


# The access log of the `llm` listener (envoy/access-log.yaml): Tollgate leaves a one-line
# summary of each request in filter state (wasm.tollgate), printed next to Envoy's own fields.
ACCESS_LOG = ROOT / "envoy" / "access-log.yaml"


def render_bootstrap(listen_port, admin_port, ecds_path, clusters, access_log_path=None, address="127.0.0.1",
                     static_filter=None, route_timeout=None, form=None, after_tollgate=None):
    """The bootstrap; `static_filter` (a Wasm typed_config) inlines the filter instead of ECDS;
    `route_timeout` (e.g. "1s") replaces the template's upstream route timeout; `after_tollgate`
    `(filter, route_rate_limits, route_filter_config)` adds an HTTP filter after Tollgate with the
    upstream route's `rate_limits` and `typed_per_filter_config` (JSON-ready values)."""
    text = TEMPLATE.read_text()
    if after_tollgate is not None:
        http_filter, rate_limits, per_route = after_tollgate
        route = "route: { cluster_header: x-tollgate-cluster, timeout: 300s, auto_host_rewrite: true }"
        text = text.replace(route, route[:-2] + f", rate_limits: {json.dumps(rate_limits)} }}\n"
                            f"                typed_per_filter_config: {json.dumps(per_route)}")
        router = "          - name: envoy.filters.http.router\n"
        text = text.replace(router, f"          - {json.dumps(http_filter)}\n" + router)
    if route_timeout is not None:
        text = text.replace("cluster_header: x-tollgate-cluster, timeout: 300s",
                            f"cluster_header: x-tollgate-cluster, timeout: {route_timeout}")
    if static_filter is not None:
        start = text.index("            # The ECDS form (default).")
        end = text.index("            # static form end\n") + len("            # static form end\n")
        text = text[:start] + f"            typed_config: {json.dumps(static_filter)}\n" + text[end:]
    for key, value in {
        "{{LISTEN_PORT}}": str(listen_port),
        "{{ADMIN_PORT}}": str(admin_port),
        "{{ECDS_PATH}}": str(ecds_path),
        "{{CLUSTERS}}": render_clusters(clusters),
        "{{ACCESS_LOG}}": (ACCESS_LOG.read_text().replace("{{ACCESS_LOG_PATH}}", str(access_log_path))
                           if access_log_path else ""),
        "{{ADDRESS}}": address,
        "{{FILTER_TYPE_URL}}": NATIVE_TYPE if (form or FORM) == "native" else WASM_TYPE,
    }.items():
        text = text.replace(key, value)
    return text


def content_addressed_wasm(workdir):
    """Copies the wasm to a name derived from its hash: Envoy never reloads a changed file behind the same name."""
    data = WASM.read_bytes()
    target = Path(workdir) / f"tollgate-{hashlib.sha256(data).hexdigest()[:16]}.wasm"
    if not target.exists():
        target.write_bytes(data)
    return target


class AsIstioPluginConfig:
    """Deliver a policy the way istiod delivers a WasmPlugin's pluginConfig: the Struct is turned
    into JSON (protomarshal.ToJSON) inside a StringValue, so every number is a double. Here whole
    numbers are written with a fraction (65536.0) and large or tiny ones in exponent form
    (4.194304e+06, 2.5e-07), the shapes a double-only encoder produces."""

    def __init__(self, policy):
        self.policy = policy

    def to_json(self):
        return _double_json(self.policy)


def _double_json(value):
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_double_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_double_json(v) for v in value) + "]"
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return json.dumps(value)
    number = float(value)
    if number != 0 and (abs(number) >= 1e6 or abs(number) < 1e-4):
        mantissa, exponent = f"{number:e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"
    return repr(number)


def plugin_configuration(policy):
    if isinstance(policy, AsIstioPluginConfig):
        value = policy.to_json()
    else:
        value = policy if isinstance(policy, str) else json.dumps(policy)
    return {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": value}


def native_filter(policy):
    """The dynamic-module filter config: the module by name (found in
    ENVOY_DYNAMIC_MODULES_SEARCH_PATH), the policy document as its filter_config. The module reads
    credentials from Envoy's own environment."""
    return {
        "@type": NATIVE_TYPE,
        "dynamic_module_config": {"name": "tollgate", "do_not_close": True},
        "filter_name": "tollgate",
        "filter_config": plugin_configuration(policy),
    }


def ecds_resource(policy, wasm_path, env, version_info, host_env_keys=None, form=None):
    if (form or FORM) == "native":
        return {
            "version_info": version_info,
            "resources": [{
                "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
                "name": "tollgate",
                "typed_config": native_filter(policy),
            }],
        }
    return {
        "version_info": version_info,
        "resources": [{
            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": "tollgate",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": "tollgate",
                    "root_id": "tollgate",
                    "allow_on_headers_stop_iteration": True,
                    "failure_policy": "FAIL_RELOAD",
                    "vm_config": {
                        "vm_id": "tollgate",
                        "runtime": "envoy.wasm.runtime.v8",
                        "code": {"local": {"filename": str(wasm_path)}},
                        "environment_variables": ({"host_env_keys": host_env_keys} if host_env_keys
                                                  else {"key_values": env}),
                    },
                    "configuration": plugin_configuration(policy),
                },
            },
        }],
    }


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"Response({self.status}, {self.body[:300]!r})"


def request(port, method, path, headers=None, body=None, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = body if isinstance(body, (bytes, type(None))) else (
            body.encode() if isinstance(body, str) else json.dumps(body).encode())
        conn.request(method, path, body=data, headers=headers or {})
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


class EnvoyStack:
    """One Envoy process with Tollgate loaded by ECDS from a file in `workdir`.

    `host_env`: the Wasm VM reads `env` from Envoy's own environment (`host_env_keys`) instead of
    values written into the ECDS file, so no credential lands on disk (the native module always
    reads Envoy's environment). `start=False` only writes the config (envoy.yaml, the ECDS file,
    the content-addressed wasm) into `workdir`, e.g. for `envoy --mode validate`."""

    def __init__(self, workdir, clusters, policy, env, concurrency=1, listen_port=None, admin_port=None,
                 wasm_log_level="debug", access_log=True, static=False, route_timeout=None, form=None,
                 native_module=None, host_env=False, start=True, after_tollgate=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.host_env_keys = sorted(env) if host_env else None
        self.form = form or FORM
        self.listen_port = listen_port or free_port()
        self.admin_port = admin_port or free_port()
        self.ecds_dir = self.workdir / "ecds"
        self.ecds_dir.mkdir(exist_ok=True)
        self.ecds_path = self.ecds_dir / "tollgate.json"
        # The native form needs no Wasm build (`TOLLGATE_FORM=native ./scripts/run` makes only the .so).
        self.wasm_path = content_addressed_wasm(self.workdir) if self.form == "wasm" else None
        self.swaps = 0
        self._write_ecds(policy, "initial")
        bootstrap = self.workdir / "envoy.yaml"
        self.access_log_path = self.workdir / "access.log" if access_log else None
        static_filter = (ecds_resource(policy, self.wasm_path, self.env, "static", self.host_env_keys,
                                       form=self.form)["resources"][0]["typed_config"]
                         if static else None)
        bootstrap.write_text(render_bootstrap(self.listen_port, self.admin_port, self.ecds_path, clusters,
                                              self.access_log_path, static_filter=static_filter,
                                              route_timeout=route_timeout, form=self.form,
                                              after_tollgate=after_tollgate))
        self.bootstrap_path = bootstrap
        self.log_path = self.workdir / "envoy.log"
        self.process = None
        if not start:
            return
        self.log = open(self.log_path, "wb")
        process_env = dict(os.environ, **env) if host_env else None
        if self.form == "native":
            # The module reads credentials from Envoy's environment (the Wasm VM gets them from
            # vm_config.environment_variables instead).
            # `native_module` names another build (its file must be libtollgate.so).
            module_dir = Path(native_module or NATIVE).parent
            process_env = dict(os.environ, ENVOY_DYNAMIC_MODULES_SEARCH_PATH=str(module_dir), **env)
        component = "wasm" if self.form == "wasm" else "dynamic_modules"
        self.process = subprocess.Popen(
            [str(ENVOY), "-c", str(bootstrap), "--concurrency", str(concurrency),
             "--use-dynamic-base-id", "--disable-hot-restart", "--log-level", "info",
             "--component-log-level", f"{component}:{wasm_log_level}"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, env=process_env)
        self._wait_ready()

    def _write_ecds(self, policy, version_info):
        self.swaps += 1
        tmp = self.ecds_dir / f".tollgate-{self.swaps}.tmp"
        tmp.write_text(json.dumps(ecds_resource(policy, self.wasm_path, self.env, version_info, self.host_env_keys,
                                                form=self.form)))
        os.rename(tmp, self.ecds_path)

    def _wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"envoy exited early:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1) as r:
                    if r.status == 200:
                        with socket.create_connection(("127.0.0.1", self.listen_port), timeout=1):
                            return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"envoy not ready after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines=60):
        self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stats(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/stats", timeout=5) as r:
            out = {}
            for line in r.read().decode().splitlines():
                name, _, value = line.partition(": ")
                out[name] = value
            return out

    def counter(self, name):
        value = self.stats().get(stat_name(name, self.form), "0")
        return int(value) if value.isdigit() else 0

    def push_policy(self, policy, version_info, expect_accepted=True, timeout=15):
        """Delivers a new policy to the running Envoy; waits until it is accepted or rejected."""
        prefix = "extension_config_discovery.http_filter.tollgate."
        success, rejected = self.counter(prefix + "update_success"), self.counter(prefix + "update_rejected")
        self._write_ecds(policy, version_info)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now_success = self.counter(prefix + "update_success")
            now_rejected = self.counter(prefix + "update_rejected")
            if now_success > success or now_rejected > rejected:
                accepted = now_success > success
                if accepted != expect_accepted:
                    raise AssertionError(f"policy {version_info}: accepted={accepted}\n{self.log_tail()}")
                return accepted
            time.sleep(0.05)
        raise AssertionError(f"policy {version_info} neither accepted nor rejected in {timeout}s\n{self.log_tail()}")

    def request(self, method, path, headers=None, body=None, timeout=10):
        return request(self.listen_port, method, path, headers, body, timeout)

    def stop(self):
        if self.process:
            stop_process(self.process)
            self.log.close()


# The bearer tokens of the e2e accounting servers: the filter presents the writer token, read
# from the VM environment variable ACCOUNTING_TOKEN_ENV (accounting.token_env).
ACCOUNTING_TOKEN_ENV = "TOLLGATE_ACCOUNTING_TOKEN"
ACCOUNTING_WRITER_TOKEN = "e2e-accounting-writer-token"
ACCOUNTING_READER_TOKEN = "e2e-accounting-reader-token"


class AccountingServer:
    """The reference accounting server (`tollgate accounting`) on 127.0.0.1, stopped by PID.
    It takes the writer token ACCOUNTING_WRITER_TOKEN (or `writer_token`) and the reader token
    ACCOUNTING_READER_TOKEN from files in `workdir`."""

    def __init__(self, workdir, port=None, binary=TOLLGATE_CLI, writer_token=ACCOUNTING_WRITER_TOKEN,
                 reader_token=ACCOUNTING_READER_TOKEN, extra_args=(), db=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.binary = binary
        # The store: `db` (a SQLite path or a postgres:// URL); else, with
        # TOLLGATE_ACCOUNTING_STORE=postgres, a fresh database on the shared PostgreSQL test
        # server; else a SQLite file in the workdir.
        if db is None and os.environ.get("TOLLGATE_ACCOUNTING_STORE") == "postgres":
            from postgres_server import shared_server
            db = shared_server(ROOT).create_database(self.workdir.name.replace("-", "_").lower())
        self.db = db or self.workdir / "spend.db"
        self.is_postgres = str(self.db).startswith("postgres")
        self.port = port or free_port()
        self.writer_token, self.reader_token = writer_token, reader_token
        (self.workdir / "writer-token").write_text(writer_token + "\n")
        (self.workdir / "reader-token").write_text(reader_token + "\n")
        self.extra_args = list(extra_args)
        self.process = None
        self.start()

    def reader_headers(self):
        return {"authorization": f"Bearer {self.reader_token}"}

    def start(self, timeout=15):
        # A server left on the port (e.g. by a crashed run) would answer /health for us, with
        # other tokens: refuse to start rather than report someone else's server as ours.
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            raise RuntimeError(f"127.0.0.1:{self.port} is already in use (an accounting server left running?)")
        except OSError:
            pass
        self.log = open(self.workdir / "accounting.log", "ab")
        self.process = subprocess.Popen(
            [str(self.binary), "accounting", "--listen", f"127.0.0.1:{self.port}", "--db", str(self.db),
             "--writer-token-file", str(self.workdir / "writer-token"),
             "--reader-token-file", str(self.workdir / "reader-token"), *self.extra_args],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("accounting server exited early: "
                                   + (self.workdir / "accounting.log").read_text(errors="replace")[-2000:])
            try:
                if request(self.port, "GET", "/health", timeout=1).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("accounting server not ready")

    def report(self, timeout=10):
        return request(self.port, "GET", "/v1/spend/report", self.reader_headers(), timeout=timeout).json()

    def budgets(self, since=0):
        return request(self.port, "GET", f"/v1/spend/budgets?since={since}", self.reader_headers()).json()["budgets"]

    def _rows(self, sql):
        if self.is_postgres:
            import psycopg
            with psycopg.connect(str(self.db), connect_timeout=10) as db:
                return db.execute(sql.replace("rowid", "received_at, id")).fetchall()
        import sqlite3
        with sqlite3.connect(self.db) as db:
            return db.execute(sql).fetchall()

    def event_ids(self):
        return [row[0] for row in self._rows("SELECT id FROM events ORDER BY rowid")]

    def events(self):
        return [json.loads(row[0]) for row in self._rows("SELECT json FROM events ORDER BY rowid")]

    def kill(self):
        """Ends the server at once (SIGKILL), as a crash would: nothing is finished or flushed."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.log.close()

    def stop(self):
        if self.process:
            stop_process(self.process)
            self.log.close()


def wait_until(predicate, timeout=10, interval=0.05, message="condition"):
    """Polls `predicate` until it returns a truthy value; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{message} not reached in {timeout}s")


def avoid_minute_edge(margin=45):
    """Waits for the next minute when fewer than 60 - margin seconds are left in this one, so what
    a test does inside one fixed rate-limit window stays inside it."""
    if time.time() % 60 > margin:
        time.sleep(60.5 - time.time() % 60)


def clean_dir(path):
    shutil.rmtree(path, ignore_errors=True)
    Path(path).mkdir(parents=True)
    return Path(path)
