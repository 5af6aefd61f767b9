# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""gpu_health logic against the fake NVML built from the real H100 recording, plus faults."""

from __future__ import annotations

import pytest

from ansible_collections.onprem.llm_serving.plugins.module_utils import _gpu_health as gh
from ansible_collections.onprem.llm_serving.tests.fixtures.nvml.fake_nvml import FakeNvml, load_recording, recording_from_snapshot


def _by_name(result, name, gpu=0):
    found = [c for c in result["checks"] if c["name"] == name and c["gpu"] == gpu]
    assert len(found) == 1, (name, gpu, result["checks"])
    return found[0]


def _status(result):
    return dict(((c["name"], c["gpu"]), c["status"]) for c in result["checks"])


# ---------------------------------------------------------------------------- decoding
@pytest.mark.parametrize("mask, names", [
    (0, []),
    (0x1, ["gpu_idle"]),
    (0x4 | 0x40, ["sw_power_cap", "hw_thermal_slowdown"]),
    (0x8 | 0x80, ["hw_slowdown", "hw_power_brake_slowdown"]),
    (0x1FF, list(gh.CLOCK_EVENT_NAMES)),
    (0x200 | 0x1, ["gpu_idle", "unknown_0x200"]),
    (None, None),
])
def test_decode_clock_event_reasons(mask, names):
    assert gh.decode_clock_event_reasons(mask) == names


@pytest.mark.parametrize("code, words", [
    (13, "Graphics engine exception"),
    (31, "page fault"),
    (43, "stopped processing"),
    (48, "Double-bit"),
    (63, "row remapping recorded"),
    (64, "FAILED"),
    (74, "NVLink"),
    (79, "fallen off the bus"),
    (92, "single-bit"),
    (94, "Contained ECC"),
    (95, "Uncontained ECC"),
    (119, "GSP RPC timeout"),
    (12345, "XID 12345"),
])
def test_xid_meaning(code, words):
    meaning, action = gh.xid_meaning(code)
    assert words in meaning
    assert action


@pytest.mark.parametrize("value, text", [(13000, "13.0"), (12040, "12.4"), (11080, "11.8"), (None, None)])
def test_cuda_version_string(value, text):
    assert gh.cuda_version_string(value) == text


@pytest.mark.parametrize("text, parsed", [("580.159.04", (580, 159, 4)), ("9.0", (9, 0)), ("12", (12,))])
def test_parse_version(text, parsed):
    assert gh.parse_version(text) == parsed


@pytest.mark.parametrize("text", ["", "abc", "9.x"])
def test_parse_version_rejects(text):
    with pytest.raises(ValueError):
        gh.parse_version(text)


# ---------------------------------------------------------------------------- the recording, untouched
def test_recorded_h100_facts():
    fake = FakeNvml()
    result = gh.evaluate(fake, {})
    rec = load_recording()["devices"][0]
    assert result["healthy"] is True, result["unhealthy_message"]
    assert result["driver_version"] == "580.159.04"
    assert result["cuda_driver_version"] == "13.0"
    assert result["nvml_version"] == "13.580.159.04"
    assert result["gpu_count"] == 1
    gpu = result["gpus"][0]
    assert gpu["name"] == "NVIDIA H100 80GB HBM3"
    assert gpu["uuid"] == rec["uuid"]["value"]
    assert gpu["serial"] == "1753124022059"
    assert gpu["pci_bus_id"] == "00000000:00:06.0"
    assert gpu["vbios_version"] == "96.00.DA.00.0C"
    assert gpu["compute_capability"] == "9.0"
    assert gpu["memory"] == {"total_mib": 81559, "used_mib": 480, "free_mib": 81079, "reserved_mib": None}
    assert gpu["temperature"] == {"gpu_c": 32, "slowdown_c": 89, "shutdown_c": 95}
    assert gpu["power"] == {"draw_w": 78.84, "limit_w": 700.0}
    assert gpu["utilization"] == {"gpu_pct": 0, "memory_pct": 0}
    assert gpu["ecc"]["enabled"] is True and gpu["ecc"]["pending_enabled"] is True
    assert gpu["ecc"]["volatile"] == {"corrected": 0, "uncorrected": 0}
    assert gpu["ecc"]["aggregate"] == {"corrected": 1, "uncorrected": 0}
    assert gpu["remapped_rows"] == {"correctable": 0, "uncorrectable": 0, "pending": False, "failure": False}
    assert gpu["pcie"] == {"gen_current": 5, "gen_max": 5, "gen_gpu_max": 5, "width_current": 16, "width_max": 16}
    assert gpu["clock_event_reasons"] == {"mask": 1, "active": ["gpu_idle"]}
    assert gpu["persistence_mode"] is True
    assert gpu["compute_mode"] == "Default"
    assert gpu["mig_mode"] == {"current": False, "pending": False}
    assert gpu["processes"] == []
    assert gpu["xid_events_supported"] is True
    assert gpu["lost"] is False and gpu["errors"] == {}


