# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure logic of gpu_health: collect through an NVML interface, decode, check, explain.

Nothing here imports pynvml or touches AnsibleModule.  :func:`collect` walks any object with
the methods of ``_nvml.NvmlInterface``; the rest turns plain data into facts, check results and
one failure message a technician can act on.
"""

from __future__ import annotations

import functools
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.onprem.llm_serving.plugins.module_utils._nvml import (
    DEVICE_FIELDS,
    NvmlError,
    NvmlGpuLost,
    NvmlNotSupported,
)

MIB = 1024 * 1024

# nvmlClocksEventReason* bits (nvml.h), with the names this module reports.
CLOCK_EVENT_REASONS = (
    (0x0001, "gpu_idle", "GPU idle"),
    (0x0002, "applications_clocks_setting", "applications clocks setting"),
    (0x0004, "sw_power_cap", "software power cap"),
    (0x0008, "hw_slowdown", "hardware slowdown (thermal or power brake, e.g. external signal)"),
    (0x0010, "sync_boost", "sync boost"),
    (0x0020, "sw_thermal_slowdown", "software thermal slowdown"),
    (0x0040, "hw_thermal_slowdown", "hardware thermal slowdown"),
    (0x0080, "hw_power_brake_slowdown", "hardware power brake slowdown"),
    (0x0100, "display_clock_setting", "display clock setting"),
)
CLOCK_EVENT_NAMES = tuple(name for _bit, name, _desc in CLOCK_EVENT_REASONS)
DEFAULT_FAIL_ON_CLOCK_EVENTS = ("hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown", "sw_thermal_slowdown")

COMPUTE_MODES = {0: "Default", 1: "Exclusive_Thread", 2: "Prohibited", 3: "Exclusive_Process"}

# XID codes (NVIDIA "XID Errors" reference) -> (meaning, what a technician does about it).
XID_MEANINGS = {
    13: ("Graphics engine exception (often an application bug: illegal instruction or out-of-range access)",
         "check the application's logs; if it recurs across different applications run 'dcgmi diag -r 3'"),
    31: ("GPU memory page fault (usually an application illegal memory access)",
         "check the application; if it recurs across applications run 'dcgmi diag -r 3'"),
    32: ("Invalid or corrupted push buffer stream (PCIe or driver problem)",
         "check PCIe seating and 'dmesg' for AER errors; update the driver"),
    38: ("Driver firmware error", "update the driver; reset the GPU; RMA if it recurs"),
    43: ("GPU stopped processing (the faulting application was stopped)", "usually none: look at the XID logged just before it"),
    45: ("Preemptive cleanup after an earlier error", "look at the XID logged just before it"),
    48: ("Double-bit (uncorrectable) ECC error", "drain the node, reset the GPU (or reboot); RMA if it recurs"),
    61: ("Internal micro-controller breakpoint/warning", "reset the GPU; update the driver; RMA if it recurs"),
    62: ("Internal micro-controller halt", "reset the GPU; update the driver; RMA if it recurs"),
    63: ("ECC page retirement or row remapping recorded", "drain the node and reset the GPU so the remap takes effect"),
    64: ("ECC page retirement or row remapping FAILED", "take the GPU out of service and open an RMA"),
    68: ("Video decoder (NVDEC) exception", "check the application; update the driver"),
    69: ("Graphics engine class error", "check the application; update the driver"),
    74: ("NVLink error", "check NVLink/NVSwitch with 'nvidia-smi nvlink -s' and the fabric manager; reseat; reset the GPU"),
    79: ("GPU has fallen off the bus", "check power cables, PCIe seating and cooling; reboot the node; RMA if it recurs"),
    92: ("High single-bit ECC error rate", "schedule 'dcgmi diag -r 3'; watch for retirement/remapping"),
    94: ("Contained ECC error (the affected application was stopped)", "drain the node and reset the GPU when convenient"),
    95: ("Uncontained ECC error", "drain the node and reset the GPU (or reboot) now"),
    109: ("Context switch timeout", "check the application; reset the GPU if it recurs"),
    119: ("GSP RPC timeout", "reset the GPU or reboot; update the driver if it recurs"),
    120: ("GSP error", "reset the GPU or reboot; update the driver if it recurs"),
    121: ("C2C (chip-to-chip) link error", "reset the GPU; RMA if it recurs"),
    154: ("GPU recovery action changed", "perform the 'GPU Recovery Action' shown by 'nvidia-smi -q' (reset or reboot)"),
}

# Defaults shared with the module's argument_spec (the module documents the same values).
DEFAULTS = {
    "gpu_required": True,
    "fail_on_unhealthy": True,
    "expected_gpu_count": None,
    "min_gpu_count": None,
    "min_driver_version": None,
    "min_compute_capability": None,
    "max_volatile_uncorrected_ecc": 0,
    "require_ecc": False,
    "max_retired_pages": 60,
    "pcie_min_width": None,
    "pcie_min_gen": None,
    "temperature_margin_c": 5,
    "max_temperature_c": None,
    "fail_on_clock_events": list(DEFAULT_FAIL_ON_CLOCK_EVENTS),
    "require_persistence_mode": True,
    "expected_mig_mode": "any",
    "min_free_memory_mib": None,
    "allow_compute_processes": True,
    "allowed_process_names": [],
    "xid_watch_seconds": 0,
    "xid_ignore": [],
}

PASS = "pass"
FAIL = "fail"
SKIP = "skip"


class GpuHealthError(Exception):
    """gpu_health could not do its job (as opposed to: it found an unhealthy GPU)."""


class NvmlUnavailable(GpuHealthError):
    """NVML could not be initialised (no driver, no library, no GPU)."""


# --------------------------------------------------------------------------- decoding
def decode_clock_event_reasons(mask):
    """Bit mask -> list of reason names, in bit order; unknown bits as 'unknown_0x...'."""
    if mask is None:
        return None
    names = []
    known = 0
    for bit, name, _desc in CLOCK_EVENT_REASONS:
        known |= bit
        if mask & bit:
            names.append(name)
    rest = mask & ~known
    bit = 1
    while rest:
        if rest & bit:
            names.append("unknown_0x%x" % bit)
            rest &= ~bit
        bit <<= 1
    return names


def xid_meaning(code):
    return XID_MEANINGS.get(code, ("XID %s (see NVIDIA's XID reference)" % code, "look it up in NVIDIA's XID reference; run 'dcgmi diag -r 3'"))


def cuda_version_string(value):
    """NVML's CUDA driver version integer (13000) -> '13.0'."""
    if value is None:
        return None
    return "%d.%d" % (value // 1000, (value % 1000) // 10)


def parse_version(text):
    """'580.159.04' -> (580, 159, 4); '9.0' -> (9, 0).  Raises ValueError on junk."""
    text = str(text).strip()
    if not text:
        raise ValueError("empty version")
    parts = text.split(".")
    return tuple(int(p) for p in parts)


def _mib(value):
    """Bytes -> whole MiB, rounded UP, as nvidia-smi rounds.

    nvidia-smi prints ceil(bytes / 1 MiB) for every memory figure (memory.total, .reserved,
    .used, .free and the compute processes' used_memory), so any remainder counts as one more
    MiB.  Derived from NVML's bytes and nvidia-smi's MiB read back to back on the device
    machine (tests/gpu/probe_mib_rounding.py; tests/fixtures/nvml/h200-mib-samples.json):
    an H200's reserved 644939776 B = 615.0625 MiB prints as 616 and its free
    149458911232 B = 142535.125 MiB as 142536, which only rounding up explains (floor and
    round-to-nearest give 615 and 142535).  Whole MiB stay as they are (total 150754820096 B
    = 143771 MiB; the H100's 81559 / 480 / 81079 MiB).  So used + free + reserved may exceed
    total by a MiB or two, exactly as in nvidia-smi's own output.
    """
    if value is None:
        return None
    return -(-int(value) // MIB)


def _watts(milliwatts):
    return None if milliwatts is None else round(milliwatts / 1000.0, 2)


def _enabled(value):
    return None if value is None else bool(value)


# --------------------------------------------------------------------------- collecting
# The GPUs of a host are read at the same time, one thread per GPU, at most this many.
MAX_READ_THREADS = 16


def collect(nvml, fields=DEVICE_FIELDS, clock=time.perf_counter, threads=None):
    """Read everything from an initialised NVML interface into plain data.

    Returns ``{"driver_version", "nvml_version", "cuda_driver_version", "device_count",
    "devices": [{"index", "values", "unsupported", "errors", "lost"}], "handles",
    "gpu_read_ms", "collect_ms"}``, devices and handles in index order.
    A NotSupported field lands in ``unsupported``; any other failure in ``errors``;
    GPU-is-lost stops reading that GPU and sets ``lost``.

    The first read of a field after nvmlInit costs far more than later ones (about 8-17 ms
    per GPU in all, measured on an H100 and an H200, tests/gpu/results/), and evaluate()
    always starts from a fresh nvmlInit.  So each GPU is read in a thread of its own
    (``threads`` at most, default MAX_READ_THREADS): NVML is thread-safe, and GPUs that
    answer at the same time pay that warm-up side by side instead of one after the other.
    The fields of ONE GPU stay in order in one thread: reading them in parallel was slower
    on the H200 (19 ms instead of 11 ms, NVML serialises one GPU's calls).  Each thread
    fills only its own GPU's entry, so the result does not depend on which GPU answers
    first.  One GPU, or ``threads=1``, is read in the calling thread.
    """
    start = clock()
    snap = {"driver_version": None, "nvml_version": None, "cuda_driver_version": None, "system_errors": {}}
    for key, getter in (("driver_version", nvml.driver_version), ("nvml_version", nvml.nvml_version),
                        ("cuda_driver_version", nvml.cuda_driver_version)):
        try:
            snap[key] = getter()
        except NvmlError as exc:
            snap["system_errors"][key] = _error_text(exc)
    count = nvml.device_count()
    snap["device_count"] = count
    read = functools.partial(_read_gpu, nvml, fields, clock)
    workers = min(count, threads or MAX_READ_THREADS)
    if workers <= 1:
        results = [read(index) for index in range(count)]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gpu_health") as pool:
            futures = [pool.submit(read, index) for index in range(count)]
        # Leaving the block waited for every thread, so NVML is never shut down under a
        # reader; an unexpected exception (a bug) is raised here, the lowest GPU index first.
        results = [future.result() for future in futures]
    snap["devices"] = [dev for dev, _handle, _ms in results]
    snap["handles"] = [handle for _dev, handle, _ms in results]
    snap["gpu_read_ms"] = [ms for _dev, _handle, ms in results]
    snap["collect_ms"] = round((clock() - start) * 1000.0, 3)
    return snap


def _read_gpu(nvml, fields, clock, index):
    """One GPU's handle and fields, in order; returns (device entry, handle or None, ms)."""
    start = clock()
    dev = {"index": index, "values": {}, "unsupported": [], "errors": {}, "lost": False}
    try:
        handle = nvml.device_handle(index)
    except NvmlError as exc:
        dev["lost"] = True
        dev["errors"]["handle"] = _error_text(exc)
        return dev, None, round((clock() - start) * 1000.0, 3)
    for field in fields:
        try:
            dev["values"][field] = nvml.read(handle, field)
        except NvmlNotSupported:
            dev["unsupported"].append(field)
        except NvmlGpuLost as exc:
            dev["lost"] = True
            dev["errors"][field] = _error_text(exc)
            break
        except NvmlError as exc:
            dev["errors"][field] = _error_text(exc)
    return dev, handle, round((clock() - start) * 1000.0, 3)


def _error_text(exc):
    if getattr(exc, "code", None) is not None:
        return "%s (NVML error %s)" % (exc, exc.code)
    return str(exc)


def watch_xid(nvml, handles, seconds):
    """Run the XID watch; returns (events, note).  Never raises for NotSupported."""
    live = [h for h in handles if h is not None]
    if not live:
        return [], "no GPU handle to watch"
    try:
        events = nvml.wait_xid_events(handles, seconds)
    except NvmlNotSupported as exc:
        return None, "XID events are not supported here: %s" % exc
    except NvmlError as exc:
        return None, "XID watch failed: %s" % _error_text(exc)
    for event in events:
        meaning, action = xid_meaning(event["xid"])
        event["meaning"] = meaning
        event["action"] = action
    return events, None


# --------------------------------------------------------------------------- facts
def gpu_facts(dev):
    """One device's raw values -> the documented per-GPU dict."""
    v = dev["values"]
    mem = v.get("memory") or {}
    ecc_mode = v.get("ecc_mode")
    remap = v.get("remapped_rows")
    mig = v.get("mig_mode")
    cc = v.get("cuda_cc")
    mask = v.get("clock_event_reasons")
    procs = v.get("processes")
    compute_mode = v.get("compute_mode")
    return {
        "index": dev["index"],
        "name": v.get("name"),
        "uuid": v.get("uuid"),
        "serial": v.get("serial"),
        "pci_bus_id": v.get("pci_bus_id"),
        "vbios_version": v.get("vbios"),
        "compute_capability": None if cc is None else "%d.%d" % (cc[0], cc[1]),
        "memory": {
            "total_mib": _mib(mem.get("total")),
            "used_mib": _mib(mem.get("used")),
            "free_mib": _mib(mem.get("free")),
            "reserved_mib": _mib(mem.get("reserved")),
        },
        "temperature": {
            "gpu_c": v.get("temperature"),
            "slowdown_c": v.get("temp_slowdown_threshold"),
            "shutdown_c": v.get("temp_shutdown_threshold"),
        },
        "power": {"draw_w": _watts(v.get("power_usage_mw")), "limit_w": _watts(v.get("power_limit_mw"))},
        "utilization": {
            "gpu_pct": (v.get("utilization") or {}).get("gpu"),
            "memory_pct": (v.get("utilization") or {}).get("memory"),
        },
        "ecc": {
            "enabled": None if ecc_mode is None else bool(ecc_mode[0]),
            "pending_enabled": None if ecc_mode is None else bool(ecc_mode[1]),
            "volatile": {"corrected": v.get("ecc_volatile_corrected"), "uncorrected": v.get("ecc_volatile_uncorrected")},
            "aggregate": {"corrected": v.get("ecc_aggregate_corrected"), "uncorrected": v.get("ecc_aggregate_uncorrected")},
        },
        "retired_pages": {
            "single_bit_ecc": v.get("retired_pages_sbe"),
            "double_bit_ecc": v.get("retired_pages_dbe"),
            "pending": _enabled(v.get("retired_pages_pending")),
        },
        "remapped_rows": {
            "correctable": None if remap is None else remap[0],
            "uncorrectable": None if remap is None else remap[1],
            "pending": None if remap is None else bool(remap[2]),
            "failure": None if remap is None else bool(remap[3]),
        },
        "pcie": {
            "gen_current": v.get("pcie_gen_cur"),
            "gen_max": v.get("pcie_gen_max"),
            "gen_gpu_max": v.get("pcie_gen_gpu_max"),
            "width_current": v.get("pcie_width_cur"),
            "width_max": v.get("pcie_width_max"),
        },
        "clocks": {"sm_mhz": v.get("clock_sm"), "sm_max_mhz": v.get("clock_sm_max")},
        "clock_event_reasons": {"mask": mask, "active": decode_clock_event_reasons(mask)},
        "persistence_mode": _enabled(v.get("persistence_mode")),
        "compute_mode": None if compute_mode is None else COMPUTE_MODES.get(compute_mode, str(compute_mode)),
        "mig_mode": {"current": None if mig is None else bool(mig[0]), "pending": None if mig is None else bool(mig[1])},
        "processes": None if procs is None else [
            {"pid": p["pid"], "name": p.get("name"), "used_memory_mib": _mib(p.get("used_memory"))} for p in procs
        ],
        "xid_events_supported": None if v.get("supported_event_types") is None else bool(v["supported_event_types"] & 0x8),
        "unsupported": sorted(dev["unsupported"]),
        "errors": dict(dev["errors"]),
        "lost": dev["lost"],
    }


def summarize(gpus):
    """The compact facts roles size things by."""
    totals = [g["memory"]["total_mib"] for g in gpus]
    known = [t for t in totals if t is not None]
    ccs = [g["compute_capability"] for g in gpus]
    return {
        "count": len(gpus),
        "names": [g["name"] for g in gpus],
        "uuids": [g["uuid"] for g in gpus],
        "memory_total_mib": totals,
        "memory_total_mib_min": min(known) if known else None,
        "memory_total_mib_sum": sum(known) if known else 0,
        "compute_capabilities": ccs,
        "compute_capability_min": _min_cc(ccs),
    }


def _min_cc(ccs):
    parsed = []
    for cc in ccs:
        try:
            parsed.append((parse_version(cc), cc))
        except (ValueError, TypeError):
            continue
    return min(parsed)[1] if parsed else None


# --------------------------------------------------------------------------- checks
def _check(name, status, message, gpu=None, value=None, threshold=None, action=None):
    return {
        "name": name,
        "status": status,
        "message": message,
        "gpu": None if gpu is None else gpu["index"],
        "uuid": None if gpu is None else gpu["uuid"],
        "pci_bus_id": None if gpu is None else gpu["pci_bus_id"],
        "value": value,
        "threshold": threshold,
        "action": action,
    }


def _unsupported(gpu, *fields):
    """True when any of the raw fields is unsupported or failed for this GPU."""
    return any(f in gpu["unsupported"] or f in gpu["errors"] for f in fields)


def host_checks(gpu_count, driver_version, params):
    checks = []
    expected = params.get("expected_gpu_count")
    minimum = params.get("min_gpu_count")
    if expected is not None:
        ok = gpu_count == expected
        checks.append(_check(
            "gpu_count", PASS if ok else FAIL,
            "%d GPU(s) visible to NVML, %d expected" % (gpu_count, expected),
            value=gpu_count, threshold="== %d" % expected,
            action=None if ok else "check 'nvidia-smi -L' and 'dmesg' for GPUs missing from the bus (XID 79), "
                                   "reseat or replace the missing GPU; or set expected_gpu_count to %d" % gpu_count))
    elif minimum is not None:
        ok = gpu_count >= minimum
        checks.append(_check(
            "gpu_count", PASS if ok else FAIL,
            "%d GPU(s) visible to NVML, at least %d required" % (gpu_count, minimum),
            value=gpu_count, threshold=">= %d" % minimum,
            action=None if ok else "check 'nvidia-smi -L' and 'dmesg' for GPUs missing from the bus; or lower min_gpu_count"))
    else:
        checks.append(_check("gpu_count", SKIP, "%d GPU(s) visible; no expected_gpu_count or min_gpu_count set" % gpu_count,
                             value=gpu_count))
    wanted = params.get("min_driver_version")
    if not wanted:
        checks.append(_check("driver_version", SKIP, "driver %s; no min_driver_version set" % driver_version, value=driver_version))
    elif driver_version is None:
        checks.append(_check("driver_version", FAIL, "the driver version could not be read", threshold=">= %s" % wanted,
                             action="check the NVIDIA driver installation ('nvidia-smi')"))
    else:
        ok = parse_version(driver_version) >= parse_version(wanted)
        checks.append(_check(
            "driver_version", PASS if ok else FAIL,
            "driver %s, at least %s required" % (driver_version, wanted),
            value=driver_version, threshold=">= %s" % wanted,
            action=None if ok else "install NVIDIA driver %s or newer; or lower min_driver_version" % wanted))
    return checks


def gpu_checks(gpu, params):
    """Every per-GPU check, in a fixed order."""
    if gpu["lost"]:
        errors = "; ".join("%s: %s" % kv for kv in sorted(gpu["errors"].items()))
        return [_check("gpu_accessible", FAIL, "the GPU does not answer NVML (%s)" % errors, gpu=gpu,
                       value="lost", threshold="answers NVML",
                       action="the GPU fell off the bus or needs a reset: look for XID 79 in 'dmesg', check power and "
                              "seating, reset the GPU or reboot; RMA if it recurs")]
    checks = [_check("gpu_accessible", PASS, "the GPU answers NVML", gpu=gpu, value="ok", threshold="answers NVML")]
    checks.append(_check_compute_capability(gpu, params))
    checks.extend(_check_ecc(gpu, params))
    checks.append(_check_retired_pages(gpu, params))
    checks.append(_check_row_remapping(gpu))
    checks.append(_check_pcie(gpu, params))
    checks.append(_check_temperature(gpu, params))
    checks.append(_check_clock_events(gpu, params))
    checks.append(_check_persistence(gpu, params))
    checks.append(_check_mig(gpu, params))
    checks.append(_check_free_memory(gpu, params))
    checks.append(_check_processes(gpu, params))
    return checks


def _check_compute_capability(gpu, params):
    wanted = params.get("min_compute_capability")
    cc = gpu["compute_capability"]
    if not wanted:
        return _check("compute_capability", SKIP, "compute capability %s; no min_compute_capability set" % cc, gpu=gpu, value=cc)
    if cc is None:
        return _check("compute_capability", SKIP, "compute capability not reported", gpu=gpu, threshold=">= %s" % wanted)
    ok = parse_version(cc) >= parse_version(wanted)
    return _check("compute_capability", PASS if ok else FAIL,
                  "compute capability %s, at least %s required" % (cc, wanted), gpu=gpu, value=cc, threshold=">= %s" % wanted,
                  action=None if ok else "schedule this workload on newer GPUs; or lower min_compute_capability")


def _check_ecc(gpu, params):
    checks = []
    if params.get("require_ecc"):
        enabled = gpu["ecc"]["enabled"]
        if enabled is None:
            checks.append(_check("ecc_mode", SKIP, "ECC mode not reported by this GPU", gpu=gpu, threshold="enabled"))
        else:
            checks.append(_check("ecc_mode", PASS if enabled else FAIL, "ECC is %s" % ("enabled" if enabled else "disabled"),
                                 gpu=gpu, value="enabled" if enabled else "disabled", threshold="enabled",
                                 action=None if enabled else "enable ECC ('nvidia-smi -e 1', then reset the GPU); or set require_ecc: false"))
    limit = params.get("max_volatile_uncorrected_ecc", 0)
    count = gpu["ecc"]["volatile"]["uncorrected"]
    if count is None:
        checks.append(_check("ecc_uncorrected", SKIP, "volatile uncorrected ECC count not reported (ECC off or unsupported)",
                             gpu=gpu, threshold="<= %d" % limit))
    else:
        ok = count <= limit
        checks.append(_check(
            "ecc_uncorrected", PASS if ok else FAIL,
            "%d volatile uncorrected ECC error(s) since the last driver load, at most %d allowed" % (count, limit),
            gpu=gpu, value=count, threshold="<= %d" % limit,
            action=None if ok else "drain the node, reset the GPU and run 'dcgmi diag -r 3'; RMA if errors return "
                                   "(max_volatile_uncorrected_ecc raises the limit)"))
    return checks


def _check_retired_pages(gpu, params):
    rp = gpu["retired_pages"]
    limit = params.get("max_retired_pages")
    if rp["pending"] is None and rp["double_bit_ecc"] is None and rp["single_bit_ecc"] is None:
        return _check("retired_pages", SKIP, "page retirement is not supported by this GPU (it uses row remapping)", gpu=gpu)
    problems = []
    if rp["pending"]:
        problems.append("page retirement pending")
    total = (rp["double_bit_ecc"] or 0) + (rp["single_bit_ecc"] or 0)
    if limit is not None and total > limit:
        problems.append("%d retired pages, more than %d" % (total, limit))
    value = {"pending": rp["pending"], "retired": total}
    threshold = "no pending retirement, retired <= %s" % limit
    if not problems:
        return _check("retired_pages", PASS, "%d retired page(s), none pending" % total, gpu=gpu, value=value, threshold=threshold)
    action = ("drain the node and reset the GPU (or reboot) so the pending retirement takes effect"
              if rp["pending"] else "open an RMA for this GPU (too many retired pages); or raise max_retired_pages")
    return _check("retired_pages", FAIL, "; ".join(problems), gpu=gpu, value=value, threshold=threshold, action=action)


def _check_row_remapping(gpu):
    rr = gpu["remapped_rows"]
    if rr["pending"] is None:
        return _check("row_remapping", SKIP, "row remapping is not supported by this GPU", gpu=gpu)
    value = dict(rr)
    threshold = "no pending remap, no remap failure"
    if rr["failure"]:
        return _check("row_remapping", FAIL, "row remapping FAILED (%d uncorrectable, %d correctable rows remapped)"
                      % (rr["uncorrectable"], rr["correctable"]), gpu=gpu, value=value, threshold=threshold,
                      action="take the GPU out of service and open an RMA (a remapping failure is not repairable in the field)")
    if rr["pending"]:
        return _check("row_remapping", FAIL, "a row remap is pending (%d uncorrectable, %d correctable rows remapped)"
                      % (rr["uncorrectable"], rr["correctable"]), gpu=gpu, value=value, threshold=threshold,
                      action="drain the node and reset the GPU ('nvidia-smi -r') or reboot so the remap takes effect")
    return _check("row_remapping", PASS, "no pending remap (%d uncorrectable, %d correctable rows remapped)"
                  % (rr["uncorrectable"], rr["correctable"]), gpu=gpu, value=value, threshold=threshold)


def _check_pcie(gpu, params):
    p = gpu["pcie"]
    if p["width_current"] is None or p["width_max"] is None:
        return _check("pcie_link", SKIP, "PCIe link width not reported (not a PCIe GPU or unsupported)", gpu=gpu)
    min_width = params.get("pcie_min_width") or p["width_max"]
    min_gen = params.get("pcie_min_gen") or p["gen_gpu_max"]
    problems = []
    actions = []
    if p["width_current"] < min_width:
        problems.append("link width x%d is below x%d" % (p["width_current"], min_width))
        actions.append("reseat the GPU or its riser/retimer and check the slot (a degraded link halves bandwidth); "
                       "or set pcie_min_width to %d if the slot is wired x%d" % (p["width_current"], p["width_current"]))
    if min_gen is not None and p["gen_max"] is not None and p["gen_max"] < min_gen:
        problems.append("the link can reach Gen%d at most, Gen%d expected" % (p["gen_max"], min_gen))
        actions.append("check the slot, riser and BIOS PCIe settings; or set pcie_min_gen to %d if the host is Gen%d"
                       % (p["gen_max"], p["gen_max"]))
    value = "Gen%s/x%s now, Gen%s/x%s max" % (p["gen_current"], p["width_current"], p["gen_max"], p["width_max"])
    threshold = "width >= x%s, max gen >= %s" % (min_width, min_gen if min_gen is not None else "-")
    if problems:
        return _check("pcie_link", FAIL, "PCIe link degraded: " + "; ".join(problems), gpu=gpu, value=value,
                      threshold=threshold, action="; ".join(actions))
    return _check("pcie_link", PASS, "PCIe link %s (idle generation downclocking is normal)" % value, gpu=gpu,
                  value=value, threshold=threshold)


def _check_temperature(gpu, params):
    t = gpu["temperature"]
    limit = params.get("max_temperature_c")
    margin = params.get("temperature_margin_c", 5)
    source = "max_temperature_c"
    if limit is None and t["slowdown_c"] is not None:
        limit = t["slowdown_c"] - margin
        source = "slowdown %d C - margin %d C" % (t["slowdown_c"], margin)
    if t["gpu_c"] is None or limit is None:
        return _check("temperature", SKIP, "temperature or its slowdown threshold not reported; set max_temperature_c", gpu=gpu,
                      value=t["gpu_c"])
    ok = t["gpu_c"] < limit
    return _check("temperature", PASS if ok else FAIL,
                  "GPU at %d C, must stay below %d C (%s)" % (t["gpu_c"], limit, source), gpu=gpu, value=t["gpu_c"],
                  threshold="< %d C" % limit,
                  action=None if ok else "check fans, airflow, inlet temperature and blanking panels; or raise "
                                         "temperature_margin_c/max_temperature_c")


def _check_clock_events(gpu, params):
    reasons = gpu["clock_event_reasons"]["active"]
    bad_names = list(params.get("fail_on_clock_events") or [])
    if reasons is None:
        return _check("clock_events", SKIP, "clock event reasons not reported", gpu=gpu)
    bad = [r for r in reasons if r in bad_names]
    value = reasons
    threshold = "none of %s" % ", ".join(bad_names) if bad_names else "none"
    if bad:
        hints = []
        if "hw_thermal_slowdown" in bad or "sw_thermal_slowdown" in bad:
            hints.append("cooling: fans, airflow, inlet temperature")
        if "hw_power_brake_slowdown" in bad:
            hints.append("power: PSU redundancy and the chassis power-brake signal")
        if "hw_slowdown" in bad and not hints:
            hints.append("cooling and power supply (HW slowdown is asserted by thermal or power protection)")
        return _check("clock_events", FAIL, "clocks are being slowed by %s" % ", ".join(bad), gpu=gpu, value=value,
                      threshold=threshold, action="check %s; or remove the reason from fail_on_clock_events" % "; ".join(hints))
    return _check("clock_events", PASS, "active clock event reasons: %s" % (", ".join(reasons) or "none"), gpu=gpu,
                  value=value, threshold=threshold)


def _check_persistence(gpu, params):
    mode = gpu["persistence_mode"]
    if not params.get("require_persistence_mode", True):
        return _check("persistence_mode", SKIP, "persistence mode %s; require_persistence_mode is false"
                      % ("unknown" if mode is None else ("on" if mode else "off")), gpu=gpu, value=mode)
    if mode is None:
        return _check("persistence_mode", SKIP, "persistence mode not reported", gpu=gpu, threshold="enabled")
    return _check("persistence_mode", PASS if mode else FAIL, "persistence mode is %s" % ("on" if mode else "off"),
                  gpu=gpu, value="enabled" if mode else "disabled", threshold="enabled",
                  action=None if mode else "enable and start nvidia-persistenced (systemctl enable --now nvidia-persistenced); "
                                           "or set require_persistence_mode: false")


def _check_mig(gpu, params):
    wanted = params.get("expected_mig_mode", "any")
    mig = gpu["mig_mode"]
    if mig["current"] is None:
        status = SKIP
        return _check("mig_mode", status, "MIG not supported by this GPU", gpu=gpu, threshold=wanted,
                      value="unsupported")
    current = "enabled" if mig["current"] else "disabled"
    pending = "enabled" if mig["pending"] else "disabled"
    if wanted == "any":
        return _check("mig_mode", SKIP, "MIG %s; expected_mig_mode is any" % current, gpu=gpu, value=current)
    if mig["current"] is None or current != wanted:
        how = "reset the GPU to apply the pending change" if pending == wanted else \
            "run 'nvidia-smi -i %s -mig %d' and reset the GPU" % (gpu["index"], 1 if wanted == "enabled" else 0)
        return _check("mig_mode", FAIL, "MIG is %s (pending %s), %s expected" % (current, pending, wanted), gpu=gpu,
                      value=current, threshold=wanted, action="%s; or set expected_mig_mode" % how)
    return _check("mig_mode", PASS, "MIG is %s as expected" % current, gpu=gpu, value=current, threshold=wanted)


def _check_free_memory(gpu, params):
    wanted = params.get("min_free_memory_mib")
    free = gpu["memory"]["free_mib"]
    if wanted is None:
        return _check("free_memory", SKIP, "%s MiB free; no min_free_memory_mib set" % free, gpu=gpu, value=free)
    if free is None:
        return _check("free_memory", SKIP, "free memory not reported", gpu=gpu, threshold=">= %d MiB" % wanted)
    ok = free >= wanted
    return _check("free_memory", PASS if ok else FAIL, "%d MiB free, at least %d MiB required" % (free, wanted), gpu=gpu,
                  value=free, threshold=">= %d MiB" % wanted,
                  action=None if ok else "stop the processes holding GPU memory (see processes) or lower min_free_memory_mib")


def _check_processes(gpu, params):
    procs = gpu["processes"]
    if params.get("allow_compute_processes", True):
        return _check("compute_processes", SKIP, "%s compute process(es); allow_compute_processes is true"
                      % ("unknown" if procs is None else len(procs)), gpu=gpu, value=None if procs is None else len(procs))
    if procs is None:
        return _check("compute_processes", SKIP, "compute processes not reported", gpu=gpu)
    allowed = set(params.get("allowed_process_names") or [])
    foreign = [p for p in procs if _proc_basename(p.get("name")) not in allowed]
    desc = ", ".join("pid %s (%s, %s MiB)" % (p["pid"], p.get("name") or "?", p.get("used_memory_mib")) for p in foreign)
    if foreign:
        return _check("compute_processes", FAIL, "%d foreign compute process(es): %s" % (len(foreign), desc), gpu=gpu,
                      value=[p["pid"] for p in foreign], threshold="only %s" % (sorted(allowed) or "none"),
                      action="stop those processes; or add their names to allowed_process_names")
    return _check("compute_processes", PASS, "no foreign compute processes (%d allowed running)" % len(procs), gpu=gpu,
                  value=[], threshold="only %s" % (sorted(allowed) or "none"))


def _proc_basename(name):
    if not name:
        return name
    return name.rstrip("/").split("/")[-1]


def xid_checks(gpus, events, note, params):
    seconds = params.get("xid_watch_seconds") or 0
    if seconds <= 0:
        return [_check("xid_events", SKIP, "xid_watch_seconds is 0: no XID watch")]
    if events is None:
        return [_check("xid_events", SKIP, note)]
    ignore = set(params.get("xid_ignore") or [])
    by_index = dict((g["index"], g) for g in gpus)
    checks = []
    bad = [e for e in events if e["xid"] not in ignore]
    for index in sorted(set(e["index"] for e in bad), key=lambda i: -1 if i is None else i):
        gpu = by_index.get(index)
        mine = [e for e in bad if e["index"] == index]
        text = "; ".join("XID %d at +%.1fs: %s" % (e["xid"], e["seconds"], e["meaning"]) for e in mine)
        actions = []
        for e in mine:
            if e["action"] not in actions:
                actions.append("XID %d: %s" % (e["xid"], e["action"]))
        checks.append(_check("xid_events", FAIL, "%d XID event(s) in %ss: %s" % (len(mine), seconds, text), gpu=gpu,
                             value=[e["xid"] for e in mine], threshold="no XID outside xid_ignore",
                             action="; ".join(actions) + "; or add the code to xid_ignore"))
    if not checks:
        checks.append(_check("xid_events", PASS, "no XID event in %ss (%d ignored)" % (seconds, len(events) - len(bad)),
                             value=[e["xid"] for e in events], threshold="no XID outside xid_ignore"))
    return checks


# --------------------------------------------------------------------------- message
def failure_message(checks, gpus, gpu_count):
    """ONE message listing every failing check, grouped per GPU."""
    failed = [c for c in checks if c["status"] == FAIL]
    if not failed:
        return None
    gpus_failing = sorted(set(c["gpu"] for c in failed if c["gpu"] is not None))
    lines = ["GPU health check failed: %d check(s) failed on %d of %d GPU(s)%s."
             % (len(failed), len(gpus_failing), gpu_count,
                " and on the host" if any(c["gpu"] is None for c in failed) else "")]
    host = [c for c in failed if c["gpu"] is None]
    if host:
        lines.append("Host:")
        lines.extend(_lines(host))
    by_index = dict((g["index"], g) for g in gpus)
    for index in gpus_failing:
        gpu = by_index.get(index, {})
        lines.append("GPU %s (%s, uuid %s, serial %s, PCI bus %s):"
                     % (index, gpu.get("name") or "?", gpu.get("uuid") or "?", gpu.get("serial") or "?",
                        gpu.get("pci_bus_id") or "?"))
        lines.extend(_lines([c for c in failed if c["gpu"] == index]))
    lines.append("Set fail_on_unhealthy: false to get these results without failing.")
    return "\n".join(lines)


def _lines(checks):
    out = []
    for c in checks:
        out.append("  - %s: %s [value: %s; threshold: %s]. Action: %s."
                   % (c["name"], c["message"], _fmt(c["value"]), _fmt(c["threshold"]), c["action"] or "none"))
    return out


def _fmt(value):
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "none"
    if isinstance(value, dict):
        return ", ".join("%s=%s" % kv for kv in sorted(value.items()))
    return str(value)


# --------------------------------------------------------------------------- driver
def validate_params(params):
    """Raise GpuHealthError for option values that make no sense (names the option)."""
    if params.get("expected_gpu_count") is not None and params.get("min_gpu_count") is not None:
        raise GpuHealthError("expected_gpu_count (%s) and min_gpu_count (%s) are both set: set only one"
                             % (params["expected_gpu_count"], params["min_gpu_count"]))
    for key in ("expected_gpu_count", "min_gpu_count", "max_volatile_uncorrected_ecc", "max_retired_pages",
                "min_free_memory_mib", "temperature_margin_c"):
        value = params.get(key)
        if value is not None and value < 0:
            raise GpuHealthError("%s is %s: it must be 0 or more" % (key, value))
    for key in ("pcie_min_width", "pcie_min_gen"):
        value = params.get(key)
        if value is not None and value < 1:
            raise GpuHealthError("%s is %s: it must be 1 or more" % (key, value))
    seconds = params.get("xid_watch_seconds") or 0
    if seconds < 0 or seconds > 3600:
        raise GpuHealthError("xid_watch_seconds is %s: it must be between 0 and 3600" % seconds)
    for key in ("min_driver_version", "min_compute_capability"):
        value = params.get(key)
        if value:
            try:
                parse_version(value)
            except ValueError:
                raise GpuHealthError("%s is %r: write it as dotted numbers, e.g. %s"
                                     % (key, value, "550.54.15" if key == "min_driver_version" else "8.0"))
    unknown = [n for n in params.get("fail_on_clock_events") or [] if n not in CLOCK_EVENT_NAMES]
    if unknown:
        raise GpuHealthError("fail_on_clock_events has unknown reason(s) %s: use names from %s"
                             % (", ".join(unknown), ", ".join(CLOCK_EVENT_NAMES)))


def evaluate(nvml, params, clock=time.perf_counter, threads=None):
    """Init NVML, collect, check, shut down.  Returns the module's result (without changed/msg).

    ``threads``: how many GPUs collect() reads at the same time (None: its default; 1: one
    after the other, as before 2026-11-29).

    Raises NvmlUnavailable when NVML cannot start (the module decides whether that fails),
    GpuHealthError for bad parameters.
    """
    merged = dict(DEFAULTS)
    merged.update(params)
    validate_params(merged)
    start = clock()
    try:
        nvml.init()
    except NvmlError as exc:
        raise NvmlUnavailable("NVML could not be initialised: %s" % _error_text(exc))
    init_ms = round((clock() - start) * 1000.0, 3)
    try:
        try:
            snap = collect(nvml, clock=clock, threads=threads)
        except NvmlError as exc:
            raise NvmlUnavailable("NVML was initialised but could not list the GPUs: %s" % _error_text(exc))
        events, note = [], None
        if merged["xid_watch_seconds"]:
            events, note = watch_xid(nvml, snap["handles"], merged["xid_watch_seconds"])
    finally:
        nvml.shutdown()
    if not snap["devices"] and merged["gpu_required"]:
        raise NvmlUnavailable("NVML was initialised (driver %s) but found no GPU" % snap["driver_version"])
    gpus = [gpu_facts(d) for d in snap["devices"]]
    cuda = snap["cuda_driver_version"]
    checks = host_checks(len(gpus), snap["driver_version"], merged)
    for gpu in gpus:
        checks.extend(gpu_checks(gpu, merged))
    checks.extend(xid_checks(gpus, events, note, merged))
    failed = [c for c in checks if c["status"] == FAIL]
    return {
        "nvml_available": True,
        "healthy": not failed,
        "driver_version": snap["driver_version"],
        "cuda_driver_version": cuda_version_string(cuda),
        "nvml_version": snap["nvml_version"],
        "gpu_count": len(gpus),
        "gpus": gpus,
        "gpu_facts": summarize(gpus),
        "checks": checks,
        "failed_checks": failed,
        "xid_events": events if events is not None else [],
        "xid_watch_note": note,
        "timing_ms": {"init": init_ms, "collect": snap["collect_ms"]},
        "unhealthy_message": failure_message(checks, gpus, len(gpus)),
    }


def unavailable_result(reason):
    """Result for a host without NVML when gpu_required is false."""
    return {
        "nvml_available": False,
        "healthy": True,
        "driver_version": None,
        "cuda_driver_version": None,
        "nvml_version": None,
        "gpu_count": 0,
        "gpus": [],
        "gpu_facts": summarize([]),
        "checks": [_check("nvml", SKIP, "%s; gpu_required is false, so this host passes without GPUs" % reason)],
        "failed_checks": [],
        "xid_events": [],
        "xid_watch_note": None,
        "timing_ms": {},
        "unhealthy_message": None,
    }
