#!/usr/bin/python
# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpu_health
short_description: Report NVIDIA GPU facts and health through NVML, and fail on unhealthy GPUs
version_added: "0.1.0"
description:
  - Reads every NVIDIA GPU of the managed host through NVML (the library behind C(nvidia-smi)), using
    the C(pynvml) bindings from the nvidia-ml-py package.
  - Returns per-GPU facts (identity, memory, temperatures and thresholds, power, utilisation, ECC
    counters, retired pages and remapped rows, PCIe link, clock event reasons, persistence, compute and
    MIG modes, compute capability, VBIOS, compute processes), the driver, CUDA driver and NVML versions,
    and a compact RV(gpu_facts) summary (count, memory, compute capabilities) that roles can size by.
  - Runs health checks, each C(pass), C(fail) or C(skip) with a message. Every threshold is an option.
  - A field the GPU does not support (NVML answers C(Not Supported)) is listed in the GPU's
    C(unsupported) list and its value is V(null); it is never an error.
  - With O(fail_on_unhealthy=true) the task fails with one message that lists every failing check,
    per GPU, with its UUID, serial, PCI bus id, value, threshold and the suggested action.
  - Read-only. Never changes persistence, clocks, power limits, compute or MIG modes and never resets a GPU.
author:
  - onprem.llm_serving maintainers (@onprem)
requirements:
  - nvidia-ml-py (C(pynvml)) on the managed host
  - an NVIDIA driver that provides C(libnvidia-ml.so.1) on the managed host
attributes:
  check_mode:
    support: full
    description: The module only reads; check mode runs it in full.
  diff_mode:
    support: none
    description: Nothing is changed, so there is no diff.
  idempotent:
    support: full
    description: Always returns RV(ignore:changed=false).
options:
  gpu_required:
    description:
      - When V(true), a host where NVML cannot be initialised (no driver, no library, no GPU) or
        where nvidia-ml-py is missing fails with a message naming the cause.
      - When V(false), such a host returns RV(nvml_available=false), RV(gpu_count=0) and RV(healthy=true).
    type: bool
    default: true
  fail_on_unhealthy:
    description:
      - Fail the task when any check fails, with one message listing every failing check per GPU.
      - When V(false), return RV(healthy=false) and RV(failed_checks) instead.
    type: bool
    default: true
  expected_gpu_count:
    description: Exact number of GPUs NVML must see. Mutually exclusive with O(min_gpu_count).
    type: int
  min_gpu_count:
    description: Minimum number of GPUs NVML must see. Mutually exclusive with O(expected_gpu_count).
    type: int
  min_driver_version:
    description: Minimum NVIDIA driver version, dotted, for example V(550.54.15).
    type: str
  min_compute_capability:
    description: Minimum CUDA compute capability of every GPU, for example V(8.0) (Ampere) or V(9.0) (Hopper).
    type: str
  max_volatile_uncorrected_ecc:
    description: Most volatile (since driver load) uncorrected ECC errors a GPU may have.
    type: int
    default: 0
  require_ecc:
    description: Fail when ECC is supported but disabled. Skipped on GPUs without ECC.
    type: bool
    default: false
  max_retired_pages:
    description:
      - Most retired pages (single plus double bit) a GPU may have. A pending page retirement always fails.
      - Only GPUs with page retirement (before Ampere) report it; newer GPUs use row remapping.
    type: int
    default: 60
  pcie_min_width:
    description:
      - Minimum current PCIe link width. By default the GPU's maximum width, so an x16 GPU on an x8 link fails.
    type: int
  pcie_min_gen:
    description:
      - Minimum PCIe generation the link can reach (its maximum, not its current value; an idle GPU
        downclocks its link, which is normal). By default the GPU's own maximum generation.
    type: int
  temperature_margin_c:
    description: The GPU temperature must stay this many degrees C below its slowdown threshold.
    type: int
    default: 5
  max_temperature_c:
    description: Absolute temperature limit in degrees C; replaces the slowdown-minus-margin limit when set.
    type: int
  fail_on_clock_events:
    description: Active clock event (throttle) reasons that fail the check.
    type: list
    elements: str
    choices: [gpu_idle, applications_clocks_setting, sw_power_cap, hw_slowdown, sync_boost, sw_thermal_slowdown,
              hw_thermal_slowdown, hw_power_brake_slowdown, display_clock_setting]
    default: [hw_slowdown, hw_thermal_slowdown, hw_power_brake_slowdown, sw_thermal_slowdown]
  require_persistence_mode:
    description: Fail when persistence mode is off.
    type: bool
    default: true
  expected_mig_mode:
    description: Expected current MIG mode; V(any) skips the check. GPUs without MIG skip it too.
    type: str
    choices: [enabled, disabled, any]
    default: any
  min_free_memory_mib:
    description: Minimum free GPU memory in MiB on every GPU.
    type: int
  allow_compute_processes:
    description: When V(false), fail when a compute process not named in O(allowed_process_names) runs on a GPU.
    type: bool
    default: true
  allowed_process_names:
    description: Process names (basename of the executable) allowed on the GPUs when O(allow_compute_processes=false).
    type: list
    elements: str
    default: []
  xid_watch_seconds:
    description:
      - When above 0, watch the GPUs this many seconds for XID critical errors through NVML's event API
        and report each one by code with its meaning and the suggested action.
      - NVML only reports XIDs that happen during the watch; older ones are in the kernel log.
    type: float
    default: 0
  xid_ignore:
    description: XID codes that do not fail the check (they are still returned in RV(xid_events)).
    type: list
    elements: int
    default: []