def test_recorded_not_supported_fields_are_unsupported_not_errors():
    result = gh.evaluate(FakeNvml(), {})
    gpu = result["gpus"][0]
    assert gpu["unsupported"] == ["retired_pages_dbe", "retired_pages_pending", "retired_pages_sbe"]
    assert gpu["retired_pages"] == {"single_bit_ecc": None, "double_bit_ecc": None, "pending": None}
    assert _by_name(result, "retired_pages")["status"] == "skip"
    assert result["healthy"] is True


def test_recorded_h100_check_statuses():
    result = gh.evaluate(FakeNvml(), {})
    assert _status(result) == {
        ("gpu_count", None): "skip",
        ("driver_version", None): "skip",
        ("gpu_accessible", 0): "pass",
        ("compute_capability", 0): "skip",
        ("ecc_uncorrected", 0): "pass",
        ("retired_pages", 0): "skip",
        ("row_remapping", 0): "pass",
        ("pcie_link", 0): "pass",
        ("temperature", 0): "pass",
        ("clock_events", 0): "pass",
        ("persistence_mode", 0): "pass",
        ("mig_mode", 0): "skip",
        ("free_memory", 0): "skip",
        ("compute_processes", 0): "skip",
        ("xid_events", None): "skip",
    }
    for check in result["checks"]:
        assert check["message"]


def test_summary_for_sizing():
    facts = gh.evaluate(FakeNvml(count=2), {})["gpu_facts"]
    assert facts["count"] == 2
    assert facts["memory_total_mib"] == [81559, 81559]
    assert facts["memory_total_mib_min"] == 81559
    assert facts["memory_total_mib_sum"] == 163118
    assert facts["compute_capabilities"] == ["9.0", "9.0"]
    assert facts["compute_capability_min"] == "9.0"


def test_nvml_is_shut_down_after_collecting():
    fake = FakeNvml()
    gh.evaluate(fake, {})
    assert fake.calls[0] == ("init",)
    assert fake.calls[-1] == ("shutdown",)
    assert fake.shutdown_count == 1


# ---------------------------------------------------------------------------- injected faults
@pytest.mark.parametrize("field, value, check, words", [
    ("ecc_volatile_uncorrected", 2, "ecc_uncorrected", "2 volatile uncorrected ECC error(s)"),
    ("remapped_rows", (0, 1, 1, 0), "row_remapping", "a row remap is pending"),
    ("remapped_rows", (3, 9, 0, 1), "row_remapping", "row remapping FAILED"),
    ("pcie_width_cur", 8, "pcie_link", "link width x8 is below x16"),
    ("pcie_gen_max", 4, "pcie_link", "Gen4 at most, Gen5 expected"),
    ("temperature", 86, "temperature", "GPU at 86 C, must stay below 84 C"),
    ("clock_event_reasons", 0x40 | 0x8, "clock_events", "hw_slowdown, hw_thermal_slowdown"),
    ("clock_event_reasons", 0x80, "clock_events", "hw_power_brake_slowdown"),
    ("persistence_mode", 0, "persistence_mode", "persistence mode is off"),
])
def test_fault_fails_its_check(field, value, check, words):
    fake = FakeNvml().set_value(0, field, value)
    result = gh.evaluate(fake, {})
    found = _by_name(result, check)
    assert found["status"] == "fail"
    assert words in found["message"]
    assert found["action"]
    assert result["healthy"] is False
    assert [c["name"] for c in result["failed_checks"]] == [check]
    assert words in result["unhealthy_message"]


