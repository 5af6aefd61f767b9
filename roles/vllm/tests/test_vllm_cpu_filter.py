# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The vllm_cpu_plan filter (controller side: here, not in tests/unit, whose module tests must not load Ansible's
controller). The plan itself: tests/unit/plugins/module_utils/test_vllm_cpu.py."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tests"))
import role_templates  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
from ansible_collections.onprem.llm_serving.plugins.filter.vllm import vllm_cpu_plan  # noqa: E402  pylint: disable=wrong-import-position

LAB = {"online": [0, 1], "allowed": [0, 1], "numa_nodes": [{"node": 0, "cpus": [0, 1]}]}


def test_the_filter_plans_every_instance():
    plans = vllm_cpu_plan([{"name": "tiny", "tensor_parallel_size": 1, "pipeline_parallel_size": 1, "cpu_omp_threads_bind": None},
                           {"name": "tp2", "tensor_parallel_size": "2", "pipeline_parallel_size": "1", "cpu_omp_threads_bind": None}], LAB)
    assert plans["tiny"]["bind"] is None and plans["tp2"]["bind"] == "0|1"


def test_the_filter_refuses_what_is_not_host_facts():
    from ansible.errors import AnsibleFilterError
    with pytest.raises(AnsibleFilterError, match="host_facts' cpus"):
        vllm_cpu_plan([], {"cpus": 2})
