"""The local stack behind ./scripts/run: mock upstreams (or the real providers' APIs), the
accounting server and Envoy with Tollgate, in the foreground.

  python3 scripts/local_stack.py               # run (./scripts/run builds first, then this)
  python3 scripts/local_stack.py --render DIR  # only write the config it would run into DIR

TOLLGATE_UPSTREAMS picks where the `openai` and `anthropic` clusters go: `mock` (the default: the
mock upstreams), `real` (both to the providers' APIs over TLS, with SNI and certificate checks),
or a comma-separated list of the providers to send to their real API (`openai`), the others mocked.
A real provider needs the credentials the policy's deployments on its cluster name (api_key_env:
OPENAI_API_KEY, ANTHROPIC_API_KEY in the example policy); TOLLGATE_CA_BUNDLE names the PEM bundle
of trusted CAs (default: the system's, /etc/ssl/certs/ca-certificates.crt).
"""

import json
import os
import secrets
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from mock_upstream import MockUpstream  # noqa: E402
from stack import (ACCOUNTING_TOKEN_ENV, FORM, NATIVE, SYSTEM_CA_BUNDLE, WASM, AccountingServer,  # noqa: E402
                   EnvoyStack, TlsUpstream, clean_dir)

# The clusters of the example policy, and the API each reaches in real mode.
PROVIDERS = {"openai": "api.openai.com", "anthropic": "api.anthropic.com"}
DEMO_CREDENTIALS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
USAGE = "usage: local_stack.py [--render DIR]"


def real_providers(value):
    """The providers TOLLGATE_UPSTREAMS sends to their real API (sorted)."""
    value = value.strip().lower()
    if value in ("", "mock"):
        return []
    if value == "real":
        return sorted(PROVIDERS)
    names = {name.strip() for name in value.split(",") if name.strip()}
    unknown = sorted(names - set(PROVIDERS))
    if unknown:
        raise SystemExit(f"TOLLGATE_UPSTREAMS={value}: unknown provider {', '.join(unknown)}; "
                         f"use mock, real, or a comma-separated list of {', '.join(PROVIDERS)}")
    return sorted(names)


def credential_names(policy, clusters):
    """The environment variables the policy's deployments on `clusters` read their upstream
    credential from (api_key_env, or LiteLLM's `api_key: os.environ/NAME`)."""
    names = set()
    for deployment in policy.get("model_list", []):
        if deployment.get("cluster") not in clusters:
            continue
        params = deployment.get("litellm_params", {})
        name, key = params.get("api_key_env"), params.get("api_key")
        if not name and isinstance(key, str) and key.startswith("os.environ/"):
            name = key[len("os.environ/"):]
        if name:
            names.add(name)
    return sorted(names)


def undefined_clusters(policy, defined):
    """The clusters the policy's deployments route to that this stack does not define (an
    imported policy's `groq`, `openai-localhost-8000`, ...): Envoy answers their requests 503."""
    named = {d.get("cluster") for d in policy.get("model_list", []) if isinstance(d, dict)}
    return sorted(name for name in named - set(defined) if isinstance(name, str))


def warn_undefined_clusters(policy, defined):
    missing = undefined_clusters(policy, defined)
    if missing:
        print(f"warning: the policy routes to cluster(s) {', '.join(missing)}, which this stack does not define "
              f"(it runs only {', '.join(sorted(defined))}): Envoy answers requests routed there 503. Define them "
              f"in your own Envoy config (import-litellm lists their addresses)", file=sys.stderr, flush=True)


def upstream_env(policy, real, environ):
    """The credentials the filter reads: the real ones a real provider needs (refusing to start
    without them), demo values for the mocks."""
    env = {name: environ.get(name) or f"demo-{name.lower()}" for name in DEMO_CREDENTIALS}
    for provider in real:
        for name in credential_names(policy, [provider]):
            if not environ.get(name):
                raise SystemExit(
                    f"TOLLGATE_UPSTREAMS sends {provider} to https://{PROVIDERS[provider]}, but {name} is not "
                    f"set: export {name} (the policy's deployments on the {provider} cluster send it upstream), "
                    f"or leave TOLLGATE_UPSTREAMS unset to run against the mock upstreams")
            env[name] = environ[name]
    return env


def ca_bundle(environ):
    path = Path(environ.get("TOLLGATE_CA_BUNDLE") or SYSTEM_CA_BUNDLE).absolute()
    if not path.is_file():
        raise SystemExit(f"TOLLGATE_CA_BUNDLE: no CA bundle at {path} (on Debian or Ubuntu: apt-get install "
                         f"ca-certificates; elsewhere set TOLLGATE_CA_BUNDLE to a PEM file of trusted CAs)")
    return path


def upstream_clusters(real, ca, mock_ports):
    """The provider clusters: a real provider's API over TLS, or its mock on 127.0.0.1."""
    return {name: TlsUpstream(host, ca=ca) if name in real else mock_ports[name] for name, host in PROVIDERS.items()}


