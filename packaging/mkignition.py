#!/usr/bin/env python3
"""Ignition configs that install skiff and its units on a host.

Writes, from the units/ directory and the built binary:
  container-linux.ign  Ignition spec 2.3.0 (CoreOS Container Linux)
  flatcar.bu           Butane (variant flatcar, 1.0.0), for operators who edit configs
  flatcar.ign          the Ignition 3.3.0 JSON that Butane would produce from it
  flatcar-ARCH.bu      per --sysext image (ARCH: x86-64, arm64): Butane that installs skiff as
  flatcar-ARCH.ign     a systemd-sysext image, and its Ignition 3.3.0 JSON

The first three (with --binary and --url) install /opt/bin/skiff (downloaded from --url,
checked against the binary's sha512), the links /opt/bin/etcd-wrapper and
/opt/bin/kubelet-wrapper to it (skiff started by either name runs that profile, as the CoreOS
wrapper scripts did), the units (fleet.socket, fleet.service and
etcd-member.service enabled; kubelet.service and
skiff-update.timer/.service installed for operators to enable), the fleet user
and group, a tmpfiles entry for /run/fleet, and the polkit rule that lets the fleet user manage
units over D-Bus.

The flatcar-ARCH configs install the image the way Flatcar's sysext bakery does: downloaded
from --release-url to /opt/extensions/skiff/ (checked against its sha512), linked as
/etc/extensions/skiff.raw, the systemd-sysupdate transfer in /etc/sysupdate.skiff.d/ with the
timer enabled and a drop-in that updates skiff and refreshes the extensions; the units come from
the image and are enabled with links (they exist only once the image is merged, so Ignition's
presets cannot enable them): etcd-member.service, fleet.service, fleet.socket
(skiff-kubelet.service stays for operators to enable). The fleet user, tmpfiles and polkit
files are the same.

With --policy, --key and --registries-d, they also install the signature policy skiff (and
podman, skopeo) enforce: /etc/containers/policy.json, the public keys it names under
/etc/pki/containers/ (write keyPath: /etc/pki/containers/NAME in the policy), and
/etc/containers/registries.d/NAME.yaml (where the signatures are).
"""

import argparse
import base64
import hashlib
import json
import os
import re
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mksysext  # noqa: E402

ENABLED = {"fleet.socket": True, "fleet.service": True, "etcd-member.service": True, "kubelet.service": False,
           "skiff-update.service": False, "skiff-update.timer": False}

TMPFILES = "d /run/fleet 0755 fleet fleet -\nd /run/fleet/units 0755 fleet fleet -\n"

# skiff started as one of these names is `skiff run --profile NAME -- "$@"`.
WRAPPER_LINKS = ["/opt/bin/etcd-wrapper", "/opt/bin/kubelet-wrapper"]

POLKIT = """// Let fleetd (running as the fleet user) manage systemd units over D-Bus.
polkit.addRule(function(action, subject) {
    if (action.id == "org.freedesktop.systemd1.manage-units" && subject.user == "fleet") {
        return polkit.Result.YES;
    }
});
"""


def data_url(text):
    if isinstance(text, bytes):
        # Keys may be binary (gpg --export): base64, which every Ignition version reads.
        return "data:;base64," + base64.b64encode(text).decode("ascii")
    return "data:," + urllib.parse.quote(text, safe="")


def trust_files(policy, keys, registries_d):
    """(path, bytes) of the signature policy, its keys and registries.d files, as given."""
    out = []
    if policy:
        with open(policy, "rb") as f:
            data = f.read()
        json.loads(data)  # a policy that is not JSON never reaches a host
        out.append(("/etc/containers/policy.json", data))
    for k in keys:
        with open(k, "rb") as f:
            out.append(("/etc/pki/containers/" + os.path.basename(k), f.read()))
    for r in registries_d:
        with open(r, "rb") as f:
            out.append(("/etc/containers/registries.d/" + os.path.basename(r), f.read()))
    return out


def load_units(directory):
    units = []
    for name in sorted(ENABLED):
        with open(os.path.join(directory, name), encoding="utf-8") as f:
            units.append((name, f.read()))
    return units