def test_idle_pcie_gen_downclock_is_not_a_fault():
    fake = FakeNvml().set_value(0, "pcie_gen_cur", 1)
    result = gh.evaluate(fake, {})
    assert _by_name(result, "pcie_link")["status"] == "pass"


def test_pcie_thresholds_are_options():
    fake = FakeNvml().set_value(0, "pcie_width_cur", 8).set_value(0, "pcie_gen_max", 4)
    result = gh.evaluate(fake, {"pcie_min_width": 8, "pcie_min_gen": 4})
    assert _by_name(result, "pcie_link")["status"] == "pass"


def test_pending_page_retirement_on_older_gpu():
    fake = FakeNvml().set_value(0, "retired_pages_pending", 1).set_value(0, "retired_pages_dbe", 2)
    fake.set_value(0, "retired_pages_sbe", 1)
    result = gh.evaluate(fake, {})
    check = _by_name(result, "retired_pages")
    assert check["status"] == "fail"
    assert check["value"] == {"pending": True, "retired": 3}
    assert "reset the GPU" in check["action"]


def test_too_many_retired_pages():
    fake = FakeNvml().set_value(0, "retired_pages_pending", 0).set_value(0, "retired_pages_dbe", 61)
    fake.set_value(0, "retired_pages_sbe", 0)
    assert _by_name(gh.evaluate(fake, {}), "retired_pages")["status"] == "fail"
    assert _by_name(gh.evaluate(fake, {"max_retired_pages": 100}), "retired_pages")["status"] == "pass"


@pytest.mark.parametrize("params, temp, status", [
    ({}, 83, "pass"),
    ({}, 84, "fail"),
    ({"temperature_margin_c": 0}, 88, "pass"),
    ({"max_temperature_c": 70}, 70, "fail"),
    ({"max_temperature_c": 70}, 69, "pass"),
])
def test_temperature_threshold(params, temp, status):
    fake = FakeNvml().set_value(0, "temperature", temp)
    assert _by_name(gh.evaluate(fake, params), "temperature")["status"] == status


def test_temperature_without_threshold_is_skipped():
    fake = FakeNvml().set_error(0, "temp_slowdown_threshold", 3)
    result = gh.evaluate(fake, {})
    assert _by_name(result, "temperature")["status"] == "skip"
    assert "temp_slowdown_threshold" in result["gpus"][0]["unsupported"]


def test_sw_power_cap_is_not_a_failure_by_default():
    fake = FakeNvml().set_value(0, "clock_event_reasons", 0x4)
    assert _by_name(gh.evaluate(fake, {}), "clock_events")["status"] == "pass"
    result = gh.evaluate(fake, {"fail_on_clock_events": ["sw_power_cap"]})
    assert _by_name(result, "clock_events")["status"] == "fail"


def test_persistence_check_can_be_turned_off():
    fake = FakeNvml().set_value(0, "persistence_mode", 0)
    result = gh.evaluate(fake, {"require_persistence_mode": False})
    assert _by_name(result, "persistence_mode")["status"] == "skip"
    assert result["healthy"] is True