notes:
  - On hosts without a GPU set O(gpu_required=false) to let the play continue.
  - Unsupported fields depend on the GPU; for example an H100 answers C(Not Supported) for retired pages.
seealso:
  - name: NVIDIA XID errors
    description: What each XID code means.
    link: https://docs.nvidia.com/deploy/xid-errors/index.html
  - name: NVML API reference
    description: The library this module reads.
    link: https://docs.nvidia.com/deploy/nvml-api/index.html
"""

EXAMPLES = r"""
- name: Block the deployment on unhealthy or missing GPUs
  onprem.llm_serving.gpu_health:
    expected_gpu_count: 8
    min_compute_capability: "8.0"
    min_driver_version: "550.54.15"
    min_free_memory_mib: 70000
  register: __gpu

- name: Size the engine by the GPUs found
  ansible.builtin.set_fact:
    vllm_tensor_parallel_size: "{{ __gpu.gpu_facts.count }}"

- name: Report only, watching for XIDs for 10 seconds
  onprem.llm_serving.gpu_health:
    fail_on_unhealthy: false
    xid_watch_seconds: 10
    xid_ignore: [43]
  register: __gpu_report

- name: Hosts without GPUs pass
  onprem.llm_serving.gpu_health:
    gpu_required: false
"""

RETURN = r"""
healthy:
  description: True when no check failed.
  returned: always
  type: bool
  sample: true
nvml_available:
  description: False when NVML could not be initialised and O(gpu_required=false).
  returned: always
  type: bool
  sample: true
driver_version:
  description: NVIDIA driver version.
  returned: always
  type: str
  sample: "580.159.04"
cuda_driver_version:
  description: Highest CUDA version the driver supports.
  returned: always
  type: str
  sample: "13.0"
nvml_version:
  description: NVML library version.
  returned: always
  type: str
  sample: "13.580.159.04"
gpu_count:
  description: Number of GPUs NVML sees.
  returned: always
  type: int
  sample: 1
gpu_facts:
  description: Compact facts to size workloads by.
  returned: always
  type: dict
  contains:
    count:
      description: Number of GPUs.
      type: int
    names:
      description: Product names, by index.
      type: list
      elements: str
    uuids:
      description: GPU UUIDs, by index.
      type: list
      elements: str
    memory_total_mib:
      description: Total memory of each GPU in MiB, by index.
      type: list
      elements: int
    memory_total_mib_min:
      description: Smallest total memory of any GPU in MiB.
      type: int
    memory_total_mib_sum:
      description: Sum of the GPUs' total memory in MiB.
      type: int
    compute_capabilities:
      description: Compute capability of each GPU, by index.
      type: list
      elements: str
    compute_capability_min:
      description: Lowest compute capability.
      type: str
  sample:
    count: 1
    names: ["NVIDIA H100 80GB HBM3"]
    uuids: ["GPU-acb48b61-172b-979d-b244-9c2a9362d321"]
    memory_total_mib: [81559]
    memory_total_mib_min: 81559
    memory_total_mib_sum: 81559
    compute_capabilities: ["9.0"]
    compute_capability_min: "9.0"
