# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark (prints numbers, asserts nothing): gpu_health's in-process NVML time on a real GPU.

    python3 tests/gpu/bench_gpu_health.py [--rounds 30] [--out DIR]

Measures, through the same code the module runs (_gpu_health.evaluate with the pynvml adapter):
  - the first evaluate() in the process (loads libnvidia-ml),
  - evaluate() again and again: nvmlInit + every field of every GPU + checks + nvmlShutdown,
  - collect() alone with NVML kept initialised,
  - each field's own cost, to show where the time goes,
  - evaluate(threads=1): the GPUs read one after the other (as before 2026-11-29),
  - on a host with several GPUs, evaluate() on the first 1, 2, N/2 and N GPUs, in parallel and
    one after the other: (median for N - median for 1) / (N - 1) is the cost of each further GPU.
Target from the issue: <= 50 ms for one GPU, <= 10 ms per further GPU.
With --out, also writes the adapter's raw answers for every field (adapter_snapshot.json):
a fuller recording than tests/fixtures/nvml/h100-nvml-calls.json, for future fakes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def import_collection():
    tmp = tempfile.mkdtemp(prefix="gpu_health_bench_")
    os.makedirs(os.path.join(tmp, "ansible_collections", "onprem"))
    os.symlink(REPO, os.path.join(tmp, "ansible_collections", "onprem", "llm_serving"))
    sys.path.insert(0, tmp)
    from ansible_collections.onprem.llm_serving.plugins.module_utils import _gpu_health, _nvml  # pylint: disable=import-outside-toplevel
    return _gpu_health, _nvml


def first_gpus(backend_class, k):
    """The real adapter, showing only the first k GPUs (for the cost of each further GPU)."""

    class Limited(backend_class):
        def device_count(self):
            return min(k, super(Limited, self).device_count())

    return Limited()


