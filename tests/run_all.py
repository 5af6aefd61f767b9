# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The whole test suite, as `make test` runs it (and CI through .ci/run).

Stages, in order: lab image and artefacts → unit (pytest) → ansible-lint → ansible-test sanity →
integration (pytest against lab hosts and a real vLLM) → Molecule scenarios (one per role).
Every stage runs even when an earlier one failed; the last line is the summary
`summary: N passed, N failed, N skipped`. pytest tests count one each; ansible-lint, each
ansible-test sanity test and each Molecule scenario count one each.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
sys.path.insert(0, os.path.join(ROOT, "tools"))
import lab  # noqa: E402  pylint: disable=wrong-import-position
OUTPUT = os.path.join(ROOT, "tests", "output", "run_all")
STAGES = ["prepare", "unit", "lint", "sanity", "integration", "molecule", "lab-down"]


class Tally:
    def __init__(self) -> None:
        self.rows = []  # (stage, passed, failed, skipped, seconds, note)

    def add(self, stage, passed, failed, skipped, seconds, note=""):
        self.rows.append((stage, passed, failed, skipped, seconds, note))
        print(f"\n=== {stage}: {passed} passed, {failed} failed, {skipped} skipped ({seconds:.0f}s) {note}\n", flush=True)

    def totals(self):
        return tuple(sum(r[i] for r in self.rows) for i in (1, 2, 3))


def env() -> dict:
    e = dict(os.environ)
    e["PATH"] = VENV_BIN + os.pathsep + e.get("PATH", "")
    e["DOCKER_HOST"] = "unix://" + lab.SOCK  # the lab's own notion of its socket (LAB_DIR honoured)
    e["LLM_REPO_ROOT"] = ROOT
    e["ANSIBLE_INJECT_FACT_VARS"] = "false"
    e["ANSIBLE_FORCE_COLOR"] = "false"
    e["PY_COLORS"] = "0"
    e["NO_COLOR"] = "1"
    e.setdefault("LLM_TEST_VLLM_PYTHON", os.path.join(ROOT, ".cache", "vllm-venv", "bin", "python"))
    e.setdefault("LLM_TEST_MODEL_DIR", os.path.join(ROOT, ".cache", "artefacts", "models", "tiny-llama"))
    return e


def run(cmd, cwd=ROOT, log=None) -> int:
    print(f"$ {' '.join(cmd)}", flush=True)
    if log:
        with open(log, "w") as fh:
            proc = subprocess.run(cmd, cwd=cwd, env=env(), stdout=fh, stderr=subprocess.STDOUT, check=False)
        with open(log) as fh:
            tail = fh.read()[-6000:]
        print(tail, flush=True)
        return proc.returncode
    return subprocess.run(cmd, cwd=cwd, env=env(), check=False).returncode


def junit_counts(path):
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    return tests - failed - skipped, failed, skipped


def stage_prepare(tally):
    start = time.monotonic()
    failed = 0
    steps = [[sys.executable, "tools/lab.py", "image"]]
    if os.path.exists(os.path.join(ROOT, "tools", "artefacts.py")):
        steps.append([sys.executable, "tools/artefacts.py", "all"])
        # the lab's air-gapped bundle: the Molecule scenarios on the air-gapped network install OS packages from it
        steps.append([os.path.join(VENV_BIN, "ansible-playbook"), "playbooks/bundle.yml"])
    for cmd in steps:
        if run(cmd) != 0:
            failed += 1
    tally.add("prepare", len(steps) - failed, failed, 0, time.monotonic() - start, "(lab image, artefacts)")


def stage_pytest(tally, name, paths, extra=()):
    start = time.monotonic()
    paths = [p for p in paths if glob.glob(os.path.join(ROOT, p, "**", "test_*.py"), recursive=True)]
    if not paths:
        tally.add(name, 0, 0, 0, 0, "(no tests)")
        return
    xml = os.path.join(OUTPUT, f"{name}.xml")
    rc = run([os.path.join(VENV_BIN, "python"), "-m", "pytest", *paths, "-q", "-rs", "-p", "no:cacheprovider",
              f"--junitxml={xml}", *extra])
    counts = junit_counts(xml)
    if counts is None:
        tally.add(name, 0, 1, 0, time.monotonic() - start, f"(pytest exit {rc}, no report)")
        return
    passed, failed, skipped = counts
    if rc not in (0, 5) and failed == 0:
        failed = 1  # collection errors and the like
    tally.add(name, passed, failed, skipped, time.monotonic() - start)


