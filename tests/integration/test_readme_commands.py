# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every command the README shows, run as a new user would, against the lab (one converge, several checks on it).

- `make lab` on fresh air-gapped lab hosts (vLLM on llm-lab-1, Ollama on llm-lab-2), from the bundle, while tcpdump in
  each host's network namespace counts every packet that tries to leave the lab subnet and every DNS query: 0 attempts;
  then `ansible-playbook site.yml -e @.cache/bundle/vars.yml` again: changed=0, still 0 attempts.
- the counter can fail: a DNS lookup and a connection attempt from a host are counted.
- the re-check command and the benchmark command of the README.
- a run killed right after an instance's settings changed (before its restart), then re-run: the service is restarted and
  runs the new settings (restarts are decided from the host's truth, roles/engine_common).
- a meta test: every command in the README's ```sh blocks is one this suite (or CI itself) runs.

Runs last in the integration stage (file order): it converges llm-lab-1 and llm-lab-2 with the real engines.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request

import pytest

import lab_doors
from egress import EgressCapture

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOCK = os.path.join(os.environ.get("LAB_DIR", os.path.join(ROOT, ".lab")), "docker", "docker.sock")
VENV = os.path.join(ROOT, ".venv", "bin")
HOSTS = ("llm-lab-1", "llm-lab-2")
RERUN = "ansible-playbook site.yml -e @.cache/bundle/vars.yml"
RECHECK = "ansible-playbook site.yml --tags smoke,vllm_smoke,tgi_smoke,ollama_smoke"
BENCH = "ansible-playbook site.yml playbooks/benchmark.yml --tags vllm_smoke,tgi_smoke,ollama_smoke,benchmark"
KEY = "export API_KEY=$(python3 tools/lab.py key)"
STATUS = "ansible-playbook playbooks/status.yml"
DOORS = "python3 tools/lab.py doors"

# Each command the README shows, and where it runs. A README command missing here fails the meta test below.
RUN_BY = {
    "make lab": "test_make_lab_serves_and_a_rerun_changes_nothing",
    "make lab-up": "converged (the fixture starts the hosts first, so that the egress capture sees the whole make lab)",
    RERUN: "test_make_lab_serves_and_a_rerun_changes_nothing",
    "ansible-playbook playbooks/bundle.yml": "make lab (tools/lab.py run-site builds the bundle with exactly this command)",
    "make test": "CI itself: .ci/run runs exactly this",
    "make lab-down": "tests/run_all.py, the last job (lab-down): the lab's dockerd is gone and its hosts with it",
    RECHECK: "test_recheck_command",
    KEY: "test_make_lab_prints_door_lines_that_work",
    STATUS: "test_status_command",
    DOORS: "test_make_lab_prints_door_lines_that_work",
    BENCH: "test_benchmark_command",
    "ansible-playbook playbooks/update.yml":
        "tests/integration/test_update_lab.py::test_a_flag_and_a_model_revision_roll_through_with_no_failed_request",
    "ansible-playbook playbooks/rollback.yml": "tests/integration/test_update_lab.py::test_rollback_on_demand_goes_back_with_no_failed_request",
    "ansible-playbook playbooks/migrate_tgi_to_vllm.yml -e migrate_door=text -e migrate_retire_tgi=true":
        "Molecule tgi: roles/tgi/molecule/default/verify_migration.yml runs exactly this under load (tests/molecule/migrate_under_load.py)",
    "ansible-galaxy collection build --output-path dist/": "tests/unit/release/conftest.py::collection_tarball",
    "ansible-builder create --file execution-environment.yml --context dist/ee-context":
        "tests/unit/release/test_execution_environment.py::context",
    "ansible-galaxy collection install dist/onprem-llm_serving-0.2.0.tar.gz": "tests/unit/release/conftest.py::installed",
}

needs_lab = pytest.mark.skipif(not os.path.exists(SOCK), reason="lab dockerd not running: run `tools/lab.py up`")


def readme_commands():
    text = open(os.path.join(ROOT, "README.md")).read()
    commands = []
    for block in re.findall(r"```(?:sh|bash|console)\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line and not line.startswith("#"):
                commands.append(re.sub(r"\s+", " ", line))
    return commands


def test_every_readme_command_is_run_by_a_test():
    commands = readme_commands()
    assert RECHECK in commands and BENCH in commands and "make lab" in commands
    missing = [c for c in commands if c not in RUN_BY]
    assert missing == [], "README commands no test runs: add them to RUN_BY with the test that runs them"
    tests_here = open(__file__).read()
    for command, where in RUN_BY.items():
        if where.startswith("test_"):
            assert "def %s(" % where in tests_here, (command, where)
        elif "::" in where:
            path, name = where.split("::")
            assert "def %s(" % name in open(os.path.join(ROOT, path)).read(), (command, where)


def env():
    e = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", DOCKER_HOST="unix://" + SOCK)
    e["PATH"] = VENV + os.pathsep + e.get("PATH", "")
    return e


def sh(command, timeout=1800, extra_env=None):
    """A README command as a user types it, from the repository root."""
    started = time.monotonic()
    proc = subprocess.run(command, shell=True, cwd=ROOT, env=dict(env(), **(extra_env or {})), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=timeout, check=False)
    print("$ %s  (%.0f s, rc %d)" % (command, time.monotonic() - started, proc.returncode))
    return proc


def recap(out):
    """{host: {ok:, changed:, failed:, ...}} from the PLAY RECAP."""
    table = {}
    for host, fields in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", out[out.rindex("PLAY RECAP"):], re.M):
        table[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", fields)}
    return table


def docker(*args):
    return subprocess.run(["docker", *args], env=env(), capture_output=True, text=True, check=False)


def main_pid(host, unit):
    return int(docker("exec", host, "systemctl", "show", "-p", "MainPID", "--value", unit).stdout.strip() or 0)


def running_env(host, unit):
    pid = main_pid(host, unit)
    raw = docker("exec", host, "cat", "/proc/%d/environ" % pid).stdout
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def lab_subnet():
    return docker("network", "inspect", "lab-airgap", "--format", "{{(index .IPAM.Config 0).Subnet}}").stdout.strip()


def counted(capture, label):
    seen = capture.attempts()
    for host, lines in seen.items():
        print("egress attempts during %s on %s: %d %s" % (label, host, len(lines), lines[:5]))
    return seen


@pytest.fixture(scope="module")
def converged(tmp_path_factory):
    # fresh hosts, as a new user's first `make lab` has (earlier integration tests used these)
    docker("rm", "-f", *HOSTS)
    up = sh("make lab-up")
    assert up.returncode == 0, up.stdout[-4000:]
    capture = EgressCapture(docker, HOSTS, lab_subnet(), str(tmp_path_factory.mktemp("egress-make-lab"))).start()
    try:
        proc = sh("make lab")
    finally:
        capture.stop()
    assert proc.returncode == 0, proc.stdout[-6000:]
    return {"out": proc.stdout, "egress": counted(capture, "make lab")}


@needs_lab
def test_make_lab_serves_and_a_rerun_changes_nothing(converged, tmp_path):
    out = converged["out"]
    table = out[out.rindex("Print one table of every endpoint"):]
    assert re.search(r"llm-lab-1\s+tiny\s+vllm\s+0\.32\.0.*OK", table), table[:3000]
    assert re.search(r"llm-lab-2\s+ollama\s+ollama\s+0\.5\.4.*OK", table), table[:3000]
    assert "curl -s http://" in table
    # the lab hosts are air-gapped and installed everything from the bundle: not one packet tried to leave
    assert converged["egress"] == {host: [] for host in HOSTS}, converged["egress"]
    capture = EgressCapture(docker, HOSTS, lab_subnet(), str(tmp_path)).start()
    try:
        again = sh(RERUN)
    finally:
        capture.stop()
    assert again.returncode == 0, again.stdout[-6000:]
    counts = recap(again.stdout)
    assert set(counts) == set(HOSTS)
    assert all(c["changed"] == 0 and c["failed"] == 0 for c in counts.values()), counts
    assert counted(capture, "the re-run") == {host: [] for host in HOSTS}
    # the facts are gathered once per run, by the preflight (README, "Deploy speed and fleets"): no later play gathers
    assert "Gathering Facts" not in again.stdout and "Gather the minimal, virtualisation and network facts" in again.stdout


@needs_lab
def test_make_lab_prints_door_lines_that_work(converged):
    """make lab ends with the doors: a curl line and a client snippet each, the key from the lab's vault. Each line,
    pasted into a shell after the README's export line, generates through the gateway; the key is never printed."""
    key = sh("python3 tools/lab.py key").stdout.strip()
    assert re.match(r"^[A-Za-z0-9]{48}$", key), "tools/lab.py key printed no key"
    out = converged["out"]
    assert key not in out
    # (under `make test`, make lab is a sub-make: its "make[1]: Leaving directory" line follows the block)
    block = "\n".join(line for line in out[out.rindex("The lab's doors"):].splitlines() if not line.startswith("make["))
    assert KEY in block
    again = sh(DOORS)
    assert again.returncode == 0 and again.stdout.strip() == block.strip()
    assert key not in again.stdout
    lines = [line.strip() for line in block.splitlines() if line.startswith("    ")]
    curls = [line for line in lines if line.startswith("curl -s --cacert .lab/tls/")]
    snippets = [line for line in lines if line.startswith(".venv/bin/python -c ")]
    assert len(curls) == 2 and len(snippets) == 2, block
    for line in curls + snippets:
        proc = sh("%s\n%s" % (KEY, line))
        assert proc.returncode == 0, (line, proc.stdout[-2000:])
        if line.startswith("curl"):
            answer = json.loads(proc.stdout)
            assert answer.get("choices") or answer.get("response") is not None, (line, answer)
        else:
            assert proc.stdout.strip(), line
        assert key not in proc.stdout
    # without the key the same line is refused by the gateway
    refused = sh(curls[0])
    assert '"a valid API key is required' in refused.stdout


@needs_lab
def test_status_command(converged):
    """make lab deployed the lab's monitoring (stage 7: Prometheus and Alertmanager on llm-lab-2, air-gapped, from the
    bundle); the README's status command prints one line per endpoint from it, both engines up, no alert firing;
    every target of the lab's Prometheus is up (the vLLM on loopback through its gateway's metrics listener)."""
    deadline = time.monotonic() + 120
    while True:
        targets = json.loads(docker("exec", "llm-lab-2", "python3", "-c", "import urllib.request, sys; sys.stdout.write("
                                    "urllib.request.urlopen('http://127.0.0.1:9090/api/v1/targets').read().decode())").stdout)
        health = sorted((t["labels"]["job"], t["labels"].get("llm_host", ""), t["health"]) for t in targets["data"]["activeTargets"])
        if all(h == "up" for _job, _host, h in health) or time.monotonic() > deadline:
            break
        time.sleep(5)
    print("\n".join("%-12s %-10s %s" % row for row in health))
    wanted = {("vllm", "llm-lab-1"), ("node", "llm-lab-1"), ("node", "llm-lab-2"), ("haproxy", "llm-lab-1"), ("haproxy", "llm-lab-2")}
    assert {(job, host) for job, host, _h in health} >= wanted, health
    assert all(h == "up" for _job, _host, h in health), health
    deadline = time.monotonic() + 180  # the Ollama probe's timer publishes its first file within its interval
    while True:
        proc = sh(STATUS)
        assert proc.returncode == 0, proc.stdout[-4000:]
        table = proc.stdout[proc.stdout.index("Print the fleet"):]
        if re.search(r"llm-lab-2\s+ollama\s+ollama\s+yes", table) or time.monotonic() > deadline:
            break
        time.sleep(10)
    print(table[:2000])
    assert re.search(r"llm-lab-1\s+tiny\s+vllm\s+yes", table), table[:2000]
    assert re.search(r"llm-lab-2\s+ollama\s+ollama\s+yes", table), table[:2000]


@needs_lab
def test_the_egress_count_sees_an_attempt(converged, tmp_path):
    """The counter is not blind: a name lookup and a connection attempt from each host are counted."""
    capture = EgressCapture(docker, HOSTS, lab_subnet(), str(tmp_path)).start()
    try:
        for host in HOSTS:
            lookup = docker("exec", host, "getent", "hosts", "deb.debian.org")
            assert lookup.returncode != 0, lookup.stdout   # nothing answers on an air-gapped host
            connect = docker("exec", host, "timeout", "5", "python3", "-c",
                             "import socket; socket.create_connection(('192.0.2.1', 80), timeout=1)")
            assert connect.returncode != 0                  # the gateway drops it
        time.sleep(1)
    finally:
        capture.stop()
    seen = counted(capture, "the probe")
    for host in HOSTS:
        assert any(".53: " in line for line in seen[host]), seen[host]
        assert any("192.0.2.1.80: " in line for line in seen[host]), seen[host]


@needs_lab
def test_recheck_command(converged):
    pids = (main_pid("llm-lab-1", "vllm-tiny.service"), main_pid("llm-lab-2", "ollama.service"))
    proc = sh(RECHECK)
    assert proc.returncode == 0, proc.stdout[-6000:]
    table = proc.stdout[proc.stdout.rindex("Print one table of every endpoint"):]
    assert re.search(r"llm-lab-1\s+tiny\s+vllm.*OK", table) and re.search(r"llm-lab-2\s+ollama\s+ollama.*OK", table), table[:3000]
    assert all(c["changed"] == 0 for c in recap(proc.stdout).values())
    # a re-check restarts nothing
    assert (main_pid("llm-lab-1", "vllm-tiny.service"), main_pid("llm-lab-2", "ollama.service")) == pids


@needs_lab
def test_benchmark_command(converged):
    reports = os.path.join(ROOT, "benchmark-reports")
    before = set(os.listdir(reports)) if os.path.isdir(reports) else set()
    # the README's command, with a small sweep for CI's 2 cores (the same command with the role's defaults is heavier)
    extra = {"benchmark_concurrency": [1, 4], "benchmark_num_prompts": 8, "benchmark_input_len": 16,
             "benchmark_output_len": 16, "benchmark_ignore_eos": True}
    proc = sh(BENCH + " -e '%s'" % json.dumps(extra))
    assert proc.returncode == 0, proc.stdout[-6000:]
    new = sorted(set(os.listdir(reports)) - before)
    reports_json = [n for n in new if n.endswith(".json")]
    assert any(n.startswith("llm-lab-1-tiny-") for n in reports_json) and any(n.startswith("llm-lab-2-ollama-") for n in reports_json), new
    for name in reports_json:
        with open(os.path.join(reports, name)) as handle:
            doc = json.load(handle)
        assert [lv["max_concurrency"] for lv in doc["levels"]] == [1, 4]
        assert all(lv["completed"] == 8 and lv["failed"] == 0 for lv in doc["levels"]), name
    # the README: one HTML page beside them, benchmark-<stamp>.html, naming both endpoints
    pages = [n for n in new if n.endswith(".html")]
    assert len(pages) == 1 and pages[0].startswith("benchmark-") and set(new) == set(reports_json + pages), new
    with open(os.path.join(reports, pages[0])) as handle:
        page = handle.read()
    assert "llm-lab-1" in page and "llm-lab-2" in page and "<svg" in page, page[:2000]
    for name in new:
        os.remove(os.path.join(reports, name))


@needs_lab
def test_a_run_killed_before_its_restart_is_finished_by_the_next_run(converged):
    """The run dies right after Ollama's settings drop-in changed, before any restart; the next run restarts it.
    The runs are site.yml's engines stage (playbooks/engines.yml, where the ollama role runs): the rest of site.yml
    neither writes the drop-in nor restarts Ollama, and cost 26 of its 42 s on llm-lab-2 here."""
    host, unit = "llm-lab-2", "ollama.service"
    assert running_env(host, unit).get("OLLAMA_NUM_PARALLEL") != "3"
    pid = main_pid(host, unit)
    cmd = "ansible-playbook playbooks/engines.yml --limit %s -e ollama_num_parallel=3" % host
    killed = sh(cmd, extra_env={"ANSIBLE_CALLBACK_PLUGINS": os.path.join(ROOT, "tests", "integration", "callbacks"),
                                "ANSIBLE_CALLBACKS_ENABLED": "kill_after", "KILL_AFTER_TASK": "Write the settings drop-in"})
    assert killed.returncode == -9 or killed.returncode == 137, killed.stdout[-4000:]
    assert "kill_after: killing the run" in killed.stdout
    dropin = docker("exec", host, "cat", "/etc/systemd/system/ollama.service.d/50-ollama-env.conf").stdout
    assert "OLLAMA_NUM_PARALLEL=3" in dropin
    # the file changed, the server did not: the same process still runs the old settings
    assert main_pid(host, unit) == pid and running_env(host, unit).get("OLLAMA_NUM_PARALLEL") != "3"
    rerun = sh(cmd)
    assert rerun.returncode == 0, rerun.stdout[-6000:]
    restart = rerun.stdout[rerun.stdout.index("Restart the instances that run on older files - ollama"):]
    # the restart names the unit and its reason (here: the drop-in changed and systemd was not reloaded)
    assert "changed: [llm-lab-2] => (item=ollama.service: " in restart.split("TASK [", 1)[0], restart[:2000]
    assert main_pid(host, unit) != pid
    assert running_env(host, unit).get("OLLAMA_NUM_PARALLEL") == "3"
    # back to the inventory's settings (restarted again, from the host's truth), so later runs change nothing
    back = sh("ansible-playbook playbooks/engines.yml --limit %s" % host)
    assert back.returncode == 0, back.stdout[-6000:]
    assert running_env(host, unit).get("OLLAMA_NUM_PARALLEL") != "3"


# ---------------------------------------------------------------------------------------------- a damaged bundle
BUNDLE = os.path.join(ROOT, ".cache", "bundle")
# one file of each kind the lab's bundle holds (the TGI image tarball is not in the lab's bundle: roles/tgi's Molecule
# scenario refuses a corrupted one before `docker load` and shows the running container still answers)
DAMAGED = {
    "deb": "apt/debian-12/pool/python3-pip_*.deb",
    "wheel": "wheels/common/nvidia_ml_py-*.whl",
    "ollama-archive": "ollama/ollama-linux-amd64.tgz",
    "model-shard": "models/tiny-llama/model.safetensors",
    "gguf": "models/tiny-llama-f32.gguf",
}


def post(door, path, body, key):
    req = urllib.request.Request(door["url"] + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", "Authorization": "Bearer " + key})
    with urllib.request.urlopen(req, timeout=120, context=lab_doors.context(door)) as resp:
        return resp.status, json.loads(resp.read())


def serving():
    """Both lab engines answer a real generation through their doors (tokens counted by the engine itself)."""
    doors, key = lab_doors.doors(), lab_doors.key()
    status, vllm = post(doors["llm-lab-1"], "/v1/completions", {"model": "tiny", "prompt": "hello", "max_tokens": 4, "ignore_eos": True},
                        key)
    assert status == 200 and vllm["usage"]["completion_tokens"] == 4, vllm
    status, ollama = post(doors["llm-lab-2"], "/api/generate",
                          {"model": "tiny:latest", "prompt": "hello", "stream": False, "options": {"num_predict": 4}}, key)
    assert status == 200 and ollama["eval_count"] >= 1, ollama
    return True


@needs_lab
@pytest.mark.parametrize("kind", sorted(DAMAGED))
def test_a_damaged_bundle_file_is_refused_and_the_services_keep_serving(converged, kind):
    copy = os.path.join(ROOT, ".cache", "test-damaged-bundle")
    shutil.rmtree(copy, ignore_errors=True)
    # hard links: cheap, and the damaged file is written anew, so the real bundle is never touched
    subprocess.run(["cp", "-al", BUNDLE, copy], check=True)
    try:
        [target] = glob.glob(os.path.join(copy, DAMAGED[kind]))
        rel = os.path.relpath(target, copy)
        data = bytearray(open(target, "rb").read())
        data[len(data) // 2] ^= 0xFF
        os.unlink(target)
        open(target, "wb").write(bytes(data))
        expected = [line.split()[0] for line in open(os.path.join(copy, "SHA256SUMS")) if line.split()[1] == rel][0]
        actual = hashlib.sha256(bytes(data)).hexdigest()
        pids = (main_pid("llm-lab-1", "vllm-tiny.service"), main_pid("llm-lab-2", "ollama.service"))
        proc = sh(RERUN + " -e llm_bundle_dir=" + copy)
        assert proc.returncode != 0, proc.stdout[-3000:]
        assert target in proc.stdout and expected in proc.stdout and actual in proc.stdout, proc.stdout[-3000:]
        # refused before any host was touched: no task of stage 2 ran, the same processes serve
        assert "Stage 2" not in proc.stdout and "TASK [onprem.llm_serving.common" not in proc.stdout
        assert (main_pid("llm-lab-1", "vllm-tiny.service"), main_pid("llm-lab-2", "ollama.service")) == pids
        assert serving()
    finally:
        shutil.rmtree(copy, ignore_errors=True)