def stats(values):
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
    return "min %.2f  median %.2f  p95 %.2f  max %.2f ms  (n=%d)" % (values[0], statistics.median(values), p95, values[-1], len(values))


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    gh, nvml = import_collection()
    if not nvml.HAS_PYNVML:
        print("nvidia-ml-py is not installed: nothing to measure")
        return 1
    import pynvml  # pylint: disable=import-outside-toplevel
    from importlib.metadata import version  # pylint: disable=import-outside-toplevel
    print("gpu_health NVML benchmark, %s UTC, python %s, nvidia-ml-py %s"
          % (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), sys.version.split()[0], version("nvidia-ml-py")))
    del pynvml

    backend = nvml.PynvmlBackend()
    t0 = time.perf_counter()
    try:
        first = gh.evaluate(backend, {})
    except gh.GpuHealthError as exc:
        print("cannot measure: %s" % exc)
        return 1
    cold = (time.perf_counter() - t0) * 1000
    count = first["gpu_count"]
    names = ", ".join(first["gpu_facts"]["names"])
    print("GPUs: %d (%s), driver %s, NVML %s" % (count, names, first["driver_version"], first["nvml_version"]))
    print("first evaluate() in the process (library load included): %.2f ms; its own timing_ms %s" % (cold, first["timing_ms"]))

    full, init, coll, seq, per_gpu = [], [], [], [], []
    for _round in range(args.rounds):
        # the default (GPUs in parallel threads) and one GPU after the other take turns
        t0 = time.perf_counter()
        result = gh.evaluate(backend, {})
        full.append((time.perf_counter() - t0) * 1000)
        init.append(result["timing_ms"]["init"])
        coll.append(result["timing_ms"]["collect"])
        t0 = time.perf_counter()
        gh.evaluate(backend, {}, threads=1)
        seq.append((time.perf_counter() - t0) * 1000)
    print("evaluate() (nvmlInit + all fields + checks + nvmlShutdown): %s" % stats(full))
    print("  of which nvmlInit:                                   %s" % stats(init))
    print("  of which collect (all fields, all GPUs):             %s" % stats(coll))
    print("evaluate(threads=1), the GPUs one after the other:     %s" % stats(seq))
    if count > 1:
        # evaluate() on the first k GPUs only: the cost of each further GPU, in parallel and in turn
        medians = {}
        for k in sorted(set((1, 2, max(1, count // 2), count))):
            limited = first_gpus(nvml.PynvmlBackend, k)
            for threads in (None, 1):
                times = []
                for _round in range(args.rounds):
                    t0 = time.perf_counter()
                    gh.evaluate(limited, {}, threads=threads)
                    times.append((time.perf_counter() - t0) * 1000)
                medians[(k, threads)] = statistics.median(times)
                how = "parallel:" if threads is None else "one after the other:"
                print("evaluate() on the first %d GPU(s), %-22s %s" % (k, how, stats(times)))
        for threads, label in ((None, "parallel"), (1, "one after the other")):
            print("per further GPU (%s): (median for %d GPUs - median for 1) / %d = %.2f ms"
                  % (label, count, count - 1, (medians[(count, threads)] - medians[(1, threads)]) / (count - 1)))
    else:
        print("per further GPU: not measurable on a host with one GPU")

    backend.init()
    try:
        warm = []
        for _round in range(args.rounds):
            t0 = time.perf_counter()
            snap = gh.collect(backend)
            warm.append((time.perf_counter() - t0) * 1000)
        print("collect() with NVML kept initialised:                  %s" % stats(warm))
        print("per GPU (collect median / %d GPU(s)):                  %.2f ms" % (count, statistics.median(warm) / max(count, 1)))
        handles = [backend.device_handle(i) for i in range(count)]
        per_field = {}
        for _round in range(10):
            for handle in handles:
                for field in nvml.DEVICE_FIELDS:
                    t0 = time.perf_counter()
                    try:
                        backend.read(handle, field)
                    except nvml.NvmlError:
                        pass
                    per_field.setdefault(field, []).append((time.perf_counter() - t0) * 1000)
        ranked = sorted(((statistics.median(v), k) for k, v in per_field.items()), reverse=True)
        print("slowest fields (median ms per GPU): " + ", ".join("%s %.3f" % (k, m) for m, k in ranked[:10]))
        print("sum of field medians per GPU: %.2f ms" % sum(m for m, _k in ranked))
    finally:
        backend.shutdown()

    # The first read of a field after nvmlInit costs more than later reads: time each field
    # on the first pass after a fresh init, to show where evaluate()'s collect time goes.
    cold_fields = {}
    for _round in range(10):
        backend.init()
        try:
            for index in range(count):
                handle = backend.device_handle(index)
                for field in nvml.DEVICE_FIELDS:
                    t0 = time.perf_counter()
                    try:
                        backend.read(handle, field)
                    except nvml.NvmlError:
                        pass
                    cold_fields.setdefault((index, field), []).append((time.perf_counter() - t0) * 1000)
        finally:
            backend.shutdown()
    for index in range(count):
        ranked = sorted(((statistics.median(v), k[1]) for k, v in cold_fields.items() if k[0] == index), reverse=True)
        print("GPU %d, first read after nvmlInit, slowest fields (median ms): %s" % (index, ", ".join("%s %.3f" % (k, m) for m, k in ranked[:10])))
        print("GPU %d, first read after nvmlInit, sum of field medians: %.2f ms" % (index, sum(m for m, _k in ranked)))

    target = 50.0 + 10.0 * max(count - 1, 0)
    median = statistics.median(full)
    print("RESULT: evaluate() median %.2f ms for %d GPU(s); target <= %.0f ms: %s"
          % (median, count, target, "MET" if median <= target else "NOT MET"))
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        snap.pop("handles", None)
        with open(os.path.join(args.out, "adapter_snapshot.json"), "w") as handle:
            json.dump(snap, handle, indent=1, sort_keys=True, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
