#!/usr/bin/env python3
"""A systemd-sysext image of skiff for Flatcar, as Flatcar's sysext bakery makes them.

Writes into --out:
  skiff-VERSION-ARCH.raw  squashfs (mksquashfs, every file root-owned) holding
      usr/bin/skiff
      usr/lib/coreos/etcd-wrapper, usr/lib/coreos/kubelet-wrapper -> /usr/bin/skiff
      usr/lib/systemd/system/{etcd-member.service,fleet.service,fleet.socket,skiff-kubelet.service}
      usr/share/man/man1/*.1, usr/share/bash-completion/completions/skiff,
      usr/share/zsh/site-functions/_skiff, usr/share/fish/vendor_completions.d/skiff.fish
      usr/lib/extension-release.d/extension-release.skiff
  SHA256SUMS              every skiff-*.raw in --out (what systemd-sysupdate reads)
  skiff.conf              the systemd-sysupdate transfer that follows new releases at --url

ARCH is systemd's architecture name (x86-64, arm64), as in the bakery's file names and in
ARCHITECTURE=. Prints the image's path.

The extension-release file says ID=flatcar and SYSEXT_LEVEL=1.0: systemd-sysext merges an image
only if ID equals the host's os-release ID and SYSEXT_LEVEL (or else VERSION_ID) equals the
host's; Flatcar sets SYSEXT_LEVEL=1.0 so one image fits every Flatcar release (the bakery's
advice: never pin VERSION_ID). ARCHITECTURE= makes systemd refuse the image on a host of the
other architecture instead of merging a binary that cannot run.

Units: the image's etcd-member.service replaces Flatcar's own (docker-based) one on purpose: the
same name keeps the drop-ins and `systemctl` habits of Container Linux (and Butane's etcd
settings) working, and /usr/lib files of an extension shadow the base image's. fleet.socket and
fleet.service collide with nothing Flatcar ships. The kubelet unit is installed as
skiff-kubelet.service, because the bakery's kubernetes extension ships its own kubelet.service
and two extensions with the same file would shadow each other by image name order.
"""

import argparse
import glob
import hashlib
import os
import subprocess
import tempfile

ARCH = {"x86_64": "x86-64", "aarch64": "arm64", "x86-64": "x86-64", "arm64": "arm64"}

# units/ name -> name in the image.
UNITS = {
    "etcd-member.service": "etcd-member.service",
    "fleet.service": "fleet.service",
    "fleet.socket": "fleet.socket",
    "kubelet.service": "skiff-kubelet.service",
}

WRAPPERS = ("etcd-wrapper", "kubelet-wrapper")


def extension_release(arch):
    return f"ID=flatcar\nSYSEXT_LEVEL=1.0\nARCHITECTURE={arch}\n"


def transfer(url):
    """The systemd-sysupdate transfer (the bakery's shape): the newest skiff-@v-%a.raw listed in
    SHA256SUMS at URL goes to /opt/extensions/skiff/, /etc/extensions/skiff.raw points at it."""
    return (
        "[Transfer]\n"
        "Verify=false\n"
        "\n"
        "[Source]\n"
        "Type=url-file\n"
        f"Path={url.rstrip('/')}/\n"
        "MatchPattern=skiff-@v-%a.raw\n"
        "\n"
        "[Target]\n"
        "InstancesMax=3\n"
        "Type=regular-file\n"
        "Path=/opt/extensions/skiff\n"
        "MatchPattern=skiff-@v-%a.raw\n"
        "CurrentSymlink=/etc/extensions/skiff.raw\n"
    )


def unit_text(path):
    with open(path, encoding="utf-8") as f:
        # The extension's binary is /usr/bin/skiff; units/ is written for /opt/bin/skiff.
        return f.read().replace("/opt/bin/skiff", "/usr/bin/skiff")


def put(root, rel, data, mode=0o644):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8"))
    os.chmod(path, mode)


def stage(root, binary, arch, units, docs):
    with open(binary, "rb") as f:
        put(root, "usr/bin/skiff", f.read(), 0o755)
    os.makedirs(os.path.join(root, "usr/lib/coreos"))
    for w in WRAPPERS:
        os.symlink("/usr/bin/skiff", os.path.join(root, "usr/lib/coreos", w))
    for src, dst in UNITS.items():
        put(root, "usr/lib/systemd/system/" + dst, unit_text(os.path.join(units, src)))
    for page in sorted(glob.glob(os.path.join(docs, "man", "*.1"))):
        with open(page, "rb") as f:
            put(root, "usr/share/man/man1/" + os.path.basename(page), f.read())
    for src, dst in (("skiff.bash", "usr/share/bash-completion/completions/skiff"),
                     ("_skiff", "usr/share/zsh/site-functions/_skiff"),
                     ("skiff.fish", "usr/share/fish/vendor_completions.d/skiff.fish")):
        with open(os.path.join(docs, "completions", src), "rb") as f:
            put(root, dst, f.read())
    put(root, "usr/lib/extension-release.d/extension-release.skiff", extension_release(arch))


def sha256sums(out):
    lines = []
    for path in sorted(glob.glob(os.path.join(out, "skiff-*.raw"))):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        lines.append(f"{h.hexdigest()}  {os.path.basename(path)}\n")
    tmp = os.path.join(out, "SHA256SUMS.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(lines)
    os.replace(tmp, os.path.join(out, "SHA256SUMS"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True, help="the static skiff binary for ARCH")
    ap.add_argument("--arch", required=True, choices=sorted(ARCH))
    ap.add_argument("--version", required=True)
    ap.add_argument("--units", default="units")
    ap.add_argument("--docs", default="packaging/out", help="the directory with man/ and completions/")
    ap.add_argument("--url", required=True, help="where hosts find SHA256SUMS and the images")
    ap.add_argument("--out", default="packaging/out")
    a = ap.parse_args()
    arch = ARCH[a.arch]
    os.makedirs(a.out, exist_ok=True)
    image = os.path.join(a.out, f"skiff-{a.version}-{arch}.raw")
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "root")
        stage(root, a.binary, arch, a.units, a.docs)
        partial = image + ".partial"
        # -all-root: the files are root's on the host whoever built the image.
        subprocess.run(["mksquashfs", root, partial, "-all-root", "-noappend", "-quiet"],
                       check=True, stdout=subprocess.DEVNULL)
        os.replace(partial, image)
    sha256sums(a.out)
    with open(os.path.join(a.out, "skiff.conf"), "w", encoding="utf-8") as f:
        f.write(transfer(a.url))
    print(image)


if __name__ == "__main__":
    main()
