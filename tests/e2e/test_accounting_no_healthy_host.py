"""An accounting cluster that has no healthy host.

Envoy's AsyncClient may answer such a call *inline*: the router's local reply (503 "no healthy
upstream") can reach the callout callback before `send()` returns. In the native module the spend
senders' process-wide mutex is held across `dispatch` (tick -> send_batch -> http_callout), so an
inline answer that locked it again on the same thread would deadlock Envoy's main thread.

Expected (and observed, both forms): the batch counts as failed (retried later), Envoy keeps
serving and its admin answers. The cluster is a STATIC cluster with one 127.0.0.1 endpoint marked
UNHEALTHY and no panic routing (an operator-side equivalent: a DNS name that does not resolve,
every host failing its health check, an EDS cluster with no endpoints yet)."""

import time
import urllib.request

import pytest

import stack as stack_module
from conftest import start_stack
from policies import MONEY_KEYS, bearer, chat, money_policy
from stack import free_port

KEY = MONEY_KEYS["meter"]
FAST = {"flush_interval_ms": 100, "batch_max_events": 8, "timeout_ms": 1000, "poll_interval_ms": 0}


def clusters_with_dead_accounting(original):
    def render(clusters):
        clusters = dict(clusters)
        port = clusters.pop("accounting")
        text = original(clusters)
        return text + "\n" + "\n".join([
            "  - name: accounting",
            "    type: STATIC",
            "    connect_timeout: 1s",
            "    common_lb_config: { healthy_panic_threshold: { value: 0 } }",
            "    load_assignment:",
            "      cluster_name: accounting",
            "      endpoints:",
            "      - lb_endpoints:",
            "        - health_status: UNHEALTHY",
            "          endpoint:",
            f"            address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}",
        ])
    return render


def admin_answers(stack, timeout=3):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{stack.admin_port}/ready", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture
def dead_accounting_stack(request, upstreams, monkeypatch):
    monkeypatch.setattr(stack_module, "render_clusters", clusters_with_dead_accounting(stack_module.render_clusters))
    stack = start_stack(request, upstreams, money_policy("dead1", accounting=FAST), name="no-healthy-host-dead-accounting",
                        extra_clusters={"accounting": free_port()}, concurrency=2)
    yield stack
    stack.stop()


def test_an_accounting_cluster_without_a_healthy_host_does_not_hang_envoy(dead_accounting_stack):
    stack = dead_accounting_stack
    r = stack.request("POST", "/v1/chat/completions", bearer(KEY), chat("gpt-4o", user="first"))
    assert r.status == 200, r
    # Several ticks: each tries to send the batch, which fails inline.
    time.sleep(1.5)
    assert admin_answers(stack), "Envoy's admin (main thread) stopped answering\n" + stack.log_tail(30)
    for i in range(3):
        r = stack.request("POST", "/v1/chat/completions", bearer(KEY), chat("gpt-4o", user=f"after-{i}"), timeout=5)
        assert r.status == 200, r
    assert stack.process.poll() is None, stack.log_tail()