def stage_lint(tally):
    start = time.monotonic()
    rc = run([os.path.join(VENV_BIN, "ansible-lint")], log=os.path.join(OUTPUT, "ansible-lint.log"))
    tally.add("lint", int(rc == 0), int(rc != 0), 0, time.monotonic() - start, "(ansible-lint, production profile)")


def stage_sanity(tally):
    """ansible-test wants the collection under ansible_collections/NS/NAME: test a copy of the tree."""
    start = time.monotonic()
    # ansible-test bootstraps pip with a script from ci-files.testing.ansible.com (unreachable here)
    get_pip = os.path.expanduser("~/.ansible/test/cache/get_pip_24_2.py")
    if not os.path.exists(get_pip):
        os.makedirs(os.path.dirname(get_pip), exist_ok=True)
        shutil.copy(os.path.join(ROOT, "tests", "sanity", "get_pip_offline.py"), get_pip)
    # outside the checkout: inside it, ansible-test would ask git, which ignores .cache/, and skip everything
    base = tempfile.mkdtemp(prefix="onprem-sanity-")
    dest = os.path.join(base, "ansible_collections", "onprem", "llm_serving")
    os.makedirs(dest)
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    for rel in files:
        src = os.path.join(ROOT, rel)
        if os.path.islink(src) or not os.path.isfile(src):
            continue
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, rel))
    log = os.path.join(OUTPUT, "sanity.log")
    rc = run([os.path.join(VENV_BIN, "ansible-test"), "sanity", "--venv", "--requirements", "--python", "3.11", "--color", "no"],
             cwd=dest, log=log)
    text = open(log).read()
    ran = re.findall(r'^Running sanity test "([^"]+)"', text, re.M)
    failed_m = re.search(r"The (\d+) sanity test\(s\) listed below \(out of (\d+)\) failed", text)
    failed = int(failed_m.group(1)) if failed_m else (0 if rc == 0 else 1)
    skipped = len(re.findall(r"^WARNING: (Skipping sanity test|Required program)", text, re.M))
    if "All targets skipped" in text or not ran:
        failed = max(failed, 1)
    shutil.rmtree(base, ignore_errors=True)
    tally.add("sanity", max(len(ran) - failed, 0), failed, skipped, time.monotonic() - start, "(ansible-test sanity, empty ignore files)")


# Measured minutes per scenario on a fresh machine: the lanes start with the longest.
# Scenarios whose hosts keep a route out, and why. Every other scenario runs on the lab's air-gapped network
# (tools/lab.py: internal network, resolver on loopback) and installs OS packages from the lab's bundle only.
ONLINE_SCENARIOS = {
    "container_runtime": "the role configures Docker's and NVIDIA's repositories itself and installs docker.io/podman with them",
    "nvidia_driver": "the role configures NVIDIA's repository itself (the stand-in) and refreshes the host's apt index",
    "tgi": "it converges container_runtime (docker.io from the host's apt sources)",
}


def online_resolv_conf():
    """What Docker would give a host on its default bridge: the controller's resolvers that are not loopback."""
    lines = [ln for ln in open("/etc/resolv.conf") if ln.startswith("nameserver") and not ln.split()[1].startswith("127.")]
    path = os.path.join(OUTPUT, "online-resolv.conf")
    with open(path, "w") as fh:
        fh.write("".join(lines) or "nameserver 8.8.8.8\n")
    return path


MOLECULE_WEIGHT = {"container_runtime": 11, "nvidia_driver": 10, "vllm": 8, "ollama": 7, "tgi": 5, "models": 3, "common": 2}


def run_scenario(role_dir, role, scen):
    """One `molecule test`, its output in its own log. Returns (rc, seconds)."""
    start = time.monotonic()
    log = os.path.join(OUTPUT, f"molecule-{role}-{scen}.log")
    cmd = [os.path.join(VENV_BIN, "molecule"), "-c", os.path.join(ROOT, "tests", "molecule", "base.yml"), "test", "-s", scen]
    e = env()
    e["MOLECULE_ROLE_NAME"] = role
    e.setdefault("MOLECULE_NAME_SUFFIX", "lab")
    e.update(LLM_MOLECULE_SSH_AUTHORIZED_KEYS=lab.ensure_ssh_key(), LLM_MOLECULE_SSH_KEY=lab.SSH_KEY)
    if role in ONLINE_SCENARIOS:
        e.update(LLM_MOLECULE_NETWORK="bridge", LLM_MOLECULE_RESOLV_CONF=online_resolv_conf(), LLM_MOLECULE_OS_REPOSITORY="")
    else:
        lab.ensure_network(True)
        e.update(LLM_MOLECULE_NETWORK=lab.AIRGAP_NET, LLM_MOLECULE_RESOLV_CONF=lab.resolv_conf(),
                 LLM_MOLECULE_OS_REPOSITORY=os.path.join(ROOT, ".cache", "bundle", "apt"))
    print(f"$ (cd roles/{role} && {' '.join(cmd)})  > {os.path.relpath(log, ROOT)}", flush=True)
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, cwd=role_dir, env=e, stdout=fh, stderr=subprocess.STDOUT, check=False).returncode
    return rc, time.monotonic() - start


