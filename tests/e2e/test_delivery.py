"""Issue 4/4 delivery forms: the OCI image of tollgate.wasm and the generated Istio manifests."""

import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

from stack import ROOT, WASM

sys.path.insert(0, str(ROOT / "scripts"))

import package_oci  # noqa: E402


def read_blob(layout, descriptor):
    algorithm, digest = descriptor["digest"].split(":")
    data = (layout / "blobs" / algorithm / digest).read_bytes()
    assert hashlib.sha256(data).hexdigest() == digest, "blob content does not match its digest"
    assert len(data) == descriptor["size"]
    return data


def test_the_oci_image_is_one_gzip_layer_holding_plugin_wasm(tmp_path):
    layout = tmp_path / "oci"
    first = package_oci.package(WASM, layout, "test")
    assert package_oci.package(WASM, tmp_path / "again", "test") == first, "the image is reproducible"
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    [entry] = index["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "test"
    manifest = json.loads(read_blob(layout, entry))
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    [layer] = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    tar_bytes = gzip.decompress(read_blob(layout, layer))
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        [member] = tar.getmembers()
        assert member.name == "plugin.wasm"
        assert tar.extractfile(member).read() == WASM.read_bytes()
    config = json.loads(read_blob(layout, manifest["config"]))
    assert config["rootfs"]["diff_ids"] == [f"sha256:{hashlib.sha256(tar_bytes).hexdigest()}"]


def test_the_istio_manifests_are_generated_from_the_tested_config():
    check = subprocess.run([sys.executable, str(ROOT / "scripts" / "istio_manifests.py"), "--check"],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_compose_form_is_generated_from_the_tested_config_and_envoy_accepts_it(tmp_path):
    check = subprocess.run([sys.executable, str(ROOT / "scripts" / "compose.py"), "--check"],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    # Envoy's validate mode wants the ECDS file to exist: point the bootstrap at the repo copy.
    # envoy-mock.yaml is the default; TOLLGATE_UPSTREAMS=real picks envoy-real.yaml (the providers
    # over TLS, checked against the CA bundle at the path the image and this machine share).
    for upstreams in ("mock", "real", "fleet"):
        text = (ROOT / "envoy" / "compose" / f"envoy-{upstreams}.yaml").read_text()
        bootstrap = tmp_path / f"envoy-{upstreams}.yaml"
        bootstrap.write_text(text.replace("/etc/tollgate", str(ROOT / "envoy" / "compose")))
        envoy = ROOT / ".venv" / "bin" / "envoy"
        result = subprocess.run([str(envoy), "--mode", "validate", "-c", str(bootstrap)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        for host in ("api.openai.com", "api.anthropic.com"):
            assert (f'sni: "{host}"' in text) == (upstreams == "real"), upstreams
    ecds = json.loads((ROOT / "envoy" / "compose" / "ecds" / "tollgate.json").read_text())
    config = ecds["resources"][0]["typed_config"]["config"]
    assert config["allow_on_headers_stop_iteration"] is True
    assert config["vm_config"]["environment_variables"] == {
        "host_env_keys": ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "TOLLGATE_ACCOUNTING_TOKEN",
                          "TOLLGATE_AFFINITY_SECRET"]}
    compose = (ROOT / "envoy" / "docker-compose.yaml").read_text()
    assert '"/etc/tollgate/envoy-${TOLLGATE_UPSTREAMS:-mock}.yaml"' in compose
    # Admin and accounting are never published on all interfaces.
    for port in ("9901", "9902"):
        published = [line for line in compose.splitlines() if "ports:" in line and port in line]
        assert published and all(f'"127.0.0.1:{port}:{port}"' in line for line in published), published
    # The fleet: two instances on one PostgreSQL, health-checked; the database is not published.
    fleet = (ROOT / "envoy" / "docker-compose.fleet.yaml").read_text()
    published = [line.strip() for line in fleet.splitlines() if "ports:" in line]
    assert published == ['ports: ["10000:10000", "127.0.0.1:9901:9901"]', 'ports: ["127.0.0.1:9902:9902"]',
                         'ports: ["127.0.0.1:9903:9902"]'], published
    assert fleet.count('"--db", "postgres://tollgate:${TOLLGATE_PG_PASSWORD}@postgres:5432/tollgate"') == 2
    bootstrap = (ROOT / "envoy" / "compose" / "envoy-fleet.yaml").read_text()
    assert "http_health_check: { path: /ready }" in bootstrap and "address: accounting-1, port_value: 9902" in bootstrap


def test_the_static_form_serves_like_the_ecds_form(request, upstreams):
    from conftest import start_stack
    from policies import KEYS, base_policy, bearer, chat

    stack = start_stack(request, upstreams, base_policy("static-v1"), name="static-form", static=True)
    try:
        assert "config_discovery" not in (stack.workdir / "envoy.yaml").read_text()
        ok = stack.request("POST", "/v1/chat/completions", bearer(KEYS["all"]), chat("gpt-4o"))
        assert ok.status == 200 and ok.headers["x-tollgate-policy-version"] == "static-v1", ok
        refused = stack.request("POST", "/v1/chat/completions", bearer(KEYS["neither"]), chat("claude-sonnet-4-6"))
        assert refused.status == 403, refused
    finally:
        stack.stop()