def ignition2(url, digest, units, extra=()):
    text_file = lambda path, mode, text: {
        "filesystem": "root", "path": path, "mode": mode, "contents": {"source": data_url(text)}}
    return {
        "ignition": {"version": "2.3.0"},
        "passwd": {
            "users": [{"name": "fleet", "system": True, "noCreateHome": True,
                       "primaryGroup": "fleet", "shell": "/sbin/nologin"}],
            "groups": [{"name": "fleet", "system": True}],
        },
        "storage": {"files": [
            {"filesystem": "root", "path": "/opt/bin/skiff", "mode": 0o755,
             "contents": {"source": url, "verification": {"hash": "sha512-" + digest}}},
            text_file("/etc/tmpfiles.d/fleet.conf", 0o644, TMPFILES),
            text_file("/etc/polkit-1/rules.d/60-fleet.rules", 0o644, POLKIT),
        ] + [text_file(p, 0o644, data) for p, data in extra],
            "links": [{"filesystem": "root", "path": p, "target": "/opt/bin/skiff"} for p in WRAPPER_LINKS]},
        "systemd": {"units": [{"name": n, "enabled": ENABLED[n], "contents": c} for n, c in units]},
    }


def ignition3(url, digest, units, extra=()):
    text_file = lambda path, mode, text: {
        "path": path, "mode": mode, "overwrite": True, "contents": {"source": data_url(text)}}
    return {
        "ignition": {"version": "3.3.0"},
        "passwd": {
            "users": [{"name": "fleet", "system": True, "noCreateHome": True,
                       "primaryGroup": "fleet", "shell": "/sbin/nologin"}],
            "groups": [{"name": "fleet", "system": True}],
        },
        "storage": {"files": [
            {"path": "/opt/bin/skiff", "mode": 0o755, "overwrite": True,
             "contents": {"source": url, "verification": {"hash": "sha512-" + digest}}},
            text_file("/etc/tmpfiles.d/fleet.conf", 0o644, TMPFILES),
            text_file("/etc/polkit-1/rules.d/60-fleet.rules", 0o644, POLKIT),
        ] + [text_file(p, 0o644, data) for p, data in extra],
            "links": [{"path": p, "target": "/opt/bin/skiff", "overwrite": True} for p in WRAPPER_LINKS]},
        "systemd": {"units": [{"name": n, "enabled": ENABLED[n], "contents": c} for n, c in units]},
    }


def indent(text, n):
    pad = " " * n
    return "".join(pad + line if line.strip() else line for line in text.splitlines(True))


def butane(url, digest, units, extra=()):
    out = ["variant: flatcar", "version: 1.0.0", "passwd:", "  users:", "    - name: fleet",
           "      system: true", "      no_create_home: true", "      primary_group: fleet",
           "      shell: /sbin/nologin", "  groups:", "    - name: fleet", "      system: true",
           "storage:", "  files:", "    - path: /opt/bin/skiff", "      mode: 0755",
           "      overwrite: true", "      contents:", f"        source: {url}",
           "        verification:", f"          hash: sha512-{digest}"]
    for path, text in (("/etc/tmpfiles.d/fleet.conf", TMPFILES), ("/etc/polkit-1/rules.d/60-fleet.rules", POLKIT)):
        out += [f"    - path: {path}", "      mode: 0644", "      overwrite: true", "      contents:",
                "        inline: |", indent(text, 10).rstrip("\n")]
    for path, data in extra:
        out += [f"    - path: {path}", "      mode: 0644", "      overwrite: true", "      contents:",
                f"        source: {data_url(data)}"]
    out += ["  links:"]
    for path in WRAPPER_LINKS:
        out += [f"    - path: {path}", "      target: /opt/bin/skiff", "      overwrite: true"]
    out += ["systemd:", "  units:"]
    for name, contents in units:
        out += [f"    - name: {name}", f"      enabled: {'true' if ENABLED[name] else 'false'}",
                "      contents: |", indent(contents, 8).rstrip("\n")]
    return "\n".join(out) + "\n"


