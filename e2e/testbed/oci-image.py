#!/usr/bin/env python3
"""Builds a single-layer OCI image archive from a directory, without a registry or a daemon.

    oci-image.py --rootfs DIR --name localhost/kpages/node:20 --out image.tar \
        [--entrypoint '["/bin/node"]'] [--cmd '[...]'] [--env K=V ...] [--workdir /] [--user 0:0]

The archive is an OCI image layout (oci-layout, index.json, blobs/sha256/...) that
`ctr -n k8s.io images import` loads. The layer is a reproducible tar (sorted entries, zero mtimes,
root ownership) so the same directory always gives the same image digest; index.json carries the
full image name in containerd's `io.containerd.image.name` annotation and the tag in the OCI
`org.opencontainers.image.ref.name` annotation. Standard library only.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile


def layer_tar(rootfs: str) -> bytes:
    """A reproducible uncompressed tar of rootfs, paths relative to it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                path = os.path.join(dirpath, name)
                arcname = os.path.relpath(path, rootfs)
                info = tar.gettarinfo(path, arcname)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                if info.isreg():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    return buf.getvalue()


def blob(blobs: dict, data: bytes, media_type: str) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rootfs", required=True)
    p.add_argument("--name", required=True, help="full image name with tag, e.g. localhost/kpages/node:20")
    p.add_argument("--out", required=True)
    p.add_argument("--entrypoint", default="null", help="JSON array")
    p.add_argument("--cmd", default="null", help="JSON array")
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--workdir", default="/")
    p.add_argument("--user", default="")
    args = p.parse_args()

    if not os.path.isdir(args.rootfs):
        print(f"oci-image: --rootfs {args.rootfs} is not a directory", file=sys.stderr)
        return 2
    if ":" not in args.name.rsplit("/", 1)[-1]:
        print(f"oci-image: --name {args.name} needs an explicit tag (pods cannot pull :latest here)", file=sys.stderr)
        return 2

    raw = layer_tar(args.rootfs)
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    compressed = gzip.compress(raw, compresslevel=6, mtime=0)

    blobs: dict = {}
    layer = blob(blobs, compressed, "application/vnd.oci.image.layer.v1.tar+gzip")
    env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + args.env
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Env": env,
            "Entrypoint": json.loads(args.entrypoint),
            "Cmd": json.loads(args.cmd),
            "WorkingDir": args.workdir,
            "User": args.user,
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "e2e/testbed/oci-image.py"}],
    }
    config_desc = blob(blobs, json.dumps(config, sort_keys=True).encode(), "application/vnd.oci.image.config.v1+json")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [layer],
    }
    manifest_desc = blob(blobs, json.dumps(manifest, sort_keys=True).encode(), manifest["mediaType"])
    manifest_desc["annotations"] = {
        "io.containerd.image.name": args.name,
        "org.opencontainers.image.ref.name": args.name.rsplit(":", 1)[1],
    }
    manifest_desc["platform"] = {"architecture": "amd64", "os": "linux"}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [manifest_desc]}

    tmp = args.out + ".tmp"
    with tarfile.open(tmp, mode="w") as out:
        def add(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            out.addfile(info, io.BytesIO(data))

        add("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add("index.json", json.dumps(index, sort_keys=True).encode())
        for digest, data in sorted(blobs.items()):
            add("blobs/sha256/" + digest.split(":", 1)[1], data)
    os.replace(tmp, args.out)
    print(manifest_desc["digest"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