def stage_molecule(tally, only=None, jobs=None):
    """Every scenario, in `jobs` lanes (LLM_MOLECULE_JOBS, default 2). Scenarios spend most of their
    time waiting on round trips to their host and on apt, not on the CPU, so two lanes on two cores
    roughly halve the stage; each scenario's host carries the role and scenario in its name."""
    start_all = time.monotonic()
    scenarios = []
    for path in sorted(glob.glob(os.path.join(ROOT, "roles", "*", "molecule", "*", "molecule.yml"))):
        scen_dir = os.path.dirname(path)
        role_dir = os.path.dirname(os.path.dirname(scen_dir))
        role, scen = os.path.basename(role_dir), os.path.basename(scen_dir)
        if not only or role in only:
            scenarios.append((role_dir, role, scen))
    if not scenarios:
        tally.add("molecule", 0, 0, 0, time.monotonic() - start_all, "(no scenarios)")
        return
    scenarios.sort(key=lambda s: -MOLECULE_WEIGHT.get(s[1], 1))
    jobs = jobs or int(os.environ.get("LLM_MOLECULE_JOBS", "2"))
    lock = threading.Lock()

    def one(scenario):
        role_dir, role, scen = scenario
        rc, secs = run_scenario(role_dir, role, scen)
        with lock:
            if rc != 0:
                print(open(os.path.join(OUTPUT, f"molecule-{role}-{scen}.log")).read()[-8000:], flush=True)
            tally.add(f"molecule {role}/{scen}", int(rc == 0), int(rc != 0), 0, secs)

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(one, scenarios))
    print(f"molecule: {len(scenarios)} scenario(s) in {jobs} lane(s), {time.monotonic() - start_all:.0f}s", flush=True)


def stage_lab_down(tally):
    """The README's `make lab-down`, last: the lab hosts are removed and the lab's dockerd stops (one test)."""
    start = time.monotonic()
    rc = run(["make", "lab-down"])
    problems = []
    if rc != 0:
        problems.append(f"make lab-down exited {rc}")
    if lab.dockerd_pid():
        problems.append(f"the lab's dockerd still runs (pid {lab.dockerd_pid()})")
    if problems:
        print("lab-down: " + "; ".join(problems), flush=True)
    tally.add("lab-down", int(not problems), int(bool(problems)), 0, time.monotonic() - start, "(make lab-down)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", action="append", choices=STAGES, help="run only these stages (repeatable)")
    parser.add_argument("--role", action="append", help="molecule: only these roles")
    args = parser.parse_args()
    stages = args.only or STAGES
    os.makedirs(OUTPUT, exist_ok=True)
    tally = Tally()
    t0 = time.monotonic()
    for stage in stages:
        if stage == "prepare":
            stage_prepare(tally)
        elif stage == "unit":
            stage_pytest(tally, "unit", ["tests/unit"])
            # Role template tests import ansible's controller-side templar, which changes how module
            # warnings are collected: they run in a process of their own.
            role_tests = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "roles", "*", "tests")))
            stage_pytest(tally, "unit-roles", role_tests)
        elif stage == "lint":
            stage_lint(tally)
        elif stage == "sanity":
            stage_sanity(tally)
        elif stage == "integration":
            run([sys.executable, "tools/lab.py", "up", "--hosts", "2"])
            stage_pytest(tally, "integration", ["tests/integration"])
        elif stage == "molecule":
            stage_molecule(tally, args.role)
        elif stage == "lab-down":
            stage_lab_down(tally)
    passed, failed, skipped = tally.totals()
    print("\n" + "-" * 72)
    for stage, p, f, s, secs, note in tally.rows:
        print(f"{stage:<34} {p:>5} passed {f:>3} failed {s:>3} skipped {secs:>6.0f}s {note}")
    print(f"{'total':<34} {time.monotonic() - t0:>46.0f}s")
    print(f"summary: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
