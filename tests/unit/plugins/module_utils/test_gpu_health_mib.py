# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""gpu_health's bytes -> MiB agree with nvidia-smi, on every MiB field of the real recordings.

The rule (nvidia-smi rounds up to whole MiB) was derived from NVML's bytes and nvidia-smi's
MiB read back to back on an H200 (tests/gpu/probe_mib_rounding.py, recorded as
tests/fixtures/nvml/h200-mib-samples.json) and holds for the H100 recordings too.
"""

from __future__ import annotations

import json
import os
import re

import pytest

from ansible_collections.onprem.llm_serving.plugins.module_utils import _gpu_health as gh
from ansible_collections.onprem.llm_serving.tests.fixtures.nvml.fake_nvml import (
    H100_ADAPTER_SNAPSHOT,
    HERE as FIXTURES,
    FakeNvml,
    load_recording,
    recording_from_snapshot,
)

MIB = 1024 * 1024
H200_SAMPLES = os.path.join(FIXTURES, "h200-mib-samples.json")
H200_ADAPTER_SNAPSHOT = os.path.join(FIXTURES, "h200-adapter-snapshot.json")
H100_SMI_Q = os.path.join(FIXTURES, "h100-nvidia-smi-q.txt")
MEMORY_FIELDS = ("total", "reserved", "used", "free")


def _h200_samples():
    with open(H200_SAMPLES) as handle:
        return json.load(handle)["samples"]


def _memory_cases():
    for sample in _h200_samples():
        for field in MEMORY_FIELDS:
            yield pytest.param(sample["nvml_bytes"][field], sample["smi_mib"][field],
                               id="h200-%s-%s" % (sample["state"].replace(" ", ""), field))


def _process_cases():
    for sample in _h200_samples():
        theirs = dict(sample["smi_mib"]["processes"])
        for pid, used in sample["nvml_bytes"]["processes"]:
            yield pytest.param(used, theirs[pid], id="h200-%s-pid%d" % (sample["state"].replace(" ", ""), pid))


def _h100_smi_fb_memory():
    """'FB Memory Usage' of the H100's nvidia-smi -q recording: {total, reserved, used, free} MiB."""
    with open(H100_SMI_Q) as handle:
        text = handle.read()
    block = text.split("FB Memory Usage", 1)[1].split("BAR1 Memory Usage", 1)[0]
    return dict((k.lower(), int(v)) for k, v in re.findall(r"(\w+)\s+:\s+(\d+) MiB", block))


@pytest.mark.parametrize("value, mib", [
    (None, None),
    (0, 0),
    (1, 1),
    (MIB - 1, 1),
    (MIB, 1),
    (MIB + 1, 2),
    (615 * MIB + 65536, 616),  # the H200's reserved memory
    (143771 * MIB, 143771),
])
def test_mib_rounds_up(value, mib):
    assert gh._mib(value) == mib  # pylint: disable=protected-access


def test_h200_samples_have_remainders_that_tell_the_rules_apart():
    """The recording must contain fractions where floor, round and ceil disagree, or it proves nothing."""
    fractions = set(s["nvml_bytes"][f] % MIB for s in _h200_samples() for f in MEMORY_FIELDS)
    assert any(0 < f < MIB // 2 for f in fractions)  # floor == round != ceil
    assert any(f > MIB // 2 for f in fractions)      # floor != round == ceil


@pytest.mark.parametrize("value, smi_mib", list(_memory_cases()))
def test_h200_memory_fields_agree_with_nvidia_smi(value, smi_mib):
    assert gh._mib(value) == smi_mib  # pylint: disable=protected-access


@pytest.mark.parametrize("value, smi_mib", list(_process_cases()))
def test_h200_process_memory_agrees_with_nvidia_smi(value, smi_mib):
    assert gh._mib(value) == smi_mib  # pylint: disable=protected-access


@pytest.mark.parametrize("sample", _h200_samples(), ids=lambda s: s["state"].replace(" ", ""))
def test_h200_samples_through_the_facts(sample):
    """The whole path: a memory answer and a process list in, the documented MiB facts out."""
    raw = sample["nvml_bytes"]
    fake = FakeNvml(recording=recording_from_snapshot(H200_ADAPTER_SNAPSHOT))
    fake.set_value(0, "memory", dict((f, raw[f]) for f in MEMORY_FIELDS))
    fake.set_value(0, "processes", [{"pid": pid, "used_memory": used, "name": "python3"} for pid, used in raw["processes"]])
    gpu = gh.evaluate(fake, {})["gpus"][0]
    smi = sample["smi_mib"]
    assert gpu["memory"] == {"total_mib": smi["total"], "reserved_mib": smi["reserved"], "used_mib": smi["used"],
                             "free_mib": smi["free"]}
    assert sorted((p["pid"], p["used_memory_mib"]) for p in gpu["processes"]) == sorted(tuple(p) for p in smi["processes"])


def test_h200_adapter_snapshot_reserved_is_616_as_nvidia_smi_says():
    """Issue 15: gpu_health said 615 MiB, nvidia-smi 616 MiB, on the same H200."""
    result = gh.evaluate(FakeNvml(recording=recording_from_snapshot(H200_ADAPTER_SNAPSHOT)), {})
    gpu = result["gpus"][0]
    assert gpu["name"] == "NVIDIA H200"
    assert gpu["memory"] == {"total_mib": 143771, "reserved_mib": 616, "used_mib": 0, "free_mib": 143156}
    assert result["gpu_facts"]["memory_total_mib"] == [143771]


@pytest.mark.parametrize("field", ["total", "free"])
def test_h100_recording_agrees_with_its_nvidia_smi_q(field):
    """h100-nvml-calls.json and h100-nvidia-smi-q.txt were taken from the same H100 (whole MiB)."""
    raw = load_recording()["devices"][0]["memory"]["value"]
    assert gh._mib(raw[field]) == _h100_smi_fb_memory()[field]  # pylint: disable=protected-access


def test_h100_recording_v1_used_is_nvidia_smis_used_plus_reserved():
    """The v1 call counts the reserved memory as used; nvidia-smi shows them apart."""
    raw = load_recording()["devices"][0]["memory"]["value"]
    smi = _h100_smi_fb_memory()
    assert gh._mib(raw["used"]) == smi["used"] + smi["reserved"]  # pylint: disable=protected-access


def test_h100_adapter_snapshot_whole_mib():
    gpu = gh.evaluate(FakeNvml(recording=recording_from_snapshot(H100_ADAPTER_SNAPSHOT)), {})["gpus"][0]
    assert gpu["memory"] == {"total_mib": 81559, "reserved_mib": 480, "used_mib": 0, "free_mib": 81079}
