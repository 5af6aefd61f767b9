# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The whole test suite, as `make test` runs it (and CI through .ci/run).

Jobs: the lab image, the artefacts and the bundle (prepare); unit (pytest); ansible-lint; ansible-test sanity;
integration (pytest against lab hosts and a real vLLM); one Molecule scenario per role; `make lab-down` last.
They run side by side, LLM_TEST_JOBS at a time (default 3), each as soon as the jobs it needs are done (jobs_for below):
one stage after the other left a core idle for most of the run (prepare, unit, lint and sanity use one core each;
the integration tests wait on engines a third of the time), and only the Molecule stage kept both busy.
Each job writes its own log under tests/output/run_all/ and prints its tail when it ends.
Every job runs even when another one failed (a job whose prerequisite failed still runs: its own failures say
what that broke); the last line is the summary `summary: N passed, N failed, N skipped`. pytest tests count one
each; ansible-lint, each ansible-test sanity test, each prepare step and each Molecule scenario count one each.
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


OUT_LOCK = threading.Lock()  # one job's lines at a time on stdout
FAILED_LOGS = []  # the logs of the commands that failed, their ends repeated after the table


def say(text):
    with OUT_LOCK:
        print(text, flush=True)


class Tally:
    def __init__(self) -> None:
        self.rows = []  # (stage, passed, failed, skipped, seconds, note)

    def add(self, stage, passed, failed, skipped, seconds, note=""):
        with OUT_LOCK:
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


def run(cmd, log, cwd=ROOT, tail=3000, extra_env=None) -> int:
    """One command, its output in its own log (jobs run side by side); the command and the log's tail go to stdout,
    a longer tail when it failed."""
    where = "" if cwd == ROOT else f"(cd {os.path.relpath(cwd, ROOT)} && "
    say(f"$ {where}{' '.join(cmd)}{')' if where else ''}  > {os.path.relpath(log, ROOT)}")
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, cwd=cwd, env=dict(env(), **(extra_env or {})), stdout=fh, stderr=subprocess.STDOUT, check=False)
    with open(log) as fh:
        text = fh.read()
    keep = tail if proc.returncode == 0 else max(tail, 12000)
    if proc.returncode != 0:
        FAILED_LOGS.append(log)
    say(f"--- {os.path.relpath(log, ROOT)} (exit {proc.returncode}, last {keep} characters)\n{text[-keep:]}")
    return proc.returncode


def failure_lines(log, tail=12, errors=6):
    """What a failed command's log says of its failure, short: its last error lines (ERROR, fatal, FAILED, assert...)
    that come before its last ``tail`` lines, then those lines."""
    with open(log, errors="replace") as fh:
        lines = [line.rstrip()[:240] for line in fh.read().splitlines() if line.strip()]
    head, end = lines[:-tail], lines[-tail:]
    said = [line for line in head if re.search(r"error|fatal|failed|assert", line, re.IGNORECASE)
            and not re.search(r"failed=0|0 failed|FAILED - RETRYING", line)][-errors:]
    return said + (["..."] if said else []) + end


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


def stage_prepare(tally, step):
    """One prepare step: the lab image (then the lab's air-gapped network and SSH key, which the integration tests and
    the Molecule scenarios share: made once here, not by jobs racing each other), the artefacts, or the bundle."""
    start = time.monotonic()
    cmd = {
        "image": [sys.executable, "tools/lab.py", "image"],
        "artefacts": [sys.executable, "tools/artefacts.py", "all"],
        # the lab's air-gapped bundle: the Molecule scenarios on the air-gapped network install OS packages from it
        "bundle": [os.path.join(VENV_BIN, "ansible-playbook"), "playbooks/bundle.yml"],
    }[step]
    rc = run(cmd, log=os.path.join(OUTPUT, f"prepare-{step}.log"))
    if rc == 0 and step == "image":
        lab.ensure_network(True)
        lab.ensure_ssh_key()
    tally.add(f"prepare {step}", int(rc == 0), int(rc != 0), 0, time.monotonic() - start)


