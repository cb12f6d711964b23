"""`./scripts/run` against the real providers (TOLLGATE_UPSTREAMS=real): the config the local stack
renders passes `envoy --mode validate` (no network needed) with TLS, SNI and certificate checks on
both provider clusters; a broken variant does not; real mode refuses to start without its keys.
The same TLS cluster definition then carries requests to a TLS mock on 127.0.0.1 whose
certificate names the provider's host, and refuses a wrong name or an untrusted CA; the
credentials reach the filter from Envoy's environment, as the local stack passes them."""

import json
import os
import ssl
import subprocess
import sys

from conftest import start_stack
from mock_upstream import MockUpstream
from policies import KEYS, UPSTREAM_ENV, base_policy, bearer, chat
from stack import ENVOY, FORM, ROOT, SYSTEM_CA_BUNDLE, TlsUpstream, free_port

LOCAL_STACK = ROOT / "scripts" / "local_stack.py"
FAKE_KEYS = {"OPENAI_API_KEY": "sk-test-openai-not-a-real-key", "ANTHROPIC_API_KEY": "sk-ant-test-not-a-real-key"}


def local_stack(*args, **env):
    """Runs scripts/local_stack.py with the real-provider variables cleared, then `env` set; on
    free ports, so a run that was meant to refuse cannot take the usual ones."""
    environ = {k: v for k, v in os.environ.items()
               if k not in ("TOLLGATE_UPSTREAMS", "TOLLGATE_CA_BUNDLE", "TOLLGATE_POLICY", *FAKE_KEYS)}
    environ.update(TOLLGATE_FORM=FORM, TOLLGATE_PORT=str(free_port()), TOLLGATE_ADMIN_PORT=str(free_port()),
                   TOLLGATE_ACCOUNTING_PORT=str(free_port()), **env)
    return subprocess.run([sys.executable, str(LOCAL_STACK), *args], env=environ, capture_output=True,
                          text=True, timeout=60)


def render(tmp_path, **env):
    out = tmp_path / "rendered"
    result = local_stack("--render", str(out), **env)
    assert result.returncode == 0, result.stdout + result.stderr
    return out / "envoy.yaml"


def validate(bootstrap):
    return subprocess.run([str(ENVOY), "--mode", "validate", "-c", str(bootstrap)],
                          capture_output=True, text=True, timeout=60)


def clusters(bootstrap):
    """{name: its lines of the rendered bootstrap} (render_clusters writes one block per cluster)."""
    text = bootstrap.read_text().split("\n  clusters:\n", 1)[1]
    blocks = ("\n" + text).split("\n  - name: ")[1:]
    return {block.split("\n", 1)[0]: block for block in blocks}


def assert_tls(block, host, ca):
    assert "    type: LOGICAL_DNS\n" in block, block
    assert f"address: {host}, port_value: 443" in block, block
    assert f'hostname: "{host}"' in block, block
    assert "name: envoy.transport_sockets.tls" in block, block
    assert f'sni: "{host}"' in block, block
    assert f'trusted_ca: {{ filename: "{ca}" }}' in block, block
    assert f'san_type: DNS, matcher: {{ exact: "{host}" }}' in block, block
    assert "alpn_protocols: [http/1.1]" in block, block


def test_the_real_provider_config_passes_envoy_validate(tmp_path):
    bootstrap = render(tmp_path, TOLLGATE_UPSTREAMS="real", **FAKE_KEYS)
    result = validate(bootstrap)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rendered = clusters(bootstrap)
    assert sorted(rendered) == ["accounting", "anthropic", "openai"]
    assert_tls(rendered["openai"], "api.openai.com", SYSTEM_CA_BUNDLE)
    assert_tls(rendered["anthropic"], "api.anthropic.com", SYSTEM_CA_BUNDLE)
    # The accounting server stays local, in plain HTTP.
    assert "type: STATIC" in rendered["accounting"] and "transport_socket" not in rendered["accounting"]
    # The keys reach the filter through Envoy's environment: no rendered file holds them.
    for path in bootstrap.parent.rglob("*"):
        if path.is_file() and path.suffix != ".wasm":
            text = path.read_text()
            assert not any(key in text for key in FAKE_KEYS.values()), path
    if FORM == "wasm":
        ecds = json.loads((bootstrap.parent / "ecds" / "tollgate.json").read_text())
        keys = ecds["resources"][0]["typed_config"]["config"]["vm_config"]["environment_variables"]
        assert set(FAKE_KEYS) <= set(keys["host_env_keys"]), keys


