"""./scripts/bench: the same requests through Envoy without Tollgate and with it, side by side.

Both forms run in the same rounds: the Wasm filter (in V8) and the native dynamic module
(libtollgate.so), each in its own Envoy with 1 worker and the same policy; TOLLGATE_FORM=wasm or
=native benchmarks only that one. One Envoy (1 worker) has a `tollgate` listener running the filter on the full path (auth, alias,
access, key + team budget reservation in shared data, body rewrite, response metering, pricing,
settlement, spend events batched to the reference accounting server) with the full LiteLLM cost
map, 10,000 keys and 1,000 teams, and `plain` listeners routing straight to the same upstreams.
Two request shapes: a JSON chat completion, and a streamed one (SSE) whose client did not ask for
usage (so the filter switches usage on upstream and strips it from the client's stream). The
upstream is a second Envoy answering with fixed bodies, so it is cheap. wrk (1 thread, fixed
connections) alternates between the paths for several rounds; medians are printed with ratios.
"""

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from policies import REAL_COST_MAP  # noqa: E402
from stack import (ACCOUNTING_TOKEN_ENV, ENVOY, AccountingServer, EnvoyStack, clean_dir, free_port,  # noqa: E402
                   key_hash)

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
FORMS = [f for f in ("wasm", "native") if os.environ.get("TOLLGATE_FORM", f) == f]
MEMORY_WORKERS = [int(n) for n in os.environ.get("BENCH_MEMORY_WORKERS", "1,2,4").split(",")]
SECONDS = int(os.environ.get("BENCH_SECONDS", "8"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
LATENCY_SECONDS = int(os.environ.get("BENCH_LATENCY_SECONDS", "5"))
KEYS = int(os.environ.get("BENCH_KEYS", "10000"))
# Knobs for A/B runs of the money path (both on by default: the full path).
BUDGETS = os.environ.get("BENCH_BUDGETS", "1") == "1"
LIMITED_KEY = "sk-bench-limited"
ACCOUNTING = os.environ.get("BENCH_ACCOUNTING", "1") == "1"

COMPLETION = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 200, "completion_tokens": 2, "total_tokens": 202},
})

_CHUNK = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": "gpt-4o"}
STREAM = "".join(f"data: {json.dumps(dict(_CHUNK, **extra))}\n\n" for extra in [
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}], "usage": None},
    *({"choices": [{"index": 0, "delta": {"content": f" word{i}"}}], "usage": None} for i in range(20)),
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None},
    {"choices": [], "usage": {"prompt_tokens": 200, "completion_tokens": 21, "total_tokens": 221}},
]) + "data: [DONE]\n\n"

BUFFER_FILTER = """          - name: envoy.filters.http.buffer
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer, max_request_bytes: 1048576 }
"""


FLOOR_WASM = ROOT / "bench" / "floor" / "target" / "wasm32-wasip1" / "release" / "tollgate_bench_floor.wasm"


def floor_filter(edits):
    """The do-nothing Wasm filter of bench/floor, with Tollgate's callback pattern; with `edits`
    it also makes Tollgate's host calls (header and body edits, route-cache clear, shared-data
    CAS, filter state) with fixed values."""
    config = {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
              "config": {"name": "floor", "root_id": "floor", "allow_on_headers_stop_iteration": True,
                         "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                           "value": "edits" if edits else ""},
                         "vm_config": {"vm_id": "floor", "runtime": "envoy.wasm.runtime.v8",
                                       "code": {"local": {"filename": str(FLOOR_WASM)}}}}}
    return f"""          - name: envoy.filters.http.wasm
            typed_config: {json.dumps(config)}
"""


NATIVE_FLOOR_DIR = ROOT / "bench" / "native-floor" / "target" / "release"


def native_floor_filter():
    """The do-nothing dynamic module of bench/native-floor: holds the headers, buffers the body,
    lets both go at the body's end; no Envoy callback at all."""
    config = {"@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
              "dynamic_module_config": {"name": "tollgate_bench_native_floor", "do_not_close": True},
              "filter_name": "floor",
              "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": ""}}
    return f"""          - name: floor
            typed_config: {json.dumps(config)}
"""


