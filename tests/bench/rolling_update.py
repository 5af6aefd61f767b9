# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the drain saves: playbooks/update.yml with the drain and without it (update_drain=false, update_min_ready=0:
the engines restart one at a time under traffic, vLLM's --shutdown-timeout as the only grace), alternating, under the
same open-loop load through llm-lab-1's door (tests/integration/rolling_load.py, 2 requests/s, 48 output tokens).

Needs the lab after `make lab`. Puts a second replica of the demo model on llm-lab-1 (as test_update_lab.py does);
each run flips one vLLM flag (--max-num-seqs 32 / unset) on both replicas, so every run switches both. Prints, per
run, the failed requests and their errors, output tok/s and TTFT p50/p99 before / during / after, the lowest 5-second
window's tok/s during the update, and the playbook's time. A measurement: nothing is asserted.

    .venv/bin/python tests/bench/rolling_update.py --rounds 2 [--rate 2]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import lab_doors  # noqa: E402  pylint: disable=wrong-import-position
import rolling_load  # noqa: E402  pylint: disable=wrong-import-position


def playbook(*args):
    env = dict(os.environ, ANSIBLE_NOCOLOR="1")
    env["PATH"] = os.path.join(ROOT, ".venv", "bin") + os.pathsep + env.get("PATH", "")
    return subprocess.run(["ansible-playbook", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rate", type=float, default=2.0)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="rolling-update-")
    files = {}
    for name, extra in (("plain", {}), ("seqs", {"max_num_seqs": 32})):
        files[name] = os.path.join(work, name + ".json")
        with open(files[name], "w") as handle:
            json.dump({"vllm_instances": rolling_load.two_replicas(**extra)}, handle)
    now = datetime.datetime.now().isoformat(timespec="seconds")
    print("# rolling_update.py, %s, load average before: %s" % (now, open("/proc/loadavg").read().split()[:3]))
    setup = playbook("site.yml", "--limit", "llm-lab-1", "--tags", "models,vllm,gateway", "-e", "@" + files["plain"])
    if setup.returncode != 0:
        sys.exit("setting up two replicas failed:\n" + setup.stdout[-3000:])
    door = lab_doors.doors()["llm-lab-1"]
    key = lab_doors.key()
    target, results = "seqs", []
    for index in range(args.rounds * 2):
        mode = "drain" if index % 2 == 0 else "no drain"
        extra = [] if mode == "drain" else ["-e", "update_drain=false", "-e", "update_min_ready=0"]
        load = rolling_load.Load(door["url"], key, door["cacert"], "tiny", rate=args.rate, output_len=48, seed=index).start()
        time.sleep(15)
        t0 = time.perf_counter()
        proc = playbook("playbooks/update.yml", "-e", "@" + files[target], *extra)
        t1 = time.perf_counter()
        time.sleep(15)
        rep = rolling_load.report(load.stop(), t0, t1)
        during = [w["output_tok_s"] for w in rep["windows"] if w["phase"] == "during"]
        results.append((mode, proc.returncode, rep, min(during) if during else 0.0))
        print("\n".join(rolling_load.lines("run %d, %s (playbook rc %d)" % (index + 1, mode, proc.returncode), rep)))
        print("  lowest 5-s window during the update: %.1f output tok/s" % results[-1][3])
        target = "plain" if target == "seqs" else "seqs"
    print("\n| run | mode | requests during | failed | TTFT p99 before / during ms | tok/s before / during / lowest window | playbook s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for i, (mode, rc, rep, low) in enumerate(results, 1):
        print("| %d | %s%s | %d | %d | %.0f / %.0f | %.1f / %.1f / %.1f | %.0f |" % (
            i, mode, "" if rc == 0 else " (rc %d)" % rc, rep["during"]["requests"], rep["all"]["failed"], rep["before"]["ttft_p99_ms"],
            rep["during"]["ttft_p99_ms"], rep["before"]["output_tok_s"], rep["during"]["output_tok_s"], low, rep["playbook_s"]))
    print("load average after: %s" % open("/proc/loadavg").read().split()[:3])


if __name__ == "__main__":
    main()
