# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pynvml adapter, run through the INSTALLED nvidia-ml-py against a fake libnvidia-ml.

Proves the adapter's function names, argument counts and structure fields against the real
bindings (no GPU needed), and its error translation, fallbacks and XID event loop.
"""

from __future__ import annotations

import pytest

from ansible_collections.onprem.llm_serving.plugins.module_utils import _gpu_health as gh
from ansible_collections.onprem.llm_serving.plugins.module_utils import _nvml
from ansible_collections.onprem.llm_serving.tests.fixtures.nvml.fake_libnvml import FakeLibNvml
from ansible_collections.onprem.llm_serving.tests.fixtures.nvml.fake_nvml import FakeNvml

pynvml = pytest.importorskip("pynvml")


@pytest.fixture
def lib(monkeypatch):
    def make(count=1):
        fake = FakeLibNvml(pynvml, count=count)
        monkeypatch.setattr(pynvml, "nvmlLib", fake)
        pynvml._nvmlGetFunctionPointer_cache.clear()
        return fake
    yield make
    pynvml._nvmlGetFunctionPointer_cache.clear()


class Clock(object):
    """A clock that advances 0.1 s per reading."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 0.1
        return self.now


def test_every_field_through_real_pynvml_matches_the_fake(lib):
    fake_lib = lib()
    real = gh.evaluate(_nvml.PynvmlBackend(), {})
    replay = gh.evaluate(FakeNvml(), {})
    for key in ("driver_version", "cuda_driver_version", "nvml_version", "gpu_count", "gpu_facts", "healthy"):
        assert real[key] == replay[key], key
    assert real["gpus"] == replay["gpus"]
    # the real bindings' current names were used, not the deprecated ones
    assert "nvmlDeviceGetCurrentClocksEventReasons" in fake_lib.calls
    assert "nvmlDeviceGetCurrentClocksThrottleReasons" not in fake_lib.calls
    assert "nvmlDeviceGetRetiredPages_v2" in fake_lib.calls
    assert "nvmlDeviceGetComputeRunningProcesses_v3" in fake_lib.calls


def test_not_supported_becomes_nvml_not_supported(lib):
    lib()
    backend = _nvml.PynvmlBackend()
    backend.init()
    handle = backend.device_handle(0)
    with pytest.raises(_nvml.NvmlNotSupported) as info:
        backend.read(handle, "retired_pages_dbe")
    assert info.value.code == 3
    assert str(info.value) == "Not Supported"


def test_gpu_lost_becomes_nvml_gpu_lost(lib):
    fake_lib = lib(count=2)
    fake_lib.entries[1]["temperature"] = {"ok": False, "code": 15}
    result = gh.evaluate(_nvml.PynvmlBackend(), {})
    assert result["gpus"][1]["lost"] is True
    assert result["gpus"][1]["errors"] == {"temperature": "GPU is lost (NVML error 15)"}


def test_init_failure(lib):
    fake_lib = lib()
    fake_lib.init_code = 9
    with pytest.raises(_nvml.NvmlInitError) as info:
        _nvml.PynvmlBackend().init()
    assert info.value.code == 9
    assert "Driver Not Loaded" in str(info.value)


def test_library_missing():
    class NoLib(object):
        NVMLError = pynvml.NVMLError

        @staticmethod
        def nvmlInit():
            raise pynvml.NVMLError(12)

    with pytest.raises(_nvml.NvmlInitError, match="NVML Shared Library Not Found"):
        _nvml.PynvmlBackend(nvml=NoLib()).init()


def test_memory_v2_reports_reserved(lib):
    fake_lib = lib()
    mib = 1024 * 1024
    fake_lib.memory_v2[0] = {"total": 81559 * mib, "reserved": 480 * mib, "free": 81079 * mib, "used": 0}
    gpu = gh.evaluate(_nvml.PynvmlBackend(), {})["gpus"][0]
    assert gpu["memory"] == {"total_mib": 81559, "used_mib": 0, "free_mib": 81079, "reserved_mib": 480}


def test_memory_v2_of_the_h200_rounds_up_like_nvidia_smi(lib):
    """The H200's real bytes (tests/fixtures/nvml/h200-mib-samples.json, state "context") through real pynvml."""
    fake_lib = lib()
    fake_lib.memory_v2[0] = {"total": 150754820096, "reserved": 644939776, "free": 149458911232, "used": 650969088}
    gpu = gh.evaluate(_nvml.PynvmlBackend(), {})["gpus"][0]
    assert gpu["memory"] == {"total_mib": 143771, "used_mib": 621, "free_mib": 142536, "reserved_mib": 616}


def test_four_gpus_through_real_pynvml_in_threads_equal_one_after_the_other(lib):
    fake_lib = lib(count=4)
    for index in range(4):
        fake_lib.memory_v2[index] = {"total": 150754820096, "reserved": 644939776, "free": 150109880320 - index * 2 ** 21,
                                     "used": index * 2 ** 21}
    parallel = gh.evaluate(_nvml.PynvmlBackend(), {})
    sequential = gh.evaluate(_nvml.PynvmlBackend(), {}, threads=1)
    assert parallel["gpus"] == sequential["gpus"]
    assert [g["memory"]["used_mib"] for g in parallel["gpus"]] == [0, 2, 4, 6]
    assert parallel["healthy"] is True


