# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Tensor x pipeline parallel on vLLM's CPU backend: the rank plan and VLLM_CPU_OMP_THREADS_BIND (vLLM 0.32's format)."""
from __future__ import annotations

import pytest

from ansible_collections.onprem.llm_serving.plugins.module_utils import _vllm_cpu as vc

# the lab machine: 2 CPUs, one NUMA node
LAB = {"online": [0, 1], "allowed": [0, 1], "numa_nodes": [{"node": 0, "cpus": [0, 1]}]}
# two sockets of 8 cores
TWO_NODES = {"online": list(range(16)), "allowed": list(range(16)),
             "numa_nodes": [{"node": 0, "cpus": list(range(8))}, {"node": 1, "cpus": list(range(8, 16))}]}
# 8 cores, a cpuset that leaves 2-5
PINNED = {"online": list(range(8)), "allowed": [2, 3, 4, 5], "numa_nodes": [{"node": 0, "cpus": list(range(8))}]}


@pytest.mark.parametrize("text, ids", [("0", [0]), ("0-2,4", [0, 1, 2, 4]), ("4,0-1", [0, 1, 4]), ("", []), ("3-3", [3])])
def test_parse_id_list_reads_what_vllm_reads(text, ids):
    assert vc.parse_id_list(text) == ids


@pytest.mark.parametrize("text", ["a", "0-", "1;2", "0 1", "3-1", "-1"])
def test_parse_id_list_refuses_what_is_no_list(text):
    with pytest.raises(vc.CpuPlanError, match="CPU list"):
        vc.parse_id_list(text)


@pytest.mark.parametrize("ids, text", [([0, 1, 2, 4], "0-2,4"), ([5], "5"), ([], ""), ([3, 1, 2], "1-3")])
def test_format_id_list(ids, text):
    assert vc.format_id_list(ids) == text


def test_tp2_on_the_lab_host_gets_one_core_per_rank():
    p = vc.plan("tp2", 2, 1, None, LAB)
    assert p["problem"] == ""
    assert p["bind"] == "0|1"
    assert p["ranks"] == [[0], [1]]
    assert p["world"] == 2 and p["cpus"] == 2 and p["numa_nodes"] == 1


def test_one_rank_leaves_vllm_auto_as_it_was():
    p = vc.plan("tiny", 1, 1, None, LAB)
    assert p["problem"] == "" and p["bind"] is None


def test_enough_numa_nodes_leaves_vllm_auto():
    p = vc.plan("big", 2, 1, None, TWO_NODES)
    assert p["problem"] == "" and p["bind"] is None
    assert p["ranks"] == [list(range(8)), list(range(8, 16))]


def test_more_ranks_than_nodes_splits_the_cores():
    p = vc.plan("big", 2, 2, None, TWO_NODES)
    assert p["bind"] == "0-3|4-7|8-11|12-15"


def test_split_keeps_to_the_allowed_cpus_and_leaves_the_rest():
    p = vc.plan("pinned", 3, 1, None, PINNED)
    assert p["bind"] == "2|3|4"


@pytest.mark.parametrize("tp, pp", [(2, 2), (4, 1), (1, 3)])
def test_more_ranks_than_cores_is_refused_with_the_values_and_the_fix(tp, pp):
    p = vc.plan("tp4", tp, pp, None, LAB)
    assert "instance tp4" in p["problem"]
    assert "tensor_parallel_size %d x pipeline_parallel_size %d = %d ranks" % (tp, pp, tp * pp) in p["problem"]
    assert "2 CPUs (0-1) in 1 NUMA node" in p["problem"]
    assert "at most 2" in p["problem"] and "Lower tensor_parallel_size/pipeline_parallel_size" in p["problem"]


def test_auto_with_fewer_nodes_than_ranks_is_refused():
    p = vc.plan("tp2", 2, 1, "auto", LAB)
    assert "Not enough allowed NUMA nodes" in p["problem"] and "0|1" in p["problem"]
    assert "vllm_instances[tp2].cpu_omp_threads_bind" in p["problem"]


def test_auto_and_nobind_pass_through():
    assert vc.plan("a", 2, 1, "auto", TWO_NODES)["bind"] == "auto"
    p = vc.plan("n", 2, 1, "nobind", LAB)
    assert p["bind"] == "nobind" and p["problem"] == ""


def test_explicit_lists_are_kept():
    p = vc.plan("x", 2, 1, "1|0", LAB)
    assert p["problem"] == "" and p["bind"] == "1|0" and p["ranks"] == [[1], [0]]


@pytest.mark.parametrize("bind, words", [
    ("0", "1 core list, but instance x asks for tensor_parallel_size 2"),
    ("0||1", "3 core lists"),
    ("|", "a rank has no core"),
    ("0|x", "'x' is not a CPU list"),
    ("0|2", "CPU 2 is not among the CPUs"),
    ("0-1|1", "overlap"),
])
def test_bad_explicit_lists_are_refused(bind, words):
    p = vc.plan("x", 2, 1, bind, LAB)
    assert words in p["problem"], p["problem"]
    assert repr(bind) in p["problem"] or "'x'" in p["problem"]