# The bakery's workaround: systemd-sysupdate with no transfer in /etc/sysupdate.d complains.
NOOP = "[Source]\nType=regular-file\nPath=/\nMatchPattern=invalid@v.raw\n[Target]\nType=regular-file\nPath=/\n"

# Units enabled from the image: the link Ignition writes (target.wants/NAME -> the image's file).
SYSEXT_ENABLED = [("multi-user.target", "etcd-member.service"), ("multi-user.target", "fleet.service"),
                  ("sockets.target", "fleet.socket")]

SYSUPDATE_DROPINS = [
    ("skiff.conf", "[Service]\nExecStartPre=/usr/lib/systemd/systemd-sysupdate -C skiff update\n"),
    ("sysext.conf", "[Service]\nExecStartPost=systemctl restart systemd-sysext\n"),
]


def sysext_image(path):
    """(file name, version, arch, sha512 hex) of a skiff-VERSION-ARCH.raw image."""
    name = os.path.basename(path)
    m = re.fullmatch(r"skiff-(.+)-(x86-64|arm64)\.raw", name)
    if not m:
        raise SystemExit(f"error: {path}: expected a skiff-VERSION-ARCH.raw name (ARCH x86-64 or arm64)")
    with open(path, "rb") as f:
        digest = hashlib.sha512(f.read()).hexdigest()
    return name, m.group(1), m.group(2), digest


def sysext_parts(release_url, image, extra):
    """What a Flatcar host needs for the image: (files, links, units), Butane-neutral."""
    name, _, _, digest = sysext_image(image)
    placed = "/opt/extensions/skiff/" + name
    files = [
        {"path": placed, "mode": 0o644, "source": release_url.rstrip("/") + "/" + name,
         "hash": "sha512-" + digest},
        {"path": "/etc/sysupdate.skiff.d/skiff.conf", "mode": 0o644, "text": mksysext.transfer(release_url)},
        {"path": "/etc/sysupdate.d/noop.conf", "mode": 0o644, "text": NOOP},
        {"path": "/etc/tmpfiles.d/fleet.conf", "mode": 0o644, "text": TMPFILES},
        {"path": "/etc/polkit-1/rules.d/60-fleet.rules", "mode": 0o644, "text": POLKIT},
    ] + [{"path": p, "mode": 0o644, "data": d} for p, d in extra]
    links = [{"path": "/etc/extensions/skiff.raw", "target": placed}] + [
        {"path": f"/etc/systemd/system/{t}.wants/{u}", "target": "/usr/lib/systemd/system/" + u}
        for t, u in SYSEXT_ENABLED]
    units = [{"name": "systemd-sysupdate.timer", "enabled": True},
             {"name": "systemd-sysupdate.service", "dropins": SYSUPDATE_DROPINS}]
    return files, links, units


PASSWD3 = {
    "users": [{"name": "fleet", "system": True, "noCreateHome": True,
               "primaryGroup": "fleet", "shell": "/sbin/nologin"}],
    "groups": [{"name": "fleet", "system": True}],
}


def sysext_ignition3(release_url, image, extra=()):
    files, links, units = sysext_parts(release_url, image, extra)

    def file3(f):
        if "source" in f:
            contents = {"source": f["source"], "verification": {"hash": f["hash"]}}
        else:
            contents = {"source": data_url(f.get("text", f.get("data")))}
        return {"path": f["path"], "mode": f["mode"], "overwrite": True, "contents": contents}

    def unit3(u):
        out = {"name": u["name"]}
        if "enabled" in u:
            out["enabled"] = u["enabled"]
        if "dropins" in u:
            out["dropins"] = [{"name": n, "contents": c} for n, c in u["dropins"]]
        return out

    return {
        "ignition": {"version": "3.3.0"},
        "passwd": PASSWD3,
        "storage": {
            "files": [file3(f) for f in files],
            "links": [{"path": ln["path"], "target": ln["target"], "hard": False, "overwrite": True}
                      for ln in links],
        },
        "systemd": {"units": [unit3(u) for u in units]},
    }


