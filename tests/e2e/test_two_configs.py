"""Two Tollgate filter configs in one Envoy process (two listeners, each with its own policy,
accounting cluster, writer token and `source`: e.g. a public and an internal gateway on one
Envoy). Each listener's spend must go to its own accounting cluster with its own token: the
process keeps one spend sender per accounting destination (core/exchange/spend_senders.rs).
Native form only: the Wasm form separates such configs by `vm_id` (and, in one VM, uses the
same per-settings senders, covered by the core's unit tests). Found by the Phase 2 · 2/5 review:
before the fix, the newest config's settings applied to every event of the process."""

import json

import pytest

import stack as stack_module
from conftest import start_stack
from policies import MONEY_KEYS, bearer, chat, money_policy
from stack import AccountingServer, clean_dir, free_port, native_filter, wait_until, ROOT

KEY = MONEY_KEYS["meter"]
FAST = {"flush_interval_ms": 100, "batch_max_events": 8, "timeout_ms": 1000, "poll_interval_ms": 0}

pytestmark = pytest.mark.skipif(stack_module.FORM != "native", reason="the native module's process-wide sender")


def with_second_listener(original, port_b, policy_b):
    def render(listen_port, admin_port, ecds_path, clusters, access_log_path=None, **kw):
        text = original(listen_port, admin_port, ecds_path, clusters, access_log_path, **kw)
        start = text.index("  - name: llm\n")
        end = text.index("  clusters:\n")
        block = text[start:end]
        lines = block.splitlines(keepends=True)
        out = []
        for line in lines:
            if line.startswith("  - name: llm"):
                line = "  - name: llm-b\n"
            elif "port_value: %d" % listen_port in line:
                line = line.replace("port_value: %d" % listen_port, "port_value: %d" % port_b)
            elif line.strip().startswith("typed_config: {") and "DynamicModuleFilter" in line:
                indent = line[: len(line) - len(line.lstrip())]
                line = f"{indent}typed_config: {json.dumps(native_filter(policy_b))}\n"
            out.append(line)
        return text[:end] + "".join(out) + text[end:]
    return render


@pytest.fixture
def two(request, upstreams, monkeypatch):
    acc_a = AccountingServer(clean_dir(ROOT / ".run" / "e2e" / "two-configs-acc-a"), writer_token="writer-token-of-tenant-a")
    acc_b = AccountingServer(clean_dir(ROOT / ".run" / "e2e" / "two-configs-acc-b"), writer_token="writer-token-of-tenant-b")
    policy_a = money_policy("tenant-a", accounting=dict(FAST, cluster="accounting-a", token_env="TOKEN_A",
                                                        source="tollgate/tenant-a"))
    policy_b = money_policy("tenant-b", accounting=dict(FAST, cluster="accounting-b", token_env="TOKEN_B",
                                                        source="tollgate/tenant-b"))
    port_b = free_port()
    monkeypatch.setattr(stack_module, "render_bootstrap",
                        with_second_listener(stack_module.render_bootstrap, port_b, policy_b))
    monkeypatch.setitem(stack_module.__dict__, "FORM", "native")
    import policies
    monkeypatch.setattr(policies, "UPSTREAM_ENV", dict(policies.UPSTREAM_ENV, TOKEN_A=acc_a.writer_token,
                                                       TOKEN_B=acc_b.writer_token))
    import conftest
    monkeypatch.setattr(conftest, "UPSTREAM_ENV", policies.UPSTREAM_ENV)
    stack = start_stack(request, upstreams, policy_a, name="two-configs", static=True,
                        extra_clusters={"accounting-a": acc_a.port, "accounting-b": acc_b.port})
    yield stack, port_b, acc_a, acc_b
    stack.stop()
    acc_a.stop()
    acc_b.stop()


def test_each_listeners_spend_goes_to_its_own_accounting_cluster(two):
    stack, port_b, acc_a, acc_b = two
    for i in range(3):
        r = stack.request("POST", "/v1/chat/completions", bearer(KEY), chat("gpt-4o", user=f"tenant-a-{i}"))
        assert r.status == 200, r
        assert r.headers.get("x-tollgate-policy-version") == "tenant-a"
    wait_until(lambda: len(acc_a.event_ids()) + len(acc_b.event_ids()) >= 3, timeout=10,
               message="three events stored somewhere")
    sources_b = [e["source"] for e in acc_b.events()]
    assert len(acc_a.event_ids()) == 3 and not sources_b, (
        f"tenant A's listener: {len(acc_a.event_ids())} event(s) at A's accounting server, "
        f"{len(sources_b)} at B's (sources {sources_b}), sent with B's writer token")
