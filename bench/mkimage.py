#!/usr/bin/env python3
"""Builds the benchmark images as an OCI layout, from this machine's own files.

bench:v1  five gzip layers, ~600 MB unpacked: libraries, binaries, text, incompressible data,
          and an "app" layer; busybox-static at /bin for the warm-start payload
bench:v2  the same first four layers and a new fifth (the update-pull scenario)
small:v1  one ~100 MB layer (the many-hosts scenario)

Layers are cut from real files (so compression ratios are realistic) and cached in the
layout directory; run again, it rebuilds nothing.
"""

import gzip
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile

MB = 1 << 20


def add_tree(tar, src, arc, budget):
    """Adds regular files and symlinks under src (sorted) until budget bytes are used."""
    used = 0
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if not (os.path.isfile(path) or os.path.islink(path)):
                continue
            if used + st.st_size > budget:
                return used
            rel = os.path.join(arc, os.path.relpath(path, src))
            try:
                tar.add(path, arcname=rel, recursive=False)
            except (OSError, PermissionError):
                continue
            used += st.st_size
    return used


def noise(tar, arc, size, seed):
    rnd = random.Random(seed)
    chunk = 8 * MB
    left = size
    i = 0
    while left > 0:
        n = min(chunk, left)
        data = rnd.randbytes(n)
        info = tarfile.TarInfo(f"{arc}/blob-{i:03d}.bin")
        info.size = n
        info.mode = 0o644
        info.mtime = 1_600_000_000
        tar.addfile(info, io.BytesIO(data))
        left -= n
        i += 1


def layer(build):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        build(tar)
    data = raw.getvalue()
    gz = subprocess.run(["pigz" if shutil.which("pigz") else "gzip", "-6", "-n", "-c"], input=data,
                        stdout=subprocess.PIPE, check=True).stdout
    return data, gz


def busybox(tar):
    info = tarfile.TarInfo("bin")
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)
    tar.add("/bin/busybox", arcname="bin/busybox")
    for applet in ("sh", "true", "ls", "cat"):
        link = tarfile.TarInfo(f"bin/{applet}")
        link.type = tarfile.SYMTYPE
        link.linkname = "busybox"
        tar.addfile(link)
    for d in ("proc", "sys", "dev", "tmp", "run", "etc"):
        info = tarfile.TarInfo(d)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)


LAYERS = {
    "base": lambda t: (busybox(t), add_tree(t, "/usr/lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", 160 * MB)),
    "bins": lambda t: add_tree(t, "/usr/bin", "usr/bin", 110 * MB),
    "text": lambda t: add_tree(t, "/usr/share", "usr/share", 130 * MB),
    "data": lambda t: noise(t, "var/lib/data", 120 * MB, 1),
    "app1": lambda t: (add_tree(t, "/usr/lib/jvm", "opt/app", 40 * MB), noise(t, "opt/app/assets", 40 * MB, 2)),
    "app2": lambda t: (add_tree(t, "/usr/lib/jvm", "opt/app", 40 * MB), noise(t, "opt/app/assets", 40 * MB, 3)),
    "small": lambda t: (busybox(t), add_tree(t, "/usr/share", "usr/share", 60 * MB), noise(t, "data", 40 * MB, 4)),
}


def blob(layout, data):
    d = hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", d)
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(data)
    return {"digest": "sha256:" + d, "size": len(data)}


def main():
    layout = sys.argv[1]
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    cache = os.path.join(layout, "layers.json")
    built = json.load(open(cache)) if os.path.exists(cache) else {}
    for name, build in LAYERS.items():
        if name in built:
            continue
        print(f"building layer {name}", file=sys.stderr)
        raw, gz = layer(build)
        built[name] = {"blob": blob(layout, gz), "diff_id": "sha256:" + hashlib.sha256(raw).hexdigest(), "unpacked": len(raw)}
        json.dump(built, open(cache, "w"))
    images = {"bench:v1": ["base", "bins", "text", "data", "app1"],
              "bench:v2": ["base", "bins", "text", "data", "app2"],
              "small:v1": ["small"]}
    manifests = []
    for ref, names in images.items():
        config = json.dumps({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["/bin/true"], "Env": ["PATH=/bin:/usr/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [built[n]["diff_id"] for n in names]},
        }, sort_keys=True).encode()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(layout, config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **built[n]["blob"]} for n in names],
        }, sort_keys=True).encode()
        manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", **blob(layout, manifest),
                          "annotations": {"org.opencontainers.image.ref.name": ref.split(":")[0] + "-" + ref.split(":")[1]}})
    json.dump({"schemaVersion": 2, "manifests": manifests}, open(os.path.join(layout, "index.json"), "w"))
    json.dump({"imageLayoutVersion": "1.0.0"}, open(os.path.join(layout, "oci-layout"), "w"))
    for name, info in built.items():
        print(f"{name}: {info['blob']['size'] / MB:.0f} MB compressed, {info['unpacked'] / MB:.0f} MB unpacked", file=sys.stderr)


if __name__ == "__main__":
    main()
