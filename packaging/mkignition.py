#!/usr/bin/env python3
"""Ignition configs that install skiff and its units on a host.

Writes, from the units/ directory and the built binary:
  container-linux.ign  Ignition spec 2.3.0 (CoreOS Container Linux)
  flatcar.bu           Butane (variant flatcar, 1.0.0), for operators who edit configs
  flatcar.ign          the Ignition 3.3.0 JSON that Butane would produce from it

Each installs /opt/bin/skiff (downloaded from --url, checked against the binary's sha512),
the units (fleet.socket, fleet.service and etcd-member.service enabled; kubelet.service
and skiff-update.timer/.service installed for operators to enable), the fleet user and group, a tmpfiles entry for /run/fleet,
and the polkit rule that lets the fleet user manage units over D-Bus.

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
import urllib.parse

ENABLED = {"fleet.socket": True, "fleet.service": True, "etcd-member.service": True, "kubelet.service": False,
           "skiff-update.service": False, "skiff-update.timer": False}

TMPFILES = "d /run/fleet 0755 fleet fleet -\nd /run/fleet/units 0755 fleet fleet -\n"

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
        ] + [text_file(p, 0o644, data) for p, data in extra]},
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
        ] + [text_file(p, 0o644, data) for p, data in extra]},
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
    out += ["systemd:", "  units:"]
    for name, contents in units:
        out += [f"    - name: {name}", f"      enabled: {'true' if ENABLED[name] else 'false'}",
                "      contents: |", indent(contents, 8).rstrip("\n")]
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True, help="the static skiff binary (for its sha512)")
    ap.add_argument("--url", required=True, help="where hosts download /opt/bin/skiff from")
    ap.add_argument("--units", default="units")
    ap.add_argument("--out", default="packaging/out")
    ap.add_argument("--policy", help="a containers-policy.json to install as /etc/containers/policy.json")
    ap.add_argument("--key", action="append", default=[], help="a public key to install in /etc/pki/containers/ (repeatable)")
    ap.add_argument("--registries-d", action="append", default=[], help="a registries.d YAML file to install (repeatable)")
    a = ap.parse_args()
    extra = trust_files(a.policy, a.key, a.registries_d)
    with open(a.binary, "rb") as f:
        digest = hashlib.sha512(f.read()).hexdigest()
    units = load_units(a.units)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "container-linux.ign"), "w", encoding="utf-8") as f:
        json.dump(ignition2(a.url, digest, units, extra), f, indent=2)
    with open(os.path.join(a.out, "flatcar.ign"), "w", encoding="utf-8") as f:
        json.dump(ignition3(a.url, digest, units, extra), f, indent=2)
    with open(os.path.join(a.out, "flatcar.bu"), "w", encoding="utf-8") as f:
        f.write(butane(a.url, digest, units, extra))


if __name__ == "__main__":
    main()