def test_one_real_provider_leaves_the_other_mocked_and_needs_only_its_own_key(tmp_path):
    bootstrap = render(tmp_path, TOLLGATE_UPSTREAMS="openai", OPENAI_API_KEY=FAKE_KEYS["OPENAI_API_KEY"])
    assert validate(bootstrap).returncode == 0
    rendered = clusters(bootstrap)
    assert_tls(rendered["openai"], "api.openai.com", SYSTEM_CA_BUNDLE)
    assert "type: STATIC" in rendered["anthropic"] and "transport_socket" not in rendered["anthropic"]


def test_a_broken_tls_config_fails_validation(tmp_path):
    bootstrap = render(tmp_path, TOLLGATE_UPSTREAMS="real", **FAKE_KEYS)
    missing = tmp_path / "no-such-ca.crt"
    broken = tmp_path / "missing-ca.yaml"
    broken.write_text(bootstrap.read_text().replace(SYSTEM_CA_BUNDLE, str(missing)))
    result = validate(broken)
    assert result.returncode != 0 and f"Invalid path: {missing}" in result.stdout + result.stderr, result
    # A CA bundle that holds no certificate: the generator takes the file, Envoy refuses it.
    not_pem = tmp_path / "not-a-bundle.crt"
    not_pem.write_text("not a certificate\n")
    bootstrap = render(tmp_path, TOLLGATE_UPSTREAMS="real", TOLLGATE_CA_BUNDLE=str(not_pem), **FAKE_KEYS)
    assert str(not_pem) in bootstrap.read_text()
    result = validate(bootstrap)
    assert result.returncode != 0 and "Failed to load trusted CA certificates" in result.stdout + result.stderr, \
        result.stdout[-2000:] + result.stderr[-2000:]


def test_real_mode_refuses_to_start_without_its_key_or_ca_bundle(tmp_path):
    result = local_stack(TOLLGATE_UPSTREAMS="real", ANTHROPIC_API_KEY=FAKE_KEYS["ANTHROPIC_API_KEY"])
    assert result.returncode == 1, result
    assert ("TOLLGATE_UPSTREAMS sends openai to https://api.openai.com, but OPENAI_API_KEY is not set"
            in result.stderr), result.stderr
    assert result.stdout == "", "nothing was started"
    # An empty variable is no key either; rendering checks the same.
    result = local_stack("--render", str(tmp_path / "out"), TOLLGATE_UPSTREAMS="anthropic", ANTHROPIC_API_KEY="")
    assert result.returncode == 1 and "ANTHROPIC_API_KEY is not set" in result.stderr, result
    result = local_stack(TOLLGATE_UPSTREAMS="real", TOLLGATE_CA_BUNDLE=str(tmp_path / "none.crt"), **FAKE_KEYS)
    assert result.returncode == 1 and f"no CA bundle at {tmp_path / 'none.crt'}" in result.stderr, result
    result = local_stack(TOLLGATE_UPSTREAMS="openai,azure", **FAKE_KEYS)
    assert result.returncode == 1 and "unknown provider azure" in result.stderr, result


def test_a_policy_routing_to_clusters_the_stack_lacks_is_warned_about(tmp_path):
    # An imported policy names clusters such as `groq`: ./scripts/run used to start without a
    # word, and each request routed there got Envoy's 503 (found by the Phase 2 · 3/5 review).
    policy = base_policy("clusters1")
    policy["model_list"].append({"model_name": "llama", "cluster": "groq",
                                 "litellm_params": {"model": "groq/llama-3.1-8b-instant", "api_key_env": "GROQ_API_KEY"}})
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy))
    result = local_stack("--render", str(tmp_path / "out"), TOLLGATE_POLICY=str(path))
    assert result.returncode == 0, result.stderr
    assert "cluster(s) groq, openrouter, which this stack does not define" in result.stderr, result.stderr
    result = local_stack("--render", str(tmp_path / "out2"))
    assert "warning" not in result.stderr, result.stderr


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN=Tollgate test {name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
            cwd=directory)
    return directory / f"{name}.pem"


