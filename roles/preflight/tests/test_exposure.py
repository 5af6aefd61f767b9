# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""preflight's exposure check: an engine bound beyond loopback needs a gateway on another host in front of it, or
preflight_allow_exposed_engines. Runs the role's exposure.yml with ansible-playbook on an inventory of local hosts."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
INVENTORY = """
all:
  children:
    vllm_servers: {hosts: {v1: {}, v2: {}}}
    ollama_servers: {hosts: {o1: {}}}
    gateway_hosts: {hosts: {%s: {}}}
  vars: {ansible_connection: local}
"""
PLAY = """
- hosts: v1:v2:o1
  gather_facts: false
  tasks:
    - ansible.builtin.include_tasks: %s/roles/preflight/tasks/exposure.yml
    - ansible.builtin.debug:
        msg: "RESULT {{ inventory_hostname }} {{ __preflight_results | to_json }}"
""" % REPO


def run(tmp_path, host_vars, gateway="g"):
    (tmp_path / "inv.yml").write_text(INVENTORY % gateway)
    (tmp_path / "play.yml").write_text(PLAY)
    (tmp_path / "vars.json").write_text(json.dumps(dict({"preflight_allow_exposed_engines": False}, **host_vars)))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default", ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(tmp_path / "inv.yml"),
                          str(tmp_path / "play.yml"), "-e", "@" + str(tmp_path / "vars.json")],
                         cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300, check=True).stdout
    results = {}
    for line in out.splitlines():
        if '"msg": "RESULT ' in line:
            host, data = json.loads("{" + line.strip().rstrip(",") + "}")["msg"][len("RESULT "):].split(" ", 1)
            results[host] = {r["check"]: (r["status"], r["detail"]) for r in json.loads(data)}
    return results


@pytest.mark.parametrize("extra, expect", [
    ({}, {"v1": "pass", "v2": "pass", "o1": "pass"}),  # the engine roles' default: loopback
    ({"vllm_bind_address": "0.0.0.0", "vllm_instances": [{"name": "t"}]}, {"v1": "fail", "v2": "fail", "o1": "pass"}),
    ({"vllm_instances": [{"name": "t", "bind_address": "10.0.0.5"}, {"name": "u", "bind_address": "::1"}]}, {"v1": "fail"}),
    ({"vllm_instances": [{"name": "t", "bind_address": "10.0.0.5", "state": "absent"}]}, {"v1": "pass"}),
    ({"ollama_bind_address": "0.0.0.0"}, {"o1": "fail"}),  # Ollama's default instance
    ({"ollama_bind_address": "0.0.0.0", "preflight_allow_exposed_engines": True}, {"o1": "pass"}),
    ({"vllm_bind_address": "0.0.0.0", "vllm_instances": [{"name": "t"}],
      "gateway_frontends": [{"name": "c", "engine": "vllm", "port": 8443, "group": "vllm_servers"}]}, {"v1": "pass", "v2": "pass"}),
    ({"ollama_bind_address": "0.0.0.0", "gateway_frontends": [{"name": "c", "engine": "vllm", "port": 8443}]}, {"o1": "fail"}),
])
def test_exposure(tmp_path, extra, expect):
    results = run(tmp_path, extra)
    for host, status in expect.items():
        engine = "ollama" if host == "o1" else "vllm"
        assert results[host]["exposure " + engine][0] == status, results[host]


def test_a_gateway_on_the_engine_host_itself_needs_the_engine_on_loopback(tmp_path):
    results = run(tmp_path, {"vllm_bind_address": "0.0.0.0", "vllm_instances": [{"name": "t"}],
                             "gateway_frontends": [{"name": "c", "engine": "vllm", "port": 8443}]}, gateway="v1")
    assert results["v1"]["exposure vllm"][0] == "fail" and "walk around the gateway on this host" in results["v1"]["exposure vllm"][1]
    assert results["v2"]["exposure vllm"] == ("pass", "vllm binds 0.0.0.0, behind the gateway on v1")


def test_the_message_names_the_variables(tmp_path):
    detail = run(tmp_path, {"ollama_bind_address": "0.0.0.0"})["o1"]["exposure ollama"][1]
    assert "ollama binds 0.0.0.0 with no gateway in front" in detail and "ollama_bind_address" in detail
    assert "gateway_frontends" in detail


def readme_inventory():
    """The YAML block under '### A production inventory' in the README."""
    import re
    import yaml
    text = open(os.path.join(REPO, "README.md")).read()
    section = text[text.index("### A production inventory"):]
    return yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))


@pytest.mark.parametrize("with_gateway", [True, False])
def test_the_readme_production_inventory_passes_and_fails_without_its_gateway(tmp_path, with_gateway):
    """The README's production example binds vLLM to a private address behind door-01: preflight accepts it, and the
    same inventory without its gateway is refused, naming the variables."""
    import yaml
    inventory = readme_inventory()
    assert inventory["all"]["vars"]["gateway_frontends"][0]["group"] == "vllm_servers"
    if not with_gateway:
        del inventory["all"]["children"]["gateway_hosts"]
    inventory["all"]["vars"].update({"ansible_connection": "local", "vllm_instances": [{"name": "chat"}],
                                     "preflight_allow_exposed_engines": False})
    (tmp_path / "inv.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(PLAY.replace("hosts: v1:v2:o1", "hosts: vllm_servers:ollama_servers"))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default", ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(tmp_path / "inv.yml"),
                          str(tmp_path / "play.yml")], cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300,
                         check=True).stdout
    results = {}
    for line in out.splitlines():
        if '"msg": "RESULT ' in line:
            host, data = json.loads("{" + line.strip().rstrip(",") + "}")["msg"][len("RESULT "):].split(" ", 1)
            results[host] = {r["check"]: (r["status"], r["detail"]) for r in json.loads(data)}
    assert results["edge-01"]["exposure ollama"][0] == "pass"  # Ollama on its default, loopback
    for host in ("gpu-01", "gpu-02"):
        status, detail = results[host]["exposure vllm"]
        if with_gateway:
            assert (status, detail) == ("pass", "vllm binds 10.0.1.11, behind the gateway on door-01")
        else:
            assert status == "fail" and "vllm_bind_address" in detail and "gateway_frontends" in detail
