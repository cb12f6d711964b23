"""./scripts/bench: the same request through Envoy without Tollgate and with it, side by side.

One Envoy (1 worker) has two listeners: `plain` routes straight to the upstream cluster; `tollgate`
runs the filter (auth, alias, access, route, body rewrite) on a policy with the full LiteLLM cost
map and 10,000 keys. The upstream is a second Envoy answering with a fixed chat completion, so
the upstream is cheap. wrk (1 thread, fixed connections) alternates between the two for several
rounds; medians of requests/s, p50 and p99 are printed with the ratios.
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
from stack import ENVOY, EnvoyStack, clean_dir, free_port, key_hash  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "8"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
KEYS = int(os.environ.get("BENCH_KEYS", "10000"))

COMPLETION = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 200, "completion_tokens": 2, "total_tokens": 202},
})

def http_listener(name, port, route):
    """A plain HTTP listener (router only) whose single route is `route` (a YAML flow mapping)."""
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
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
"""


def upstream_bootstrap(admin, port):
    """A second Envoy that answers every request with COMPLETION (a cheap, fast upstream)."""
    body = json.dumps(COMPLETION)
    return (f"admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }} }}\n"
            "static_resources:\n  listeners:\n"
            + http_listener("upstream", port, f"direct_response: {{ status: 200, body: {{ inline_string: {body} }} }}"))


def bench_policy():
    keys = [{"key_hash": key_hash(f"sk-bench-{i}"), "key_alias": f"bench-{i}", "team_id": f"team-{i % 1000}",
             "models": ["fast", "gpt-4o", "anthropic/*"]} for i in range(KEYS)]
    teams = [{"team_id": f"team-{i}", "models": []} for i in range(1000)]
    return {
        "version": "bench",
        "cost_map": REAL_COST_MAP,
        "model_list": [
            {"model_name": "gpt-4o-mini", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key_env": "OPENAI_API_KEY"},
             "cluster": "openai", "model_info": {"id": "mini"}},
            {"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o", "api_key_env": "OPENAI_API_KEY"},
             "cluster": "openai", "model_info": {"id": "4o"}},
            {"model_name": "anthropic/*", "litellm_params": {"model": "anthropic/*", "api_key_env": "OPENAI_API_KEY"},
             "cluster": "openai", "model_info": {"id": "anthropic"}},
        ],
        "model_group_alias": {"fast": "gpt-4o-mini"},
        "teams": teams,
        "keys": keys,
    }


def cpu_seconds(pid):
    """utime + stime of a process, in seconds (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url, lua, seconds, envoy_pid=None):
    cpu_before = cpu_seconds(envoy_pid) if envoy_pid else 0.0
    out = subprocess.run(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(lua), url],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 1, "ms": 1000, "s": 1_000_000}[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"bench: {non2xx.group(1)} failed responses at {url}:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    cpu_us = (cpu_seconds(envoy_pid) - cpu_before) * 1e6 / requests if envoy_pid else 0.0
    return rps, pct(50), pct(99), cpu_us


def main():
    work = clean_dir(ROOT / ".run" / "bench")
    up_port, up_admin = free_port(), free_port()
    (work / "upstream.yaml").write_text(upstream_bootstrap(up_admin, up_port))
    upstream = subprocess.Popen([str(ENVOY), "-c", str(work / "upstream.yaml"), "--concurrency", "1",
                                 "--use-dynamic-base-id", "--disable-hot-restart", "--log-level", "warn"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    policy = bench_policy()
    policy_json = json.dumps(policy)
    plain_port = free_port()
    stack = None
    try:
        # Build the filtered stack, then add the plain listener to the same bootstrap and restart.
        import stack as stack_module
        original = stack_module.render_bootstrap

        def with_plain(*args, **kwargs):
            text = original(*args, **kwargs)
            plain = http_listener("plain", plain_port, "route: { cluster: openai, timeout: 30s }")
            return text.replace("  clusters:\n", plain + "  clusters:\n", 1)
        stack_module.render_bootstrap = with_plain
        started = time.monotonic()
        stack = EnvoyStack(work / "envoy", {"openai": up_port}, policy_json, {"OPENAI_API_KEY": "bench-secret"},
                           wasm_log_level="info")
        ready_s = time.monotonic() - started
        body = json.dumps({"model": "fast", "max_tokens": 64, "messages": [
            {"role": "system", "content": "You are a helpful assistant. " * 8},
            {"role": "user", "content": "Summarise the following text. " + "lorem ipsum dolor sit amet " * 28}]})
        lua = Path(tempfile.mkstemp(suffix=".lua", dir=work)[1])
        lua.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                       f'wrk.headers["Authorization"] = "Bearer sk-bench-{KEYS - 1}"\nwrk.body = {json.dumps(body)}\n')
        check = stack.request("POST", "/v1/chat/completions", {"authorization": f"Bearer sk-bench-{KEYS - 1}",
                                                              "content-type": "application/json"}, body)
        assert check.status == 200, check
        urls = {"plain": f"http://127.0.0.1:{plain_port}/v1/chat/completions",
                "tollgate": f"http://127.0.0.1:{stack.listen_port}/v1/chat/completions"}
        for url in urls.values():
            wrk(url, lua, 2)  # warm-up
        results = {name: [] for name in urls}
        for _ in range(ROUNDS):
            for name, url in urls.items():
                results[name].append(wrk(url, lua, SECONDS, stack.process.pid))
        med = {name: [statistics.median(r[i] for r in runs) for i in range(4)] for name, runs in results.items()}
        loads = re.findall(r"compiled in ([\d.]+) ms", stack.log_path.read_text(errors="replace"))
        memory = json.loads(stack_module.urllib.request.urlopen(
            f"http://127.0.0.1:{stack.admin_port}/memory", timeout=5).read())
        print(f"\nTollgate benchmark: POST /v1/chat/completions, {len(body)}-byte body, alias + access + route + rewrite")
        print(f"policy: {len(REAL_COST_MAP) - 2} cost-map models, {KEYS} keys, 1000 teams ({len(policy_json) // 1024} KiB)")
        print(f"wrk -t1 -c{CONNECTIONS}, {ROUNDS} rounds x {SECONDS}s each, Envoy --concurrency 1, medians:\n")
        print(f"{'path':<10} {'req/s':>10} {'p50 us':>9} {'p99 us':>9} {'Envoy CPU us/req':>17}")
        for name in urls:
            rps, p50, p99, cpu = med[name]
            print(f"{name:<10} {rps:>10.0f} {p50:>9.0f} {p99:>9.0f} {cpu:>17.1f}")
        ratio = med["tollgate"][0] / med["plain"][0]
        print(f"\nthroughput ratio tollgate/plain: {ratio:.1%}   added p50: {med['tollgate'][1] - med['plain'][1]:.0f} us"
              f"   added p99: {med['tollgate'][2] - med['plain'][2]:.0f} us"
              f"   filter CPU: {med['tollgate'][3] - med['plain'][3]:.1f} us/request")
        print(f"config compile per VM (V8, in on_configure): {', '.join(loads)} ms; Envoy ready in {ready_s:.1f}s; "
              f"Envoy allocated {int(memory['allocated']) // (1024 * 1024)} MiB")
        print(f"wasm size: {(ROOT / 'target/wasm32-wasip1/release/tollgate.wasm').stat().st_size // 1024} KiB")
    finally:
        if stack:
            stack.stop()
        os.killpg(upstream.pid, 15)
        upstream.wait(timeout=10)


if __name__ == "__main__":
    main()
