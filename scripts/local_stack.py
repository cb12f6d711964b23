"""The local stack behind ./scripts/run: mock upstreams, the accounting server and Envoy with
Tollgate, in the foreground."""

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
from stack import ACCOUNTING_TOKEN_ENV, FORM, AccountingServer, EnvoyStack, clean_dir  # noqa: E402


def main():
    listen = int(os.environ.get("TOLLGATE_PORT", "10000"))
    admin = int(os.environ.get("TOLLGATE_ADMIN_PORT", "9901"))
    policy_path = Path(os.environ.get("TOLLGATE_POLICY", ROOT / "envoy" / "policy.example.json"))
    policy = policy_path.read_text()
    json.loads(policy)
    env = {name: os.environ.get(name, f"demo-{name.lower()}") for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    mocks = {name: MockUpstream(name) for name in ("openai", "anthropic")}
    work = clean_dir(ROOT / ".run" / "local")
    # Fresh tokens per run: the filter writes with one (from the VM environment), people read with the other.
    accounting = AccountingServer(work / "accounting", port=int(os.environ.get("TOLLGATE_ACCOUNTING_PORT", "9902")),
                                  binary=ROOT / "target" / "release" / "tollgate",
                                  writer_token=f"writer-{secrets.token_hex(16)}", reader_token=f"reader-{secrets.token_hex(16)}")
    env[ACCOUNTING_TOKEN_ENV] = accounting.writer_token
    # Seals Responses affinity marks to their tenant; without it follow-ups are refused (503).
    env["TOLLGATE_AFFINITY_SECRET"] = os.environ.get("TOLLGATE_AFFINITY_SECRET", secrets.token_hex(16))
    clusters = {n: m.port for n, m in mocks.items()}
    clusters["accounting"] = accounting.port
    try:
        stack = EnvoyStack(work, clusters, policy, env, listen_port=listen, admin_port=admin)
    except BaseException:
        # Leave nothing running (an orphan accounting server would answer the next run's checks).
        accounting.stop()
        for mock in mocks.values():
            mock.stop()
        raise
    url = f"http://127.0.0.1:{listen}"
    print(f"""
Tollgate ({"native dynamic module" if FORM == "native" else "Wasm filter"}) is running: Envoy on {url} (admin http://127.0.0.1:{admin}), policy {policy_path.name},
mock upstreams: {", ".join(f"{n} on 127.0.0.1:{m.port}" for n, m in mocks.items())}. Envoy log: {stack.log_path}
accounting server on http://127.0.0.1:{accounting.port} (database {accounting.db})

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
       -H 'content-type: application/json' -d '{{"model":"fast","stream":true,"messages":[{{"role":"user","content":"hi"}}]}}'
The key's budget is $0.0001 a day ($0.0000048 per mock call): the 22nd call answers 429 insufficient_quota.

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
    main()