def sysext_butane(release_url, image, extra=()):
    files, links, units = sysext_parts(release_url, image, extra)
    out = ["variant: flatcar", "version: 1.0.0", "passwd:", "  users:", "    - name: fleet",
           "      system: true", "      no_create_home: true", "      primary_group: fleet",
           "      shell: /sbin/nologin", "  groups:", "    - name: fleet", "      system: true",
           "storage:", "  files:"]
    for f in files:
        out += [f"    - path: {f['path']}", f"      mode: {f['mode']:04o}", "      overwrite: true",
                "      contents:"]
        if "source" in f:
            out += [f"        source: {f['source']}", "        verification:",
                    f"          hash: {f['hash']}"]
        elif "text" in f:
            out += ["        inline: |", indent(f["text"], 10).rstrip("\n")]
        else:
            out += [f"        source: {data_url(f['data'])}"]
    out += ["  links:"]
    for ln in links:
        out += [f"    - path: {ln['path']}", f"      target: {ln['target']}", "      hard: false",
                "      overwrite: true"]
    out += ["systemd:", "  units:"]
    for u in units:
        out += [f"    - name: {u['name']}"]
        if "enabled" in u:
            out += [f"      enabled: {'true' if u['enabled'] else 'false'}"]
        if "dropins" in u:
            out += ["      dropins:"]
            for n, c in u["dropins"]:
                out += [f"        - name: {n}", "          contents: |", indent(c, 12).rstrip("\n")]
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", help="the static x86_64 skiff binary (for its sha512): writes container-linux.ign, flatcar.bu, flatcar.ign")
    ap.add_argument("--url", help="where hosts download /opt/bin/skiff from (with --binary)")
    ap.add_argument("--sysext", action="append", default=[],
                    help="a skiff-VERSION-ARCH.raw image: writes flatcar-ARCH.bu and flatcar-ARCH.ign (repeatable)")
    ap.add_argument("--release-url", help="the directory (URL) holding the images and SHA256SUMS (with --sysext)")
    ap.add_argument("--units", default="units")
    ap.add_argument("--out", default="packaging/out")
    ap.add_argument("--policy", help="a containers-policy.json to install as /etc/containers/policy.json")
    ap.add_argument("--key", action="append", default=[], help="a public key to install in /etc/pki/containers/ (repeatable)")
    ap.add_argument("--registries-d", action="append", default=[], help="a registries.d YAML file to install (repeatable)")
    a = ap.parse_args()
    if not a.binary and not a.sysext:
        ap.error("nothing to write: give --binary (and --url) or --sysext (and --release-url)")
    if bool(a.binary) != bool(a.url):
        ap.error("--binary and --url go together")
    if a.sysext and not a.release_url:
        ap.error("--sysext needs --release-url")
    extra = trust_files(a.policy, a.key, a.registries_d)
    os.makedirs(a.out, exist_ok=True)
    if a.binary:
        with open(a.binary, "rb") as f:
            digest = hashlib.sha512(f.read()).hexdigest()
        units = load_units(a.units)
        with open(os.path.join(a.out, "container-linux.ign"), "w", encoding="utf-8") as f:
            json.dump(ignition2(a.url, digest, units, extra), f, indent=2)
        with open(os.path.join(a.out, "flatcar.ign"), "w", encoding="utf-8") as f:
            json.dump(ignition3(a.url, digest, units, extra), f, indent=2)
        with open(os.path.join(a.out, "flatcar.bu"), "w", encoding="utf-8") as f:
            f.write(butane(a.url, digest, units, extra))
    for image in a.sysext:
        arch = sysext_image(image)[2]
        with open(os.path.join(a.out, f"flatcar-{arch}.ign"), "w", encoding="utf-8") as f:
            json.dump(sysext_ignition3(a.release_url, image, extra), f, indent=2)
        with open(os.path.join(a.out, f"flatcar-{arch}.bu"), "w", encoding="utf-8") as f:
            f.write(sysext_butane(a.release_url, image, extra))

if __name__ == "__main__":
    main()
