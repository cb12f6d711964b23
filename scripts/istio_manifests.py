"""Renders envoy/istio/*.yaml from the canonical pieces, so they cannot drift from what the tests run:
the Wasm filter config of tests/e2e/stack.py (ecds_resource) and envoy/policy.example.json.

  python3 scripts/istio_manifests.py          # rewrite envoy/istio/
  python3 scripts/istio_manifests.py --check  # exit 1 if the files differ (run by the tests)
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from stack import ecds_resource  # noqa: E402

IMAGE = "oci://registry.example.com/tollgate:0.1.0"
LLM_HOST = "llm.example.com"
# The example policy's clusters, as Istio names the clusters of the ServiceEntries below.
CLUSTERS = {
    "openai": "outbound|443||api.openai.com",
    "anthropic": "outbound|443||api.anthropic.com",
    "accounting": "outbound|9902||tollgate-accounting.tollgate.svc.cluster.local",
}
NAMESPACE = "istio-system"
SELECTOR = {"istio": "ingressgateway"}
SECRET_ENV = ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "TOLLGATE_ACCOUNTING_TOKEN", "TOLLGATE_AFFINITY_SECRET"]


def to_yaml(value, indent=0):
    """A small YAML emitter for the manifests (mappings, lists, strings, numbers, booleans)."""
    pad = "  " * indent
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            name = key if key.replace("_", "").isalnum() else json.dumps(key)
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{name}:")
                lines.append(to_yaml(item, indent + 1))
            else:
                lines.append(f"{pad}{name}: {scalar(item)}")
        return "\n".join(lines)
    if isinstance(value, list):
        lines = []
        for item in value:
            if isinstance(item, (dict, list)) and item:
                body = to_yaml(item, indent + 1).lstrip()
                lines.append(f"{pad}- {body}")
            else:
                lines.append(f"{pad}- {scalar(item)}")
        return "\n".join(lines)
    return pad + scalar(value)


def scalar(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return json.dumps(value)  # JSON strings are valid YAML double-quoted scalars


def wasm_config(policy_text):
    """The filter config the e2e tests load, with the code fetched from the OCI image and the
    credentials read from the proxy container's environment (filled from a Secret)."""
    config = ecds_resource(policy_text, "plugin.wasm", {}, "istio", form="wasm")["resources"][0]["typed_config"]
    config["config"]["vm_config"]["code"] = {"remote": {"http_uri": {"uri": IMAGE, "timeout": "30s"}}}
    config["config"]["vm_config"]["environment_variables"] = {"host_env_keys": SECRET_ENV}
    return config


def envoy_filter(policy_text):
    return {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": {"name": "tollgate", "namespace": NAMESPACE},
        "spec": {
            "workloadSelector": {"labels": SELECTOR},
            "configPatches": [
                {"applyTo": "EXTENSION_CONFIG",
                 "patch": {"operation": "ADD", "value": {"name": "tollgate", "typed_config": wasm_config(policy_text)}}},
                {"applyTo": "HTTP_FILTER",
                 "match": {"context": "GATEWAY", "listener": {"filterChain": {"filter": {
                     "name": "envoy.filters.network.http_connection_manager",
                     "subFilter": {"name": "envoy.filters.http.router"}}}}},
                 "patch": {"operation": "INSERT_BEFORE", "value": {
                     "name": "tollgate",
                     "config_discovery": {
                         "config_source": {"ads": {}, "initial_fetch_timeout": "0s"},
                         "type_urls": ["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"]}}}},
                # The filter names the deployment's cluster in x-tollgate-cluster; a VirtualService
                # cannot route on a header's value, so the named route is patched to do it.
                {"applyTo": "HTTP_ROUTE",
                 "match": {"context": "GATEWAY", "routeConfiguration": {"vhost": {"route": {"name": "tollgate"}}}},
                 "patch": {"operation": "MERGE", "value": {"route": {"cluster_header": "x-tollgate-cluster",
                                                                      "auto_host_rewrite": True},
                                                            # With the descriptor headers of
                                                            # settings.rate_limit_descriptors.
                                                            "request_headers_to_remove": [
                                                                "x-tollgate-cluster", "x-tollgate-key",
                                                                "x-tollgate-team", "x-tollgate-user",
                                                                "x-tollgate-end-user", "x-tollgate-model"]}}},
            ],
        },
    }