gpus:
  description:
    - One entry per GPU. A value is V(null) when the field is in that GPU's C(unsupported) list or C(errors).
  returned: always
  type: list
  elements: dict
  contains:
    index: {description: "NVML index.", type: int}
    name: {description: "Product name.", type: str}
    uuid: {description: "GPU UUID.", type: str}
    serial: {description: "Board serial number.", type: str}
    pci_bus_id: {description: "PCI bus id (domain:bus:device.function).", type: str}
    vbios_version: {description: "VBIOS version.", type: str}
    compute_capability: {description: "CUDA compute capability, major.minor.", type: str}
    memory:
      description: "C(total_mib), C(used_mib), C(free_mib), C(reserved_mib) (reserved is null with older drivers); bytes rounded up
        to whole MiB, as nvidia-smi rounds them."
      type: dict
    temperature: {description: "C(gpu_c), C(slowdown_c), C(shutdown_c) in degrees C.", type: dict}
    power: {description: "C(draw_w), C(limit_w) (enforced limit) in watts.", type: dict}
    utilization: {description: "C(gpu_pct), C(memory_pct).", type: dict}
    ecc:
      description: "C(enabled), C(pending_enabled), C(volatile) and C(aggregate), each with C(corrected) and C(uncorrected) counts."
      type: dict
    retired_pages: {description: "C(single_bit_ecc), C(double_bit_ecc) page counts, C(pending).", type: dict}
    remapped_rows: {description: "C(correctable), C(uncorrectable) row counts, C(pending), C(failure).", type: dict}
    pcie: {description: "C(gen_current), C(gen_max) (reachable by the link), C(gen_gpu_max), C(width_current), C(width_max).", type: dict}
    clocks: {description: "C(sm_mhz), C(sm_max_mhz).", type: dict}
    clock_event_reasons: {description: "C(mask) (NVML bit mask) and C(active) (decoded names).", type: dict}
    persistence_mode: {description: "Persistence mode on.", type: bool}
    compute_mode: {description: "C(Default), C(Exclusive_Process) or C(Prohibited).", type: str}
    mig_mode: {description: "C(current), C(pending) booleans.", type: dict}
    processes: {description: "Compute processes: C(pid), C(name), C(used_memory_mib) (rounded up, as nvidia-smi does).", type: list, elements: dict}
    xid_events_supported: {description: "Whether the GPU reports XID events to NVML.", type: bool}
    unsupported: {description: "Fields NVML answered Not Supported for.", type: list, elements: str}
    errors: {description: "Fields that failed with another NVML error, with the error.", type: dict}
    lost: {description: "The GPU stopped answering NVML (GPU is lost).", type: bool}
checks:
  description: Every check with C(name), C(status) (pass, fail, skip), C(message), C(gpu) (index, null for host checks),
    C(uuid), C(pci_bus_id), C(value), C(threshold) and C(action).
  returned: always
  type: list
  elements: dict
  sample:
    - name: pcie_link
      status: pass
      message: PCIe link Gen5/x16 now, Gen5/x16 max (idle generation downclocking is normal)
      gpu: 0
      uuid: GPU-acb48b61-172b-979d-b244-9c2a9362d321
      pci_bus_id: "00000000:00:06.0"
      value: Gen5/x16 now, Gen5/x16 max
      threshold: width >= x16, max gen >= 5
      action: null
failed_checks:
  description: The checks with status C(fail).
  returned: always
  type: list
  elements: dict
xid_events:
  description: XID events seen during the watch, each with C(index), C(xid), C(seconds), C(meaning), C(action).
  returned: always
  type: list
  elements: dict
xid_watch_note:
  description: Why the XID watch did not run, when it did not.
  returned: always
  type: str
timing_ms:
  description: Time spent in nvmlInit (C(init)) and in reading all fields of all GPUs (C(collect); the GPUs are read in parallel,
    one thread each), in milliseconds.
  returned: always
  type: dict
  sample: {init: 9.6, collect: 21.3}
