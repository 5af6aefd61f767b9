# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters of the vllm role.

- vllm_cpu_plan: per instance, how its tensor x pipeline parallel ranks fit a CPU host (host_facts' cpus) and the
  VLLM_CPU_OMP_THREADS_BIND the role writes for it; a ``problem`` string says what is wrong and how to fix it
  (plugins/module_utils/_vllm_cpu.py).
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.onprem.llm_serving.plugins.module_utils._vllm_cpu import plan


def vllm_cpu_plan(instances, cpus):
    """``{name: plan}`` for the instances (dicts with name, tensor_parallel_size, pipeline_parallel_size and
    cpu_omp_threads_bind) on a host whose CPUs host_facts read (``cpus``)."""
    if not isinstance(cpus, dict) or "allowed" not in cpus:
        raise AnsibleFilterError("vllm_cpu_plan: cpus must be host_facts' cpus (gather: [cpus]), got %r" % (cpus,))
    out = {}
    for inst in instances or []:
        try:
            out[inst["name"]] = plan(inst["name"], inst.get("tensor_parallel_size", 1), inst.get("pipeline_parallel_size", 1),
                                     inst.get("cpu_omp_threads_bind"), cpus)
        except (KeyError, TypeError, ValueError) as exc:
            raise AnsibleFilterError("vllm_cpu_plan: instance %r: %s" % (inst.get("name") if isinstance(inst, dict) else inst, exc))
    return out


class FilterModule(object):
    def filters(self):
        return {"vllm_cpu_plan": vllm_cpu_plan}