def wasm_plugin(policy):
    return {
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": "tollgate", "namespace": NAMESPACE},
        "spec": {
            "selector": {"matchLabels": SELECTOR},
            "url": IMAGE,
            "phase": "AUTHZ",
            "failStrategy": "FAIL_CLOSE",
            "vmConfig": {"env": [{"name": name, "valueFrom": "HOST"} for name in SECRET_ENV]},
            "pluginConfig": policy,
        },
    }


def upstreams():
    """ServiceEntries (TLS originated by DestinationRules) for the providers and the VirtualService
    whose route the EnvoyFilter turns into a cluster_header route."""
    docs = []
    for host in ("api.openai.com", "api.anthropic.com"):
        name = host.replace(".", "-")
        docs.append({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
                     "metadata": {"name": name, "namespace": NAMESPACE},
                     "spec": {"hosts": [host], "location": "MESH_EXTERNAL", "resolution": "DNS",
                              "ports": [{"number": 443, "name": "http-tls-origination", "protocol": "HTTP",
                                         "targetPort": 443}]}})
        docs.append({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                     "metadata": {"name": name, "namespace": NAMESPACE},
                     "spec": {"host": host, "trafficPolicy": {"tls": {"mode": "SIMPLE", "sni": host}}}})
    docs.append({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                 "metadata": {"name": "llm", "namespace": NAMESPACE},
                 "spec": {"hosts": [LLM_HOST], "gateways": ["llm-gateway"],
                          "http": [{"name": "tollgate",
                                    "route": [{"destination": {"host": "api.openai.com", "port": {"number": 443}}}]}]}})
    return docs


def istio_policy(policy):
    """The example policy with the Istio cluster names."""
    policy = json.loads(json.dumps(policy))
    for deployment in policy["model_list"]:
        deployment["cluster"] = CLUSTERS[deployment["cluster"]]
    policy["accounting"]["cluster"] = CLUSTERS[policy["accounting"]["cluster"]]
    policy["accounting"]["authority"] = "tollgate-accounting.tollgate.svc.cluster.local"
    return policy


def secret_env_patch():
    return {
        "spec": {"template": {"spec": {"containers": [{
            "name": "istio-proxy",
            "env": [{"name": name, "valueFrom": {"secretKeyRef": {"name": "tollgate-upstream",
                                                                   "key": name.lower().replace("_", "-")}}}
                    for name in SECRET_ENV]}]}}}}


HEADER = "# Generated by scripts/istio_manifests.py from envoy/policy.example.json and tests/e2e/stack.py; do not edit.\n"


def render():
    policy = istio_policy(json.loads((ROOT / "envoy" / "policy.example.json").read_text()))
    compact = json.dumps(policy, separators=(",", ":"))
    return {
        "envoyfilter.yaml": HEADER + "# The supported form: Tollgate needs allow_on_headers_stop_iteration, which WasmPlugin cannot set.\n"
        + to_yaml(envoy_filter(compact)) + "\n",
        "wasmplugin.yaml": HEADER + "# Reference only: a WasmPlugin cannot set allow_on_headers_stop_iteration, so Tollgate's\n"
        "# requests would hang at the body (see README, Istio). Use envoyfilter.yaml.\n"
        + to_yaml(wasm_plugin(policy)) + "\n",
        "upstreams.yaml": HEADER + "# Provider ServiceEntries with TLS origination, and the LLM VirtualService.\n"
        + "\n---\n".join(to_yaml(doc) for doc in upstreams()) + "\n",
        "gateway-secret-env.yaml": HEADER + "# kubectl -n istio-system patch deployment istio-ingressgateway --patch-file gateway-secret-env.yaml\n"
        "# The upstream credentials come from the Secret tollgate-upstream into the proxy's environment,\n"
        "# where the filter's vm_config (host_env_keys) reads them.\n"
        + to_yaml(secret_env_patch()) + "\n",
    }


def main():
    out = ROOT / "envoy" / "istio"
    out.mkdir(parents=True, exist_ok=True)
    files = render()
    if "--check" in sys.argv:
        stale = [name for name, text in files.items()
                 if not (out / name).exists() or (out / name).read_text() != text]
        if stale:
            print(f"envoy/istio is out of date: {', '.join(stale)}; run python3 scripts/istio_manifests.py")
            sys.exit(1)
        print("envoy/istio is up to date")
        return
    for name, text in files.items():
        (out / name).write_text(text)
        print(f"wrote envoy/istio/{name}")


if __name__ == "__main__":
    main()