def main(args):
    if args and (len(args) != 2 or args[0] != "--render"):
        raise SystemExit(USAGE)
    render = Path(args[1]).resolve() if args else None
    listen = int(os.environ.get("TOLLGATE_PORT", "10000"))
    admin = int(os.environ.get("TOLLGATE_ADMIN_PORT", "9901"))
    accounting_port = int(os.environ.get("TOLLGATE_ACCOUNTING_PORT", "9902"))
    policy_path = Path(os.environ.get("TOLLGATE_POLICY", ROOT / "envoy" / "policy.example.json"))
    policy = policy_path.read_text()
    real = real_providers(os.environ.get("TOLLGATE_UPSTREAMS", "mock"))
    env = upstream_env(json.loads(policy), real, os.environ)
    ca = ca_bundle(os.environ) if real else None
    module = WASM if FORM == "wasm" else NATIVE
    if not module.is_file():
        raise SystemExit(f"{module} is missing: ./scripts/run builds it")
    # Fresh tokens per run: the filter writes with one (from the VM environment), people read with the other.
    writer_token, reader_token = f"writer-{secrets.token_hex(16)}", f"reader-{secrets.token_hex(16)}"
    env[ACCOUNTING_TOKEN_ENV] = writer_token
    # Seals Responses affinity marks to their tenant; without it follow-ups are refused (503).
    env["TOLLGATE_AFFINITY_SECRET"] = os.environ.get("TOLLGATE_AFFINITY_SECRET", secrets.token_hex(16))
    if render:
        # Nothing is started: a mock's cluster (if any) is written with port 0, the port it takes when it starts.
        clusters = upstream_clusters(real, ca, {name: 0 for name in PROVIDERS})
        clusters["accounting"] = accounting_port
        warn_undefined_clusters(json.loads(policy), clusters)
        stack = EnvoyStack(clean_dir(render), clusters, policy, env, listen_port=listen, admin_port=admin,
                           host_env=True, start=False)
        print(f"wrote {stack.bootstrap_path} (check it: .venv/bin/envoy --mode validate -c {stack.bootstrap_path})")
        return
    mocks = {name: MockUpstream(name) for name in PROVIDERS if name not in real}
    work = clean_dir(ROOT / ".run" / "local")
    try:
        accounting = AccountingServer(work / "accounting", port=accounting_port,
                                      binary=ROOT / "target" / "release" / "tollgate",
                                      writer_token=writer_token, reader_token=reader_token)
    except BaseException:
        for mock in mocks.values():
            mock.stop()
        raise
    clusters = upstream_clusters(real, ca, {name: mock.port for name, mock in mocks.items()})
    clusters["accounting"] = accounting.port
    warn_undefined_clusters(json.loads(policy), clusters)
    try:
        # The credentials reach the filter through Envoy's environment, never a file under .run/.
        stack = EnvoyStack(work, clusters, policy, env, listen_port=listen, admin_port=admin, host_env=True)
    except BaseException:
        # Leave nothing running (an orphan accounting server would answer the next run's checks).
        accounting.stop()
        for mock in mocks.values():
            mock.stop()
        raise
    url = f"http://127.0.0.1:{listen}"
    upstreams = [f"{name}: mock on 127.0.0.1:{mock.port}" for name, mock in mocks.items()]
    upstreams += [f"{name}: https://{PROVIDERS[name]} (TLS, SNI {PROVIDERS[name]}, certificate checked against {ca})"
                  for name in real]
    warning = ("""
REAL PROVIDERS: allowed calls to them are billed to your API keys at the providers' prices.
The example keys' budgets cap what Tollgate admits (sk-demo-search-1: $0.0001 a day), but the
claude-only key sk-demo-claude-1 has only its team's ($50 a month).""" if real else "")
    anthropic = ("""
Anthropic's Messages API (key sk-demo-claude-1 may use anthropic/*):
  curl -s {url}/v1/messages -H 'x-api-key: sk-demo-claude-1' -H 'anthropic-version: 2023-06-01' \\
       -H 'content-type: application/json' -d '{{"model":"claude-haiku-4-5","max_tokens":32,"messages":[{{"role":"user","content":"hi"}}]}}'"""
                 .format(url=url) if "anthropic" in real else "")
    budget = ("the real cost of each call counts against it" if "openai" in real
              else "$0.0000048 per mock call: the 22nd call answers 429 insufficient_quota")
    print(f"""
Tollgate ({"native dynamic module" if FORM == "native" else "Wasm filter"}) is running: Envoy on {url} (admin http://127.0.0.1:{admin}), policy {policy_path.name},
upstreams: {"; ".join(upstreams)}. Envoy log: {stack.log_path}
accounting server on http://127.0.0.1:{accounting.port} (database {accounting.db}){warning}

Allowed (alias "fast" -> gpt-4o-mini, routed to the openai cluster):
  curl -s {url}/v1/chat/completions -H 'Authorization: Bearer sk-demo-search-1' \\
       -H 'content-type: application/json' -d '{{"model":"fast","messages":[{{"role":"user","content":"hi"}}]}}'
Denied (403 model_not_allowed: this key may not use "smart"):
  curl -s {url}/v1/chat/completions -H 'Authorization: Bearer sk-demo-search-1' \\
       -H 'content-type: application/json' -d '{{"model":"smart","messages":[{{"role":"user","content":"hi"}}]}}'
Models this key may use:
  curl -s {url}/v1/models -H 'Authorization: Bearer sk-demo-search-1'
Spend so far (by key, team, model, status, and every budget window), then a streamed call:
  curl -s http://127.0.0.1:{accounting.port}/v1/spend/report -H 'Authorization: Bearer {accounting.reader_token}'
  curl -sN {url}/v1/chat/completions -H 'Authorization: Bearer sk-demo-search-1' \\
       -H 'content-type: application/json' -d '{{"model":"fast","stream":true,"messages":[{{"role":"user","content":"hi"}}]}}'{anthropic}
The key's budget is $0.0001 a day ({budget}).

Press Ctrl-C to stop.""", flush=True)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    try:
        while not stopping and stack.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
        accounting.stop()
        for mock in mocks.values():
            mock.stop()
        print("stopped", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
