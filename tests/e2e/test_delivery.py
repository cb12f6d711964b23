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