@pytest.mark.parametrize("mig, wanted, status", [
    ((0, 0), "disabled", "pass"),
    ((1, 1), "enabled", "pass"),
    ((0, 0), "enabled", "fail"),
    ((0, 1), "enabled", "fail"),
    ((1, 1), "any", "skip"),
])
def test_mig_mode(mig, wanted, status):
    fake = FakeNvml().set_value(0, "mig_mode", mig)
    check = _by_name(gh.evaluate(fake, {"expected_mig_mode": wanted}), "mig_mode")
    assert check["status"] == status
    if mig == (0, 1):
        assert "reset the GPU to apply the pending change" in check["action"]


def test_mig_unsupported_is_skipped():
    fake = FakeNvml().set_error(0, "mig_mode", 3)
    check = _by_name(gh.evaluate(fake, {"expected_mig_mode": "disabled"}), "mig_mode")
    assert check["status"] == "skip"


def test_ecc_disabled_when_required():
    fake = FakeNvml().set_value(0, "ecc_mode", (0, 0)).set_error(0, "ecc_volatile_uncorrected", 3)
    result = gh.evaluate(fake, {"require_ecc": True})
    assert _by_name(result, "ecc_mode")["status"] == "fail"
    assert _by_name(result, "ecc_uncorrected")["status"] == "skip"


def test_ecc_limit_is_an_option():
    fake = FakeNvml().set_value(0, "ecc_volatile_uncorrected", 2)
    assert _by_name(gh.evaluate(fake, {"max_volatile_uncorrected_ecc": 2}), "ecc_uncorrected")["status"] == "pass"


def test_free_memory_and_processes():
    procs = [{"pid": 4242, "used_memory": 40 * 1024 * gh.MIB, "name": "/usr/bin/python3"},
             {"pid": 77, "used_memory": 1024 * gh.MIB, "name": "/opt/vllm/bin/vllm"}]
    fake = FakeNvml().set_value(0, "processes", procs)
    fake.set_value(0, "memory", {"total": 81559 * gh.MIB, "used": 41000 * gh.MIB, "free": 40559 * gh.MIB, "reserved": 0})
    result = gh.evaluate(fake, {"min_free_memory_mib": 70000, "allow_compute_processes": False,
                                "allowed_process_names": ["vllm"]})
    mem = _by_name(result, "free_memory")
    assert mem["status"] == "fail" and mem["value"] == 40559
    proc = _by_name(result, "compute_processes")
    assert proc["status"] == "fail"
    assert proc["value"] == [4242]
    assert "pid 4242 (/usr/bin/python3, 40960 MiB)" in proc["message"]
    assert result["gpus"][0]["processes"][1] == {"pid": 77, "name": "/opt/vllm/bin/vllm", "used_memory_mib": 1024}


def test_only_allowed_processes_pass():
    procs = [{"pid": 77, "used_memory": None, "name": "/opt/vllm/bin/vllm"}]
    fake = FakeNvml().set_value(0, "processes", procs)
    result = gh.evaluate(fake, {"allow_compute_processes": False, "allowed_process_names": ["vllm"]})
    assert _by_name(result, "compute_processes")["status"] == "pass"


@pytest.mark.parametrize("params, count, status", [
    ({"expected_gpu_count": 8}, 8, "pass"),
    ({"expected_gpu_count": 8}, 7, "fail"),
    ({"min_gpu_count": 4}, 8, "pass"),
    ({"min_gpu_count": 4}, 3, "fail"),
    ({}, 8, "skip"),
])
def test_gpu_count(params, count, status):
    check = _by_name(gh.evaluate(FakeNvml(count=count), params), "gpu_count", gpu=None)
    assert check["status"] == status


