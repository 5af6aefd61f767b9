# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Write a tiny TEST image as a docker-archive tarball (the `docker save` format) with no registry.

One layer holding /TEST-IMAGE. Prints the image id (sha256 of the config), which is what
`docker image inspect --format '{{.Id}}'` and `podman image inspect` report after loading it.

    make_image.py OUT.tar [--name localhost/onprem-test:1]
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import tarfile


def add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--name", default="localhost/onprem-test:1")
    args = parser.parse_args()
    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w", format=tarfile.USTAR_FORMAT) as layer:
        add(layer, "TEST-IMAGE", b"onprem.llm_serving TEST image, built without a registry\n")
    layer_bytes = layer_buf.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = {
        "architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
        "config": {"Cmd": ["/TEST-IMAGE"], "Labels": {"org.opencontainers.image.description": "TEST image"}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "tests/stand-in-packages/make_image.py"}],
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    image_id = hashlib.sha256(config_bytes).hexdigest()
    layer_dir = hashlib.sha256(layer_bytes).hexdigest()
    manifest = [{"Config": image_id + ".json", "RepoTags": [args.name], "Layers": [layer_dir + "/layer.tar"]}]
    with tarfile.open(args.out, "w", format=tarfile.USTAR_FORMAT) as tar:
        add(tar, image_id + ".json", config_bytes)
        add(tar, layer_dir + "/layer.tar", layer_bytes)
        add(tar, "manifest.json", json.dumps(manifest).encode())
        add(tar, "repositories", json.dumps({args.name.rsplit(":", 1)[0]: {args.name.rsplit(":", 1)[1]: layer_dir}}).encode())
    print("sha256:" + image_id)


if __name__ == "__main__":
    main()
