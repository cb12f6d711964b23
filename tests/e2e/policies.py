"""Policies used by the end-to-end tests (and ./scripts/run), built on the real LiteLLM cost map."""

import copy
import json
from pathlib import Path

from stack import ACCOUNTING_TOKEN_ENV, ACCOUNTING_WRITER_TOKEN, key_hash

ROOT = Path(__file__).resolve().parents[2]
REAL_COST_MAP = json.loads((ROOT / "tests" / "data" / "model_prices_and_context_window.json").read_text())

# Credentials the VM environment holds; the mock upstreams must see these, never the virtual keys.
UPSTREAM_ENV = {
    "OPENAI_API_KEY": "upstream-openai-secret",
    "OPENAI_EAST_KEY": "upstream-openai-east-secret",
    "OPENAI_WEST_KEY": "upstream-openai-west-secret",
    "OPENAI_VAULT_KEY": "upstream-openai-vault-secret",
    "ANTHROPIC_API_KEY": "upstream-anthropic-secret",
    "OPENROUTER_API_KEY": "upstream-openrouter-secret",
    # Seals Responses affinity marks to their tenant (settings.affinity_secret_env's default name).
    "TOLLGATE_AFFINITY_SECRET": "e2e-affinity-secret-0123456789abcdef",
    ACCOUNTING_TOKEN_ENV: ACCOUNTING_WRITER_TOKEN,
}

KEYS = {
    "anthropic_wild": "sk-e2e-anthropic-wildcard",
    "target_only": "sk-e2e-target-only",
    "alias_only": "sk-e2e-alias-only",
    "neither": "sk-e2e-neither",
    "all": "sk-e2e-all-models",
    "expired": "sk-e2e-expired",
    "blocked": "sk-e2e-blocked",
    "frozen_team": "sk-e2e-frozen-team",
    "nocred": "sk-e2e-no-credential",
}

AGENT_ALIAS = "AgentX-LLM"
AGENT_TARGET = "openrouter/qwen/qwen3.5-flash-02-23"
# Not in the real cost map, and none of its fallback_generalizations rules places it (a bare
# claude-<family>-<n> such as claude-opus-5-0 would be placed under anthropic); version 2 adds it.
NEW_MODEL = "claude-5-opus-preview"


def base_policy(version="v1", cost_map=None):
    keys = [
        {"key_hash": key_hash(KEYS["anthropic_wild"]), "key_alias": "anthropic-wild", "models": ["anthropic/*"]},
        {"key_hash": key_hash(KEYS["target_only"]), "key_alias": "target-only", "models": [AGENT_TARGET]},
        {"key_hash": key_hash(KEYS["alias_only"]), "key_alias": "alias-only", "models": [AGENT_ALIAS]},
        {"key_hash": key_hash(KEYS["neither"]), "key_alias": "neither", "models": ["gpt-4o"]},
        {"key_hash": key_hash(KEYS["all"]), "key_alias": "all", "team_id": "platform", "models": []},
        {"key_hash": key_hash(KEYS["expired"]), "key_alias": "expired", "expires": "2020-01-01T00:00:00Z"},
        {"key_hash": key_hash(KEYS["blocked"]), "key_alias": "blocked", "blocked": True},
        {"key_hash": key_hash(KEYS["frozen_team"]), "key_alias": "frozen", "team_id": "frozen"},
        {"key_hash": key_hash(KEYS["nocred"]), "key_alias": "nocred", "models": ["nocred-model"]},
    ]
    return {
        "version": version,
        "settings": {"max_request_body_bytes": 65536, "access_log": True},
        "cost_map": REAL_COST_MAP if cost_map is None else cost_map,
        "model_list": [
            {"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o", "api_key_env": "OPENAI_API_KEY"},
             "cluster": "openai", "model_info": {"id": "openai-gpt-4o"}},
            {"model_name": "anthropic/*", "litellm_params": {"model": "anthropic/*", "api_key_env": "ANTHROPIC_API_KEY"},
             "cluster": "anthropic", "model_info": {"id": "anthropic-all"}},
            {"model_name": "openrouter/*", "litellm_params": {"model": "openrouter/*", "api_key_env": "OPENROUTER_API_KEY"},
             "cluster": "openrouter", "model_info": {"id": "openrouter-all"}},
            {"model_name": "nocred-model", "litellm_params": {"model": "openai/nocred", "api_key_env": "NOT_SET_IN_VM"},
             "cluster": "openai", "model_info": {"id": "nocred"}},
        ],
        "model_group_alias": {AGENT_ALIAS: AGENT_TARGET},
        "teams": [
            {"team_id": "platform", "team_alias": "Platform", "models": []},
            {"team_id": "frozen", "team_alias": "Frozen", "blocked": True},
        ],
        "keys": keys,
    }