def test_eight_gpu_host_with_one_missing_and_two_sick():
    fake = FakeNvml(count=8).remove_gpu(5)
    fake.set_value(2, "pcie_width_cur", 8)
    fake.set_value(6, "ecc_volatile_uncorrected", 4).set_value(6, "remapped_rows", (0, 2, 1, 0))
    result = gh.evaluate(fake, {"expected_gpu_count": 8})
    assert result["gpu_count"] == 7
    assert len(set(g["uuid"] for g in result["gpus"])) == 7
    failed = sorted((c["gpu"] if c["gpu"] is not None else -1, c["name"]) for c in result["failed_checks"])
    assert failed == [(-1, "gpu_count"), (2, "pcie_link"), (6, "ecc_uncorrected"), (6, "row_remapping")]
    msg = result["unhealthy_message"]
    assert msg.startswith("GPU health check failed: 4 check(s) failed on 2 of 7 GPU(s) and on the host.")
    gpu2, gpu6 = result["gpus"][2], result["gpus"][6]
    for gpu in (gpu2, gpu6):
        assert gpu["uuid"] in msg and gpu["pci_bus_id"] in msg and gpu["serial"] in msg
    # every failing check appears once, under its GPU, with value, threshold and action
    assert msg.count("  - ") == 4
    assert "threshold: width >= x16" in msg
    assert "7 GPU(s) visible to NVML, 8 expected" in msg
    assert msg.index("GPU 2 (") < msg.index("pcie_link") < msg.index("GPU 6 (") < msg.index("ecc_uncorrected")
    assert "Action: " in msg


def test_gpu_lost_mid_collection():
    fake = FakeNvml(count=2).lose_gpu(1, at_field="memory")
    result = gh.evaluate(fake, {})
    lost = result["gpus"][1]
    assert lost["lost"] is True
    assert lost["name"] == "NVIDIA H100 80GB HBM3"  # read before the GPU was lost
    assert "GPU is lost" in lost["errors"]["memory"]
    # collection of that GPU stopped at the first lost answer
    assert ("read", 1, "temperature") not in fake.calls
    check = _by_name(result, "gpu_accessible", gpu=1)
    assert check["status"] == "fail" and "XID 79" in check["action"]
    assert _by_name(result, "gpu_accessible", gpu=0)["status"] == "pass"
    assert result["healthy"] is False


def test_gpu_handle_failure():
    fake = FakeNvml(count=2).fail_handle(1, 15)
    result = gh.evaluate(fake, {})
    assert result["gpus"][1]["lost"] is True
    assert _by_name(result, "gpu_accessible", gpu=1)["status"] == "fail"


def test_other_nvml_errors_are_reported_not_fatal():
    fake = FakeNvml().set_error(0, "power_usage_mw", 4).set_error(0, "serial", 999)
    result = gh.evaluate(fake, {})
    gpu = result["gpus"][0]
    assert gpu["errors"]["power_usage_mw"] == "Insufficient Permissions (NVML error 4)"
    assert gpu["errors"]["serial"] == "Unknown Error (NVML error 999)"
    assert gpu["power"]["draw_w"] is None
    assert result["healthy"] is True


@pytest.mark.parametrize("code, text", [(9, "Driver Not Loaded"), (12, "NVML Shared Library Not Found"),
                                        (18, "version mismatch")])
def test_init_failure(code, text):
    fake = FakeNvml().fail_init(code)
    with pytest.raises(gh.NvmlUnavailable) as info:
        gh.evaluate(fake, {})
    assert str(info.value).startswith("NVML could not be initialised: ")
    assert text in str(info.value)


def test_no_gpu_found():
    fake = FakeNvml().remove_gpu(0)
    with pytest.raises(gh.NvmlUnavailable, match="found no GPU"):
        gh.evaluate(fake, {})
    result = gh.evaluate(fake, {"gpu_required": False})
    assert result["gpu_count"] == 0 and result["healthy"] is True


def test_min_driver_and_compute_capability():
    result = gh.evaluate(FakeNvml(), {"min_driver_version": "580.159.5", "min_compute_capability": "9.0"})
    assert _by_name(result, "driver_version", gpu=None)["status"] == "fail"
    assert "install NVIDIA driver 580.159.5" in _by_name(result, "driver_version", gpu=None)["action"]
    assert _by_name(result, "compute_capability")["status"] == "pass"
    result = gh.evaluate(FakeNvml(), {"min_driver_version": "550.54.15", "min_compute_capability": "10.0"})
    assert _by_name(result, "driver_version", gpu=None)["status"] == "pass"
    assert _by_name(result, "compute_capability")["status"] == "fail"


