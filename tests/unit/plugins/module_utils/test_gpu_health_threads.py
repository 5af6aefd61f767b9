# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""collect() reads the GPUs of a host in parallel threads: same result as one after the other,
in index order, whatever order the GPUs answer in; faults stay with their GPU."""

from __future__ import annotations

import random
import threading
import time

import pytest

from ansible_collections.onprem.llm_serving.plugins.module_utils import _gpu_health as gh
from ansible_collections.onprem.llm_serving.plugins.module_utils._nvml import DEVICE_FIELDS
from ansible_collections.onprem.llm_serving.tests.fixtures.nvml.fake_nvml import FakeNvml


class SlowFakeNvml(FakeNvml):
    """FakeNvml whose reads take ``delay(index, field)`` seconds and which counts overlapping reads."""

    def __init__(self, count, delay=None, **kwargs):
        super(SlowFakeNvml, self).__init__(count=count, **kwargs)
        self.delay = delay or (lambda index, field: 0.0)
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.threads = {}  # GPU index -> names of the threads that read it
        self.finished = []  # GPU index, in the order their last field was read

    def read(self, handle, field):
        index = handle[1]
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.threads.setdefault(index, set()).add(threading.current_thread().name)
        try:
            time.sleep(self.delay(index, field))
            return super(SlowFakeNvml, self).read(handle, field)
        finally:
            with self.lock:
                self.active -= 1
                if field == DEVICE_FIELDS[-1]:
                    self.finished.append(index)


class MeetAtHandles(object):
    """Mixin: every GPU's handle waits until all GPUs asked for theirs, so the fake passes only when they are read at
    once (and a thread that finished one GPU cannot take the next: the thread count does not depend on the load)."""

    def __init__(self, count, **kwargs):
        super(MeetAtHandles, self).__init__(count=count, **kwargs)
        self.barrier = threading.Barrier(count, timeout=10)

    def device_handle(self, index):
        self.barrier.wait()
        return super(MeetAtHandles, self).device_handle(index)


class BarrierFakeNvml(MeetAtHandles, FakeNvml):
    """FakeNvml whose GPUs must be read at once."""


def _without_timing(result):
    result = dict(result)
    result.pop("timing_ms")
    return result


def _reads(fake, index):
    return [c[2] for c in fake.calls if c[0] == "read" and c[1] == index]


def test_gpus_are_read_at_the_same_time():
    fake = BarrierFakeNvml(count=4)
    result = gh.evaluate(fake, {})  # one after the other, the first handle would wait for ever
    assert [g["index"] for g in result["gpus"]] == [0, 1, 2, 3]
    assert result["healthy"] is True


class ReverseOrderFakeNvml(FakeNvml):
    """GPU i starts reading only after GPU i+1 read its last field: they finish last GPU first."""

    def __init__(self, count, **kwargs):
        super(ReverseOrderFakeNvml, self).__init__(count=count, **kwargs)
        self.done = [threading.Event() for _index in range(count)]
        self.finished = []

    def read(self, handle, field):
        index = handle[1]
        if field == DEVICE_FIELDS[0] and index + 1 < len(self.devices):
            assert self.done[index + 1].wait(timeout=10), "GPU %d waited for GPU %d in vain" % (index, index + 1)
        try:
            return super(ReverseOrderFakeNvml, self).read(handle, field)
        finally:
            if field == DEVICE_FIELDS[-1]:
                self.finished.append(index)
                self.done[index].set()


def test_results_in_index_order_when_the_last_gpu_answers_first():
    fake = ReverseOrderFakeNvml(count=4)
    result = gh.evaluate(fake, {})
    assert fake.finished == [3, 2, 1, 0]  # the GPUs finished in reverse order ...
    assert [g["index"] for g in result["gpus"]] == [0, 1, 2, 3]  # ... and are listed by index
    assert [g["pci_bus_id"] for g in result["gpus"]] == [fake.devices[i]["pci_bus_id"]["value"] for i in range(4)]
    assert [g["uuid"] for g in result["gpus"]] == result["gpu_facts"]["uuids"]
    assert len(set(result["gpu_facts"]["uuids"])) == 4


class BarrierSlowFakeNvml(MeetAtHandles, SlowFakeNvml):
    """SlowFakeNvml (which records the threads) whose GPUs must be read at once."""


def test_one_thread_per_gpu_and_each_gpus_fields_in_order():
    fake = BarrierSlowFakeNvml(count=3)
    gh.evaluate(fake, {})
    for index in range(3):
        assert len(fake.threads[index]) == 1  # one GPU, one thread
        assert _reads(fake, index) == list(DEVICE_FIELDS)  # its fields in the documented order
    assert len(set.union(*fake.threads.values())) == 3


def test_a_single_gpu_is_read_in_the_calling_thread():
    fake = SlowFakeNvml(count=1)
    gh.evaluate(fake, {})
    assert fake.threads[0] == {threading.current_thread().name}


def test_threads_one_reads_one_gpu_after_the_other():
    fake = FakeNvml(count=3)
    gh.evaluate(fake, {}, threads=1)
    expected = [("init",)]
    for index in range(3):
        expected.append(("handle", index))
        expected.extend(("read", index, field) for field in DEVICE_FIELDS)
    expected.append(("shutdown",))
    assert fake.calls == expected


@pytest.mark.parametrize("threads, most", [(2, 2), (3, 3), (None, 6)])
def test_threads_caps_the_gpus_read_at_once(threads, most):
    barrier = threading.Barrier(most, timeout=10)

    def meet(index, field):
        """`most` GPUs must be in their first read together, or the barrier breaks."""
        if field == DEVICE_FIELDS[0]:
            barrier.wait()
        return 0.0

    fake = SlowFakeNvml(count=6, delay=meet)
    gh.evaluate(fake, {}, threads=threads)
    assert fake.max_active == most


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_parallel_result_equals_sequential_result(seed):
    """Random answer times on an 8-GPU host with faults: the same result as reading in order."""
    rng = random.Random(seed)
    delays = dict(((i, f), rng.choice((0.0, 0.0, 0.0005, 0.001))) for i in range(8) for f in DEVICE_FIELDS)

    def make(delay):
        fake = SlowFakeNvml(count=8, delay=delay)
        fake.set_value(2, "pcie_width_cur", 8).set_error(4, "power_usage_mw", 4).lose_gpu(5, at_field="temperature")
        fake.set_value(6, "ecc_volatile_uncorrected", 3).fail_handle(7, 15)
        return fake

    sequential = gh.evaluate(make(None), {"expected_gpu_count": 8}, threads=1)
    parallel = gh.evaluate(make(lambda index, field: delays[(index, field)]), {"expected_gpu_count": 8})
    assert _without_timing(parallel) == _without_timing(sequential)
    assert sorted((c["gpu"], c["name"]) for c in parallel["failed_checks"]) == [
        (2, "pcie_link"), (5, "gpu_accessible"), (6, "ecc_uncorrected"), (7, "gpu_accessible")]


def test_a_lost_gpu_stops_only_its_own_thread():
    fake = SlowFakeNvml(count=4).lose_gpu(1, at_field="memory")
    result = gh.evaluate(fake, {})
    assert _reads(fake, 1) == list(DEVICE_FIELDS[:DEVICE_FIELDS.index("memory") + 1])
    for index in (0, 2, 3):
        assert _reads(fake, index) == list(DEVICE_FIELDS)
        assert result["gpus"][index]["lost"] is False
    assert result["gpus"][1]["lost"] is True and "GPU is lost" in result["gpus"][1]["errors"]["memory"]


def test_handle_failure_keeps_its_place():
    fake = FakeNvml(count=3).fail_handle(1, 15)
    snap_holder = {}
    fake.init()
    try:
        snap_holder.update(gh.collect(fake))
    finally:
        fake.shutdown()
    assert snap_holder["handles"] == [("handle", 0), None, ("handle", 2)]
    assert [d["index"] for d in snap_holder["devices"]] == [0, 1, 2]
    assert snap_holder["devices"][1]["lost"] is True
    assert len(snap_holder["gpu_read_ms"]) == 3


def test_xid_watch_gets_the_handles_in_index_order():
    fake = FakeNvml(count=4).fail_handle(2, 15)
    gh.evaluate(fake, {"xid_watch_seconds": 1})
    assert fake.watched == ([("handle", 0), ("handle", 1), None, ("handle", 3)], 1)


def test_an_unexpected_error_in_a_thread_is_raised_and_nvml_is_shut_down():
    class Broken(FakeNvml):
        def read(self, handle, field):
            if handle[1] == 2 and field == "memory":
                raise RuntimeError("bug in a reader")
            return super(Broken, self).read(handle, field)

    fake = Broken(count=4)
    with pytest.raises(RuntimeError, match="bug in a reader"):
        gh.evaluate(fake, {})
    assert fake.calls[-1] == ("shutdown",)
    # the other GPUs' threads were not abandoned half-way
    for index in (0, 1, 3):
        assert _reads(fake, index) == list(DEVICE_FIELDS)