unhealthy_message:
  description: The failure message, also when O(fail_on_unhealthy=false); null when healthy.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.onprem.llm_serving.plugins.module_utils import _gpu_health as gh
from ansible_collections.onprem.llm_serving.plugins.module_utils import _nvml


ARGUMENT_SPEC = dict(
    gpu_required=dict(type="bool", default=gh.DEFAULTS["gpu_required"]),
    fail_on_unhealthy=dict(type="bool", default=gh.DEFAULTS["fail_on_unhealthy"]),
    expected_gpu_count=dict(type="int"),
    min_gpu_count=dict(type="int"),
    min_driver_version=dict(type="str"),
    min_compute_capability=dict(type="str"),
    max_volatile_uncorrected_ecc=dict(type="int", default=gh.DEFAULTS["max_volatile_uncorrected_ecc"]),
    require_ecc=dict(type="bool", default=gh.DEFAULTS["require_ecc"]),
    max_retired_pages=dict(type="int", default=gh.DEFAULTS["max_retired_pages"]),
    pcie_min_width=dict(type="int"),
    pcie_min_gen=dict(type="int"),
    temperature_margin_c=dict(type="int", default=gh.DEFAULTS["temperature_margin_c"]),
    max_temperature_c=dict(type="int"),
    fail_on_clock_events=dict(type="list", elements="str", choices=list(gh.CLOCK_EVENT_NAMES),
                              default=list(gh.DEFAULT_FAIL_ON_CLOCK_EVENTS)),
    require_persistence_mode=dict(type="bool", default=gh.DEFAULTS["require_persistence_mode"]),
    expected_mig_mode=dict(type="str", choices=["enabled", "disabled", "any"], default=gh.DEFAULTS["expected_mig_mode"]),
    min_free_memory_mib=dict(type="int"),
    allow_compute_processes=dict(type="bool", default=gh.DEFAULTS["allow_compute_processes"]),
    allowed_process_names=dict(type="list", elements="str", default=[]),
    xid_watch_seconds=dict(type="float", default=gh.DEFAULTS["xid_watch_seconds"]),
    xid_ignore=dict(type="list", elements="int", default=[]),
)


def make_backend():
    """The NVML access the module uses; unit tests patch this to return a fake.

    Raises ImportError when nvidia-ml-py is not installed.
    """
    if not _nvml.HAS_PYNVML:
        raise ImportError(str(_nvml.PYNVML_IMPORT_ERROR))
    return _nvml.PynvmlBackend()


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=[("expected_gpu_count", "min_gpu_count")],
        supports_check_mode=True,
    )
    params = dict((key, module.params[key]) for key in ARGUMENT_SPEC)

    try:
        backend = make_backend()
    except ImportError as exc:
        if params["gpu_required"]:
            module.fail_json(msg=missing_required_lib("nvidia-ml-py") + " (gpu_health reads the GPUs through its pynvml module)",
                             exception=str(exc))
        module.exit_json(changed=False, msg="nvidia-ml-py is not installed; gpu_required is false",
                         **gh.unavailable_result("nvidia-ml-py (pynvml) is not installed"))

    try:
        result = gh.evaluate(backend, params)
    except gh.NvmlUnavailable as exc:
        if params["gpu_required"]:
            module.fail_json(
                msg="%s. Check that the NVIDIA driver is installed and loaded ('nvidia-smi' must work on this host); "
                    "set gpu_required: false for hosts without GPUs." % exc,
                healthy=False, nvml_available=False)
        module.exit_json(changed=False, msg=str(exc), **gh.unavailable_result(str(exc)))
    except gh.GpuHealthError as exc:
        module.fail_json(msg="gpu_health options are invalid: %s" % exc)

    if not result["healthy"] and params["fail_on_unhealthy"]:
        module.fail_json(msg=result["unhealthy_message"], changed=False, **result)
    if result["healthy"]:
        msg = "%d GPU(s) healthy" % result["gpu_count"]
    else:
        msg = "%d check(s) failed (fail_on_unhealthy is false)" % len(result["failed_checks"])
    module.exit_json(changed=False, msg=msg, **result)


if __name__ == "__main__":
    main()
