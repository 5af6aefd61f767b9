# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark (prints numbers, asserts nothing): where the first-read-after-nvmlInit cost goes,
and whether threads hide it.

    python3 tests/gpu/probe_first_read.py [--rounds 20]

Each round: nvmlInit, then every DEVICE_FIELDS field of every GPU through the adapter, read in
one of these ways, then nvmlShutdown (the variants take turns, round by round):
  sequential     one field after the other, GPU after GPU (gpu_health before 2026-11-29)
  gpu_threads    one thread per GPU, each reading its GPU's fields in order
  field_threads  one thread per field and GPU, all at once (is NVML serialised per GPU?)
and the same three with NVML kept initialised (no first-read cost), for comparison; then a
cold pass split into its steps (init, version getters, device count, handles, fields, shutdown).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_gpu_health import import_collection  # noqa: E402  pylint: disable=wrong-import-position


def read_one(nvml, backend, handle, field):
    try:
        backend.read(handle, field)
    except nvml.NvmlError:
        pass


def sequential(nvml, backend, handles):
    for handle in handles:
        for field in nvml.DEVICE_FIELDS:
            read_one(nvml, backend, handle, field)


def gpu_threads(nvml, backend, handles):
    with ThreadPoolExecutor(max_workers=len(handles)) as pool:
        list(pool.map(lambda h: [read_one(nvml, backend, h, f) for f in nvml.DEVICE_FIELDS], handles))


def field_threads(nvml, backend, handles):
    jobs = [(h, f) for h in handles for f in nvml.DEVICE_FIELDS]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        list(pool.map(lambda job: read_one(nvml, backend, job[0], job[1]), jobs))


VARIANTS = (("sequential", sequential), ("gpu_threads", gpu_threads), ("field_threads", field_threads))


def stats(values):
    values = sorted(values)
    return "min %6.2f  median %6.2f  max %6.2f ms" % (values[0], statistics.median(values), values[-1])


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv)
    nvml = import_collection()[1]
    backend = nvml.PynvmlBackend()
    backend.init()  # load the library once, outside the numbers
    count = backend.device_count()
    backend.shutdown()
    cold = dict((name, []) for name, _f in VARIANTS)
    for _round in range(args.rounds):
        for name, func in VARIANTS:
            t0 = time.perf_counter()
            backend.init()
            try:
                handles = [backend.device_handle(i) for i in range(count)]
                t1 = time.perf_counter()
                func(nvml, backend, handles)
                cold[name].append((time.perf_counter() - t1) * 1000)
            finally:
                backend.shutdown()
            del t0
    warm = dict((name, []) for name, _f in VARIANTS)
    backend.init()
    try:
        handles = [backend.device_handle(i) for i in range(count)]
        for _round in range(args.rounds):
            for name, func in VARIANTS:
                t1 = time.perf_counter()
                func(nvml, backend, handles)
                warm[name].append((time.perf_counter() - t1) * 1000)
    finally:
        backend.shutdown()
    print("first-read probe: %d GPU(s), %d fields each, %d rounds, %s UTC"
          % (count, len(nvml.DEVICE_FIELDS), args.rounds, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())))
    for name, _f in VARIANTS:
        print("all fields right after nvmlInit, %-14s %s" % (name + ":", stats(cold[name])))
    for name, _f in VARIANTS:
        print("all fields, NVML kept initialised, %-11s %s" % (name + ":", stats(warm[name])))
    seq_cold, seq_warm = statistics.median(cold["sequential"]), statistics.median(warm["sequential"])
    print("first-read cost (sequential, cold - warm medians): %.2f ms for %d GPU(s)" % (seq_cold - seq_warm, count))
    # Where a whole cold pass goes, step by step (evaluate()'s order, one GPU after the other).
    steps = ("nvmlInit", "versions", "device_count", "handles", "fields", "nvmlShutdown")
    parts = dict((step, []) for step in steps)
    for _round in range(args.rounds):
        marks = [time.perf_counter()]
        backend.init()
        marks.append(time.perf_counter())
        for getter in (backend.driver_version, backend.nvml_version, backend.cuda_driver_version):
            getter()
        marks.append(time.perf_counter())
        backend.device_count()
        marks.append(time.perf_counter())
        handles = [backend.device_handle(i) for i in range(count)]
        marks.append(time.perf_counter())
        sequential(nvml, backend, handles)
        marks.append(time.perf_counter())
        backend.shutdown()
        marks.append(time.perf_counter())
        for i, step in enumerate(steps):
            parts[step].append((marks[i + 1] - marks[i]) * 1000)
    print("cold pass, median ms per step: " + ", ".join("%s %.2f" % (step, statistics.median(parts[step])) for step in steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
