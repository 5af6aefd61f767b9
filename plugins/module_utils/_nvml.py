# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""NVML access for gpu_health: a small interface, typed errors, and the pynvml adapter.

Everything above this file (``_gpu_health.py``, the module) talks to an object with the
methods of :class:`NvmlInterface`.  The real one, :class:`PynvmlBackend`, wraps nvidia-ml-py
(``pynvml``); unit tests use a fake built from recorded NVML answers.

Every per-device field is read through ``read(handle, field)`` and comes back as plain Python
data (ints, strings, tuples, lists of dicts), never as ctypes structures, so a recording can
reproduce it exactly.  NVML failures are raised as :class:`NvmlError` subclasses keyed by the
NVML return code, so callers never need pynvml to tell "Not Supported" from "GPU is lost".

This file imports cleanly without pynvml: ``HAS_PYNVML`` says whether it is there.
"""

from __future__ import annotations

import ctypes
import functools
import time

try:
    import pynvml
    HAS_PYNVML = True
    PYNVML_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - depends on the host
    pynvml = None
    HAS_PYNVML = False
    PYNVML_IMPORT_ERROR = exc


# NVML return codes (nvml.h); duplicated so this file works without pynvml.
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_UNKNOWN = 999

# nvmlEventTypeXidCriticalError (nvml.h)
EVENT_TYPE_XID_CRITICAL_ERROR = 0x0000000000000008

# Every field ``read()`` knows, in the order they are collected.  The values each returns:
#   name, uuid, serial, pci_bus_id, vbios: str
#   memory: dict(total=, used=, free=, reserved=) in bytes (reserved None from the v1 call)
#   temperature, temp_slowdown_threshold, temp_shutdown_threshold: int, degrees C
#   power_usage_mw, power_limit_mw: int, milliwatts
#   utilization: dict(gpu=, memory=) percent
#   ecc_mode: (current, pending) ints, 1 = enabled
#   ecc_{volatile,aggregate}_{corrected,uncorrected}: int
#   retired_pages_sbe, retired_pages_dbe: int (number of retired pages); retired_pages_pending: int 0/1
#   remapped_rows: (correctable, uncorrectable, pending, failure) ints
#   persistence_mode, compute_mode: int; mig_mode: (current, pending) ints
#   pcie_gen_cur, pcie_gen_max, pcie_gen_gpu_max, pcie_width_cur, pcie_width_max: int
#   clock_event_reasons: int bit mask; clock_sm, clock_sm_max: int MHz
#   cuda_cc: (major, minor)
#   processes: list of dict(pid=, used_memory=bytes or None, name=str or None)
#   supported_event_types: int bit mask
DEVICE_FIELDS = (
    "name", "uuid", "serial", "pci_bus_id", "vbios",
    "memory",
    "temperature", "temp_slowdown_threshold", "temp_shutdown_threshold",
    "power_usage_mw", "power_limit_mw",
    "utilization",
    "ecc_mode",
    "ecc_volatile_corrected", "ecc_volatile_uncorrected",
    "ecc_aggregate_corrected", "ecc_aggregate_uncorrected",
    "retired_pages_sbe", "retired_pages_dbe", "retired_pages_pending",
    "remapped_rows",
    "persistence_mode", "compute_mode", "mig_mode",
    "pcie_gen_cur", "pcie_gen_max", "pcie_gen_gpu_max", "pcie_width_cur", "pcie_width_max",
    "clock_event_reasons", "clock_sm", "clock_sm_max",
    "cuda_cc",
    "processes",
    "supported_event_types",
)

_ERROR_TEXT = {
    1: "Uninitialized",
    2: "Invalid Argument",
    3: "Not Supported",
    4: "Insufficient Permissions",
    6: "Not Found",
    9: "Driver Not Loaded",
    10: "Timeout",
    12: "NVML Shared Library Not Found",
    13: "Function Not Found",
    15: "GPU is lost",
    16: "GPU requires restart",
    18: "RM has detected an NVML/RM version mismatch",
    999: "Unknown Error",
}


class NvmlError(Exception):
    """An NVML call failed.  ``code`` is the NVML return code (None when not from NVML)."""

    def __init__(self, message, code=None, call=None):
        super(NvmlError, self).__init__(message)
        self.code = code
        self.call = call

    @property
    def text(self):
        return str(self)


class NvmlNotSupported(NvmlError):
    """NVML_ERROR_NOT_SUPPORTED: the GPU or driver does not offer this field."""


class NvmlGpuLost(NvmlError):
    """NVML_ERROR_GPU_IS_LOST: the GPU stopped answering (fell off the bus, XID 79)."""


class NvmlInitError(NvmlError):
    """nvmlInit failed: no driver, no library, or a driver/library mismatch."""


class NvmlTimeout(NvmlError):
    """NVML_ERROR_TIMEOUT: nvmlEventSetWait saw no event within its timeout."""


def error_for_code(code, call=None, message=None):
    """Build the typed exception for an NVML return code."""
    text = message or _ERROR_TEXT.get(code, "NVML error %s" % code)
    if code == NVML_ERROR_NOT_SUPPORTED:
        cls = NvmlNotSupported
    elif code == NVML_ERROR_GPU_IS_LOST:
        cls = NvmlGpuLost
    elif code == NVML_ERROR_TIMEOUT:
        cls = NvmlTimeout
    else:
        cls = NvmlError
    return cls(text, code=code, call=call)


class NvmlInterface(object):
    """What gpu_health needs from NVML.  Subclasses: PynvmlBackend, and the tests' fake."""

    def init(self):
        raise NotImplementedError

    def shutdown(self):
        raise NotImplementedError

    def driver_version(self):
        raise NotImplementedError

    def nvml_version(self):
        raise NotImplementedError

    def cuda_driver_version(self):
        """The CUDA driver API version as NVML reports it, e.g. 13000 for 13.0."""
        raise NotImplementedError

    def device_count(self):
        raise NotImplementedError

    def device_handle(self, index):
        raise NotImplementedError

    def read(self, handle, field):
        """Return one field of DEVICE_FIELDS for a device, or raise an NvmlError subclass."""
        raise NotImplementedError

    def wait_xid_events(self, handles, seconds):
        """Watch the devices for XID critical errors for ``seconds``.

        Returns a list of dicts ``{"index": int or None, "xid": int, "seconds": float}``
        (seconds since the watch started).  Raises NvmlNotSupported when the devices cannot
        report XID events.
        """
        raise NotImplementedError


