"""Issue 14 item 8: soft budgets (one threshold event per window, across replicas) and per-model
budgets (LiteLLM's model_max_budget) as Tollgate features, through real Envoy and the reference
accounting server."""

import time

import pytest

from conftest import accounting_server, start_stack
from policies import bearer, chat, money_policy, nano_cost
from stack import key_hash, wait_until

SOFT_KEY = "sk-e2e-soft-budget"
MODEL_KEY = "sk-e2e-model-budget"
WILD_KEY = "sk-e2e-model-budget-wildcard"
PER_REQUEST = nano_cost("gpt-4o", 12, 5)  # what the mock upstream's answer costs


def policy(version):
    policy = money_policy(version)
    policy["model_list"].append(
        {"model_name": "gpt-4o-mini", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key_env": "OPENAI_API_KEY"},
         "cluster": "openai"})
    policy["keys"] += [
        # A soft budget alone: 2.5 requests' worth, never refuses.
        {"key_hash": key_hash(SOFT_KEY), "key_alias": "soft", "models": ["gpt-4o"],
         "soft_budget": 2.5 * PER_REQUEST / 1e9, "budget_duration": "1d"},
        # A per-model budget of 3.1 requests' worth on gpt-4o, reached through an alias too.
        {"key_hash": key_hash(MODEL_KEY), "key_alias": "per-model", "models": ["gpt-4o", "gpt-4o-mini"],
         "aliases": {"fast": "gpt-4o"},
         "model_max_budget": {"gpt-4o": {"budget_limit": 3.1 * PER_REQUEST / 1e9, "time_period": "1d"}}},
        # The per-model budget written as the allow-list entry, a provider-qualified wildcard.
        {"key_hash": key_hash(WILD_KEY), "key_alias": "per-model-wildcard", "models": ["openai/gpt-4o*"],
         "model_max_budget": {"openai/gpt-4o*": {"budget_limit": 3.1 * PER_REQUEST / 1e9, "time_period": "1d"}}},
    ]
    return policy


@pytest.fixture(scope="module")
def accounting():
    server = accounting_server("accounting-soft")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def replicas(request, upstreams, accounting):
    stacks = [start_stack(request, upstreams, policy("s1"), name=f"soft-replica-{i}",
                          extra_clusters={"accounting": accounting.port}) for i in range(2)]
    yield stacks
    for stack in stacks:
        stack.stop()


def alerts(accounting):
    return [a for a in accounting.report()["alerts"] if a["holder"] == "soft"]


def test_a_soft_budget_raises_one_threshold_event_per_window_across_replicas(replicas, accounting):
    a, b = replicas
    for i in range(3):
        r = (a if i % 2 == 0 else b).request("POST", "/v1/chat/completions", bearer(SOFT_KEY), chat("gpt-4o"))
        assert r.status == 200, r
    [alert] = wait_until(lambda: alerts(accounting) or None, timeout=10, message="a threshold event")
    assert alert["budget"] == f"key:{key_hash(SOFT_KEY)}"
    assert alert["threshold"] == "soft_budget" and alert["scope"] == "key"
    assert alert["threshold_nano_usd"] == round(2.5 * PER_REQUEST)
    assert alert["limit_nano_usd"] is None
    assert alert["spend_nano_usd"] >= alert["threshold_nano_usd"]
    assert alert["window_end"] - alert["window_start"] == 86_400
    # No request saw the threshold reached (each replica had counted less), but the polled
    # total did: both replicas report it once, and the accounting server keeps one event.
    def both_reported():
        logs = [stack.log_path.read_text() for stack in replicas]
        return all("reached its soft budget" in log for log in logs) or None
    wait_until(both_reported, timeout=15, message="both replicas reporting the soft budget")
    for stack in replicas:
        r = stack.request("POST", "/v1/chat/completions", bearer(SOFT_KEY), chat("gpt-4o"))
        assert r.status == 200, r  # a soft budget never refuses
    wait_until(lambda: sum(1 for e in accounting.events() if e["data"]["key_alias"] == "soft") >= 5,
               timeout=10, message="the spend events")
    time.sleep(1.2)  # two more polls: nothing new to report in this window
    assert len(alerts(accounting)) == 1
    assert all(log.count("reached its soft budget") == 1 for log in
               (stack.log_path.read_text() for stack in replicas)), "each replica reports once per window"


def test_a_per_model_budget_counts_what_an_alias_reaches(replicas):
    stack = replicas[0]
    statuses = []
    for model in ["gpt-4o", "fast", "gpt-4o", "fast", "fast"]:
        r = stack.request("POST", "/v1/chat/completions", bearer(MODEL_KEY), chat(model))
        statuses.append(r.status)
        last = r
    # 4 × PER_REQUEST is the first total at or above 3.1 × PER_REQUEST: the fifth is refused.
    assert statuses == [200, 200, 200, 200, 429], statuses
    error = last.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert "key 'per-model' on model 'gpt-4o'" in error["message"], error
    assert last.headers.get("retry-after")
    # Another model of the same key has no per-model budget.
    assert stack.request("POST", "/v1/chat/completions", bearer(MODEL_KEY), chat("gpt-4o-mini")).status == 200


def test_a_wildcard_per_model_budget_counts_the_bare_name_its_wildcard_admits(replicas):
    # "openai/gpt-4o*" admits the bare "gpt-4o" (the cost map puts it under openai); the budget
    # written the same way must count it too (before the fix it matched only the name as sent,
    # so the bare name walked around it for ever).
    stack = replicas[0]
    statuses = []
    for _ in range(5):
        r = stack.request("POST", "/v1/chat/completions", bearer(WILD_KEY), chat("gpt-4o"))
        statuses.append(r.status)
        last = r
        if r.status != 200:
            break
    assert statuses == [200, 200, 200, 200, 429], f"{statuses}: the per-model budget never refused"
    assert "on model 'openai/gpt-4o*'" in last.json()["error"]["message"], last
