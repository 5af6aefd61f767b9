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


def site(limit=None):
    cmd = SITE + (["--limit", limit] if limit else [])
    start = time.monotonic()
    proc = subprocess.run(cmd, env=ENV, text=True, capture_output=True, cwd=ROOT, check=False)
    secs = time.monotonic() - start
    recap = dict((h, int(c)) for h, c in re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", proc.stdout, re.M))
    if proc.returncode != 0:
        print(proc.stdout[-3000:])
    return secs, proc.returncode, recap


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    try:
        write_inventory(hosts(1))
        fresh(1)
        secs, rc, recap = site()
        print("first run, 1 host: %.0f s rc=%d changed=%s load %s" % (secs, rc, recap, open("/proc/loadavg").read().split()[0]), flush=True)
        write_inventory(hosts(4))
        fresh(4)
        secs, rc, recap = site()
        print("first run, 4 hosts: %.0f s rc=%d changed=%s load %s" % (secs, rc, recap, open("/proc/loadavg").read().split()[0]), flush=True)
        reruns = {"4 hosts": [], "1 host": []}
        for number in range(1, args.rounds + 1):
            for label, limit in (("4 hosts", None), ("1 host", hosts(1)[0])):
                secs, rc, recap = site(limit)
                print("re-run %d, %s: %.0f s rc=%d changed=%s load %s" % (
                    number, label, secs, rc, recap, open("/proc/loadavg").read().split()[0]), flush=True)
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