def make_leaf(directory, ca, dns_name):
    """A server certificate for `dns_name` signed by `ca` (make_ca's name); returns (cert, key)."""
    name = dns_name.replace("*", "star")
    (directory / f"{name}.ext").write_text(
        f"subjectAltName=DNS:{dns_name}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", f"/CN={dns_name}", cwd=directory)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=directory)
    return directory / f"{name}.pem", directory / f"{name}.key"


def tls_mock(cert, key, server_names):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _sock, name, _context: server_names.append(name)
    return MockUpstream("openai", tls=context)


def test_the_tls_cluster_sends_sni_and_refuses_a_wrong_name_or_an_untrusted_ca(request, upstreams, tmp_path):
    make_ca(tmp_path, "ca")
    other_ca = make_ca(tmp_path, "other-ca")
    names = {"good": [], "wildcard": [], "wrong": []}
    mocks = {
        "good": tls_mock(*make_leaf(tmp_path, "ca", "api.openai.com"), names["good"]),
        "wildcard": tls_mock(*make_leaf(tmp_path, "ca", "*.openai.com"), names["wildcard"]),
        "wrong": tls_mock(*make_leaf(tmp_path, "ca", "api.example.com"), names["wrong"]),
    }
    ca = tmp_path / "ca.pem"
    # The clusters the local stack writes for api.openai.com, connecting to the mocks instead of DNS.
    tls_clusters = {
        "openai": TlsUpstream("api.openai.com", port=mocks["good"].port, ca=ca, address="127.0.0.1"),
        "openai-wildcard": TlsUpstream("api.openai.com", port=mocks["wildcard"].port, ca=ca, address="127.0.0.1"),
        "openai-wrong-name": TlsUpstream("api.openai.com", port=mocks["wrong"].port, ca=ca, address="127.0.0.1"),
        "openai-untrusted": TlsUpstream("api.openai.com", port=mocks["good"].port, ca=other_ca, address="127.0.0.1"),
    }
    policy = base_policy("tls-v1")
    for model, cluster in (("gpt-4o-mini", "openai-wildcard"), ("gpt-4.1", "openai-wrong-name"),
                           ("gpt-4.1-mini", "openai-untrusted")):
        policy["model_list"].append({"model_name": model, "cluster": cluster, "model_info": {"id": cluster},
                                     "litellm_params": {"model": f"openai/{model}", "api_key_env": "OPENAI_API_KEY"}})
    # As the local stack runs it: the credentials in Envoy's environment, not in the ECDS file.
    stack = start_stack(request, upstreams, policy, name="tls-upstreams", extra_clusters=tls_clusters,
                        host_env=True)
    try:
        assert UPSTREAM_ENV["OPENAI_API_KEY"] not in stack.ecds_path.read_text()
        for model, mock in (("gpt-4o", "good"), ("gpt-4o-mini", "wildcard")):
            ok = stack.request("POST", "/v1/chat/completions", bearer(KEYS["all"]), chat(model))
            assert ok.status == 200, (ok, stack.log_tail())
            [seen] = mocks[mock].requests()
            assert seen["headers"]["host"] == "api.openai.com"
            assert seen["headers"]["authorization"] == f"Bearer {UPSTREAM_ENV['OPENAI_API_KEY']}"
            assert names[mock] and set(names[mock]) == {"api.openai.com"}, names
        assert stack.counter("cluster.openai.ssl.handshake") >= 1
        for model, cluster, stat in (("gpt-4.1", "openai-wrong-name", "fail_verify_san"),
                                     ("gpt-4.1-mini", "openai-untrusted", "fail_verify_error")):
            refused = stack.request("POST", "/v1/chat/completions", bearer(KEYS["all"]), chat(model))
            assert refused.status == 503, refused
            assert stack.counter(f"cluster.{cluster}.ssl.{stat}") >= 1, stack.log_tail()
        assert mocks["wrong"].requests() == [] and len(mocks["good"].requests()) == 1
        assert upstreams["openai"].requests() == [], "the plain mock is not the openai cluster here"
    finally:
        stack.stop()
        for mock in mocks.values():
            mock.stop()
