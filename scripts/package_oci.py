"""Builds the Istio-compatible OCI image of tollgate.wasm offline, with the standard library only.

Layout written (an OCI image layout directory, https://github.com/opencontainers/image-spec):
  oci-layout, index.json, blobs/sha256/<digest> for the manifest, the config and one layer.
The layer is the "compat" variant Istio's image fetcher accepts: a gzip-compressed tar holding
a single file, plugin.wasm. The tar and gzip headers carry fixed timestamps and owners, so the
same wasm always gives the same image digest.

Push it with skopeo (Debian package `skopeo`):
  skopeo copy oci:target/oci/tollgate:<tag> docker://registry.example.com/tollgate:<tag>
"""

import argparse
import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def blob(directory, data):
    digest = hashlib.sha256(data).hexdigest()
    path = directory / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return f"sha256:{digest}", len(data)


def layer_tar(wasm):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("plugin.wasm")
        info.size = len(wasm)
        info.mode = 0o444
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(wasm))
    return out.getvalue()


def package(wasm_path, out_dir, tag):
    wasm = Path(wasm_path).read_bytes()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tar = layer_tar(wasm)
    compressed = gzip.compress(tar, mtime=0)
    layer_digest, layer_size = blob(out, compressed)
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"Labels": {"org.opencontainers.image.title": "tollgate",
                              "org.opencontainers.image.version": tag}},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(tar).hexdigest()}"]},
    }
    config_digest, config_size = blob(out, json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest, "size": layer_size,
                    "annotations": {"org.opencontainers.image.title": "plugin.wasm"}}],
    }
    manifest_digest, manifest_size = blob(out, json.dumps(manifest, sort_keys=True).encode())
    (out / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": manifest_digest, "size": manifest_size,
                       "annotations": {"org.opencontainers.image.ref.name": tag}}],
    }
    (out / "index.json").write_text(json.dumps(index, indent=2))
    return manifest_digest


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wasm", default=str(ROOT / "target/wasm32-wasip1/release/tollgate.wasm"))
    parser.add_argument("--out", default=str(ROOT / "target/oci/tollgate"))
    parser.add_argument("--tag", default="0.1.0")
    args = parser.parse_args()
    digest = package(args.wasm, args.out, args.tag)
    print(f"OCI image layout {args.out} (tag {args.tag}), manifest {digest}")
    print(f"push: skopeo copy oci:{args.out}:{args.tag} docker://REGISTRY/tollgate:{args.tag}")


if __name__ == "__main__":
    main()
