# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Render the tgi role's unit and env file with Ansible's own templar, without a host.

Covers what the lab (docker + tgi-stand-in) cannot: GPU access (--gpus / CDI), podman's unit, quantize,
num_shard. Run: .venv/bin/pytest roles/tgi/tests/
"""
from __future__ import annotations

import os
import sys

import pytest

ROLE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(ROLE)), "tests"))
from role_templates import exec_start, render_instance, role_vars as _role_vars  # noqa: E402  pylint: disable=wrong-import-position


def render(name, instance, **overrides):
    facts = {"inventory_hostname": "gpu01", "groups": {"gpu_hosts": []}, "ansible_managed": "Ansible managed",
             "__tgi_image_id": "sha256:" + "a" * 64}
    return render_instance(ROLE, name, "__tgi_instance_defaults", instance, _role_vars(ROLE, facts, overrides))


INSTANCE = {"name": "mistral", "model_id": "/srv/llm/models/mistral-7b", "port": 3001, "num_shard": 2,
            "max_input_tokens": 4096, "max_total_tokens": 8192, "quantize": "awq", "api_key": "k3y"}


@pytest.mark.parametrize("engine, gpu, access, expect, absent", [
    ("docker", True, "gpus", ["--gpus", "all"], ["--device", "--sdnotify=conmon"]),
    ("docker", True, "cdi", ["--device", "nvidia.com/gpu=all"], ["--gpus"]),
    ("podman", True, "cdi", ["--device", "nvidia.com/gpu=all", "--sdnotify=conmon"], ["--gpus"]),
    ("docker", False, "gpus", [], ["--gpus", "--device"]),
])
def test_unit_gpu_access(engine, gpu, access, expect, absent):
    unit = render("tgi.service.j2", INSTANCE, tgi_container_engine=engine, tgi_gpu=gpu, tgi_gpu_access=access)
    argv = exec_start(unit)
    assert argv[:2] == ["/usr/bin/%s" % engine, "run"]
    for token in expect:
        assert token in argv
    for token in absent:
        assert token not in argv


def test_unit_ports_volumes_env_and_launcher_options():
    unit = render("tgi.service.j2", INSTANCE)
    argv = exec_start(unit)
    image = argv.index("ghcr.io/huggingface/text-generation-inference:3.3.6")
    run_opts, launcher = argv[:image], argv[image + 1:]
    assert run_opts[run_opts.index("--publish") + 1] == "127.0.0.1:3001:80"
    assert run_opts[run_opts.index("--shm-size") + 1] == "1g"
    assert run_opts[run_opts.index("--env-file") + 1] == "/etc/onprem-llm/tgi-mistral.env"
    volumes = [run_opts[i + 1] for i, a in enumerate(run_opts) if a == "--volume"]
    assert volumes == ["/srv/llm/cache/tgi:/data:rw", "/srv/llm/models:/srv/llm/models:ro"]
    opts = dict(zip(launcher[::2], launcher[1::2]))
    assert opts == {"--model-id": "/srv/llm/models/mistral-7b", "--port": "80", "--num-shard": "2", "--max-input-tokens": "4096",
                    "--max-total-tokens": "8192", "--max-concurrent-requests": "128", "--quantize": "awq"}
    assert "k3y" not in unit
    assert "Restart=on-failure" in unit and ("sha256:" + "a" * 64) in unit


def test_env_file_exact_offline_and_usage_stats():
    text = render("tgi.env.j2", dict(INSTANCE, env={"CUDA_VISIBLE_DEVICES": "0,1"}))
    env = dict(ln.split("=", 1) for ln in text.splitlines() if ln and not ln.startswith("#"))
    assert env == {"USAGE_STATS": "off", "HF_HUB_OFFLINE": "1", "API_KEY": "k3y", "CUDA_VISIBLE_DEVICES": "0,1"}


def test_env_file_hub_allowed():
    text = render("tgi.env.j2", dict(INSTANCE, api_key=""), tgi_hf_hub_offline=False)
    assert "HF_HUB_OFFLINE" not in text and "API_KEY" not in text


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_unit_never_pulls_and_runs_the_image_by_id(engine):
    image_id = "sha256:" + "b" * 64
    unit = render("tgi.service.j2", INSTANCE, tgi_container_engine=engine, tgi_image_id="b" * 64)
    argv = exec_start(unit)
    assert argv[:3] == ["/usr/bin/%s" % engine, "run", "--rm"] and "--pull=never" in argv
    run_opts = argv[:argv.index(image_id)]
    assert argv[argv.index(image_id) + 1] == "--model-id"
    assert "ghcr.io/huggingface/text-generation-inference:3.3.6" not in argv
    assert run_opts[run_opts.index("--label") + 1] == "onprem.llm_serving.image=ghcr.io/huggingface/text-generation-inference:3.3.6"


def test_unit_without_an_id_runs_the_name_and_still_never_pulls():
    argv = exec_start(render("tgi.service.j2", INSTANCE))
    assert "--pull=never" in argv and argv[argv.index("--model-id") - 1] == "ghcr.io/huggingface/text-generation-inference:3.3.6"