def http_listener(name, port, route, read_body_first=False, wasm_floor=None):
    """A plain HTTP listener (router only) whose single route is `route` (a YAML flow mapping).
    `read_body_first` buffers the request before the route answers: an Envoy that answers a POST
    with a direct_response before its body has arrived closes the connection, so the proxy in
    front would open a new upstream connection for every request. `wasm_floor` ("floor" or
    "edits") puts the do-nothing Wasm filter before the router ("nfloor": the native one)."""
    return f"""  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    per_connection_buffer_limit_bytes: 8388608
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          route_config:
            virtual_hosts:
            - name: {name}
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                {route}
          http_filters:
{BUFFER_FILTER if read_body_first else ""}{native_floor_filter() if wasm_floor == "nfloor" else floor_filter(wasm_floor == "edits") if wasm_floor else ""}          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
"""


def upstream_bootstrap(admin, json_port, sse_port):
    """A second Envoy that answers with COMPLETION on one port and STREAM on the other."""
    def fixed(body, content_type):
        return (f"direct_response: {{ status: 200, body: {{ inline_string: {json.dumps(body)} }} }}\n"
                f"                response_headers_to_add: [{{ header: {{ key: content-type, value: {content_type} }} }}]")
    return (f"admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }} }}\n"
            "static_resources:\n  listeners:\n"
            + http_listener("upstream", json_port, fixed(COMPLETION, "application/json"), read_body_first=True)
            + http_listener("upstream_sse", sse_port, fixed(STREAM, "text/event-stream"), read_body_first=True))


def bench_policy():
    keys = [{"key_hash": key_hash(f"sk-bench-{i}"), "key_alias": f"bench-{i}", "team_id": f"team-{i % 1000}",
             "models": ["fast", "gpt-4o", "anthropic/*"]} for i in range(KEYS)]
    teams = [{"team_id": f"team-{i}", "models": []} for i in range(1000)]
    if BUDGETS:
        for key in keys:
            key.update(max_budget=1e6, budget_duration="30d")
        for team in teams:
            team.update(max_budget=1e7, budget_duration="1mo")
    # The rate-limit path: a key (in its own team) whose "fast" reaches a deployment with rpm/tpm,
    # under key rpm/tpm/max_parallel_requests and a team tpm, all far above what the bench sends:
    # six counters and two deployment-room reads per request, never a refusal.
    limited_team = {"team_id": "team-limited", "models": [], "tpm_limit": 10**15}
    limited_key = {"key_hash": key_hash(LIMITED_KEY), "key_alias": "bench-limited", "team_id": "team-limited",
                   "models": ["fast", "gpt-4o", "anthropic/*"], "aliases": {"fast": "gpt-4o-mini-limited"},
                   "rpm_limit": 10**12, "tpm_limit": 10**15, "max_parallel_requests": 10**6}
    if BUDGETS:
        limited_key.update(max_budget=1e6, budget_duration="30d")
        limited_team.update(max_budget=1e7, budget_duration="1mo")
    keys.append(limited_key)
    teams.append(limited_team)
    policy = {
        "version": "bench",
        "cost_map": REAL_COST_MAP,
        "model_list": [
            {"model_name": "gpt-4o-mini", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key_env": "OPENAI_API_KEY"},
             "cluster": "openai", "model_info": {"id": "mini"}},
            {"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o", "api_key_env": "OPENAI_API_KEY"},
             "cluster": "openai_sse", "model_info": {"id": "4o"}},
            {"model_name": "anthropic/*", "litellm_params": {"model": "anthropic/*", "api_key_env": "OPENAI_API_KEY"},
             "cluster": "openai", "model_info": {"id": "anthropic"}},
            {"model_name": "gpt-4o-mini-limited", "cluster": "openai", "model_info": {"id": "mini-limited"},
             "litellm_params": {"model": "openai/gpt-4o-mini", "api_key_env": "OPENAI_API_KEY",
                                "rpm": 10**12, "tpm": 10**15}},
        ],
        "model_group_alias": {"fast": "gpt-4o-mini"},
        "teams": teams,
        "keys": keys,
        "accounting": {"cluster": "accounting", "flush_interval_ms": 1000, "batch_max_events": 500,
                       "max_buffered_events": 100000, "poll_interval_ms": 5000, "source": "tollgate/bench",
                       "token_env": ACCOUNTING_TOKEN_ENV},
    }
    if not ACCOUNTING:
        del policy["accounting"]
    return policy