# ---------------------------------------------------------------------------- XID watch
def test_xid_events_reported_with_meaning():
    fake = FakeNvml(count=2)
    fake.xid_events = [{"index": 1, "xid": 79, "seconds": 0.5}, {"index": 1, "xid": 43, "seconds": 0.7},
                       {"index": 0, "xid": 94, "seconds": 1.0}]
    result = gh.evaluate(fake, {"xid_watch_seconds": 2, "xid_ignore": [43]})
    assert fake.watched == ([("handle", 0), ("handle", 1)], 2)
    assert [e["xid"] for e in result["xid_events"]] == [79, 43, 94]
    assert result["xid_events"][0]["meaning"] == "GPU has fallen off the bus"
    xid = [c for c in result["checks"] if c["name"] == "xid_events"]
    assert [(c["gpu"], c["status"], c["value"]) for c in xid] == [(0, "fail", [94]), (1, "fail", [79])]
    assert "XID 79 at +0.5s: GPU has fallen off the bus" in result["unhealthy_message"]


def test_xid_watch_quiet():
    result = gh.evaluate(FakeNvml(), {"xid_watch_seconds": 1})
    assert _by_name(result, "xid_events", gpu=None)["status"] == "pass"


def test_xid_watch_unsupported_is_skipped():
    fake = FakeNvml()
    fake.xid_supported = False
    result = gh.evaluate(fake, {"xid_watch_seconds": 1})
    check = _by_name(result, "xid_events", gpu=None)
    assert check["status"] == "skip" and "not supported" in check["message"]
    assert result["xid_watch_note"].startswith("XID events are not supported")


# ---------------------------------------------------------------------------- bad options
@pytest.mark.parametrize("params, words", [
    ({"expected_gpu_count": 2, "min_gpu_count": 1}, "set only one"),
    ({"min_gpu_count": -1}, "min_gpu_count is -1"),
    ({"pcie_min_width": 0}, "pcie_min_width is 0"),
    ({"xid_watch_seconds": -1}, "xid_watch_seconds is -1"),
    ({"min_driver_version": "r550"}, "min_driver_version is 'r550'"),
    ({"min_compute_capability": "sm_90"}, "e.g. 8.0"),
    ({"fail_on_clock_events": ["thermal"]}, "unknown reason(s) thermal"),
])
def test_bad_options(params, words):
    with pytest.raises(gh.GpuHealthError) as info:
        gh.evaluate(FakeNvml(), params)
    assert words in str(info.value)


def test_unavailable_result_is_healthy_and_empty():
    result = gh.unavailable_result("NVML could not be initialised: Driver Not Loaded")
    assert result["healthy"] is True and result["nvml_available"] is False
    assert result["gpu_facts"]["count"] == 0
    assert result["checks"][0]["status"] == "skip"


def test_adapter_snapshot_from_the_device_replays():
    """The fuller recording the benchmark wrote on the device (memory v2, every field) replays too."""
    fake = FakeNvml(recording=recording_from_snapshot())
    result = gh.evaluate(fake, {"expected_gpu_count": 1, "min_compute_capability": "9.0"})
    assert result["healthy"] is True, result["unhealthy_message"]
    gpu = result["gpus"][0]
    assert gpu["memory"]["total_mib"] == 81559
    assert gpu["memory"]["reserved_mib"] == 480
    assert gpu["memory"]["used_mib"] + gpu["memory"]["free_mib"] + gpu["memory"]["reserved_mib"] == 81559
    assert gpu["unsupported"] == ["retired_pages_dbe", "retired_pages_pending", "retired_pages_sbe"]
    assert gpu["errors"] == {}
    assert gpu["pcie"]["gen_gpu_max"] == 5
