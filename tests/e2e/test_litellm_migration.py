"""A LiteLLM setup moved over with `tollgate import-litellm` then `build-config`, run in real Envoy.

The config follows LiteLLM's docs: a load-balanced group (one model on two OpenAI-compatible
servers, addresses from `os.environ/`, LiteLLM's rpm weights), an Azure deployment under its own
deployment name priced through `model_info.base_model`, and a bare model name (`gpt-4o-mini`)
whose provider LiteLLM infers from the cost map. The keys export carries a key with a `monthly`
budget in a budget tier (`litellm_budget_table`). Phase 2 · 3/5, proof items 3 and 4."""

import hashlib
import json
import os
import subprocess

import pytest

from conftest import start_stack
from mock_upstream import MockUpstream
from policies import bearer, chat
from stack import ROOT, TOLLGATE_CLI, clean_dir

CONFIG = """
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: os.environ/LB_A_BASE
      api_key: os.environ/OPENAI_API_KEY
      rpm: 100
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: os.environ/LB_B_BASE
      api_key: os.environ/OPENAI_API_KEY
      rpm: 100
  - model_name: azure-gpt-4o
    litellm_params:
      model: azure/contoso-prod-4o
      api_base: os.environ/AZURE_EU_BASE
      api_key: os.environ/OPENAI_API_KEY
    model_info:
      base_model: azure/gpt-4o
  - model_name: mini
    litellm_params:
      model: gpt-4o-mini
      api_base: os.environ/LB_A_BASE
      api_key: os.environ/OPENAI_API_KEY
"""

KEY = "sk-migrated-from-litellm"
TIGHT = "sk-migrated-tight-budget"


def sha(key):
    return hashlib.sha256(key.encode()).hexdigest()


EXPORT = {
    "keys": [
        {"token": sha(KEY), "key_alias": "migrated", "models": [], "max_budget": None,
         "litellm_budget_table": {"max_budget": 100.0, "budget_duration": "monthly"}},
        {"token": sha(TIGHT), "key_alias": "tight", "models": [], "max_budget": 0.00002,
         "budget_duration": "monthly"},
    ]
}