def stage_pytest(tally, name, paths, extra=()):
    start = time.monotonic()
    paths = [p for p in paths if glob.glob(os.path.join(ROOT, p, "**", "test_*.py"), recursive=True)]
    if not paths:
        tally.add(name, 0, 0, 0, 0, "(no tests)")
        return
    xml = os.path.join(OUTPUT, f"{name}.xml")
    rc = run([os.path.join(VENV_BIN, "python"), "-m", "pytest", *paths, "-q", "-rs", "-p", "no:cacheprovider",
              f"--junitxml={xml}", *extra], log=os.path.join(OUTPUT, f"{name}.log"))
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
    rc = run([os.path.join(VENV_BIN, "ansible-lint")], log=os.path.join(OUTPUT, "ansible-lint.log"), tail=6000)
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
             cwd=dest, log=log, tail=6000)
    text = open(log).read()
    ran = re.findall(r'^Running sanity test "([^"]+)"', text, re.M)
    failed_m = re.search(r"The (\d+) sanity test\(s\) listed below \(out of (\d+)\) failed", text)
    failed = int(failed_m.group(1)) if failed_m else (0 if rc == 0 else 1)
    skipped = len(re.findall(r"^WARNING: (Skipping sanity test|Required program)", text, re.M))
    if "All targets skipped" in text or not ran:
        failed = max(failed, 1)
    shutil.rmtree(base, ignore_errors=True)
    tally.add("sanity", max(len(ran) - failed, 0), failed, skipped, time.monotonic() - start, "(ansible-test sanity, empty ignore files)")


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
    # scenarios start side by side: write beside it and rename, so that no container ever mounts a half-written file
    part = f"{path}.{threading.get_ident()}.part"
    with open(part, "w") as fh:
        fh.write("".join(lines) or "nameserver 8.8.8.8\n")
    os.replace(part, path)
    return path


# Seconds per scenario alone on a fresh 2-core machine (rehearsal of df69884 on 2026-11-30, one stage at a time):
# the longest start first.
MOLECULE_WEIGHT = {"tgi": 577, "vllm": 570, "container_runtime": 513, "nvidia_driver": 451, "ollama": 324, "models": 140,
                   "common": 56, "preflight": 44}


def scenarios(only=None):
    """(role_dir, role, scenario) of every Molecule scenario (of the roles in `only`), the longest first."""
    found = []
    for path in sorted(glob.glob(os.path.join(ROOT, "roles", "*", "molecule", "*", "molecule.yml"))):
        scen_dir = os.path.dirname(path)
        role_dir = os.path.dirname(os.path.dirname(scen_dir))
        role, scen = os.path.basename(role_dir), os.path.basename(scen_dir)
        if not only or role in only:
            found.append((role_dir, role, scen))
    return sorted(found, key=lambda s: -MOLECULE_WEIGHT.get(s[1], 1))


# what molecule-plugins' docker driver prints when its first call to the daemon fails (its sanity check)
DOCKER_UNREACHABLE = "Unable to contact the Docker daemon"


def stage_scenario(tally, role_dir, role, scen):
    """One `molecule test`, its output in its own log; each scenario's host carries the role and scenario in its name,
    so scenarios run side by side with each other and with the integration tests' lab hosts."""
    start = time.monotonic()
    log = os.path.join(OUTPUT, f"molecule-{role}-{scen}.log")
    cmd = [os.path.join(VENV_BIN, "molecule"), "-c", os.path.join(ROOT, "tests", "molecule", "base.yml"), "test", "-s", scen]
    e = {"MOLECULE_ROLE_NAME": role, "MOLECULE_NAME_SUFFIX": os.environ.get("MOLECULE_NAME_SUFFIX", "lab"),
         "LLM_MOLECULE_SSH_AUTHORIZED_KEYS": lab.ensure_ssh_key(), "LLM_MOLECULE_SSH_KEY": lab.SSH_KEY}
    if role in ONLINE_SCENARIOS:
        e.update(LLM_MOLECULE_NETWORK="bridge", LLM_MOLECULE_RESOLV_CONF=online_resolv_conf(), LLM_MOLECULE_OS_REPOSITORY="")
    else:
        lab.ensure_network(True)
        e.update(LLM_MOLECULE_NETWORK=lab.AIRGAP_NET, LLM_MOLECULE_RESOLV_CONF=lab.resolv_conf(),
                 LLM_MOLECULE_OS_REPOSITORY=os.path.join(ROOT, ".cache", "bundle", "apt"))
    rc = run(cmd, log=log, cwd=role_dir, tail=1500, extra_env=e)
    note = ""
    with open(log, errors="replace") as fh:
        unreachable = DOCKER_UNREACHABLE in fh.read()
    if rc != 0 and unreachable:
        # Molecule's first step asks the lab's dockerd for its version and stops at once when that fails, before it has
        # made anything. CI once saw Molecule tgi fail after 1 s (the time this failure takes here) while the
        # integration stage started its lab hosts and every other job on the same dockerd passed; CI kept only the end
        # of the output, so the reason was not seen (the table is now followed by each failed log's end). A failure of
        # that first contact gets one more run, said in the output and in the table, with the daemon's state at the
        # failure; a dockerd that stays unreachable fails the second run too.
        state = lab.dockerd_state()
        say(f"molecule {role}/{scen}: Molecule could not contact the lab's dockerd ({state}); one more run in 5 s")
        os.replace(log, log + ".first")
        FAILED_LOGS.remove(log)
        time.sleep(5)
        rc = run(cmd, log=log, cwd=role_dir, tail=1500, extra_env=e)
        note = f"(second run: the first could not contact dockerd, log in {os.path.basename(log)}.first)"
    tally.add(f"molecule {role}/{scen}", int(rc == 0), int(rc != 0), 0, time.monotonic() - start, note)


