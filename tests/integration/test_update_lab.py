# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Day 2 on the lab (issue 12): two vLLM replicas behind llm-lab-1's door, a steady open-loop load through the door
(llm_benchmark's client, tests/integration/rolling_load.py) while playbooks/update.yml and rollback.yml run.

One converge: the lab `make lab` left (test_readme_commands.py), plus a second replica of the same model on llm-lab-1.
In order: an update changing a vLLM flag AND the model revision (0 failed requests), the same update again (nothing
restarts), a broken update (a flag vLLM refuses: stopped on the first instance, put back, the other replica never
touched, 0 failed), a rollback on demand (0 failed), a door too small for update_min_ready (refused before anything
changes). Each load report is printed (requests, failures, output tok/s and TTFT p50/p99 before / during / after, and
5-second windows). The comparison with no drain is tests/bench/rolling_update.py (a measurement, not a test)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

import pytest

import lab_doors
import rolling_load

ROOT = lab_doors.ROOT
SOCK = os.path.join(ROOT, ".lab", "docker", "docker.sock")
pytestmark = pytest.mark.skipif(not os.path.exists(SOCK), reason="lab dockerd not running: run `make lab`")
VENV = os.path.join(ROOT, ".venv", "bin")
HOST = "llm-lab-1"
REV1 = os.path.join(ROOT, ".cache", "artefacts", "models", "tiny-llama")
RATE = 2.0


instances = rolling_load.two_replicas


def model_revision(dest, number):
    """The demo model with one changed file (its revision number in generation_config.json) and its own SHA256SUMS."""
    shutil.copytree(REV1, dest)
    config = json.loads((dest / "generation_config.json").read_text())
    (dest / "generation_config.json").write_text(json.dumps(dict(config, onprem_demo_revision=number), indent=2))
    sums = subprocess.run("sha256sum $(ls | grep -v SHA256SUMS)", shell=True, cwd=dest, capture_output=True, text=True, check=True)
    (dest / "SHA256SUMS").write_text(sums.stdout)
    return dest


def write_vars(path, value):
    path.write_text(json.dumps(value))
    return "@" + str(path)


def playbook(*args, timeout=1800):
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    env["PATH"] = VENV + os.pathsep + env.get("PATH", "")
    return subprocess.run(["ansible-playbook", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def on_host(command):
    env = dict(os.environ, DOCKER_HOST="unix://" + SOCK)
    out = subprocess.run(["docker", "exec", HOST, "sh", "-c", command], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


def main_pids():
    return {unit: on_host("systemctl show -p MainPID --value %s" % unit).strip() for unit in ("vllm-tiny", "vllm-tiny-b")}


def units():
    return {unit: on_host("cat /etc/systemd/system/%s.service" % unit) for unit in ("vllm-tiny", "vllm-tiny-b")}


def under_load(lab, *args):
    """Run a playbook while the load runs: 15 s of load before it, 15 s after. Returns (process, report)."""
    door = lab["door"]
    load = rolling_load.Load(door["url"], lab["key"], door["cacert"], "tiny", rate=RATE, output_len=48).start()
    time.sleep(15)
    t0 = time.perf_counter()
    proc = playbook(*args)
    t1 = time.perf_counter()
    time.sleep(15)
    records = load.stop()
    assert load.errors == [], load.errors
    report = rolling_load.report(records, t0, t1)
    print("\n".join(rolling_load.lines(" ".join(a for a in args if not a.startswith("@")), report)))
    return proc, report


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("update")
    rev2 = model_revision(tmp / "tiny-llama-2", 2)
    rev = {"name": "tiny-llama", "format": "hf"}
    rev1, rev2 = [dict(rev, revision="onprem-demo-1", src=REV1)], [dict(rev, revision="onprem-demo-2", src=str(rev2))]
    v = {"e0": write_vars(tmp / "e0.json", {"vllm_instances": instances(), "models_list": rev1}),
         "e1": write_vars(tmp / "e1.json", {"vllm_instances": instances(max_num_seqs=32), "models_list": rev2}),
         "broken": write_vars(tmp / "broken.json", {
             "models_list": rev2, "vllm_instances": instances(max_num_seqs=32, extra_args=["--max-num-batched-tokens", "lots"])})}
    # a second replica of the model on llm-lab-1, behind the same door
    proc = playbook("site.yml", "--limit", HOST, "--tags", "models,vllm,gateway", "-e", v["e0"])
    assert proc.returncode == 0, proc.stdout[-5000:]
    doors = on_host("cat /etc/haproxy/onprem-gateway-doors.json")
    assert [s["name"] for s in json.loads(doors)["doors"][0]["servers"]] == ["llm-lab-1-tiny", "llm-lab-1-tiny-b"], doors
    return {"vars": v, "door": lab_doors.doors()[HOST], "key": lab_doors.key()}


def test_a_flag_and_a_model_revision_roll_through_with_no_failed_request(lab):
    before = main_pids()
    proc, report = under_load(lab, "playbooks/update.yml", "-e", lab["vars"]["e1"])
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert "2 of 2 instance(s) to switch: tiny, tiny-b" in proc.stdout
    assert len(re.findall(r"chat/llm-lab-1-tiny(-b)?: \d+ request\(s\) in flight", proc.stdout)) == 2, proc.stdout[-3000:]
    assert report["all"]["failed"] == 0, report["all"]["errors"]
    assert report["during"]["requests"] >= RATE * 30, report["during"]  # the load spanned the update
    after = main_pids()
    assert all(after[u] != before[u] for u in after), (before, after)
    for unit, text in units().items():
        assert "--model /srv/llm/models/.revisions/tiny-llama/onprem-demo-2" in text and "--max-num-seqs 32" in text, (unit, text)
        assert "--served-model-name tiny" in text
    # the running files before the switch are kept for a rollback
    kept = on_host("ls /etc/onprem-llm/previous/")
    assert sorted(kept.split()) == ["vllm-tiny-b.env", "vllm-tiny-b.service", "vllm-tiny.env", "vllm-tiny.service"], kept
    assert "onprem-demo-1" in on_host("cat /etc/onprem-llm/previous/vllm-tiny.service")


def test_the_same_update_again_restarts_nothing(lab):
    before = main_pids()
    proc = playbook("playbooks/update.yml", "-e", lab["vars"]["e1"])
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert "0 of 2 instance(s) to switch (nothing changes: no restart)" in proc.stdout
    assert re.search(r"llm-lab-1\s+: ok=\d+\s+changed=0 ", proc.stdout), proc.stdout[-1500:]
    assert main_pids() == before


def test_a_flag_vllm_refuses_stops_on_the_first_instance_and_puts_it_back(lab):
    before_pids, before_units = main_pids(), units()
    proc, report = under_load(lab, "playbooks/update.yml", "-e", lab["vars"]["broken"])
    assert proc.returncode != 0
    assert "invalid human_readable_int value: 'lots'" in proc.stdout, proc.stdout[-6000:]
    assert "switching vllm instance tiny failed" in proc.stdout and "put back on its previous files" in proc.stdout
    assert report["all"]["failed"] == 0, report["all"]["errors"]
    # the other replica was never touched; the first runs its files of before the update again
    after_pids = main_pids()
    assert after_pids["vllm-tiny-b"] == before_pids["vllm-tiny-b"]
    assert after_pids["vllm-tiny"] != before_pids["vllm-tiny"]
    assert units() == before_units
    assert on_host("systemctl is-active vllm-tiny vllm-tiny-b").split() == ["active", "active"]
    # what a rollback goes back to is still the configuration before the good update
    assert "onprem-demo-1" in on_host("cat /etc/onprem-llm/previous/vllm-tiny.service")
    assert on_host("ls /etc/onprem-llm/previous/ | grep -c older || true").strip() == "0"


def test_rollback_on_demand_goes_back_with_no_failed_request(lab):
    proc, report = under_load(lab, "playbooks/rollback.yml", "-e", lab["vars"]["e1"])
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert report["all"]["failed"] == 0, report["all"]["errors"]
    for unit, text in units().items():
        assert "--model /srv/llm/models/.revisions/tiny-llama/onprem-demo-1" in text and "--max-num-seqs" not in text, (unit, text)
    # the previous vLLM venv and model revision were kept: both instances answer through the door
    status, body = call_door(lab)
    assert status == 200 and json.loads(body)["usage"]["completion_tokens"] > 0


def test_a_door_too_small_for_update_min_ready_is_refused_before_anything_changes(lab):
    before = main_pids()
    proc = playbook("playbooks/update.yml", "-e", lab["vars"]["e1"], "-e", "update_min_ready=2")
    assert proc.returncode != 0
    assert "door chat (gateway llm-lab-1) has 2 replica(s)" in proc.stdout, proc.stdout[-4000:]
    assert "fewer than update_min_ready 2" in proc.stdout
    assert "Stage and verify new model revisions" not in proc.stdout  # the plays after the check never ran
    assert main_pids() == before


def test_a_new_revision_never_removes_one_a_running_or_kept_unit_names(lab, tmp_path):
    """After the rollback the units name revision 1 and the kept ones revision 2: staging revision 3 with
    models_keep_revisions 2 would remove the older of them, but units name both."""
    rev3 = model_revision(tmp_path / "tiny-llama-3", 3)
    extra = write_vars(tmp_path / "rev3.json", {"models_list": [{"name": "tiny-llama", "format": "hf", "revision": "onprem-demo-3",
                                                                 "src": str(rev3)}]})
    proc = playbook("playbooks/models.yml", "--limit", HOST, "-e", extra)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert on_host("ls /srv/llm/models/.revisions/tiny-llama/").split() == ["onprem-demo-1", "onprem-demo-2", "onprem-demo-3"]
    assert on_host("readlink /srv/llm/models/tiny-llama").strip() == ".revisions/tiny-llama/onprem-demo-3"


def call_door(lab):
    import urllib.request
    door = lab["door"]
    req = urllib.request.Request(door["url"] + "/v1/chat/completions", data=json.dumps(
        {"model": "tiny", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8}).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer " + lab["key"]})
    with urllib.request.urlopen(req, timeout=120, context=lab_doors.context(door)) as resp:
        return resp.status, resp.read()
