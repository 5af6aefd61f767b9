# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark (prints numbers, asserts nothing): how site.yml scales with the fleet (issue 14's P2).

Ollama hosts (the lighter engine on this 2-core machine), air-gapped, reached over SSH, installed from the bundle:

- first run on 1 fresh host, then the first run on 4 fresh hosts;
- re-runs with nothing to change, alternating 4 hosts and 1 of them (`--limit`), `--rounds` each (default 3):
  medians and their ratio (P2 asks <= 1.5), `changed=0` checked each time.

The hosts are llm-fleet-1..4 in a temporary inventory file beside the lab's (so the lab's group_vars apply), removed
at the end with the hosts. Run from the repository root after `make lab` (artefacts and bundle built):
    .venv/bin/python tests/bench/fleet_scale.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOCK = os.path.join(ROOT, ".lab", "docker", "docker.sock")
ENV = dict(os.environ, DOCKER_HOST="unix://" + SOCK, PATH=os.path.join(ROOT, ".venv", "bin") + os.pathsep + os.environ["PATH"])
INVENTORY = os.path.join(ROOT, "inventories", "lab", ".fleet-bench.yml")
PREFIX = "llm-fleet-"
SITE = [os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", INVENTORY, "site.yml", "-e", "@.cache/bundle/vars.yml"]


def sh(cmd, check=True):
    return subprocess.run(cmd, env=ENV, check=check, text=True, capture_output=True, cwd=ROOT)


def hosts(n):
    return ["%s%d" % (PREFIX, i) for i in range(1, n + 1)]


def fresh(n):
    sh(["docker", "rm", "-f", *hosts(4)], check=False)
    sh([sys.executable, os.path.join(ROOT, "tools", "lab.py"), "up", "--hosts", str(n), "--prefix", PREFIX])


def write_inventory(names):
    lines = ["---", "# tests/bench/fleet_scale.py (temporary)", "all:", "  children:", "    llm_hosts:", "      children:",
             "        ollama_servers:", "          hosts:"]
    lines += ["            %s:" % name for name in names]
    with open(INVENTORY, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def host_cpu_seconds(names):
    """CPU seconds each lab host's container has used so far (every process of the host: sshd, python, the engine),
    read from its cgroup on this machine (cgroup v1 cpuacct, or v2 cpu.stat)."""
    total = 0.0
    for name in names:
        cid = sh(["docker", "inspect", name, "--format", "{{.Id}}"], check=False).stdout.strip()
        v1 = "/sys/fs/cgroup/cpuacct/docker/%s/cpuacct.usage" % cid
        v2 = "/sys/fs/cgroup/system.slice/docker-%s.scope/cpu.stat" % cid
        if cid and os.path.exists(v1):
            total += int(open(v1).read()) / 1e9
        elif cid and os.path.exists(v2):
            total += int(re.search(r"^usage_usec (\d+)", open(v2).read(), re.M).group(1)) / 1e6
    return total


def site(limit=None, names=()):
    """One site.yml run: wall seconds, rc, changed per host, and the CPU seconds it cost on the controller (ansible and
    its ssh clients) and on the hosts. All of it shares this machine's 2 cores, so wall time grows with the total CPU
    a run needs; the CPU columns show where it goes and whether the controller's share per host stays flat."""
    cmd = SITE + (["--limit", limit] if limit else [])
    before_ctl = resource.getrusage(resource.RUSAGE_CHILDREN)
    before_hosts = host_cpu_seconds(names)
    start = time.monotonic()
    proc = subprocess.run(cmd, env=ENV, text=True, capture_output=True, cwd=ROOT, check=False)
    secs = time.monotonic() - start
    after_ctl = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = {"controller": (after_ctl.ru_utime + after_ctl.ru_stime) - (before_ctl.ru_utime + before_ctl.ru_stime),
           "hosts": host_cpu_seconds(names) - before_hosts}
    recap = dict((h, int(c)) for h, c in re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", proc.stdout, re.M))
    if proc.returncode != 0:
        print(proc.stdout[-3000:])
    return secs, proc.returncode, recap, cpu


def report(label, secs, rc, recap, cpu):
    print("%s: %.0f s rc=%d changed=%s; CPU s: controller %.1f, hosts %.1f; load %s" % (
        label, secs, rc, recap, cpu["controller"], cpu["hosts"], open("/proc/loadavg").read().split()[0]), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    try:
        write_inventory(hosts(1))
        fresh(1)
        secs, rc, recap, cpu = site(names=hosts(1))
        report("first run, 1 host", secs, rc, recap, cpu)
        write_inventory(hosts(4))
        fresh(4)
        secs, rc, recap, cpu = site(names=hosts(4))
        report("first run, 4 hosts", secs, rc, recap, cpu)
        reruns = {"4 hosts": [], "1 host": []}
        for number in range(1, args.rounds + 1):
            for label, limit, names in (("4 hosts", None, hosts(4)), ("1 host", hosts(1)[0], hosts(1))):
                secs, rc, recap, cpu = site(limit, names)
                report("re-run %d, %s" % (number, label), secs, rc, recap, cpu)
                if rc == 0 and all(c == 0 for c in recap.values()):
                    reruns[label].append(secs)
        medians = {label: statistics.median(v) for label, v in reruns.items() if v}
        for label, values in reruns.items():
            median = "%.0f s" % medians[label] if label in medians else "-"
            print("%s: %s; median %s" % (label, ", ".join("%.0f s" % v for v in values), median))
        if len(medians) == 2:
            print("re-run ratio 4 hosts / 1 host (medians): %.2f" % (medians["4 hosts"] / medians["1 host"]))
    finally:
        sh(["docker", "rm", "-f", *hosts(4)], check=False)
        if os.path.exists(INVENTORY):
            os.unlink(INVENTORY)
    return 0


if __name__ == "__main__":
    sys.exit(main())
