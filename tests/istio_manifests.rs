//! The Istio manifests in envoy/istio parse as YAML, carry the settings the filter needs, and
//! their policies pass the filter's own compiler (what `tollgate validate` runs).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;

fn documents(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_multiple(&text).unwrap()
}

fn field<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
    path.iter()
        .fold(value, |v, key| match key.parse::<usize>() {
            Ok(i) => &v[i],
            Err(_) => &v[*key],
        })
}

#[test]
fn the_envoy_filter_holds_headers_and_its_policy_compiles() {
    let [filter] = documents("envoy/istio/envoyfilter.yaml")
        .try_into()
        .unwrap();
    let config = field(
        &filter,
        &[
            "spec",
            "configPatches",
            "0",
            "patch",
            "value",
            "typed_config",
            "config",
        ],
    );
    assert_eq!(config["allow_on_headers_stop_iteration"], Value::Bool(true));
    assert_eq!(
        field(config, &["vm_config", "code", "remote", "http_uri", "uri"]).as_str(),
        Some("oci://registry.example.com/tollgate:0.1.0")
    );
    let policy = field(config, &["configuration", "value"]).as_str().unwrap();
    let compiled = tollgate::core::compile(policy.as_bytes()).unwrap();
    assert_eq!(
        compiled.deployments[0].cluster,
        "outbound|443||api.openai.com"
    );
    let route = field(
        &filter,
        &["spec", "configPatches", "2", "patch", "value", "route"],
    );
    assert_eq!(route["cluster_header"].as_str(), Some("x-tollgate-cluster"));
}

#[test]
fn the_wasm_plugin_policy_compiles_as_istiod_would_deliver_it() {
    let [plugin] = documents("envoy/istio/wasmplugin.yaml").try_into().unwrap();
    assert_eq!(plugin["kind"].as_str(), Some("WasmPlugin"));
    // istiod turns the pluginConfig Struct into JSON inside a StringValue.
    let json = serde_json::to_vec(&plugin["spec"]["pluginConfig"]).unwrap();
    tollgate::core::compile(&json).unwrap();
    let env = &plugin["spec"]["vmConfig"]["env"];
    assert_eq!(env[0]["valueFrom"].as_str(), Some("HOST"));
}

#[test]
fn the_other_manifests_parse() {
    let upstreams = documents("envoy/istio/upstreams.yaml");
    let kinds: Vec<&str> = upstreams
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "ServiceEntry",
            "DestinationRule",
            "ServiceEntry",
            "DestinationRule",
            "VirtualService"
        ]
    );
    let [patch] = documents("envoy/istio/gateway-secret-env.yaml")
        .try_into()
        .unwrap();
    let container = field(&patch, &["spec", "template", "spec", "containers", "0"]);
    assert_eq!(container["name"].as_str(), Some("istio-proxy"));
}
