# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark (prints numbers, asserts nothing): what a re-run's package step costs on a host that has a distribution's
whole archive in its apt lists, as production hosts do, the reason the roles read dpkg's record with `host_facts`
(`gather: [packages]`) and run apt or dnf only for a package that is missing or off its pin (README, "Deploy speed
and fleets").

A container of the lab image on the lab dockerd's default bridge (it reaches Debian's archive, as the online Molecule
scenarios do) runs `apt-get update` against Debian's mirror, then one playbook (connection community.docker.docker, so
the transport is the same for each) repeats, --rounds times: `ansible.builtin.apt` with packages that are installed
(state present, nothing to do), two at their exact version (as the toolkit and driver roles pin), two held at their
exact version with allow_change_held_packages (as those roles install their held packages), the
`package_facts` read the roles used, and the `host_facts` read they use now. Each task's seconds (profile_tasks) and
the host's apt list size are printed. Run after `make lab` (the lab dockerd and image):
    .venv/bin/python tests/bench/package_reads.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import lab  # noqa: E402  pylint: disable=wrong-import-position

NAME = "onprem-bench-package-reads"
PACKAGES = ["python3", "openssh-server", "systemd", "iproute2"]
TASKS = ["apt, installed, state present", "apt, installed, each at its exact version",
         "apt, held, exact versions, allow_change_held_packages", "package_facts (what the roles read before)",
         "host_facts gather=packages (what the roles read now)"]


def playbook(rounds, pinned, held):
    apt = {"state": "present", "allow_downgrade": True}
    tasks = []
    for n in range(rounds):
        tasks += [
            {"name": "%s (round %d)" % (TASKS[0], n), "ansible.builtin.apt": {"name": PACKAGES, "state": "present"}},
            {"name": "%s (round %d)" % (TASKS[1], n), "ansible.builtin.apt": dict(apt, name=pinned)},
            {"name": "%s (round %d)" % (TASKS[2], n), "ansible.builtin.apt": dict(apt, name=held, allow_change_held_packages=True)},
            {"name": "%s (round %d)" % (TASKS[3], n), "ansible.builtin.package_facts": {"manager": "auto"}},
            {"name": "%s (round %d)" % (TASKS[4], n), "register": "read",
             "onprem.llm_serving.host_facts": {"gather": ["packages"], "packages": PACKAGES}},
            {"name": "Check the read (round %d)" % n, "ansible.builtin.assert": {
                "that": ["read.packages | onprem.llm_serving.packages_missing(%r) == []" % PACKAGES]}},
        ]
    return [{"hosts": NAME, "gather_facts": False, "tasks": tasks}]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    env = dict(os.environ, DOCKER_HOST="unix://" + lab.SOCK)
    resolv = os.path.join(tempfile.mkdtemp(), "resolv.conf")
    with open("/etc/resolv.conf") as fh, open(resolv, "w") as out:
        out.write("".join(ln for ln in fh if ln.startswith("nameserver") and not ln.split()[1].startswith("127."))
                  or "nameserver 8.8.8.8\n")
    subprocess.run(["docker", "rm", "-f", NAME], env=env, capture_output=True, check=False)
    subprocess.run(["docker", "run", "-d", "--name", NAME, "--network", "bridge", "-v", resolv + ":/etc/resolv.conf:ro",
                    "--entrypoint", "sleep", lab.IMAGE, "infinity"], env=env, check=True, capture_output=True)
    try:
        subprocess.run(["docker", "exec", NAME, "apt-get", "update", "-qq"], env=env, check=True)
        lists = subprocess.run(["docker", "exec", NAME, "sh", "-c", "du -sm /var/lib/apt/lists | cut -f1; "
                                "apt-cache stats | grep -i 'total package names'; "
                                "dpkg-query -W -f='${Package}=${Version} ' %s" % " ".join(PACKAGES)], env=env, check=True,
                               capture_output=True, text=True).stdout.splitlines()
        pinned = lists[2].split()
        # the last two are held, as the toolkit and driver roles hold theirs
        subprocess.run(["docker", "exec", NAME, "apt-mark", "hold"] + [p.split("=")[0] for p in pinned[2:]], env=env,
                       check=True, capture_output=True)
        with open("/proc/loadavg", encoding="ascii") as loadavg:
            load = loadavg.read().split()[0]
        print("# host %s: apt lists %s MB, %s; %d rounds, load %s" % (lab.IMAGE, lists[0], lists[1].strip(), args.rounds, load))
        work = tempfile.mkdtemp()
        with open(os.path.join(work, "play.yml"), "w") as fh:
            json.dump(playbook(args.rounds, pinned[:2], pinned[2:]), fh)
        with open(os.path.join(work, "hosts"), "w") as fh:
            fh.write("%s ansible_connection=community.docker.docker ansible_python_interpreter=/usr/bin/python3\n" % NAME)
        run_env = dict(env, ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks", PROFILE_TASKS_SORT_ORDER="none",
                       PROFILE_TASKS_TASK_OUTPUT_LIMIT="1000", ANSIBLE_NOCOLOR="1", ANSIBLE_PIPELINING="true")
        proc = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", os.path.join(work, "hosts"),
                               os.path.join(work, "play.yml")], cwd=ROOT, env=run_env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(proc.stdout[-4000:], proc.stderr[-2000:])
            return 1
        seconds = {task: [] for task in TASKS}
        for line in proc.stdout.splitlines():
            found = re.match(r"^(.*) \(round \d+\) -+ ([0-9.]+)s$", line)
            if found and found.group(1) in seconds:
                seconds[found.group(1)].append(float(found.group(2)))
        for task in TASKS:
            print("%-52s %s s; median %.2f s" % (task, ", ".join("%.2f" % s for s in seconds[task]), statistics.median(seconds[task])))
    finally:
        subprocess.run(["docker", "rm", "-f", NAME], env=env, capture_output=True, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