def stage_integration(tally):
    """The integration tests on the two lab hosts (test_readme_commands.py makes them fresh again for `make lab`)."""
    run([sys.executable, "tools/lab.py", "up", "--hosts", "2"], log=os.path.join(OUTPUT, "integration-lab-up.log"))
    stage_pytest(tally, "integration", ["tests/integration"])


def stage_lab_down(tally):
    """The README's `make lab-down`, last: the lab hosts are removed and the lab's dockerd stops (one test)."""
    start = time.monotonic()
    rc = run(["make", "lab-down"], log=os.path.join(OUTPUT, "lab-down.log"))
    problems = []
    if rc != 0:
        problems.append(f"make lab-down exited {rc}")
    if lab.dockerd_pid():
        problems.append(f"the lab's dockerd still runs (pid {lab.dockerd_pid()})")
    if problems:
        say("lab-down: " + "; ".join(problems))
    tally.add("lab-down", int(not problems), int(bool(problems)), 0, time.monotonic() - start, "(make lab-down)")


def role_test_dirs():
    # Role template tests import ansible's controller-side templar, which changes how module warnings are collected:
    # they run in a process of their own.
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "roles", "*", "tests")))


def jobs_for(stages, roles):
    """[(name, stage, needs, function)] in priority order: a free slot takes the first job whose needs are done.
    The longest chain first: prepare, then the integration tests (about 20 minutes alone), then the Molecule scenarios,
    the longest first; lint and sanity need nothing and fill the slots while prepare runs; unit needs the artefacts (the
    vLLM venv some tests parse with). A need outside `stages` counts as done (`--only molecule` after an earlier prepare).
    lab-down needs everything: it stops the lab's dockerd."""
    prepared = ("prepare image", "prepare artefacts", "prepare bundle")
    jobs = [
        ("prepare image", "prepare", (), lambda t: stage_prepare(t, "image")),
        ("prepare artefacts", "prepare", (), lambda t: stage_prepare(t, "artefacts")),
        ("prepare bundle", "prepare", ("prepare artefacts",), lambda t: stage_prepare(t, "bundle")),
        ("lint", "lint", (), stage_lint),
        ("sanity", "sanity", (), stage_sanity),
        ("integration", "integration", prepared, stage_integration),
    ]
    for role_dir, role, scen in scenarios(roles):
        jobs.append((f"molecule {role}/{scen}", "molecule", prepared, lambda t, a=(role_dir, role, scen): stage_scenario(t, *a)))
    jobs += [
        ("unit-roles", "unit", ("prepare artefacts",), lambda t: stage_pytest(t, "unit-roles", role_test_dirs())),
        ("unit", "unit", ("prepare artefacts",), lambda t: stage_pytest(t, "unit", ["tests/unit"])),
    ]
    jobs = [j for j in jobs if j[1] in stages]
    if "lab-down" in stages:
        jobs.append(("lab-down", "lab-down", tuple(j[0] for j in jobs), stage_lab_down))
    names = {j[0] for j in jobs}
    return [(name, stage, tuple(n for n in needs if n in names), fn) for name, stage, needs, fn in jobs]


def schedule(tally, jobs, slots):
    """Run the jobs, at most `slots` at a time, each once its needs are done (in any outcome)."""
    done, running = set(), {}
    pending = list(jobs)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, slots)) as pool:
        while pending or running:
            for job in [j for j in pending if set(j[2]) <= done]:
                if len(running) >= slots:
                    break
                pending.remove(job)
                running[pool.submit(job[3], tally)] = job[0]
            finished = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED).done
            for future in finished:
                name = running.pop(future)
                done.add(name)
                error = future.exception()
                if error is not None:
                    tally.add(name, 0, 1, 0, 0, f"(the job raised {error!r})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", action="append", choices=STAGES, help="run only these stages (repeatable)")
    parser.add_argument("--role", action="append", help="molecule: only these roles")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("LLM_TEST_JOBS", "3")),
                        help="jobs at a time (LLM_TEST_JOBS, default 3)")
    args = parser.parse_args()
    os.makedirs(OUTPUT, exist_ok=True)
    tally = Tally()
    t0 = time.monotonic()
    schedule(tally, jobs_for(args.only or STAGES, args.role), args.jobs)
    passed, failed, skipped = tally.totals()
    print("\n" + "-" * 72)
    for stage, p, f, s, secs, note in tally.rows:
        print(f"{stage:<34} {p:>5} passed {f:>3} failed {s:>3} skipped {secs:>6.0f}s {note}")
    print(f"{'total':<34} {time.monotonic() - t0:>46.0f}s")
    # a CI that keeps only the end of this output still shows why each failed command failed
    for log in FAILED_LOGS:
        print(f"--- the end of {os.path.relpath(log, ROOT)}\n" + "\n".join(failure_lines(log)))
    print(f"summary: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