@pytest.fixture(scope="module")
def migrated(request, upstreams):
    mocks = {name: MockUpstream(name) for name in ("lb-a", "lb-b", "azure-eu")}
    work = clean_dir(ROOT / ".run" / "e2e" / "litellm-migration")
    (work / "config.yaml").write_text(CONFIG)
    (work / "export.json").write_text(json.dumps(EXPORT))
    env = dict(os.environ,
               LB_A_BASE=f"http://127.0.0.1:{mocks['lb-a'].port}/v1",
               LB_B_BASE=f"http://127.0.0.1:{mocks['lb-b'].port}/v1",
               AZURE_EU_BASE=f"http://127.0.0.1:{mocks['azure-eu'].port}")
    imported = subprocess.run([str(TOLLGATE_CLI), "import-litellm", str(work / "config.yaml"), "--keys",
                               str(work / "export.json"), "--output", str(work / "policy.json")],
                              env=env, capture_output=True, text=True, timeout=60)
    assert imported.returncode == 0, imported.stderr
    built = subprocess.run([str(TOLLGATE_CLI), "build-config", "--policy", str(work / "policy.json"), "--cost-map",
                            str(ROOT / "tests" / "data" / "model_prices_and_context_window.json"), "--output",
                            str(work / "plugin.json")], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    assert "warning:" not in built.stderr, built.stderr
    policy = json.loads((work / "policy.json").read_text())
    # The clusters the import named, pointed at the mocks (as the operator does in Envoy).
    ports = {f"openai-127-0-0-1-{mocks['lb-a'].port}": mocks["lb-a"].port,
             f"openai-127-0-0-1-{mocks['lb-b'].port}": mocks["lb-b"].port,
             f"azure-127-0-0-1-{mocks['azure-eu'].port}": mocks["azure-eu"].port}
    assert {d["cluster"] for d in policy["model_list"]} == set(ports), (policy["model_list"], imported.stderr)
    stack = start_stack(request, upstreams, (work / "plugin.json").read_text(), name="litellm-migration",
                        extra_clusters=ports)
    yield stack, mocks, imported.stderr
    stack.stop()
    for mock in mocks.values():
        mock.stop()


def test_a_load_balanced_group_reaches_both_upstreams(migrated):
    stack, mocks, _ = migrated
    for _ in range(40):
        r = stack.request("POST", "/v1/chat/completions", bearer(KEY), chat("gpt-4o"))
        assert r.status == 200, r
    a, b = len(mocks["lb-a"].requests()), len(mocks["lb-b"].requests())
    assert a + b == 40 and a >= 5 and b >= 5, (a, b)
    sent = mocks["lb-a"].requests()[0]
    assert json.loads(sent["body"])["model"] == "gpt-4o"
    assert sent["headers"]["authorization"] == "Bearer upstream-openai-secret"


def test_a_bare_model_name_is_routed_to_the_provider_the_cost_map_names(migrated):
    stack, mocks, log = migrated
    assert '"gpt-4o-mini" is openai/gpt-4o-mini' in log, log
    before = len(mocks["lb-a"].requests())
    r = stack.request("POST", "/v1/chat/completions", bearer(KEY), chat("mini"))
    assert r.status == 200, r
    assert json.loads(mocks["lb-a"].requests()[before]["body"])["model"] == "gpt-4o-mini"


def test_an_azure_deployment_is_priced_through_base_model_under_a_budget(migrated):
    stack, mocks, _ = migrated
    r = stack.request("POST", "/v1/chat/completions", bearer(KEY), chat("azure-gpt-4o"))
    assert r.status == 200, r  # without base_model: 403 model_unpriced for a budgeted key
    sent = mocks["azure-eu"].requests()[-1]
    assert json.loads(sent["body"])["model"] == "contoso-prod-4o"
    assert sent["headers"]["api-key"] == "upstream-openai-secret"


def test_a_monthly_budget_from_the_export_is_enforced(migrated):
    stack, _, _ = migrated
    statuses = []
    for _ in range(12):
        r = stack.request("POST", "/v1/chat/completions", bearer(TIGHT), chat("gpt-4o"))
        statuses.append(r.status)
        if r.status == 429:
            error = r.json()["error"]
            assert error["code"] == "budget_exceeded", error
            # LiteLLM's "monthly" (30d) is a calendar month: the message names when it resets.
            assert "tight" in error["message"], error
            break
    assert statuses[0] == 200 and statuses[-1] == 429, statuses


CATCH_ALL = """
model_list:
  - model_name: "*"
    litellm_params:
      model: "*"
"""
ANY = "sk-migrated-any-model"
CLAUDE_ONLY = "sk-migrated-claude-only"


@pytest.fixture(scope="module")
def catch_all(request, upstreams):
    """LiteLLM's Quick Start catch-all, imported: the provider comes from the requested name."""
    work = clean_dir(ROOT / ".run" / "e2e" / "litellm-catch-all")
    (work / "config.yaml").write_text(CATCH_ALL)
    (work / "export.json").write_text(json.dumps({"keys": [
        {"token": sha(ANY), "key_alias": "any", "models": []},
        {"token": sha(CLAUDE_ONLY), "key_alias": "claude-only", "models": ["anthropic/*"]}]}))
    imported = subprocess.run([str(TOLLGATE_CLI), "import-litellm", str(work / "config.yaml"), "--keys",
                               str(work / "export.json"), "--output", str(work / "policy.json")],
                              capture_output=True, text=True, timeout=60)
    assert imported.returncode == 0, imported.stderr
    built = subprocess.run([str(TOLLGATE_CLI), "build-config", "--policy", str(work / "policy.json"), "--cost-map",
                            str(ROOT / "tests" / "data" / "model_prices_and_context_window.json"), "--output",
                            str(work / "plugin.json")], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    # The e2e Envoy defines the openai, anthropic and openrouter clusters (the mocks); the other
    # providers' keys are not set, so routing skips them.
    stack = start_stack(request, upstreams, (work / "plugin.json").read_text(), name="litellm-catch-all")
    yield stack
    stack.stop()


@pytest.mark.parametrize("model, upstream", [
    ("gpt-4o", "openai"),                       # the cost map names openai
    ("claude-sonnet-4-6", "anthropic"),         # the cost map names anthropic
    ("claude-newfamily-9", "anthropic"),        # newer than the map: its fallback rule
    ("openai/gpt-4o-mini", "openai"),           # provider-qualified
])
def test_the_catch_all_routes_each_name_to_the_provider_litellm_infers(catch_all, upstreams, model, upstream):
    r = catch_all.request("POST", "/v1/chat/completions", bearer(ANY), chat(model))
    assert r.status == 200, r
    sent = upstreams[upstream].requests()[-1]
    assert json.loads(sent["body"])["model"] == model.split("/")[-1]


def test_the_catch_all_keeps_access_and_refuses_names_no_provider_owns(catch_all, upstreams):
    r = catch_all.request("POST", "/v1/chat/completions", bearer(CLAUDE_ONLY), chat("claude-newfamily-9"))
    assert r.status == 200, r
    r = catch_all.request("POST", "/v1/chat/completions", bearer(CLAUDE_ONLY), chat("gpt-4o"))
    assert r.status == 403 and r.json()["error"]["code"] == "model_not_allowed", r
    r = catch_all.request("POST", "/v1/chat/completions", bearer(ANY), chat("no-such-model-anywhere"))
    assert r.status in (400, 404) and r.status != 200, r
    assert not any(json.loads(q["body"]).get("model") == "no-such-model-anywhere"
                   for m in upstreams.values() for q in m.requests())