def with_new_model(version):
    """Version 2: the same policy whose cost map also knows NEW_MODEL (an anthropic model)."""
    cost_map = copy.copy(REAL_COST_MAP)
    cost_map[NEW_MODEL] = {"litellm_provider": "anthropic", "mode": "chat",
                           "input_cost_per_token": 5e-06, "output_cost_per_token": 2.5e-05}
    return base_policy(version, cost_map)


def bearer(key):
    return {"authorization": f"Bearer {key}", "content-type": "application/json"}


def chat(model, **extra):
    return dict({"model": model, "messages": [{"role": "user", "content": "Hello"}]}, **extra)


# --- Money (issue 2/4): budgets, unpriced models, spend reporting --------------------------------

MONEY_KEYS = {
    "small": "sk-e2e-budget-small",        # $0.001 key budget
    "unpriced": "sk-e2e-budget-unpriced",  # budgeted key that may call a model with no price
    "meter": "sk-e2e-meter",               # team budget only (large): every event names a budget
    "shared": "sk-e2e-shared-budget",      # two-replica test
}
UNPRICED_MODEL = "mystery-model"  # served by openai/mystery-model-x, absent from the cost map


def accounting_section(**overrides):
    section = {"cluster": "accounting", "flush_interval_ms": 200, "poll_interval_ms": 500,
               "batch_max_events": 20, "timeout_ms": 2000, "source": "tollgate/e2e",
               "token_env": ACCOUNTING_TOKEN_ENV}
    section.update(overrides)
    return section


def money_policy(version="m1", unpriced=None, shared_budget=0.01, accounting=None):
    policy = base_policy(version)
    policy["model_list"].append(
        {"model_name": UNPRICED_MODEL, "litellm_params": {"model": "openai/mystery-model-x",
                                                          "api_key_env": "OPENAI_API_KEY"},
         "cluster": "openai", "model_info": {"id": "openai-mystery"}})
    policy["teams"].append({"team_id": "metered", "team_alias": "Metered", "max_budget": 1000,
                            "budget_duration": "30d"})
    policy["keys"] += [
        {"key_hash": key_hash(MONEY_KEYS["small"]), "key_alias": "small-budget", "max_budget": 0.001,
         "models": ["gpt-4o"]},
        {"key_hash": key_hash(MONEY_KEYS["unpriced"]), "key_alias": "unpriced-budget", "max_budget": 1,
         "models": [UNPRICED_MODEL, "gpt-4o"]},
        {"key_hash": key_hash(MONEY_KEYS["meter"]), "key_alias": "meter", "team_id": "metered",
         "user_id": "alice"},
        {"key_hash": key_hash(MONEY_KEYS["shared"]), "key_alias": "shared-budget",
         "max_budget": shared_budget, "budget_duration": "1d", "models": ["gpt-4o"]},
    ]
    if unpriced is not None:
        policy["settings"]["unpriced_models"] = unpriced
    policy["accounting"] = accounting_section(**(accounting or {}))
    return policy


def nano_cost(model, prompt, completion, cached=0):
    """Exact cost in nano-dollars from the real cost map, computed independently of the filter."""
    from decimal import Decimal
    entry = REAL_COST_MAP[model]
    usd = (Decimal(repr(entry["input_cost_per_token"])) * (prompt - cached)
           + Decimal(repr(entry.get("cache_read_input_token_cost", entry["input_cost_per_token"]))) * cached
           + Decimal(repr(entry["output_cost_per_token"])) * completion)
    return int((usd * Decimal(10**9)).to_integral_value(rounding="ROUND_HALF_UP"))


# --- Responses affinity (issue 3/4) ------------------------------------------------------------

AFFINITY_KEY = "sk-e2e-affinity"
REASONING_MODEL = "o4-mini"


