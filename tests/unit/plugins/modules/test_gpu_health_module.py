# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""gpu_health main() through patch_module_args, with the fake NVML from the real recording."""

from __future__ import annotations


import pytest


from ansible_collections.onprem.llm_serving.plugins.modules import gpu_health
from module_runner import run_main  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.onprem.llm_serving.tests.fixtures.nvml.fake_nvml import FakeNvml


def run(monkeypatch, capsys, args, fake):
    if isinstance(fake, Exception):
        def make_backend():
            raise fake
    else:
        def make_backend():
            return fake
    monkeypatch.setattr(gpu_health, "make_backend", make_backend)
    return run_main(gpu_health.main, capsys, args)


def test_healthy_h100(monkeypatch, capsys):
    result = run(monkeypatch, capsys, {"expected_gpu_count": 1, "min_compute_capability": "9.0"}, FakeNvml())
    assert result["rc"] == 0
    assert result.get("failed") is not True
    assert result["changed"] is False
    assert result["healthy"] is True
    assert result["msg"] == "1 GPU(s) healthy"
    assert result["gpu_facts"]["memory_total_mib"] == [81559]
    assert result["gpus"][0]["uuid"] == "GPU-acb48b61-172b-979d-b244-9c2a9362d321"
    assert result["gpus"][0]["unsupported"] == ["retired_pages_dbe", "retired_pages_pending", "retired_pages_sbe"]


def test_check_mode_reads_everything_and_changes_nothing(monkeypatch, capsys):
    fake = FakeNvml()
    result = run(monkeypatch, capsys, {"_ansible_check_mode": True}, fake)
    assert result["rc"] == 0
    assert result["changed"] is False
    assert result["healthy"] is True
    assert ("read", 0, "processes") in fake.calls
    assert fake.shutdown_count == 1


def test_unhealthy_fails_with_one_message(monkeypatch, capsys):
    fake = FakeNvml(count=2).set_value(0, "pcie_width_cur", 8).set_value(1, "clock_event_reasons", 0x40)
    fake.set_value(1, "ecc_volatile_uncorrected", 1)
    result = run(monkeypatch, capsys, {}, fake)
    assert result["rc"] == 1
    assert result["failed"] is True
    assert result["changed"] is False
    assert result["healthy"] is False
    msg = result["msg"]
    assert msg.startswith("GPU health check failed: 3 check(s) failed on 2 of 2 GPU(s).")
    for gpu in result["gpus"]:
        assert gpu["uuid"] in msg and gpu["pci_bus_id"] in msg
    for words in ("pcie_link", "clock_events", "ecc_uncorrected", "hw_thermal_slowdown", "Action: reseat the GPU"):
        assert words in msg
    assert len(result["failed_checks"]) == 3


def test_unhealthy_report_only(monkeypatch, capsys):
    fake = FakeNvml().set_value(0, "remapped_rows", (0, 1, 1, 0))
    result = run(monkeypatch, capsys, {"fail_on_unhealthy": False}, fake)
    assert result["rc"] == 0
    assert result.get("failed") is not True
    assert result["healthy"] is False
    assert result["msg"] == "1 check(s) failed (fail_on_unhealthy is false)"
    assert "a row remap is pending" in result["unhealthy_message"]


def test_unhealthy_report_only_in_check_mode(monkeypatch, capsys):
    fake = FakeNvml().set_value(0, "temperature", 90)
    result = run(monkeypatch, capsys, {"fail_on_unhealthy": False, "_ansible_check_mode": True}, fake)
    assert result["rc"] == 0 and result["healthy"] is False and result["changed"] is False


def test_no_driver_fails_clearly(monkeypatch, capsys):
    result = run(monkeypatch, capsys, {}, FakeNvml().fail_init(9))
    assert result["rc"] == 1
    assert result["msg"].startswith("NVML could not be initialised: Driver Not Loaded (NVML error 9).")
    assert "gpu_required: false" in result["msg"]


def test_no_driver_passes_when_gpu_not_required(monkeypatch, capsys):
    result = run(monkeypatch, capsys, {"gpu_required": False}, FakeNvml().fail_init(12))
    assert result["rc"] == 0
    assert result["nvml_available"] is False
    assert result["healthy"] is True
    assert result["gpu_count"] == 0
    assert result["gpu_facts"]["count"] == 0


def test_missing_pynvml(monkeypatch, capsys):
    result = run(monkeypatch, capsys, {}, ImportError("No module named 'pynvml'"))
    assert result["rc"] == 1
    assert "nvidia-ml-py" in result["msg"]
    result = run(monkeypatch, capsys, {"gpu_required": False}, ImportError("No module named 'pynvml'"))
    assert result["rc"] == 0 and result["nvml_available"] is False


def test_gpu_lost(monkeypatch, capsys):
    result = run(monkeypatch, capsys, {}, FakeNvml(count=2).lose_gpu(1))
    assert result["rc"] == 1
    assert "gpu_accessible: the GPU does not answer NVML" in result["msg"]


def test_bad_option_value(monkeypatch, capsys):
    result = run(monkeypatch, capsys, {"min_driver_version": "latest"}, FakeNvml())
    assert result["rc"] == 1
    assert result["msg"].startswith("gpu_health options are invalid: min_driver_version is 'latest'")


def test_mutually_exclusive_counts(monkeypatch, capsys):
    result = run(monkeypatch, capsys, {"expected_gpu_count": 8, "min_gpu_count": 4}, FakeNvml())
    assert result["rc"] == 1
    assert "mutually exclusive" in result["msg"]


def test_unknown_clock_event_name_is_refused(monkeypatch, capsys):
    result = run(monkeypatch, capsys, {"fail_on_clock_events": ["hot"]}, FakeNvml())
    assert result["rc"] == 1
    assert "fail_on_clock_events" in result["msg"]


def test_xid_watch_through_main(monkeypatch, capsys):
    fake = FakeNvml()
    fake.xid_events = [{"index": 0, "xid": 48, "seconds": 0.2}]
    result = run(monkeypatch, capsys, {"xid_watch_seconds": 0.5, "fail_on_unhealthy": False}, fake)
    assert fake.watched[1] == 0.5
    assert result["xid_events"][0]["meaning"].startswith("Double-bit")
    assert result["healthy"] is False


def test_default_backend_needs_pynvml(monkeypatch):
    monkeypatch.setattr(gpu_health._nvml, "HAS_PYNVML", False)
    with pytest.raises(ImportError):
        gpu_health.make_backend()
