# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A steady open-loop load through a front door while a playbook runs, and what it saw.

llm_benchmark's own client (plugins/module_utils/_llm_benchmark: the same requests, timing and failure rules as
`vllm bench serve`), Poisson arrivals at ``rate`` requests/s for ``duration`` seconds, streamed chat completions.
``Load`` runs it in threads; ``report`` cuts the records into before / during / after the playbook and 5-second
windows: requests, failures (with their errors), output tokens/s, TTFT p50/p99. Each request opens its own TLS
connection to the door."""
from __future__ import annotations

import collections
import os
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, ".cache", "collections"))

from ansible_collections.onprem.llm_serving.plugins.module_utils import _llm_benchmark as bench  # noqa: E402


class Load(object):
    """Open loop until stop(): a new 10-second slice of Poisson arrivals starts every 10 s in a thread of its own
    (its own event loop and connections), whether the slices before it finished or not."""

    def __init__(self, url, key, cacert, model, rate, output_len=24, seed=0, slice_s=10.0, validate_certs=True):
        self.url, self.key, self.cacert, self.model = url, key, cacert, model
        self.validate_certs = validate_certs
        self.rate, self.output_len, self.seed, self.slice_s = rate, output_len, seed, slice_s
        self.records, self.errors, self._threads = [], [], []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pacer = threading.Thread(target=self._pace, daemon=True)

    def start(self):
        self._pacer.start()
        return self

    def _slice(self, index):
        try:
            reqs = bench.build_workload("random", num_prompts=max(1, int(self.rate * self.slice_s)), input_len=16,
                                        output_len=self.output_len, seed=self.seed + index)
            client = bench.AsyncStreamClient(self.url, api_key=self.key, ca_path=self.cacert, timeout=300,
                                             validate_certs=self.validate_certs, keep_alive=False)
            # every request on a connection of its own (keep_alive=False): a keep-alive connection the gateway closes as
            # the client reuses it (seen once in ~2000 requests, with nothing in the gateway's log) is a client-side race,
            # not a request the update failed; what fails here reached the gateway
            records, _duration = bench.run_level(client, "chat", self.model, reqs, request_rate=self.rate, seed=self.seed + index,
                                                 ignore_eos=True)
            with self._lock:
                self.records.extend(records)
        except Exception as exc:  # pylint: disable=broad-except
            self.errors.append(repr(exc))

    def _pace(self):
        index, start = 0, time.perf_counter()
        while not self._stop.is_set():
            thread = threading.Thread(target=self._slice, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)
            index += 1
            self._stop.wait(max(0.0, start + index * self.slice_s - time.perf_counter()))

    def stop(self):
        """Stop starting slices, wait for every request sent to end; returns the records."""
        self._stop.set()
        self._pacer.join()
        for thread in self._threads:
            thread.join(600)
        return sorted(self.records, key=lambda r: r["start_time"])


def two_replicas(**extra):
    """vllm_instances for llm-lab-1 with a second replica of the demo model behind the same door (test_update_lab.py,
    tests/bench/rolling_update.py); ``extra`` goes into both (a flag, extra_args)."""
    model = "/srv/llm/models/tiny-llama"
    return [dict({"name": "tiny", "model": model, "served_model_name": "tiny", "port": 8000}, **extra),
            dict({"name": "tiny-b", "model": model, "served_model_name": "tiny", "port": 8001}, **extra)]


def _p(values, q):
    return bench.percentile(values, q) * 1000 if values else float("nan")


def summary(records):
    ok = [r for r in records if r["success"]]
    span = (max(r["start_time"] + r["latency"] for r in records) - min(r["start_time"] for r in records)) if records else 0
    return {"requests": len(records), "failed": len(records) - len(ok),
            "errors": sorted(collections.Counter(r["error"][:120] for r in records if not r["success"]).items()),
            # a server that sends no separate usage chunk (TGI puts usage in its last token's chunk, which vLLM's
            # client rules do not read) is counted by its token events
            "output_tok_s": sum(r["output_tokens"] or len(r["itl"]) + 1 for r in ok) / span if span > 0 else 0.0,
            "ttft_p50_ms": _p([r["ttft"] for r in ok], 50), "ttft_p99_ms": _p([r["ttft"] for r in ok], 99)}


def report(records, t_start, t_end, window=5.0):
    """Phases by each request's start (perf_counter times): before the playbook, during it, after it; and windows."""
    phases = {"before": [r for r in records if r["start_time"] < t_start],
              "during": [r for r in records if t_start <= r["start_time"] < t_end],
              "after": [r for r in records if r["start_time"] >= t_end]}
    out = {name: summary(recs) for name, recs in phases.items()}
    out["all"] = summary(records)
    first = min((r["start_time"] for r in records), default=t_start)
    windows = collections.defaultdict(list)
    for r in records:
        windows[int((r["start_time"] - first) // window)].append(r)
    out["windows"] = [dict(summary(windows[k]), t=round(k * window, 1),
                           phase="during" if t_start <= first + k * window < t_end else "outside")
                      for k in sorted(windows)]
    out["playbook_s"] = round(t_end - t_start, 1)
    return out


def lines(name, rep):
    """The report as text lines for a test's output."""
    out = ["%s: playbook %.1f s" % (name, rep["playbook_s"])]
    for phase in ("before", "during", "after", "all"):
        s = rep[phase]
        out.append("  %-6s %4d requests, %d failed, %.1f output tok/s, TTFT p50 %.0f ms p99 %.0f ms%s" % (
            phase, s["requests"], s["failed"], s["output_tok_s"], s["ttft_p50_ms"], s["ttft_p99_ms"],
            (" errors: %s" % s["errors"]) if s["errors"] else ""))
    cells = ["%s%.0f: %d/%d %.0f %.0f" % ("*" if w["phase"] == "during" else "", w["t"], w["requests"], w["failed"], w["output_tok_s"],
                                          w["ttft_p99_ms"]) for w in rep["windows"]]
    out.append("  windows (t s: requests/failed, tok/s, TTFT p99 ms; * during): " + "; ".join(cells))
    return out
