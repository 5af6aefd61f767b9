"""Builds fixtures/benchmark_run.json: a benchmark run as roles/benchmark writes it, through llm_benchmark's own code.

The records are synthetic (a seeded model of a small CPU engine: TTFT and ITL grow with the requests in flight), but
every figure of a level comes from _llm_benchmark's summarize_level and vllm_report, exactly as the module computes
them, and each document has the keys roles/benchmark/tasks/report.yml writes. Regenerate with
`.venv/bin/python roles/benchmark/tests/benchmark_fixture.py` after the report's shape changes.
"""
from __future__ import annotations

import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "tests"))
# role_templates makes the collection importable (its finder)
import role_templates  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import

from ansible_collections.onprem.llm_serving.plugins.module_utils._llm_benchmark import (  # noqa: E402
    levels_from, new_record, summarize_level, vllm_report)

FIXTURE = os.path.join(HERE, "fixtures", "benchmark_run.json")
PERCENTILES = [50, 90, 95, 99]
GOODPUT = {"ttft": 400.0, "e2el": 3000.0}


def records(rng, n, conc, ttft_ms, itl_ms, out_len, fail_every=0, error=""):
    recs = []
    t = 0.0
    for i in range(n):
        r = new_record(prompt_len=128)
        r["start_time"] = t
        if fail_every and i % fail_every == fail_every - 1:
            r["error"] = error
        else:
            r["success"] = True
            r["ttft"] = rng.gauss(ttft_ms, ttft_ms * 0.15) / 1000.0
            r["itl"] = [max(0.001, rng.gauss(itl_ms, itl_ms * 0.2)) / 1000.0 for _token in range(out_len - 1)]
            r["latency"] = r["ttft"] + sum(r["itl"])
            r["output_tokens"] = out_len
            r["generated_chars"] = out_len * 4
        recs.append(r)
        t += (r["latency"] or 0.05) / conc
    return recs


def endpoint_doc(rng, host, name, url, base_ttft, base_itl, failures, cache):
    levels = levels_from([1, 8, 32], [], None)
    report = []
    for lv in levels:
        conc = lv["max_concurrency"]
        fail_every, error = failures.get(conc, (0, ""))
        recs = records(rng, 24, conc, base_ttft * (1 + 0.6 * (conc - 1)), base_itl * (1 + 0.15 * (conc - 1)), 16, fail_every, error)
        duration = max(r["start_time"] + r["latency"] for r in recs) or 1.0
        summary = summarize_level(lv, recs, duration, PERCENTILES, GOODPUT, cache, len(recs))
        meta = {"backend": "openai", "model_id": "tiny", "num_prompts": len(recs), "request_rate": summary["request_rate"],
                "burstiness": 1.0, "max_concurrency": conc, "workload": "random", "seed": 0}
        report.append(vllm_report(summary, meta, recs))
    plan = {"api": "completions", "workload": "random", "prompt_format": "text", "num_prompts": 24, "input_len": 128, "output_len": 16,
            "seed": 0, "warmup_requests": 1, "levels": [dict(lv, request_rate="inf") for lv in levels],
            "prompt_calibration": {"method": "tokenize", "overhead": 1, "words": 126, "calls": 142},
            "prompt_check": {"checked": 24, "exact": 24, "max_error": 0, "calls": 24}}
    return {"host": host, "endpoint": name, "url": url, "model": "tiny", "plan": plan, "levels": report}


def make_run():
    rng = random.Random(16)
    cache = {"prefix_cache_queries": 3072.0, "prefix_cache_hits": 1024.0, "prefix_cache_hit_rate": 1024.0 / 3072.0}
    return [
        endpoint_doc(rng, "lab-1", "tiny", "http://10.0.3.11:8000", 60.0, 18.0, {}, cache),
        endpoint_doc(rng, "lab-2", "tiny-ollama", "http://10.0.3.12:11434", 90.0, 25.0,
                     {32: (6, "HTTP 503 Service Unavailable: server busy, retry later")}, {}),
    ]


if __name__ == "__main__":
    with open(FIXTURE, "w") as f:
        json.dump(make_run(), f, indent=1)
        f.write("\n")
    print(FIXTURE)