def test_old_driver_without_clock_event_reasons_falls_back(lib, monkeypatch):
    fake_lib = lib()
    monkeypatch.delattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons")
    gpu = gh.evaluate(_nvml.PynvmlBackend(), {})["gpus"][0]
    assert gpu["clock_event_reasons"]["active"] == ["gpu_idle"]
    assert "nvmlDeviceGetCurrentClocksThrottleReasons" in fake_lib.calls


def test_driver_without_v3_processes_uses_v2(lib):
    fake_lib = lib()
    fake_lib.missing.add("nvmlDeviceGetComputeRunningProcesses_v3")
    fake_lib.processes[0] = [(4242, 2048 * 1024 * 1024)]
    gpu = gh.evaluate(_nvml.PynvmlBackend(), {})["gpus"][0]
    assert gpu["processes"] == [{"pid": 4242, "name": "/usr/bin/proc4242", "used_memory_mib": 2048}]
    assert "nvmlDeviceGetComputeRunningProcesses_v2" in fake_lib.calls


def test_retired_pages_counted(lib):
    fake_lib = lib()
    fake_lib.entries[0]["retired_pages_dbe"] = {"ok": True, "value": 3}
    fake_lib.entries[0]["retired_pages_sbe"] = {"ok": True, "value": 0}
    fake_lib.entries[0]["retired_pages_pending"] = {"ok": True, "value": 0}
    gpu = gh.evaluate(_nvml.PynvmlBackend(), {})["gpus"][0]
    assert gpu["retired_pages"] == {"single_bit_ecc": 0, "double_bit_ecc": 3, "pending": False}


def test_missing_function_is_a_field_error_not_a_crash(lib):
    fake_lib = lib()
    fake_lib.missing.add("nvmlDeviceGetGpuMaxPcieLinkGeneration")
    gpu = gh.evaluate(_nvml.PynvmlBackend(), {})["gpus"][0]
    assert gpu["errors"] == {"pcie_gen_gpu_max": "Function Not Found (NVML error 13)"}


def test_binding_type_error_is_a_field_error(lib, monkeypatch):
    lib()

    def broken(handle):
        raise TypeError("nvmlDeviceGetSerial() missing 1 required positional argument")
    monkeypatch.setattr(pynvml, "nvmlDeviceGetSerial", broken)
    gpu = gh.evaluate(_nvml.PynvmlBackend(), {})["gpus"][0]
    assert gpu["errors"]["serial"].startswith("TypeError: nvmlDeviceGetSerial()")


def test_unknown_field(lib):
    lib()
    backend = _nvml.PynvmlBackend()
    with pytest.raises(ValueError):
        backend.read(None, "fan_speed")


def test_xid_watch_reads_events_until_the_deadline(lib):
    fake_lib = lib(count=2)
    fake_lib.events = [(1, 0x8, 79), (0, 0x8, 48)]
    backend = _nvml.PynvmlBackend(clock=Clock())
    backend.init()
    handles = [backend.device_handle(0), backend.device_handle(1)]
    events = backend.wait_xid_events(handles, 1.0)
    assert [(e["index"], e["xid"]) for e in events] == [(1, 79), (0, 48)]
    assert fake_lib.registered == [(0, 0x8), (1, 0x8)]
    waits = [c[1] for c in fake_lib.calls if isinstance(c, tuple)]
    assert waits and all(0 < w <= 1000 for w in waits)
    assert "nvmlEventSetFree" in fake_lib.calls


def test_xid_watch_unsupported(lib):
    fake_lib = lib()
    fake_lib.entries[0]["supported_event_types"] = {"ok": True, "value": 0x1}
    backend = _nvml.PynvmlBackend()
    backend.init()
    with pytest.raises(_nvml.NvmlNotSupported):
        backend.wait_xid_events([backend.device_handle(0)], 1)
    assert "nvmlEventSetFree" in fake_lib.calls


def test_xid_through_evaluate(lib):
    fake_lib = lib()
    fake_lib.events = [(0, 0x8, 95)]
    result = gh.evaluate(_nvml.PynvmlBackend(), {"xid_watch_seconds": 0.3})
    assert [e["xid"] for e in result["xid_events"]] == [95]
    assert "Uncontained ECC error" in result["unhealthy_message"]


@pytest.mark.parametrize("code, cls", [(3, _nvml.NvmlNotSupported), (15, _nvml.NvmlGpuLost), (10, _nvml.NvmlTimeout),
                                       (4, _nvml.NvmlError), (999, _nvml.NvmlError)])
def test_error_for_code(code, cls):
    err = _nvml.error_for_code(code, call="x")
    assert err.__class__.__name__ == cls.__name__
    assert isinstance(err, cls)
    assert err.code == code and err.call == "x"


def test_older_pynvml_without_a_binding_fails_that_field_only(lib, monkeypatch):
    lib()
    monkeypatch.delattr(pynvml, "nvmlDeviceGetGpuMaxPcieLinkGeneration")
    result = gh.evaluate(_nvml.PynvmlBackend(), {})
    gpu = result["gpus"][0]
    assert list(gpu["errors"]) == ["pcie_gen_gpu_max"]
    assert gpu["errors"]["pcie_gen_gpu_max"].startswith("AttributeError: ")
    assert gpu["pcie"]["gen_max"] == 5
    assert result["healthy"] is True
