#!/usr/bin/env python3
"""skiff against the tools operators would use instead, side by side in one run.

Each scenario runs its tools alternately (A B C A B C ...) after one warm-up round each, and
reports the median and the ratio skiff / peer. Absolute times on a shared machine are noisy;
ratios from the same run are what count. Results: a table on stdout and JSON in bench/results/.

Page cache: the registry's blobs are warm (the registry reads them from its own disk cache);
destinations are fresh directories; every timed command ends with `sync`, so each tool is timed
to a durable result (skiff fsyncs as it goes; the others are charged for their writeback).
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CACHE = os.path.join(HERE, ".cache")
PORT = 5055
REG = f"127.0.0.1:{PORT}"


def sh(cmd, check=True, **kw):
    return subprocess.run(cmd, shell=True, check=check, **kw)


def tree_rss(pid):
    """Sum of RSS (bytes) of pid and all its descendants."""
    children = {}
    rss = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            fields = stat[stat.rfind(")") + 2:].split()
            children.setdefault(int(fields[1]), []).append(int(d))
            rss[int(d)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(children.get(p, []))
    return total


def timed(cmd):
    """Runs a shell command; returns (seconds, peak RSS of its process tree in bytes)."""
    peak = [0]
    t0 = time.monotonic()
    p = subprocess.Popen(["bash", "-c", cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(p.pid))
            time.sleep(0.02)

    t = threading.Thread(target=sample)
    t.start()
    _, err = p.communicate()
    secs = time.monotonic() - t0
    done.set()
    t.join()
    if p.returncode != 0:
        raise RuntimeError(f"{cmd!r} failed ({p.returncode}): {err.decode()[-2000:]}")
    return secs, peak[0]


def registry_bytes(log, start):
    """Bytes of blob bodies the registry served since log offset `start`."""
    with open(log, "rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    total = 0
    for m in re.finditer(r'"GET /v2/[^ ]*/blobs/sha256:[0-9a-f]+ HTTP/1.1" (200|206) (\d+)', text):
        total += int(m.group(2))
    return total


def alternate(tools, rounds, prepare=None):
    """tools: {name: cmd}. One warm-up each, then `rounds` interleaved rounds."""
    results = {n: {"secs": [], "rss": []} for n in tools}
    for r in range(rounds + 1):
        for name, cmd in tools.items():
            if prepare:
                prepare(name)
            secs, rss = timed(cmd)
            if r > 0:
                results[name]["secs"].append(secs)
                results[name]["rss"].append(rss)
            print(f"  round {r} {name}: {secs:.3f}s {rss / 2**20:.0f} MiB", file=sys.stderr)
    return results


def summarize(title, results, unit="s"):
    med = {n: statistics.median(v["secs"]) for n, v in results.items()}
    rows = [f"\n{title}", f"  {'tool':<22} {'median':>10} {'skiff/tool':>11} {'peak RSS':>10}"]
    for n, m in med.items():
        ratio = med["skiff"] / m if m else float("nan")
        rss = max(results[n]["rss"]) / 2**20 if results[n]["rss"] else 0
        rows.append(f"  {n:<22} {m:>9.3f}{unit} {ratio:>10.2f}x {rss:>8.0f}MiB")
    print("\n".join(rows))
    return {n: {"median": med[n], "ratio": med["skiff"] / med[n], "peak_rss": max(results[n]["rss"]),
                "runs": results[n]["secs"]} for n in med}


def scenario_policies(skiff, d, regdir, start_rounds, rounds):
    """A cached tag's start under each --pull policy, and the fall-back time when the
    registry's packets are dropped (a network namespace with an iptables DROP rule)."""
    out = {}
    sh(f"rm -rf {d}/skiff {d}/rootfs && {skiff} --root {d}/skiff pull {REG}/small:v1 >/dev/null 2>&1")
    sh(f"{skiff} --root {d}/skiff unpack --pull=never {REG}/small:v1 {d}/rootfs")
    run = f"{skiff} --root {d}/skiff run {REG}/small:v1 --exec /bin/true"
    tools = {"skiff": run.replace(" run ", " run --pull=missing ")}
    for p in ("newer", "always", "never"):
        tools[f"skiff --pull={p}"] = run.replace(" run ", f" run --pull={p} ")
    tools["unshare+chroot floor"] = f"unshare -m chroot {d}/rootfs /bin/true"
    out["7-policy-start"] = summarize("Scenario 7a: start of a cached tag by --pull policy (registry up)",
                                      alternate(tools, start_rounds))
    ns = "skiff-bench"
    sh(f"ip netns del {ns} 2>/dev/null; ip netns add {ns} && ip -n {ns} link set lo up")
    yml = os.path.join(CACHE, "registry-ns.yml")
    with open(yml, "w") as f:
        f.write(f"version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {regdir}}}}}\n"
                f"http: {{addr: {REG}}}\n")
    reg = subprocess.Popen(["ip", "netns", "exec", ns, "docker-registry", "serve", yml],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        inns = f"ip netns exec {ns} {skiff} --root {d}/ns-skiff"
        sh(f"rm -rf {d}/ns-skiff && {inns} pull {REG}/small:v1 >/dev/null 2>&1")
        sh(f"ip netns exec {ns} iptables -I INPUT -p tcp --dport {PORT} -j DROP")
        tools = {
            "skiff": f"{inns} run --pull=missing {REG}/small:v1 --exec /bin/true",
            "skiff --pull=newer": f"{inns} run --pull=newer {REG}/small:v1 --exec /bin/true",
            "skiff --pull=newer, 1 s budget": f"{inns} run --pull=newer --registry-timeout=1 {REG}/small:v1 --exec /bin/true",
        }
        out["7-blackholed"] = summarize("Scenario 7b: start of a cached tag, registry blackholed (packets dropped)",
                                        alternate(tools, rounds))
    finally:
        reg.terminate()
        reg.wait()
        sh(f"ip netns del {ns}", check=False)
    return out


def scenario_load(skiff, d, archive, rounds):
    """An air-gapped host: load of an image from an oci-archive (as `podman save` or `skopeo
    copy` write it) into a fresh store, skiff against `podman load` of the same file, each to a
    durable result. Peak RSS shows whether the archive is streamed."""
    podman = f"podman --root {d}/podman/root --runroot {d}/podman/run --storage-driver overlay"
    tools = {
        "skiff": f"{skiff} --root {d}/skiff load oci-archive:{archive} localhost/bench:v1 >/dev/null 2>&1; sync",
        "podman load": f"{podman} load -q -i {archive} >/dev/null; sync",
    }

    def prep(_name):
        for sub in ("skiff", "podman"):
            sh(f"rm -rf {d}/{sub}", check=False)
        sh("sync")
    size = os.path.getsize(archive)
    res = summarize(f"Scenario 8: load from an oci-archive ({size / 2**20:.0f} MiB file) into a fresh store",
                    alternate(tools, rounds, prep))
    for n in res:
        res[n]["archive_bytes"] = size
    return res


def scenario_update_check(skiff, d, log, rounds, units=4):
    """`skiff update` on a host where nothing changed: units whose EnvironmentFile= is a skiff
    pin file following a tag that still means the pinned digest. Needs a host booted with
    systemd (the units are transient, made with systemd-run); counts registry requests."""
    if not os.path.isdir("/run/systemd/system"):
        print("\nScenario 9: skipped (this host is not booted with systemd)")
        return {}
    store = os.path.join(d, "update-skiff")
    sh(f"rm -rf {store} {d}/update-pins && mkdir -p {d}/update-pins")
    pinned = subprocess.check_output(f"{skiff} --root {store} pin {REG}/small:v1", shell=True, text=True).strip()
    names = []
    for i in range(units):
        name = f"skiff-bench-update-{i}.service"
        pin = f"{d}/update-pins/{i}.env"
        with open(pin, "w") as f:
            f.write(f"# skiff-follow: {REG}/small:v1\nIMAGE={pinned}\n")
        sh(f"systemctl stop {name} 2>/dev/null; systemctl reset-failed {name} 2>/dev/null", check=False)
        sh(f"systemd-run -q --unit {name} -p EnvironmentFile={pin} /bin/sleep infinity")
        names.append(name)
    try:
        upd = f"{skiff} --root {store} update"
        tools = {"skiff update, 1 unit": f"{upd} {names[0]}",
                 f"skiff update, {units} units": f"{upd} {' '.join(names)}",
                 f"skiff update, {units} units found by asking systemd": upd}
        start = os.path.getsize(log)
        res = alternate(tools, rounds)
        time.sleep(0.2)
        with open(log, "rb") as f:
            f.seek(start)
            text = f.read().decode(errors="replace")
        runs = rounds + 1  # the warm-up round counts too
        heads = len(re.findall(r'"HEAD /v2/small/manifests/v1 HTTP/1.1"', text))
        others = len(re.findall(r'"(GET|POST|PUT) /v2/small/', text))
        out = summarize("Scenario 9: update check where nothing changed (target <= 50 ms, one HEAD per unit)", res)
        expected = runs * (1 + units + units)
        print(f"  registry: {heads} HEADs for {expected} unit checks, {others} other requests")
        out["requests"] = {"heads": heads, "unit_checks": expected, "other": others}
        return {"9-update-check": out}
    finally:
        for n in names:
            sh(f"systemctl stop {n}", check=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skiff", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--start-rounds", type=int, default=20)
    ap.add_argument("--hosts", type=int, default=16)
    ap.add_argument("--only", default="1,2,3,5,6,7,8,9")
    ap.add_argument("--load-image", default="bench-v1", help="the layout tag scenario 8 archives (small-v1 for a quick run)")
    ap.add_argument("--compare", help="another skiff binary (say, main's) to run beside --skiff in scenarios 1 and 3")
    a = ap.parse_args()
    only = set(a.only.split(","))
    skiff = os.path.abspath(a.skiff)
    os.makedirs(CACHE, exist_ok=True)
    layout = os.path.join(CACHE, "layout")
    sh(f"python3 {HERE}/mkimage.py {layout}")

    regdir = os.path.join(CACHE, "registry")
    log = os.path.join(CACHE, "registry.log")
    with open(os.path.join(CACHE, "registry.yml"), "w") as f:
        f.write(f"version: 0.1\nlog: {{level: info}}\nstorage: {{filesystem: {{rootdirectory: {regdir}}}}}\n"
                f"http: {{addr: {REG}}}\n")
    reg = subprocess.Popen(["docker-registry", "serve", os.path.join(CACHE, "registry.yml")],
                           stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    try:
        time.sleep(1)
        for ref in ("bench:v1", "bench:v2", "small:v1"):
            sh(f"skopeo copy -q --dest-tls-verify=false oci:{layout}:{ref.replace(':', '-')} docker://{REG}/{ref}")
        report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                  "machine": f"{platform.node()} {os.cpu_count()} cores, {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') // 2**30} GiB",
                  "kernel": platform.release(), "scenarios": {}}
        disk = os.path.join(CACHE, "work")
        tmpfs = os.path.join(CACHE, "tmpfs")
        os.makedirs(tmpfs, exist_ok=True)
        sh(f"mountpoint -q {tmpfs} || mount -t tmpfs -o size=12g tmpfs {tmpfs}")
        layers = [m["digest"] for m in json.loads(subprocess.check_output(
            f"skopeo inspect --raw --tls-verify=false docker://{REG}/bench:v1", shell=True))["layers"]]
        floor = " ".join(f"(mkdir -p $D/floor/{i} && curl -s http://{REG}/v2/bench/blobs/{d} | gzip -dc | tar -x -C $D/floor/{i}) &"
                         for i, d in enumerate(layers)) + " wait"
        podman = "podman --root $D/podman/root --runroot $D/podman/run --storage-driver overlay"

        compare = os.path.abspath(a.compare) if a.compare else None

        def cold_tools(d):
            pre = f"D={d}; "
            tools = {
                "skiff": pre + f"{skiff} --root $D/skiff pull {REG}/bench:v1 >/dev/null 2>&1; sync",
                "skopeo+umoci": pre + f"skopeo copy -q --src-tls-verify=false docker://{REG}/bench:v1 oci:$D/oci:v1 && umoci unpack --image $D/oci:v1 $D/bundle; sync",
                "podman": pre + f"{podman} pull -q --tls-verify=false {REG}/bench:v1; sync",
                "curl|gzip|tar floor": pre + floor + "; sync",
            }
            if compare:
                tools["skiff (--compare)"] = pre + f"{compare} --root $D/skiff-compare pull {REG}/bench:v1 >/dev/null 2>&1; sync"
            return tools

        def clean(d):
            def prep(_name):
                for sub in ("skiff", "skiff-compare", "oci", "bundle", "podman", "floor"):
                    p = os.path.join(d, sub)
                    if os.path.exists(p):
                        sh(f"rm -rf {p}", check=False)
                sh("sync")
            return prep

        if "1" in only:
            for label, d in (("disk", disk), ("tmpfs", tmpfs)):
                os.makedirs(d, exist_ok=True)
                print(f"scenario 1 ({label})", file=sys.stderr)
                res = alternate(cold_tools(d), a.rounds, clean(d))
                report["scenarios"][f"1-cold-pull-{label}"] = summarize(f"Scenario 1: cold pull to runnable rootfs, ~600 MB, 5 layers ({label})", res)
        if "2" in only:
            d = disk
            print("scenario 2", file=sys.stderr)
            out = {}
            for name, base, update in (
                ("skiff", f"{skiff} --root {d}/skiff pull {REG}/bench:v1", f"{skiff} --root {d}/skiff pull {REG}/bench:v2"),
                ("podman", f"D={d}; {podman} pull -q --tls-verify=false {REG}/bench:v1", f"D={d}; {podman} pull -q --tls-verify=false {REG}/bench:v2"),
            ):
                secs, sent, rss = [], [], []
                for _ in range(a.rounds):
                    clean(d)(name)
                    sh(base + " >/dev/null 2>&1")
                    start = os.path.getsize(log)
                    s, peak = timed(update + "; sync")
                    time.sleep(0.2)
                    secs.append(s)
                    rss.append(peak)
                    sent.append(registry_bytes(log, start))
                out[name] = {"secs": secs, "rss": rss, "bytes": sent}
            res = summarize("Scenario 2: update pull (4 of 5 layers shared)", out)
            for n in out:
                res[n]["bytes"] = statistics.median(out[n]["bytes"])
                print(f"  {n}: {res[n]['bytes'] / 2**20:.1f} MiB transferred")
            report["scenarios"]["2-update-pull"] = res
        if "3" in only:
            d = disk
            print("scenario 3", file=sys.stderr)
            clean(d)("all")
            sh(f"{skiff} --root {d}/skiff pull {REG}/bench:v1 >/dev/null 2>&1")
            sh(f"rm -rf {d}/rootfs; {skiff} --root {d}/skiff unpack --pull=never {REG}/bench:v1 {d}/rootfs")
            sh(f"skopeo copy -q --src-tls-verify=false docker://{REG}/bench:v1 oci:{d}/oci:v1 && umoci unpack --image {d}/oci:v1 {d}/bundle")
            cfg = json.load(open(f"{d}/bundle/config.json"))
            cfg["process"]["args"] = ["/bin/true"]
            cfg["process"]["terminal"] = False
            json.dump(cfg, open(f"{d}/bundle/config.json", "w"))
            sh(f"D={d}; {podman} pull -q --tls-verify=false {REG}/bench:v1 >/dev/null")
            tools = {
                "skiff": f"{skiff} --root {d}/skiff run --pull=never {REG}/bench:v1 --exec /bin/true",
                "unshare+chroot floor": f"unshare -m chroot {d}/rootfs /bin/true",
                "bwrap": f"bwrap --bind {d}/rootfs / --proc /proc --dev /dev /bin/true",
                "crun run": f"unshare -m sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; crun run -b {d}/bundle bench-$$'",
                "podman run": f"D={d}; {podman} --runtime runc run --rm --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --network none {REG}/bench:v1 /bin/true",
            }
            if compare:
                tools["skiff (--compare)"] = tools["skiff"].replace(skiff, compare, 1)
            res = alternate(tools, a.start_rounds)
            report["scenarios"]["3-warm-start"] = summarize("Scenario 3: warm start of /bin/true", res)
        if "5" in only:
            size = os.path.getsize(skiff)
            deps = subprocess.run(f"cd {ROOT} && cargo tree -e normal --prefix none --target x86_64-unknown-linux-musl 2>/dev/null | sort -u | wc -l",
                                  shell=True, capture_output=True, text=True).stdout.strip()
            print(f"\nScenario 5: binary {skiff}: {size / 2**20:.2f} MiB, {deps} crates in the dependency tree (normal, musl)")
            report["scenarios"]["5-binary"] = {"bytes": size, "crates": int(deps or 0)}
        if "6" in only:
            print("scenario 6", file=sys.stderr)
            n = a.hosts
            d = os.path.join(tmpfs, "hosts")
            out = {}
            for name, one in (
                ("skiff", f"{skiff} --root {d}/$i/skiff pull {REG}/small:v1 >/dev/null 2>&1"),
                ("skopeo+umoci", f"skopeo copy -q --src-tls-verify=false docker://{REG}/small:v1 oci:{d}/$i/oci:v1 && umoci unpack --image {d}/$i/oci:v1 {d}/$i/bundle"),
            ):
                sh(f"rm -rf {d}; mkdir -p {d}")
                start = os.path.getsize(log)
                cmd = f"for i in $(seq {n}); do ( mkdir -p {d}/$i && {one} ) & done; wait; sync"
                s, rss = timed(cmd)
                time.sleep(0.2)
                out[name] = {"secs": [s], "rss": [rss], "bytes": registry_bytes(log, start)}
            res = summarize(f"Scenario 6: {n} hosts pull one ~100 MB image at once (stores on tmpfs)", out)
            for name in out:
                res[name]["bytes"] = out[name]["bytes"]
                print(f"  {name}: registry served {out[name]['bytes'] / 2**20:.0f} MiB")
            report["scenarios"]["6-many-hosts"] = res
            sh(f"rm -rf {d}")
        if "7" in only:
            print("scenario 7", file=sys.stderr)
            report["scenarios"].update(scenario_policies(skiff, disk, regdir, a.start_rounds, a.rounds))
        if "8" in only:
            print("scenario 8", file=sys.stderr)
            archive = os.path.join(CACHE, f"{a.load_image}.oci.tar")
            if not os.path.exists(archive):
                sh(f"skopeo copy -q oci:{layout}:{a.load_image} oci-archive:{archive}:v1")
            os.makedirs(disk, exist_ok=True)
            report["scenarios"]["8-load-archive"] = scenario_load(skiff, disk, archive, a.rounds)
        if "9" in only:
            print("scenario 9", file=sys.stderr)
            os.makedirs(disk, exist_ok=True)
            report["scenarios"].update(scenario_update_check(skiff, disk, log, a.start_rounds))
        os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
        path = os.path.join(HERE, "results", datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + ".json")
        json.dump(report, open(path, "w"), indent=2)
        print(f"\nmachine-readable: {path}")
    finally:
        reg.terminate()
        reg.wait()


if __name__ == "__main__":
    main()
