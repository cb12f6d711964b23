"""Scenarios 1 and 2: policy versions delivered to a running Envoy by ECDS (no restart)."""

import json
import time

from policies import KEYS, NEW_MODEL, base_policy, bearer, chat, with_new_model
from stack import AsIstioPluginConfig, stat_name


def test_cost_map_update_lets_a_wildcard_key_reach_a_new_model(envoy, upstreams):
    refused = envoy.request("POST", "/v1/messages", bearer(KEYS["anthropic_wild"]),
                            chat(NEW_MODEL, max_tokens=16))
    assert refused.status == 403, refused
    assert refused.json()["error"]["code"] == "model_not_allowed"
    assert refused.headers["x-tollgate-policy-version"] == "v1"
    assert upstreams["anthropic"].requests() == []

    envoy.push_policy(with_new_model("v2"), "v2")

    admitted = envoy.request("POST", "/v1/messages", bearer(KEYS["anthropic_wild"]),
                             chat(NEW_MODEL, max_tokens=16))
    assert admitted.status == 200, admitted
    assert admitted.headers["x-tollgate-policy-version"] == "v2"
    assert admitted.headers["x-mock-upstream"] == "anthropic"
    [seen] = upstreams["anthropic"].requests()
    assert seen["path"] == "/v1/messages"
    assert json.loads(seen["body"])["model"] == NEW_MODEL


def test_bad_versions_are_refused_whole_and_the_previous_one_keeps_serving(envoy, upstreams):
    envoy.push_policy(with_new_model("v2b"), "v2b")
    bad_alias = with_new_model("v3-bad-alias")
    bad_alias["model_group_alias"]["broken"] = "mistral/nowhere"
    assert envoy.push_policy(bad_alias, "v3", expect_accepted=False) is False

    bad_price = with_new_model("v4-bad-price")
    bad_price["cost_map"] = dict(bad_price["cost_map"])
    bad_price["cost_map"]["gpt-4o"] = dict(bad_price["cost_map"]["gpt-4o"], input_cost_per_token="0.0000025")
    assert envoy.push_policy(bad_price, "v4", expect_accepted=False) is False

    still = envoy.request("POST", "/v1/messages", bearer(KEYS["anthropic_wild"]), chat(NEW_MODEL, max_tokens=16))
    assert still.status == 200, still
    assert still.headers["x-tollgate-policy-version"] == "v2b"
    log = envoy.log_tail(400)
    assert 'model_group_alias.broken: target "mistral/nowhere" is not served' in log
    assert "cost_map.gpt-4o.input_cost_per_token: a price must be a number" in log
    assert envoy.counter("wasmcustom.tollgate_config_rejected") >= 2


def test_an_unparseable_version_is_refused_too(envoy):
    envoy.push_policy(base_policy("v5"), "v5")
    assert envoy.push_policy('{"version": "v6", "keys": [', "v6", expect_accepted=False) is False
    resp = envoy.request("POST", "/v1/chat/completions", bearer(KEYS["all"]), chat("gpt-4o"))
    assert resp.status == 200
    assert resp.headers["x-tollgate-policy-version"] == "v5"


def test_a_version_delivered_as_istio_plugin_config_json_is_accepted(envoy, upstreams):
    """istiod turns a WasmPlugin's pluginConfig Struct into JSON: every number arrives as a double."""
    policy = base_policy("v7-struct")
    policy["settings"]["max_request_body_bytes"] = 65536
    delivered = AsIstioPluginConfig(policy)
    assert '"max_request_body_bytes":65536.0' in delivered.to_json()
    assert '"max_input_tokens":1e+06' in delivered.to_json()  # claude-sonnet-4-6 in the real cost map
    envoy.push_policy(delivered, "v7")
    resp = envoy.request("POST", "/v1/chat/completions", bearer(KEYS["all"]), chat("gpt-4o"))
    assert resp.status == 200, resp
    assert resp.headers["x-tollgate-policy-version"] == "v7-struct"
    big = envoy.request("POST", "/v1/chat/completions", bearer(KEYS["all"]), chat("gpt-4o", pad="x" * 70000))
    assert big.status == 413


def test_the_active_version_gauge_survives_a_repush_of_the_same_version(envoy, upstreams):
    gauge = stat_name("wasmcustom.tollgate_config_active_v_same")
    envoy.push_policy(base_policy("v-same"), "same-1")
    envoy.push_policy(base_policy("v-same"), "same-2")  # same label, new delivery
    time.sleep(1)  # the replaced root context has finished by now
    assert envoy.stats().get(gauge) == "1"
    envoy.push_policy(base_policy("v1"), "back-to-v1")
    wait = time.monotonic() + 5
    while envoy.stats().get(gauge) != "0" and time.monotonic() < wait:
        time.sleep(0.1)
    assert envoy.stats().get(gauge) == "0"
    assert envoy.stats().get(stat_name("wasmcustom.tollgate_config_active_v1")) == "1"
