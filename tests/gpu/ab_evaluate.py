# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark (prints numbers, asserts nothing): evaluate() of an older _gpu_health.py against
this checkout's, in ONE process, round by round, on the same GPUs.

    python3 tests/gpu/ab_evaluate.py --before OLD/_gpu_health.py [--rounds 100]

Separate runs of bench_gpu_health.py on one machine differed by several ms for the same code,
so before/after numbers are taken here in turns: each round runs evaluate() of the older file,
of this checkout (default threads) and of this checkout with threads=1, in an order that
rotates every round.  The older file is loaded under another module name; it imports this
checkout's _nvml (the adapter), so both sides talk to NVML through the same code.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_gpu_health import import_collection  # noqa: E402  pylint: disable=wrong-import-position


def load_file(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", required=True, help="an older plugins/module_utils/_gpu_health.py")
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args(argv)
    after, nvml = import_collection()
    before = load_file(args.before, "gpu_health_before")
    backend = nvml.PynvmlBackend()
    variants = (
        ("before", lambda: before.evaluate(backend, {})),
        ("after", lambda: after.evaluate(backend, {})),
        ("after threads=1", lambda: after.evaluate(backend, {}, threads=1)),
    )
    for _name, func in variants:  # load the library, warm the interpreter
        func()
    full = dict((name, []) for name, _f in variants)
    collect = dict((name, []) for name, _f in variants)
    for index in range(args.rounds):
        shift = index % len(variants)
        for name, func in variants[shift:] + variants[:shift]:
            t0 = time.perf_counter()
            result = func()
            full[name].append((time.perf_counter() - t0) * 1000)
            collect[name].append(result["timing_ms"]["collect"])
    count = result["gpu_count"]
    print("A/B in one process, %d GPU(s), %d rounds each, order rotating, %s UTC"
          % (count, args.rounds, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())))
    for name, _f in variants:
        values = sorted(full[name])
        print("evaluate() %-16s median %6.2f ms  (min %6.2f, p95 %6.2f; collect median %6.2f ms)"
              % (name + ":", statistics.median(values), values[0], values[int(0.95 * (len(values) - 1))],
                 statistics.median(collect[name])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