def cpu_seconds(pid):
    """utime + stime of a process, in seconds (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds():
    """Busy CPU time of the whole machine (every core, every process, the kernel), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def wrk(url, lua, seconds, envoy_pid=None, connections=None, accounting_pid=None):
    """rps, p50 us, p99 us, then CPU us per request: the Envoy process, the accounting server,
    the whole machine (wrk, the upstream and the kernel included)."""
    cpu_before = cpu_seconds(envoy_pid) if envoy_pid else 0.0
    accounting_before = cpu_seconds(accounting_pid) if accounting_pid else 0.0
    machine_before = machine_cpu_seconds()
    out = subprocess.run(["wrk", "-t1", f"-c{connections or CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(lua), url],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 1, "ms": 1000, "s": 1_000_000}[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"bench: {non2xx.group(1)} failed responses at {url}:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    machine_us = (machine_cpu_seconds() - machine_before) * 1e6 / requests
    cpu_us = (cpu_seconds(envoy_pid) - cpu_before) * 1e6 / requests if envoy_pid else 0.0
    accounting_us = (cpu_seconds(accounting_pid) - accounting_before) * 1e6 / requests if accounting_pid else 0.0
    return rps, pct(50), pct(99), cpu_us, accounting_us, machine_us


def native_core(work, policy_json, json_body, sse_body):
    """The same requests through the core compiled natively (examples/core_per_request.rs), step
    by step: what the filter's logic costs before V8 and the host calls."""
    (work / "policy.json").write_text(policy_json)
    for kind, body, response in (("json", json_body, COMPLETION), ("sse", sse_body, STREAM)):
        (work / f"{kind}-body.json").write_text(body)
        (work / f"{kind}-response").write_text(response)
        out = subprocess.run([str(ROOT / "target" / "release" / "examples" / "core_per_request"),
                              str(work / "policy.json"), str(work / f"{kind}-body.json"), str(work / f"{kind}-response")],
                             capture_output=True, text=True, timeout=300, env=dict(os.environ, BENCH_KEY=f"sk-bench-{KEYS - 1}"))
        print(f"\n{kind}: " + (out.stdout.strip() or out.stderr.strip()))
    if BUDGETS:
        # The same JSON requests with budget windows counted in a DST zone instead of UTC.
        zoned = json.loads(policy_json)
        zoned.setdefault("settings", {})["budget_timezone"] = "US/Eastern"
        (work / "policy-zoned.json").write_text(json.dumps(zoned))
        out = subprocess.run([str(ROOT / "target" / "release" / "examples" / "core_per_request"),
                              str(work / "policy-zoned.json"), str(work / "json-body.json"), str(work / "json-response")],
                             capture_output=True, text=True, timeout=300, env=dict(os.environ, BENCH_KEY=f"sk-bench-{KEYS - 1}"))
        print("\njson, budget_timezone US/Eastern: " + (out.stdout.strip() or out.stderr.strip()))
    out = subprocess.run([str(ROOT / "target" / "release" / "examples" / "core_per_request"),
                          str(work / "policy.json"), str(work / "json-body.json"), str(work / "json-response")],
                         capture_output=True, text=True, timeout=300, env=dict(os.environ, BENCH_KEY=LIMITED_KEY))
    print("\njson, with rate limits (key rpm/tpm/parallel, team tpm, deployment rpm/tpm): "
          + (out.stdout.strip() or out.stderr.strip()))


TIMING_WASM = ROOT / "target" / "timing" / "wasm32-wasip1" / "release" / "tollgate.wasm"


def vm_timing(work, policy_json, env, bodies, upstreams):
    """The in-VM timing build (`--features timing`) under the same load, one shape at a time:
    the root context logs the medians of every callback and host call, measured inside V8."""
    import stack as stack_module
    original = stack_module.WASM
    stack_module.WASM = TIMING_WASM
    try:
        for kind, body in bodies.items():
            stack = EnvoyStack(work / f"timing-{kind}", upstreams, policy_json, env, wasm_log_level="info",
                               access_log=False)
            try:
                lua = write_lua(work, f"timing-{kind}", body)
                wrk(f"http://127.0.0.1:{stack.listen_port}/v1/chat/completions", lua, SECONDS)
                time.sleep(6)  # the report is logged at most every 5 s, from the tick
                wrk(f"http://127.0.0.1:{stack.listen_port}/v1/chat/completions", lua, 2)
                lines = re.findall(r"tollgate timing over .*", stack.log_path.read_text(errors="replace"))
                print(f"\n{kind}, in-VM timing build: " + (lines[-1] if lines else "no timing line logged"))
            finally:
                stack.stop()
    finally:
        stack_module.WASM = original


def memory_per_workers(work, policy_json, env, upstreams, lua):
    """Envoy's resident memory with the full policy loaded, for 1, 2 and 4 workers, each form, after
    a short burst has reached every worker (each Wasm worker runs its own VM and its own policy)."""
    print("\nEnvoy RSS with the full policy (MiB), after a 2 s burst over 8 connections:")
    print(f"{'workers':>8} " + " ".join(f"{form:>8}" for form in FORMS))
    for workers in MEMORY_WORKERS:
        row = []
        for form in FORMS:
            stack = EnvoyStack(work / f"memory-{form}-{workers}", upstreams, policy_json, env, concurrency=workers,
                               wasm_log_level="info", access_log=False, form=form)
            try:
                wrk(f"http://127.0.0.1:{stack.listen_port}/v1/chat/completions", lua, 2, connections=8)
                row.append(rss_mib(stack.process.pid))
            finally:
                stack.stop()
        print(f"{workers:>8} " + " ".join(f"{mib:>8.0f}" for mib in row))


def rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def write_lua(work, name, body, key=None):
    lua = work / f"{name}.lua"
    key = key or f"sk-bench-{KEYS - 1}"
    lua.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                   f'wrk.headers["Authorization"] = "Bearer {key}"\nwrk.body = {json.dumps(body)}\n')
    return lua


def main():
    work = clean_dir(ROOT / ".run" / "bench")
    up_json, up_sse, up_admin = free_port(), free_port(), free_port()
    (work / "upstream.yaml").write_text(upstream_bootstrap(up_admin, up_json, up_sse))
    upstream = subprocess.Popen([str(ENVOY), "-c", str(work / "upstream.yaml"), "--concurrency", "1",
                                 "--use-dynamic-base-id", "--disable-hot-restart", "--log-level", "warn"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    accounting = AccountingServer(work / "accounting", binary=ROOT / "target" / "release" / "tollgate")
    policy = bench_policy()
    policy_json = json.dumps(policy)
    plain_ports = {name: free_port() for name in ("plain", "plain_sse", "floor", "floor_sse", "edits", "edits_sse",
                                                  "nfloor", "nfloor_sse")}
    # The Wasm stack's process loads the native floor module by name from here.
    os.environ["ENVOY_DYNAMIC_MODULES_SEARCH_PATH"] = str(NATIVE_FLOOR_DIR)
    stack = native = None
    try:
        # Build the filtered stack with the plain listeners added to the same bootstrap.
        import stack as stack_module
        original = stack_module.render_bootstrap

        def with_plain(*args, **kwargs):
            text = original(*args, **kwargs)
            plain = "".join(
                http_listener(name, plain_ports[name],
                              f"route: {{ cluster: {'openai_sse' if name.endswith('sse') else 'openai'}, timeout: 30s }}",
                              wasm_floor=None if name.startswith("plain") else name.split("_")[0])
                for name in plain_ports)
            return text.replace("  clusters:\n", plain + "  clusters:\n", 1)
        stack_module.render_bootstrap = with_plain
        started = time.monotonic()
        stack = EnvoyStack(work / "envoy", {"openai": up_json, "openai_sse": up_sse, "accounting": accounting.port},
                           policy_json, {"OPENAI_API_KEY": "bench-secret", ACCOUNTING_TOKEN_ENV: accounting.writer_token},
                           wasm_log_level="info", form="wasm",
                           access_log=False)  # the plain listeners have none either
        ready_s = time.monotonic() - started
        stack_module.render_bootstrap = original
        upstreams = {"openai": up_json, "openai_sse": up_sse, "accounting": accounting.port}
        env = {"OPENAI_API_KEY": "bench-secret", ACCOUNTING_TOKEN_ENV: accounting.writer_token}
        native = None
        if "native" in FORMS:
            native = EnvoyStack(work / "native", upstreams, policy_json, env, wasm_log_level="info",
                                access_log=False, form="native")
        messages = [{"role": "system", "content": "You are a helpful assistant. " * 8},
                    {"role": "user", "content": "Summarise the following text. " + "lorem ipsum dolor sit amet " * 28}]
        json_body = json.dumps({"model": "fast", "max_tokens": 64, "messages": messages})
        sse_body = json.dumps({"model": "gpt-4o", "max_tokens": 64, "stream": True, "messages": messages})
        lua = {"json": write_lua(work, "json", json_body), "sse": write_lua(work, "sse", sse_body),
               "limits": write_lua(work, "limits", json_body, key=LIMITED_KEY)}
        headers = {"authorization": f"Bearer sk-bench-{KEYS - 1}", "content-type": "application/json"}
        for filtered in (stack, native):
            if filtered is None:
                continue
            check = filtered.request("POST", "/v1/chat/completions", headers, json_body)
            assert check.status == 200, check
            streamed = filtered.request("POST", "/v1/chat/completions", headers, sse_body)
            assert streamed.status == 200 and b'"usage"' not in streamed.body, streamed
            limited = filtered.request("POST", "/v1/chat/completions",
                                       dict(headers, authorization=f"Bearer {LIMITED_KEY}"), json_body)
            assert limited.status == 200 and "x-ratelimit-remaining-tokens" in limited.headers, limited
        paths = {}
        for kind in ("json", "sse"):
            suffix = "" if kind == "json" else "_sse"
            paths[f"plain {kind}"] = (plain_ports["plain" + suffix], stack)
            paths[f"wasm floor {kind}"] = (plain_ports["floor" + suffix], stack)
            paths[f"host calls {kind}"] = (plain_ports["edits" + suffix], stack)
            paths[f"native floor {kind}"] = (plain_ports["nfloor" + suffix], stack)
            if "wasm" in FORMS:
                paths[f"tollgate {kind}"] = (stack.listen_port, stack)
            if native:
                paths[f"native {kind}"] = (native.listen_port, native)
        if "wasm" in FORMS:
            paths["tollgate limits"] = (stack.listen_port, stack)
        if native:
            paths["native limits"] = (native.listen_port, native)
        paths = {name: (f"http://127.0.0.1:{port}/v1/chat/completions", lua[name.split()[-1]], owner.process.pid)
                 for name, (port, owner) in paths.items()}
        for url, script, _ in paths.values():
            wrk(url, script, 2)  # warm-up
        results = {name: [] for name in paths}
        for _ in range(ROUNDS):
            for name, (url, script, pid) in paths.items():
                results[name].append(wrk(url, script, SECONDS, pid, accounting_pid=accounting.process.pid))
        med = {name: [statistics.median(r[i] for r in runs) for i in range(6)] for name, runs in results.items()}
        # Added latency without queueing: one connection, one request at a time.
        single = [name for name in paths
                  if name.startswith(("plain", "tollgate", "native")) and not name.endswith("limits")]
        one = {name: [] for name in single}
        for _ in range(ROUNDS):
            for name in single:
                url, script, _ = paths[name]
                one[name].append(wrk(url, script, LATENCY_SECONDS, connections=1))
        one_med = {name: [statistics.median(r[i] for r in runs) for i in range(3)] for name, runs in one.items()}
        log_text = stack.log_path.read_text(errors="replace")
        loads = re.findall(r"compiled in ([\d.]+) ms", log_text)
        vm_memory = re.findall(r"policy ([\d.]+) MiB, heap in use ([\d.]+) MiB, VM linear memory ([\d.]+) MiB", log_text)
        memory = json.loads(stack_module.urllib.request.urlopen(
            f"http://127.0.0.1:{stack.admin_port}/memory", timeout=5).read())
        time.sleep(3)  # the last flush tick
        recorded = stack.counter("wasmcustom.tollgate_spend_events_recorded")
        acked = stack.counter("wasmcustom.tollgate_spend_events_acknowledged")
        dropped = stack.counter("wasmcustom.tollgate_spend_events_dropped")
        # A report over a million events takes SQLite a while on a loaded 2-core VM.
        stored = accounting.report(timeout=300)["events"]
        envoy_stats = stack.stats()
        upstream_cx = {c: (envoy_stats.get(f"cluster.{c}.upstream_cx_total"), envoy_stats.get(f"cluster.{c}.upstream_rq_total"))
                       for c in ("openai", "openai_sse", "accounting")}
        print(f"\nTollgate benchmark: POST /v1/chat/completions, {len(json_body)}-byte body; full path: auth, alias, "
              "access, key+team budget reservation, route, rewrite, metering, pricing, settlement, spend batching")
        print(f"policy: {len(REAL_COST_MAP) - 2} cost-map models, {KEYS} keys, 1000 teams ({len(policy_json) // 1024} KiB)")
        print(f"wrk -t1 -c{CONNECTIONS}, {ROUNDS} rounds x {SECONDS}s each, Envoy --concurrency 1, medians:\n")
        print("CPU columns are microseconds per request: the Envoy process, the accounting server (on this")
        print("machine, competing for its 2 cores), and the whole machine (wrk, upstream, kernel included).")
        print(f"{'path':<16} {'req/s':>10} {'p50 us':>9} {'p99 us':>9} {'Envoy CPU':>10} {'accounting':>11} {'machine':>8}")
        for name in paths:
            rps, p50, p99, cpu, acct, machine = med[name]
            print(f"{name:<16} {rps:>10.0f} {p50:>9.0f} {p99:>9.0f} {cpu:>10.1f} {acct:>11.1f} {machine:>8.1f}")
        for form in ("tollgate", "native"):
            if f"{form} limits" in med:
                lim, base = med[f"{form} limits"], med[f"{form} json"]
                print(f"\njson with rate limits ({form}): {lim[0] / base[0]:.1%} of its throughput without"
                      f"   filter CPU +{lim[3] - base[3]:.1f} us/request   added p50 {lim[1] - base[1]:.0f} us")
        for kind in ("json", "sse"):
            f, p, h = med[f"wasm floor {kind}"], med[f"plain {kind}"], med[f"host calls {kind}"]
            if native:
                n = med[f"native {kind}"]
                print(f"\n{kind}: throughput ratio native/plain {n[0] / p[0]:.1%}   added p50 {n[1] - p[1]:.0f} us"
                      f"   added p99 {n[2] - p[2]:.0f} us   filter CPU {n[3] - p[3]:.1f} us/request"
                      f"   machine CPU +{n[5] - p[5]:.1f} us/request (accounting server {n[4]:.1f})")
                nf = med[f"native floor {kind}"]
                print(f"{kind}: the do-nothing native module: throughput ratio {nf[0] / p[0]:.1%}"
                      f"   CPU {nf[3] - p[3]:.1f} us/request; Tollgate native beyond it: {n[3] - nf[3]:.1f} us/request")
            if "wasm" not in FORMS:
                continue
            t = med[f"tollgate {kind}"]
            print(f"{kind}: throughput ratio wasm/plain {t[0] / p[0]:.1%}   added p50 {t[1] - p[1]:.0f} us"
                  f"   added p99 {t[2] - p[2]:.0f} us   filter CPU {t[3] - p[3]:.1f} us/request"
                  f"   machine CPU +{t[5] - p[5]:.1f} us/request (accounting server {t[4]:.1f})")
            print(f"{kind}: the do-nothing Wasm filter: throughput ratio floor/plain {f[0] / p[0]:.1%}"
                  f"   added p50 {f[1] - p[1]:.0f} us   CPU {f[3] - p[3]:.1f} us/request;"
                  f" Tollgate beyond the floor: {t[3] - f[3]:.1f} us/request")
            print(f"{kind}: the same filter making Tollgate's host calls: throughput ratio {h[0] / p[0]:.1%}"
                  f"   CPU {h[3] - p[3]:.1f} us/request; Tollgate beyond it: {t[3] - h[3]:.1f} us/request")
        print(f"\none connection at a time (wrk -c1, {ROUNDS} rounds x {LATENCY_SECONDS}s), medians:")
        for kind in ("json", "sse"):
            p = one_med[f"plain {kind}"]
            print(f"{kind}: plain p50 {p[1]:.0f} us p99 {p[2]:.0f} us")
            for form, label in (("native", "native"), ("wasm", "tollgate")):
                if f"{label} {kind}" in one_med:
                    t = one_med[f"{label} {kind}"]
                    print(f"{kind}: {form} p50 {t[1]:.0f} us p99 {t[2]:.0f} us;"
                          f" added p50 {t[1] - p[1]:.0f} us, added p99 {t[2] - p[2]:.0f} us")
        print("\nupstream connections / requests per cluster: "
              + ", ".join(f"{c} {cx}/{rq}" for c, (cx, rq) in upstream_cx.items()))
        print(f"spend events: {recorded} recorded, {acked} acknowledged, {dropped} dropped, {stored} stored")
        print(f"config compile per VM (V8, in on_configure): {', '.join(loads)} ms; Envoy ready in {ready_s:.1f}s; "
              f"Envoy allocated {int(memory['allocated']) // (1024 * 1024)} MiB")
        print("memory per VM after loading (policy / heap in use / linear memory, MiB): "
              + "; ".join(" / ".join(m) for m in vm_memory) + f"; Envoy RSS {rss_mib(stack.process.pid):.0f} MiB")
        if native:
            n_recorded = native.counter("wasmcustom.tollgate_spend_events_recorded")
            n_acked = native.counter("wasmcustom.tollgate_spend_events_acknowledged")
            native_loads = re.findall(r"compiled in ([\d.]+) ms", native.log_path.read_text(errors="replace"))
            print(f"native: spend events {n_recorded} recorded, {n_acked} acknowledged; config compile "
                  f"{', '.join(native_loads)} ms (once per process); Envoy RSS {rss_mib(native.process.pid):.0f} MiB")
        print(f"wasm size: {(ROOT / 'target/wasm32-wasip1/release/tollgate.wasm').stat().st_size // 1024} KiB; "
              f"libtollgate.so size: {(ROOT / 'target/native/libtollgate.so').stat().st_size // 1024} KiB")
        stack.stop()
        stack = None
        if native:
            native.stop()
            native = None
        bodies = {"json": json_body, "sse": sse_body}
        if "wasm" in FORMS:
            vm_timing(work, policy_json, env, bodies, upstreams)
        memory_per_workers(work, policy_json, env, upstreams, lua["json"])
        native_core(work, policy_json, json_body, sse_body)
    finally:
        if stack:
            stack.stop()
        if native:
            native.stop()
        accounting.stop()
        os.killpg(upstream.pid, 15)
        upstream.wait(timeout=10)


if __name__ == "__main__":
    main()
