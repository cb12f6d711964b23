"""Issue 13: the filter's metrics under the OpenTelemetry GenAI semantic-convention names
(`gen_ai_client_token_usage` by token type, `gen_ai_server_request_duration`, and the cost), as
real Envoy's Prometheus endpoint shows them: the same names and labels in both forms (the Wasm
filter's tags are taken out of its stat names by the bootstrap's `stats_tags`). The shipped
Grafana dashboard's queries name only these series. Every loop is bounded in time."""

import json
import re
import urllib.request

import pytest

from conftest import start_stack
from policies import KEYS, REAL_COST_MAP, base_policy, bearer, chat, nano_cost
from stack import ROOT, wait_until

OPENAI = 'gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="gpt-4o"'
ANTHROPIC = ('gen_ai_operation_name="chat",gen_ai_provider_name="anthropic",'
             'gen_ai_request_model="claude-sonnet-4-6"')


@pytest.fixture(scope="module")
def gateway(request, upstreams):
    stack = start_stack(request, upstreams, base_policy("g1"), name="gen-ai-metrics")
    yield stack
    stack.stop()


def prometheus(stack):
    url = f"http://127.0.0.1:{stack.admin_port}/stats/prometheus"
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def series(text, name, labels):
    """The value of `name{labels…}` (labels in any order, `le` and others allowed after)."""
    wanted = dict(re.findall(r'(\w+)="([^"]*)"', labels))
    for line in text.splitlines():
        match = re.match(r"^(\w+)\{([^}]*)\} (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
        if found == wanted:
            return float(match.group(3))
    return None


def test_tokens_duration_and_cost_carry_the_conventions_names_and_labels(gateway):
    for _ in range(2):
        r = gateway.request("POST", "/v1/chat/completions", bearer(KEYS["all"]), chat("gpt-4o"))
        assert r.status == 200, r
    streamed = gateway.request("POST", "/v1/chat/completions", bearer(KEYS["all"]),
                               chat("gpt-4o", stream=True, stream_options={"include_usage": True}))
    assert streamed.status == 200
    anthropic = gateway.request("POST", "/v1/messages",
                                {"x-api-key": KEYS["all"], "anthropic-version": "2023-06-01"},
                                chat("claude-sonnet-4-6", max_tokens=16))
    assert anthropic.status == 200, anthropic

    def settled():
        text = prometheus(gateway)
        count = series(text, "gen_ai_server_request_duration_count", OPENAI)
        other = series(text, "gen_ai_server_request_duration_count", ANTHROPIC)
        return text if count == 3 and other == 1 else None

    # Histograms reach the admin endpoint at Envoy's stats flush (every 5 s).
    text = wait_until(settled, timeout=30, interval=0.5, message="three OpenAI and one Anthropic request")
    usage = "gen_ai_client_token_usage"
    # The mock answers OpenAI with 12 prompt and 5 completion tokens, Anthropic with 10 and 5.
    # Envoy's histogram sums come from its log-linear bins: near, not exact (the exact totals
    # are tollgate_prompt_tokens_* and the accounting report).
    assert series(text, f"{usage}_sum", OPENAI + ',gen_ai_token_type="input"') == pytest.approx(36, rel=0.06)
    assert series(text, f"{usage}_sum", OPENAI + ',gen_ai_token_type="output"') == pytest.approx(15, rel=0.06)
    assert series(text, f"{usage}_count", OPENAI + ',gen_ai_token_type="input"') == 3
    assert series(text, f"{usage}_bucket", OPENAI + ',gen_ai_token_type="input",le="4"') == 0
    assert series(text, f"{usage}_bucket", OPENAI + ',gen_ai_token_type="input",le="16"') == 3
    assert series(text, f"{usage}_sum", ANTHROPIC + ',gen_ai_token_type="input"') == pytest.approx(10, rel=0.06)
    assert series(text, f"{usage}_sum", ANTHROPIC + ',gen_ai_token_type="output"') == pytest.approx(5, rel=0.06)
    # Durations in milliseconds, in the conventions' buckets scaled from seconds.
    assert series(text, "gen_ai_server_request_duration_bucket", OPENAI + ',le="81920"') == 3
    assert series(text, "gen_ai_server_request_duration_sum", OPENAI) < 3 * 10_000
    # The cost, from the real cost map of this config version.
    assert "claude-sonnet-4-6" in REAL_COST_MAP
    assert series(text, "gen_ai_client_cost_nano_usd", OPENAI) == 3 * nano_cost("gpt-4o", 12, 5)
    assert series(text, "gen_ai_client_cost_nano_usd", ANTHROPIC) == nano_cost("claude-sonnet-4-6", 10, 5)
    # No tag-encoded name leaks through unparsed.
    assert "=.=" not in text and ";.;" not in text
    assert not re.search(r"^gen_ai_\w*gen_ai_(operation|provider|request|token)", text, re.M)


def test_a_refused_request_is_not_a_gen_ai_request(gateway):
    before = series(prometheus(gateway), "gen_ai_server_request_duration_count", OPENAI) or 0
    refused = gateway.request("POST", "/v1/chat/completions", bearer("sk-e2e-nobody"), chat("gpt-4o"))
    assert refused.status == 401
    ok = gateway.request("POST", "/v1/chat/completions", bearer(KEYS["all"]), chat("gpt-4o"))
    assert ok.status == 200
    wait_until(lambda: series(prometheus(gateway), "gen_ai_server_request_duration_count", OPENAI) == before + 1,
               timeout=30, interval=0.5, message="one more request counted")


def test_the_grafana_dashboard_queries_only_series_the_filter_exports():
    dashboard = json.loads((ROOT / "envoy" / "grafana-gen-ai-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert len(exprs) >= 5
    names = {n for expr in exprs for n in re.findall(r"\b(gen_ai_\w+|tollgate_\w+)\b", expr)}
    known = {"gen_ai_client_token_usage_sum", "gen_ai_client_token_usage_count",
             "gen_ai_client_token_usage_bucket", "gen_ai_server_request_duration_bucket",
             "gen_ai_server_request_duration_sum", "gen_ai_server_request_duration_count",
             "gen_ai_client_cost_nano_usd", "gen_ai_token_type", "gen_ai_request_model",
             "gen_ai_provider_name", "gen_ai_operation_name"}
    assert names and names <= known, names - known


def test_model_names_a_client_makes_up_under_a_wildcard_add_no_series(gateway):
    """Under `anthropic/*` the client names the model: made-up names are labelled with the
    deployment's public name, so a key holder cannot grow the metric set (a model of the cost
    map keeps its own name)."""
    for i in range(6):
        r = gateway.request("POST", "/v1/messages", {"x-api-key": KEYS["anthropic_wild"],
                                                     "anthropic-version": "2023-06-01"},
                            chat(f"anthropic/made-up-{i}-{'x' * 40}", max_tokens=16))
        assert r.status == 200, r
    wildcard = ('gen_ai_operation_name="chat",gen_ai_provider_name="anthropic",'
                'gen_ai_request_model="anthropic/*"')
    text = wait_until(lambda: (lambda t: t if series(t, "gen_ai_server_request_duration_count", wildcard) == 6
                               else None)(prometheus(gateway)), timeout=30, interval=0.5,
                      message="six requests under the wildcard's name")
    assert "made-up" not in text
    models = set(re.findall(r'gen_ai_request_model="([^"]*)"', text))
    assert models <= {"gpt-4o", "claude-sonnet-4-6", "anthropic/*"}, models
