"""Policies used by the end-to-end tests (and ./scripts/run), built on the real LiteLLM cost map."""

import copy
import json
from pathlib import Path

from stack import key_hash

ROOT = Path(__file__).resolve().parents[2]
REAL_COST_MAP = json.loads((ROOT / "tests" / "data" / "model_prices_and_context_window.json").read_text())

# Credentials the VM environment holds; the mock upstreams must see these, never the virtual keys.
UPSTREAM_ENV = {
    "OPENAI_API_KEY": "upstream-openai-secret",
    "ANTHROPIC_API_KEY": "upstream-anthropic-secret",
    "OPENROUTER_API_KEY": "upstream-openrouter-secret",
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
NEW_MODEL = "claude-opus-5-0"  # not in the real cost map; version 2 adds it


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
        "settings": {"max_request_body_bytes": 65536},
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