def _decode(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _int_tuple(values):
    return tuple(int(v) for v in values)


# field -> (pynvml function, arguments after the device handle, conversion of its answer).
# Looked up by name at call time, so an older nvidia-ml-py without one of them fails that
# field only (AttributeError -> NvmlError), not the whole module.
_SIMPLE_READERS = {
    "name": ("nvmlDeviceGetName", (), _decode),
    "uuid": ("nvmlDeviceGetUUID", (), _decode),
    "serial": ("nvmlDeviceGetSerial", (), _decode),
    "vbios": ("nvmlDeviceGetVbiosVersion", (), _decode),
    "temperature": ("nvmlDeviceGetTemperature", (0,), int),  # NVML_TEMPERATURE_GPU
    "temp_slowdown_threshold": ("nvmlDeviceGetTemperatureThreshold", (1,), int),  # ..._THRESHOLD_SLOWDOWN
    "temp_shutdown_threshold": ("nvmlDeviceGetTemperatureThreshold", (0,), int),  # ..._THRESHOLD_SHUTDOWN
    "power_usage_mw": ("nvmlDeviceGetPowerUsage", (), int),
    "ecc_mode": ("nvmlDeviceGetEccMode", (), _int_tuple),
    # nvmlDeviceGetTotalEccErrors(handle, errorType 0 corrected / 1 uncorrected, counterType 0 volatile / 1 aggregate)
    "ecc_volatile_corrected": ("nvmlDeviceGetTotalEccErrors", (0, 0), int),
    "ecc_volatile_uncorrected": ("nvmlDeviceGetTotalEccErrors", (1, 0), int),
    "ecc_aggregate_corrected": ("nvmlDeviceGetTotalEccErrors", (0, 1), int),
    "ecc_aggregate_uncorrected": ("nvmlDeviceGetTotalEccErrors", (1, 1), int),
    "retired_pages_pending": ("nvmlDeviceGetRetiredPagesPendingStatus", (), int),
    "remapped_rows": ("nvmlDeviceGetRemappedRows", (), _int_tuple),
    "persistence_mode": ("nvmlDeviceGetPersistenceMode", (), int),
    "compute_mode": ("nvmlDeviceGetComputeMode", (), int),
    "mig_mode": ("nvmlDeviceGetMigMode", (), _int_tuple),
    "pcie_gen_cur": ("nvmlDeviceGetCurrPcieLinkGeneration", (), int),
    "pcie_gen_max": ("nvmlDeviceGetMaxPcieLinkGeneration", (), int),
    "pcie_gen_gpu_max": ("nvmlDeviceGetGpuMaxPcieLinkGeneration", (), int),
    "pcie_width_cur": ("nvmlDeviceGetCurrPcieLinkWidth", (), int),
    "pcie_width_max": ("nvmlDeviceGetMaxPcieLinkWidth", (), int),
    "clock_sm": ("nvmlDeviceGetClockInfo", (1,), int),  # NVML_CLOCK_SM
    "clock_sm_max": ("nvmlDeviceGetMaxClockInfo", (1,), int),
    "cuda_cc": ("nvmlDeviceGetCudaComputeCapability", (), _int_tuple),
    "supported_event_types": ("nvmlDeviceGetSupportedEventTypes", (), int),
}

# field -> method of PynvmlBackend, for answers that need more than one call or a fallback
_CUSTOM_READERS = {
    "pci_bus_id": "_pci_bus_id",
    "memory": "_memory",
    "power_limit_mw": "_power_limit",
    "utilization": "_utilization",
    "retired_pages_sbe": "_retired_pages_sbe",
    "retired_pages_dbe": "_retired_pages_dbe",
    "clock_event_reasons": "_clock_event_reasons",
    "processes": "_processes",
}


class _NeverRaised(Exception):
    """Stands in for an exception class the installed pynvml does not have."""


class PynvmlBackend(NvmlInterface):
    """The real NVML, through nvidia-ml-py.  Requires HAS_PYNVML."""

    def __init__(self, nvml=None, clock=time.monotonic):
        self._nvml = nvml if nvml is not None else pynvml
        self._clock = clock

    # -- error translation -------------------------------------------------
    def _call(self, call, func, *args):
        try:
            return func(*args)
        except self._nvml.NVMLError as exc:
            raise error_for_code(getattr(exc, "value", None), call=call, message=str(exc))

    # -- library -----------------------------------------------------------
    def init(self):
        try:
            self._nvml.nvmlInit()
        except self._nvml.NVMLError as exc:
            raise NvmlInitError(str(exc), code=getattr(exc, "value", None), call="nvmlInit")
        except OSError as exc:
            raise NvmlInitError(str(exc), call="nvmlInit")

    def shutdown(self):
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError:
            pass

    def driver_version(self):
        return _decode(self._call("nvmlSystemGetDriverVersion", self._nvml.nvmlSystemGetDriverVersion))

    def nvml_version(self):
        return _decode(self._call("nvmlSystemGetNVMLVersion", self._nvml.nvmlSystemGetNVMLVersion))

    def cuda_driver_version(self):
        func = getattr(self._nvml, "nvmlSystemGetCudaDriverVersion_v2", None) or self._nvml.nvmlSystemGetCudaDriverVersion
        return self._call("nvmlSystemGetCudaDriverVersion", func)

    def device_count(self):
        return self._call("nvmlDeviceGetCount", self._nvml.nvmlDeviceGetCount)

    def device_handle(self, index):
        return self._call("nvmlDeviceGetHandleByIndex", self._nvml.nvmlDeviceGetHandleByIndex, index)

    def read(self, handle, field):
        if field in _SIMPLE_READERS:
            name, extra, convert = _SIMPLE_READERS[field]
            reader = functools.partial(self._simple, name, extra, convert)
        elif field in _CUSTOM_READERS:
            reader = getattr(self, _CUSTOM_READERS[field])
        else:
            raise ValueError("unknown NVML field %r" % field)
        try:
            return self._call(field, reader, handle)
        except NvmlError:
            raise
        except (TypeError, AttributeError) as exc:
            # A binding whose signature or name differs from this code's expectation
            # (e.g. an older nvidia-ml-py): report the field as failed, do not crash.
            raise NvmlError("%s: %s" % (type(exc).__name__, exc), code=None, call=field)

    # -- readers ----------------------------------------------------------------
    def _simple(self, name, extra, convert, handle):
        return convert(getattr(self._nvml, name)(handle, *extra))

    def _pci_bus_id(self, handle):
        info = self._nvml.nvmlDeviceGetPciInfo(handle)
        return _decode(info.busId)

    def _memory(self, handle):
        version = getattr(self._nvml, "nvmlMemory_v2", None)
        if version is not None:
            try:
                mem = self._nvml.nvmlDeviceGetMemoryInfo(handle, version=version)
                return {"total": int(mem.total), "used": int(mem.used), "free": int(mem.free),
                        "reserved": int(mem.reserved)}
            except self._nvml.NVMLError as exc:
                if getattr(exc, "value", None) not in (NVML_ERROR_FUNCTION_NOT_FOUND, NVML_ERROR_NOT_SUPPORTED):
                    raise
        mem = self._nvml.nvmlDeviceGetMemoryInfo(handle)
        return {"total": int(mem.total), "used": int(mem.used), "free": int(mem.free), "reserved": None}

    def _power_limit(self, handle):
        try:
            return self._nvml.nvmlDeviceGetEnforcedPowerLimit(handle)
        except self._nvml.NVMLError as exc:
            if getattr(exc, "value", None) != NVML_ERROR_NOT_SUPPORTED:
                raise
        return self._nvml.nvmlDeviceGetPowerManagementLimit(handle)

    def _utilization(self, handle):
        util = self._nvml.nvmlDeviceGetUtilizationRates(handle)
        return {"gpu": int(util.gpu), "memory": int(util.memory)}

    def _retired_pages(self, handle, cause):
        """Number of pages retired for a cause: 0 multiple single-bit ECC errors, 1 double-bit ECC error."""
        func = getattr(self._nvml, "nvmlDeviceGetRetiredPages_v2", None) or self._nvml.nvmlDeviceGetRetiredPages
        return len(func(handle, cause))

    def _retired_pages_sbe(self, handle):
        return self._retired_pages(handle, 0)

    def _retired_pages_dbe(self, handle):
        return self._retired_pages(handle, 1)

    def _clock_event_reasons(self, handle):
        func = getattr(self._nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
        if func is None:  # nvidia-ml-py older than 12.535
            func = self._nvml.nvmlDeviceGetCurrentClocksThrottleReasons
        return int(func(handle))

    def _processes(self, handle):
        mismatch = getattr(self._nvml, "NVMLLibraryMismatchError", None) or _NeverRaised
        try:
            procs = self._nvml.nvmlDeviceGetComputeRunningProcesses(handle)
        except mismatch:
            # nvidia-ml-py newer than the driver: the unversioned call raises
            # NVMLLibraryMismatchError; the _v2 call works on older drivers.
            procs = self._nvml.nvmlDeviceGetComputeRunningProcesses_v2(handle)
        result = []
        for proc in procs:
            name = None
            try:
                name = _decode(self._nvml.nvmlSystemGetProcessName(proc.pid))
            except self._nvml.NVMLError:
                name = None
            used = getattr(proc, "usedGpuMemory", None)
            result.append({"pid": int(proc.pid), "used_memory": None if used is None else int(used), "name": name})
        return result

    # -- events --------------------------------------------------------------
    def wait_xid_events(self, handles, seconds):
        nvml = self._nvml
        event_set = self._call("nvmlEventSetCreate", nvml.nvmlEventSetCreate)
        index_of = {}
        try:
            registered = 0
            for index, handle in enumerate(handles):
                if handle is None:
                    continue
                try:
                    self._call("nvmlDeviceRegisterEvents", nvml.nvmlDeviceRegisterEvents,
                               handle, EVENT_TYPE_XID_CRITICAL_ERROR, event_set)
                    registered += 1
                except NvmlNotSupported:
                    continue
                index_of[self._handle_key(handle)] = index
            if not registered:
                raise NvmlNotSupported("no GPU supports XID critical error events", code=NVML_ERROR_NOT_SUPPORTED,
                                       call="nvmlDeviceRegisterEvents")
            events = []
            start = self._clock()
            deadline = start + float(seconds)
            while True:
                remaining_ms = int((deadline - self._clock()) * 1000)
                if remaining_ms <= 0:
                    break
                try:
                    data = self._call("nvmlEventSetWait", nvml.nvmlEventSetWait, event_set, remaining_ms)
                except NvmlTimeout:
                    break
                if int(data.eventType) & EVENT_TYPE_XID_CRITICAL_ERROR:
                    events.append({
                        "index": index_of.get(self._handle_key(data.device)),
                        "xid": int(data.eventData),
                        "seconds": round(self._clock() - start, 3),
                    })
            return events
        finally:
            try:
                nvml.nvmlEventSetFree(event_set)
            except nvml.NVMLError:
                pass

    @staticmethod
    def _handle_key(handle):
        """A hashable identity for a device handle (ctypes pointers compare by object)."""
        try:
            return ctypes.cast(handle, ctypes.c_void_p).value
        except (TypeError, ctypes.ArgumentError):
            return handle