def affinity_policy(version="a1", deployments=("east", "west"), fallback=None, extra=()):
    """Deployments of one model group on different credentials (OpenAI organisations / Azure
    regions), plus a `vault` deployment of another model that the affinity key may not use."""
    policy = base_policy(version)
    for name in deployments:
        env = {"east2": "OPENAI_EAST_KEY"}.get(name, f"OPENAI_{name.upper()}_KEY")
        policy["model_list"].append(
            {"model_name": REASONING_MODEL, "litellm_params": {"model": f"openai/{REASONING_MODEL}",
                                                               "api_key_env": env},
             "cluster": "openai", "model_info": {"id": f"o4-{name}"}})
    policy["model_list"].append(
        {"model_name": "o4-vault", "litellm_params": {"model": f"openai/{REASONING_MODEL}",
                                                      "api_key_env": "OPENAI_VAULT_KEY"},
         "cluster": "openai", "model_info": {"id": "o4-vault"}})
    policy["keys"].append({"key_hash": key_hash(AFFINITY_KEY), "key_alias": "affinity",
                           "models": [REASONING_MODEL]})
    if fallback:
        policy["settings"]["affinity_fallback"] = fallback
    return policy


# --- Adversarial access (issue 10, items 8, 9, 12) ----------------------------------------------

ACCESS_KEYS = {
    "basic": "sk-e2e-access-basic",        # access group basic (the openai/* deployment)
    "premium": "sk-e2e-access-premium",    # access group premium (the openai/o1* deployment)
    "split": "sk-e2e-access-split",        # key premium, team basic: no deployment granted by both
    "shadowed": "sk-e2e-access-shadowed",  # key gpt-4o-mini; its team aliases gpt-4o-mini -> gpt-4o
}


def access_policy(version="x1"):
    """`openai/*` in group basic on one credential, `openai/o1*` in group premium on another."""
    policy = base_policy(version)
    policy["model_list"] += [
        {"model_name": "openai/*", "litellm_params": {"model": "openai/*", "api_key_env": "OPENAI_API_KEY"},
         "cluster": "openai", "model_info": {"id": "openai-basic", "access_groups": ["basic"]}},
        {"model_name": "openai/o1*", "litellm_params": {"model": "openai/o1*", "api_key_env": "OPENAI_VAULT_KEY"},
         "cluster": "openai", "model_info": {"id": "openai-premium", "access_groups": ["premium"]}},
        {"model_name": "gpt-4o-mini", "litellm_params": {"model": "openai/gpt-4o-mini",
                                                         "api_key_env": "OPENAI_API_KEY"},
         "cluster": "openai", "model_info": {"id": "openai-gpt-4o-mini"}},
    ]
    policy["teams"] += [
        {"team_id": "basic-team", "team_alias": "Basic", "models": ["basic"]},
        {"team_id": "shadow", "team_alias": "Shadow", "models": [],
         "model_aliases": {"gpt-4o-mini": "gpt-4o"}},
    ]
    policy["keys"] += [
        {"key_hash": key_hash(ACCESS_KEYS["basic"]), "key_alias": "access-basic", "models": ["basic"]},
        {"key_hash": key_hash(ACCESS_KEYS["premium"]), "key_alias": "access-premium", "models": ["premium"]},
        {"key_hash": key_hash(ACCESS_KEYS["split"]), "key_alias": "access-split", "team_id": "basic-team",
         "models": ["premium"]},
        {"key_hash": key_hash(ACCESS_KEYS["shadowed"]), "key_alias": "access-shadowed", "team_id": "shadow",
         "models": ["gpt-4o-mini"]},
    ]
    return policy


TENANT_KEYS = {
    "red": "sk-e2e-tenant-red",      # team red
    "red2": "sk-e2e-tenant-red-2",   # team red too: the same tenant
    "blue": "sk-e2e-tenant-blue",    # team blue: another tenant, same upstream credentials
    "solo": "sk-e2e-tenant-solo",    # no team: a tenant of its own
}


def tenant_policy(version="t1", **settings):
    """Responses affinity with keys of several tenants sharing the same deployments."""
    policy = affinity_policy(version)
    policy["teams"] += [{"team_id": "red", "models": []}, {"team_id": "blue", "models": []}]
    for name, key in TENANT_KEYS.items():
        team = {"red": "red", "red2": "red", "blue": "blue"}.get(name)
        entry = {"key_hash": key_hash(key), "key_alias": f"tenant-{name}", "models": [REASONING_MODEL]}
        if team:
            entry["team_id"] = team
        policy["keys"].append(entry)
    policy["settings"].update(settings)
    return policy
