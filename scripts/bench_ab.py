#!/usr/bin/env python3
"""Setup A/B: builds of the benchmark runner against Go's kata-mode attach, interleaved.

    sudo scripts/bench_ab.py --rounds 100 [--cycles 1] --tcbench target/bench/tcbench \
        --state-disk /run/snab --state-tmpfs /dev/shm/snab RUNNER [RUNNER ...]

Each RUNNER is a build of `crates/cli/examples/bench.rs` (`target/release/examples/bench`,
copied aside per commit). Every round runs every case once, in an order rotated every
round: each runner's `lib-cycle` on the four attach paths (default attach and the CNI
plugin's path, state on disk and on tmpfs) and `tcbench -mode kata`, each its own process
(one untimed warm-up cycle, then `--cycles` timed attach+detach cycles; the process's
median attach is the sample). Each path has its own scratch netns pair (`eth0` veth, IPv4
and IPv6 addresses, a default route), made with `ip -n` and deleted on exit. Prints each
case's median and its ratio to Go's median, with the load average. See docs/BENCHMARKS.md,
"Setup, round two".
"""

import argparse
import json
import os
import re
import statistics
import subprocess

PATHS = [
    ("lib disk", "disk", []),
    ("lib tmpfs", "tmpfs", []),
    ("cni disk", "disk", ["--named", "eth0"]),
    ("cni tmpfs", "tmpfs", ["--named", "eth0"]),
]


def ip(*args):
    subprocess.run(["ip", *args], check=True)


def make_pair(name):
    pod, peer = f"{name}-pod", f"{name}-peer"
    ip("netns", "add", pod)
    ip("netns", "add", peer)
    ip("-n", pod, "link", "add", "eth0", "type", "veth", "peer", "name", "peth0", "netns", peer)
    ip("-n", pod, "link", "set", "lo", "up")
    ip("-n", pod, "link", "set", "eth0", "mtu", "1500", "up")
    ip("-n", pod, "addr", "add", "10.77.0.2/24", "dev", "eth0")
    ip("-n", pod, "addr", "add", "fd77::2/64", "dev", "eth0", "nodad")
    ip("-n", pod, "route", "add", "default", "via", "10.77.0.1")
    ip("-n", peer, "link", "set", "peth0", "up")
    ip("-n", peer, "addr", "add", "10.77.0.1/24", "dev", "peth0")
    return pod


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--cycles", type=int, default=1)
    ap.add_argument("--tcbench", required=True)
    ap.add_argument("--state-disk", required=True)
    ap.add_argument("--state-tmpfs", required=True)
    ap.add_argument("runners", nargs="+")
    a = ap.parse_args()
    prefix = f"snab{os.getpid()}"
    made = []
    try:
        cases = []
        for i, runner in enumerate(a.runners):
            for j, (label, where, extra) in enumerate(PATHS):
                name = f"{prefix}-{i}{j}"
                made.append(name)
                pod = make_pair(name)
                state = a.state_disk if where == "disk" else a.state_tmpfs
                cases.append((f"{os.path.basename(runner)} {label}", runner, pod, ["--state-dir", state, *extra]))
        made.append(f"{prefix}-go")
        cases.append(("go kata", None, make_pair(f"{prefix}-go"), None))
        samples = {c[0]: [] for c in cases}
        load0 = os.getloadavg()[0]
        for r in range(a.rounds):
            for j in range(len(cases)):
                name, runner, pod, args = cases[(j + r) % len(cases)]
                n = str(a.cycles)
                if runner is None:
                    out = subprocess.run([a.tcbench, "-ns", pod, "-mode", "kata", "-n", n],
                                         capture_output=True, text=True, check=True).stdout
                    us = float(re.search(r"single-ns attach.*median=\s*([0-9.]+)us", out).group(1))
                else:
                    out = subprocess.run([runner, "lib-cycle", "--netns", pod, "-n", n, *args],
                                         capture_output=True, text=True, check=True).stdout
                    us = statistics.median(s["attach_us"] for s in json.loads(out)["samples"])
                samples[name].append(us)
        go = statistics.median(samples["go kata"])
        print(f"rounds={a.rounds} cycles={a.cycles} load average {load0:.2f} at the start, "
              f"{os.getloadavg()[0]:.2f} at the end")
        for name, v in samples.items():
            med = statistics.median(v)
            print(f"  {name:28s} median {med:8.1f} us  / Go {med / go:.3f}")
    finally:
        for name in made:
            for side in ("pod", "peer"):
                subprocess.run(["ip", "netns", "del", f"{name}-{side}"], stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
