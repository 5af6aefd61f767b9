# -*- coding: utf-8 -*-
# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Logic of llm_benchmark: load an OpenAI-compatible endpoint and measure it like ``vllm bench serve``.

Standard library only. Three parts:

1. Workloads (fixed seed): ``random`` prompts of given input/output lengths and
   ``prefix_repetition`` (N shared prefixes + random suffixes, shuffled), after vLLM's datasets.
   Text prompts have exact token counts by the server's own tokenizer (vLLM's /tokenize, or
   usage.prompt_tokens of 1-token requests), as vLLM's random dataset has by the model's tokenizer:
   a random prompt is ``input_len`` tokens as the server counts them, its own special tokens included.
2. A load generator on asyncio with a raw HTTP/1.1 client (keep-alive pool, chunked decoding,
   TLS through ssl.SSLContext): closed loop (``max_concurrency`` requests in flight, all
   requests released at once, as ``--max-concurrency N --request-rate inf``) or open loop
   (Poisson arrivals at ``request_rate``, gamma intervals rescaled so the last arrival is at
   N / rate, as vLLM's get_request does). As in ``vllm bench serve``: the warm-ups, then the
   measured requests, all on one connection pool; the body fields of vLLM's openai /
   openai-chat request functions; the GC heap frozen during the run.
3. Metrics computed exactly as vllm/benchmarks/serve.py ``calculate_metrics`` and
   lib/endpoint_request_func.py do (vLLM 0.32):

   - TTFT: arrival of the first SSE event whose ``choices`` is non-empty minus the request's
     start (taken just before the connection is acquired and the request sent; the send waits
     one loop iteration, so requests released together all have their start before the first
     is sent, as with aiohttp's request-writing task). Each event gets its own timestamp when
     it is parsed, as in vLLM (not one per network read).
   - ITL: gaps between successive such events, pooled over all successful requests.
   - E2EL (``latency``): arrival of the LAST token-bearing event minus the start (the usage
     chunk and ``[DONE]`` do not move it).
   - output tokens: ``usage.completion_tokens`` of the usage chunk
     (``stream_options.include_usage``); when absent, 1 (vLLM without a tokenizer).
   - TPOT per request: (E2EL - TTFT) / (output_tokens - 1), only when output_tokens > 1.
   - mean/median/std (population, numpy's default)/percentiles (numpy's default linear
     interpolation) of each; empty lists count as 0, as ``np.mean(x or 0)`` does.
   - request_throughput = completed / duration; output_throughput = sum(output tokens) /
     duration; total_token_throughput = (sum(prompt tokens) + sum(output tokens)) / duration;
     duration runs from just before the first request is released until the last one ends
     (warm-up excluded).
   - goodput: requests meeting every given SLO (ttft, tpot, e2el in ms; TPOT counted 0 when
     output_tokens <= 1) / duration.
   - failed requests (non-200, no token event, connection error) are counted in ``failed``
     and never enter any average.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import random
import ssl
import time

from ansible_collections.onprem.llm_serving.plugins.module_utils._llm_http import (
    LlmConfigError,
    LlmHttpError,
    LlmProtocolError,
    parse_prometheus,
)

try:
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover
    urlsplit = None

WORKLOADS = ("random", "prefix_repetition")
APIS = ("completions", "chat")
PROMPT_FORMATS = ("auto", "text", "token_ids")
METRICS = ("ttft", "tpot", "itl", "e2el")

# A fixed word list: text prompts are random sequences of these (one token each, or close to it,
# for common tokenizers). Input lengths measured by the server come back in usage.prompt_tokens.
WORDS = (
    "time year people way day man thing woman life child world school state family student group country problem hand part place case "
    "week company system program question work government number night point home water room mother area money story fact month lot "
    "right study book eye job word business issue side kind head house service friend father power hour game line end member law car "
    "city community name president team minute idea kid body information back parent face others level office door health person art "
    "war history party result change morning reason research girl guy moment air teacher force education"
).split()


# ---------------------------------------------------------------------------------------------
# Statistics like numpy's defaults
# ---------------------------------------------------------------------------------------------
def mean(values):
    values = list(values) or [0.0]
    return sum(values) / len(values)


def std(values):
    """Population standard deviation (numpy.std default ddof=0)."""
    values = list(values) or [0.0]
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / len(values))


def percentile(values, p):
    """numpy.percentile(values, p) with the default 'linear' method."""
    s = sorted(values) or [0.0]
    if len(s) == 1:
        return float(s[0])
    rank = (len(s) - 1) * (p / 100.0)
    lo = int(math.floor(rank))
    hi = min(lo + 1, len(s) - 1)
    frac = rank - lo
    return s[lo] + (s[hi] - s[lo]) * frac


def median(values):
    return percentile(values, 50)


def p_word(p):
    return str(int(p)) if int(p) == p else str(p)


# ---------------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------------
def _length_range(base, range_ratio):
    """[low, high] like vLLM's get_sampling_params: floor(base*(1-r)) .. ceil(base*(1+r))."""
    return int(math.floor(base * (1 - range_ratio))), int(math.ceil(base * (1 + range_ratio)))


def _token_ids(rng, n, vocab_size):
    # Skip the lowest ids, where tokenizers keep their special tokens.
    low = min(16, max(vocab_size - 1, 0))
    return [rng.randrange(low, vocab_size) for _i in range(n)]


def _plain_words(rng, n):
    """Uncalibrated text: one word of the list per token (the best guess without a token counter)."""
    return [rng.choice(WORDS) for _i in range(max(1, n))]


def build_workload(kind="random", num_prompts=100, input_len=128, output_len=128, seed=0, range_ratio=0.0, prefix_len=256, suffix_len=256,
                   num_prefixes=10, token_ids=False, vocab_size=32000, calibration=None):
    """A list of {"prompt", "prompt_len", "output_len"}; same arguments, same list.

    ``prompt_len`` is the number of prompt tokens the server is expected to count (``usage.prompt_tokens``).

    - ``token_ids``: prompts are lists of ids; the server adds nothing to them, so a random prompt has exactly
      ``input_len`` ids.
    - text with ``calibration`` (from :func:`calibrate_prompt_tokens`): exact token counts by the server's own
      tokenizer. As in vLLM's random dataset, ``input_len`` is what the server counts, the tokens the server adds
      itself (BOS, a template) included: the text carries ``input_len - overhead`` tokens. ``prefix_repetition``
      prompts carry ``prefix_len + suffix_len`` tokens of text, the server's own tokens come on top (as in vLLM).
    - text without calibration: one word per token (no way to count them).

    Lengths: ``range_ratio`` draws each length from [floor(n*(1-r)), ceil(n*(1+r))] (at least 1 output token), where
    n is the input length less the server's own tokens, as vLLM's get_sampling_params does.
    """
    rng = random.Random(seed)
    overhead = 0
    if calibration and not token_ids:
        overhead = calibration["overhead"]
    reqs = []

    def piece(n_tokens):
        """A prompt (or prefix) of n_tokens tokens of content, in the form the options ask for."""
        if token_ids:
            return _token_ids(rng, n_tokens, vocab_size)
        if calibration:
            return compose_prompt(rng, calibration, overhead + n_tokens)[0]
        return " ".join(_plain_words(rng, n_tokens))

    if kind == "random":
        real = input_len - overhead
        in_lo, in_hi = _length_range(real, range_ratio)
        out_lo, out_hi = _length_range(output_len, range_ratio)
        out_lo, out_hi = max(out_lo, 1), max(out_hi, 1)
        if in_lo < 1:
            raise LlmConfigError("input_len %d leaves %d prompt tokens (range_ratio %s) once the %d tokens the server adds itself are taken off; "
                                 "raise input_len or lower range_ratio" % (input_len, in_lo, range_ratio, overhead))
        for _i in range(num_prompts):
            n_in = rng.randint(in_lo, in_hi)
            n_out = rng.randint(out_lo, out_hi)
            prompt = piece(n_in)
            reqs.append({"prompt": prompt, "prompt_len": overhead + n_in, "output_len": n_out})
        return reqs
    if kind == "prefix_repetition":
        per_prefix = num_prompts // num_prefixes if num_prefixes else 0
        if per_prefix == 0:
            raise LlmConfigError("num_prompts (%d) must be at least num_prefixes (%d) for the prefix_repetition workload; raise num_prompts or "
                                 "lower num_prefixes" % (num_prompts, num_prefixes))
        for _p in range(num_prefixes):
            prefix = piece(prefix_len)
            for _i in range(per_prefix):
                if token_ids:
                    prompt = prefix + _token_ids(rng, suffix_len, vocab_size)
                elif calibration:
                    prompt = prefix + " " + " ".join(compose_words(rng, calibration, suffix_len)[0])
                else:
                    prompt = prefix + " " + " ".join(_plain_words(rng, suffix_len))
                reqs.append({"prompt": prompt, "prompt_len": overhead + prefix_len + suffix_len, "output_len": output_len})
        rng.shuffle(reqs)
        return reqs
    raise LlmConfigError("workload %r is unknown; choose one of %s" % (kind, ", ".join(WORKLOADS)))


# ---------------------------------------------------------------------------------------------
# Exact prompt lengths by the server's tokenizer
# ---------------------------------------------------------------------------------------------
# vLLM's random dataset decodes random token ids with the model's tokenizer and re-encodes the text until it is
# exactly input_len tokens (gen_prompt_decode_to_target_len), taking the tokens the tokenizer adds itself
# (num_special_tokens_to_add) off input_len first. This module has no tokenizer (no transformers), so it measures
# the server's: the token cost of each word of a fixed list, by a token counter - vLLM's /tokenize (exact, no
# generation), or usage.prompt_tokens of a 1-token generation (any OpenAI-compatible server, Ollama included). Words
# separated by spaces cost the sum of their costs in BPE and SentencePiece tokenizers (no merge crosses a space), so a
# prompt of words whose costs add up to n is n tokens; single letters (one token in nearly every vocabulary) fill
# the last tokens exactly.
ANCHOR = "a"
FILLERS = tuple("abcdefghijklmnopqrstuvwxyz")
CALIBRATION_GROUP = 8
COUNTERS = ("auto", "tokenize", "usage", "none")


class TokenCounter(object):
    """Counts the prompt tokens the server sees for one request whose user text is ``text``.

    ``method`` is ``tokenize`` (vLLM's POST /tokenize: the completions prompt with the special tokens the server adds,
    or the chat messages with the template and generation prompt) or ``usage`` (usage.prompt_tokens of a
    1-token, non-streamed request on the benchmarked API). Counts are cached; ``calls`` counts server calls.
    """

    def __init__(self, http_client, model, api, method):
        self.http = http_client
        self.model = model
        self.api = api
        self.method = method
        self.calls = 0
        self._cache = {}

    def _body(self, text):
        if self.method == "tokenize":
            if self.api == "chat":
                return "/tokenize", {"model": self.model, "messages": [{"role": "user", "content": text}], "add_generation_prompt": True}
            return "/tokenize", {"model": self.model, "prompt": text}
        if self.api == "chat":
            return "/v1/chat/completions", {"model": self.model, "messages": [{"role": "user", "content": text}], "max_tokens": 1, "stream": False}
        return "/v1/completions", {"model": self.model, "prompt": text, "max_tokens": 1, "stream": False}

    def count(self, text):
        if text in self._cache:
            return self._cache[text]
        path, body = self._body(text)
        self.calls += 1
        data, _resp = self.http.call_json("POST", path, body)
        if self.method == "tokenize":
            value = data.get("count") if isinstance(data, dict) else None
            if value is None and isinstance(data, dict) and isinstance(data.get("tokens"), list):
                value = len(data["tokens"])
        else:
            value = ((data.get("usage") or {}) if isinstance(data, dict) else {}).get("prompt_tokens")
        if not isinstance(value, int) or value < 0:
            raise LlmProtocolError("POST", self.http.url_for(path), "the answer carries no token count (%s); set prompt_calibration to "
                                   "another method or none." % ("count" if self.method == "tokenize" else "usage.prompt_tokens"),
                                   body=json.dumps(data)[:300])
        self._cache[text] = value
        return value


def token_counter(http_client, model, api, method="auto"):
    """The TokenCounter to use, or None for ``none`` or when ``auto`` finds no way to count.

    ``auto`` tries vLLM's /tokenize, then usage.prompt_tokens of a 1-token request; a forced method that does not
    work raises the HTTP error, which says why.
    """
    if method == "none":
        return None
    for m in (("tokenize", "usage") if method == "auto" else (method,)):
        counter = TokenCounter(http_client, model, api, m)
        try:
            counter.count(ANCHOR)
        except LlmHttpError:
            if method != "auto":
                raise
            continue
        return counter
    return None


def calibrate_prompt_tokens(counter, words=None, group=CALIBRATION_GROUP):
    """Token cost of each word after a space, and the server's own tokens, measured with ``counter``.

    Every prompt starts with the anchor word; ``base`` = count(anchor) is what the server counts for it alone (its
    special tokens, its template, the anchor); a word w costs count(anchor + " " + w) - base. Words are first
    measured in groups of ``group`` (a group costing one token per word needs no more calls), then one by one.
    ``overhead`` = base - cost of the anchor mid-text: the tokens the server adds itself.
    Returns {"method", "base", "overhead", "costs": {word: tokens}, "calls"}.
    """
    items = list(FILLERS) + [w for w in (words or WORDS) if w not in FILLERS]
    calls0 = counter.calls
    base = counter.count(ANCHOR)
    costs = {}

    def cost_of(ws):
        return counter.count(ANCHOR + " " + " ".join(ws)) - base

    for i in range(0, len(items), group):
        chunk = items[i:i + group]
        if len(chunk) > 1 and cost_of(chunk) == len(chunk):
            costs.update((w, 1) for w in chunk)
            continue
        for w in chunk:
            c = cost_of([w])
            if c >= 1:
                costs[w] = c
    if ANCHOR not in costs:
        raise LlmProtocolError("POST", "", "the token counter gives %r no token of its own; the counts are not usable, set "
                               "prompt_calibration=none" % ANCHOR)
    return {"method": counter.method, "base": base, "overhead": base - costs[ANCHOR], "costs": costs, "calls": counter.calls - calls0}


def _reachable(costs, limit):
    """reachable[r]: r tokens can be made of words with these costs (unbounded knapsack)."""
    distinct = sorted(set(costs))
    ok = [False] * (limit + 1)
    ok[0] = True
    for r in range(1, limit + 1):
        ok[r] = any(c <= r and ok[r - c] for c in distinct)
    return ok


def compose_words(rng, calibration, tokens):
    """Random words whose token costs add up to ``tokens`` (or as close as the costs allow); returns (words, error)."""
    costs = calibration["costs"]
    items = sorted(costs)
    cache = calibration.setdefault("_reachable", [True])
    if len(cache) <= tokens:
        cache[:] = _reachable(costs.values(), max(tokens, 2 * len(cache)))
    by_cost = {}
    for w in items:
        by_cost.setdefault(costs[w], []).append(w)
    left = tokens
    out = []
    while left > 0:
        w = rng.choice(items)
        c = costs[w]
        if c > left or not cache[left - c]:
            fits = [k for k in by_cost if k <= left and cache[left - k]]
            if not fits:
                break
            w = rng.choice(by_cost[rng.choice(fits)])
            c = costs[w]
        out.append(w)
        left -= c
    return out, -left


def compose_prompt(rng, calibration, total):
    """A text prompt the server counts as ``total`` tokens: the anchor word, then words worth total - base tokens.
    Returns (text, expected error in tokens)."""
    words, error = compose_words(rng, calibration, max(total - calibration["base"], 0))
    if total < calibration["base"]:
        error = calibration["base"] - total
    return " ".join([ANCHOR] + words), error


def align_prompts(counter, requests, calibration, seed=0, limit=None, retries=10):
    """Count ``requests[:limit]`` with the server's counter and redraw any prompt that is off (up to ``retries``
    times, keeping the closest), as vLLM's gen_prompt_decode_to_target_len retries. Random workload only (the
    prompts of prefix_repetition share prefixes). Returns {"checked", "exact", "max_error", "calls"}."""
    rng = random.Random(seed + 7919)
    calls0 = counter.calls
    checked = exact = 0
    worst = 0
    for req in requests[:limit] if limit is not None else requests:
        if not isinstance(req["prompt"], str):
            continue
        want = req["prompt_len"]
        got = counter.count(req["prompt"])
        tries = 0
        while got != want and tries < retries:
            tries += 1
            text = compose_prompt(rng, calibration, want)[0]
            n = counter.count(text)
            if abs(n - want) < abs(got - want):
                req["prompt"], got = text, n
        checked += 1
        exact += got == want
        worst = max(worst, abs(got - want))
    return {"checked": checked, "exact": exact, "max_error": worst, "calls": counter.calls - calls0}


def arrival_offsets(n, request_rate, burstiness=1.0, seed=0):
    """Cumulative send offsets (s) like vLLM's get_request: gamma(shape=burstiness, scale=1/(rate*burstiness))
    intervals, rescaled so the last one is at n / rate. All zero for an infinite rate."""
    if request_rate is None or math.isinf(request_rate):
        return [0.0] * n
    rng = random.Random(seed)
    theta = 1.0 / (request_rate * burstiness)
    delays = []
    total = 0.0
    for _i in range(n):
        total += rng.gammavariate(burstiness, theta)
        delays.append(total)
    if delays and delays[-1] > 0:
        factor = (n / request_rate) / delays[-1]
        delays = [d * factor for d in delays]
    return delays


def request_body(api, model, req, ignore_eos=False, extra_body=None):
    """The JSON body vllm bench serve sends for the openai (completions) and openai-chat backends."""
    if api == "chat":
        body = {"model": model, "messages": [{"role": "user", "content": [{"type": "text", "text": req["prompt"]}]}],
                "max_completion_tokens": req["output_len"], "stream": True, "stream_options": {"include_usage": True}}
    else:
        body = {"model": model, "prompt": req["prompt"], "repetition_penalty": 1.0, "max_tokens": req["output_len"], "logprobs": None,
                "stream": True, "stream_options": {"include_usage": True}}
    if ignore_eos:
        body["ignore_eos"] = True
    if extra_body:
        body.update(extra_body)
    return body


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------
def new_record(prompt_len=0):
    return {"success": False, "ttft": 0.0, "itl": [], "latency": 0.0, "output_tokens": 0, "prompt_len": prompt_len, "start_time": 0.0,
            "error": "", "generated_chars": 0}


def calculate_metrics(records, duration, percentiles=(99,), goodput=None, metrics=METRICS):
    """vLLM's calculate_metrics + the result dict of benchmark(), without the per-request lists."""
    actual_output_lens = []
    total_input = 0
    completed = 0
    good = 0
    itls = []
    tpots = []
    all_tpots = []
    ttfts = []
    e2els = []
    for r in records:
        if r["success"]:
            out_len = r["output_tokens"] or 1
            actual_output_lens.append(out_len)
            total_input += r["prompt_len"]
            tpot = 0.0
            if out_len > 1:
                tpot = (r["latency"] - r["ttft"]) / (out_len - 1)
                tpots.append(tpot)
            all_tpots.append(tpot)
            itls.extend(r["itl"])
            ttfts.append(r["ttft"])
            e2els.append(r["latency"])
            completed += 1
        else:
            actual_output_lens.append(0)
    if goodput:
        per_request = []
        slos = []
        if "ttft" in goodput:
            per_request.append(ttfts)
            slos.append(goodput["ttft"] / 1000.0)
        if "tpot" in goodput:
            per_request.append(all_tpots)
            slos.append(goodput["tpot"] / 1000.0)
        if "e2el" in goodput:
            per_request.append(e2els)
            slos.append(goodput["e2el"] / 1000.0)
        for values in zip(*per_request):
            if all(s >= v for s, v in zip(slos, values)):
                good += 1
    total_output = sum(actual_output_lens)
    result = {
        "duration": duration,
        "completed": completed,
        "failed": len(records) - completed,
        "total_input_tokens": total_input,
        "total_output_tokens": total_output,
        "request_throughput": completed / duration if duration else 0.0,
        "request_goodput": (good / duration if duration else 0.0) if goodput else None,
        "output_throughput": total_output / duration if duration else 0.0,
        "total_token_throughput": (total_input + total_output) / duration if duration else 0.0,
    }
    result.update(peak_figures(records))
    series = {"ttft": ttfts, "tpot": tpots, "itl": itls, "e2el": e2els}
    for name in metrics:
        values = series[name]
        result["mean_%s_ms" % name] = mean(values) * 1000
        result["median_%s_ms" % name] = median(values) * 1000
        result["std_%s_ms" % name] = std(values) * 1000
        for p in percentiles:
            result["p%s_%s_ms" % (p_word(p), name)] = percentile(values, p) * 1000
    return result


def peak_figures(records):
    """max_output_tokens_per_s and max_concurrent_requests over 1 s buckets, as vLLM computes them."""
    ok = [r for r in records if r["success"]]
    if not ok:
        return {"max_output_tokens_per_s": 0.0, "max_concurrent_requests": 0}
    t0 = min(r["start_time"] for r in ok)
    t1 = max(r["start_time"] + r["latency"] for r in ok)
    n = int(math.ceil(t1 - t0)) + 1
    tokens = [0] * n
    conc = [0] * n
    for r in ok:
        t = r["start_time"] + r["ttft"]
        times = [t]
        for gap in r["itl"]:
            t += gap
            times.append(t)
        for tt in times:
            b = int(tt - t0)
            if 0 <= b < n:
                tokens[b] += 1
        for s in range(int(r["start_time"] - t0), int(r["start_time"] + r["latency"] - t0) + 1):
            conc[s] += 1
    return {"max_output_tokens_per_s": float(max(tokens)), "max_concurrent_requests": int(max(conc))}


def prefix_cache_delta(before, after):
    """Prefix-cache hits/queries (tokens) between two /metrics snapshots (parse_prometheus dicts)."""
    if not before or not after:
        return {}
    q = after.get("vllm:prefix_cache_queries_total", 0.0) - before.get("vllm:prefix_cache_queries_total", 0.0)
    h = after.get("vllm:prefix_cache_hits_total", 0.0) - before.get("vllm:prefix_cache_hits_total", 0.0)
    if "vllm:prefix_cache_queries_total" not in after:
        return {}
    return {"prefix_cache_queries": q, "prefix_cache_hits": h, "prefix_cache_hit_rate": (h / q) if q > 0 else None}


# ---------------------------------------------------------------------------------------------
# Async HTTP/1.1 streaming client
# ---------------------------------------------------------------------------------------------
def sse_payloads(blocks):
    """The data of each SSE event block (bytes, events already split on blank lines); comments skipped.

    Fast path for the usual one-line ``data: ...`` event; multi-line events join their data lines with \\n.
    """
    out = []
    for block in blocks:
        if block.startswith(b"data:") and b"\n" not in block:
            value = block[5:]
            out.append(value[1:] if value.startswith(b" ") else value)
            continue
        lines = []
        for line in block.split(b"\n"):
            if line.startswith(b"data:"):
                value = line[5:]
                lines.append(value[1:] if value.startswith(b" ") else value)
        if lines:
            out.append(b"\n".join(lines))
    return out


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: the response is parsed where the bytes arrive (``data_received``), no stream in between.

    The request in flight gives a ``_Response``; each network read goes to it at once, in the event loop's own callback,
    with no task to wake per read (asyncio's StreamReader costs a future, a task step and a copy for each one; at 32
    streams and ~1 event per read that was most of the client's CPU per event).
    """

    def __init__(self):
        self.transport = None
        self.response = None
        self.closed = False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        if self.response is None:  # nothing asked for: a server talking out of turn cannot be reused
            self.closed = True
            self.transport.close()
            return
        self.response.feed(data)

    def connection_lost(self, exc):
        self.closed = True
        if self.response is not None:
            self.response.lost(exc)

    def send(self, data):
        self.transport.write(data)

    def usable(self):
        return not self.closed and not self.transport.is_closing()

    def close(self):
        self.closed = True
        self.response = None
        if self.transport is not None:
            self.transport.close()


class _Response(object):
    """Parses one response: status line and headers, then the body (chunked, content-length or until close).

    ``on_body(bytes)`` gets the payload of every complete chunk of one read joined (as aiohttp's iter_any gives it);
    ``done`` (a future) ends with whether the connection can be reused, or with the exception that ended it.
    """

    def __init__(self, loop, on_body):
        self.on_body = on_body
        self.done = loop.create_future()
        self.status = None
        self.headers = {}
        self._buf = b""
        self._mode = None  # "chunked", "length", "close" once the head is read
        self._left = 0

    def _finish(self, reusable):
        if not self.done.done():
            self.done.set_result(reusable)

    def _fail(self, exc):
        if not self.done.done():
            self.done.set_exception(exc)

    def feed(self, data):
        if self.done.done():
            return
        try:
            self._feed(data)
        except Exception as exc:  # a parse error or the caller's own fails the request, never the event loop
            self._fail(exc)

    def _feed(self, data):
        if self._mode is None:
            self._buf += data
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self._buf[:end], self._buf[end + 4:]
            self._buf = b""
            lines = head.decode("latin-1").split("\r\n")
            self.status = int(lines[0].split(" ", 2)[1])
            for line in lines[1:]:
                k, _sep, v = line.partition(":")
                self.headers[k.strip().lower()] = v.strip()
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                self._mode = "chunked"
            elif "content-length" in self.headers:
                self._mode = "length"
                self._left = int(self.headers["content-length"])
                if self._left == 0:
                    self._finish(self._keep_alive())
                    return
            else:
                self._mode = "close"
            if not data:
                return
        if self._mode == "chunked":
            self._chunks(data)
        elif self._mode == "length":
            piece = data[:self._left]
            self._left -= len(piece)
            self.on_body(piece)
            if self._left <= 0:
                self._finish(self._keep_alive())
        else:
            self.on_body(data)

    def _chunks(self, data):
        buf = self._buf + data if self._buf else data
        out = []
        pos = 0
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(buf[pos:eol].split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                rest = buf[eol + 2:]
                if rest.startswith(b"\r\n") or b"\r\n\r\n" in rest:  # the end, after optional trailers
                    self._buf = b""
                    if out:
                        self.on_body(b"".join(out))
                    self._finish(self._keep_alive())
                    return
                break
            end = eol + 2 + size
            if len(buf) < end + 2:
                break
            out.append(buf[eol + 2:end])
            pos = end + 2
        self._buf = buf[pos:]
        if out:
            self.on_body(out[0] if len(out) == 1 else b"".join(out))

    def _keep_alive(self):
        return self.headers.get("connection", "").lower() != "close"

    def lost(self, exc):
        if self._mode == "close":
            self._finish(False)
        elif self._mode is None:
            self._fail(ConnectionResetError("connection closed before the status line" if not self._buf else
                                            "connection closed inside the response head"))
        elif self._mode == "length":
            self._fail(ConnectionResetError("connection closed %d bytes before the end of the body" % self._left))
        else:
            self._fail(ConnectionResetError("connection closed inside a chunked body"))


class AsyncStreamClient(object):
    """Minimal HTTP/1.1 client on asyncio with a keep-alive connection pool (``keep_alive=False``: one connection per request)."""

    def __init__(self, url, api_key=None, headers=None, timeout=600.0, validate_certs=True, ca_path=None, client_cert=None, client_key=None,
                 clock=time.perf_counter, defer_send=True, keep_alive=True):
        parts = urlsplit(url or "")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LlmConfigError("url %r is not an http:// or https:// URL with a host; set url to the engine's base URL" % (url,))
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.ssl = None
        if parts.scheme == "https":
            ctx = ssl.create_default_context(cafile=ca_path) if ca_path else ssl.create_default_context()
            if not validate_certs:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if client_cert:
                ctx.load_cert_chain(client_cert, client_key)
            self.ssl = ctx
        hdrs = {"Host": "%s:%d" % (self.host, self.port), "Content-Type": "application/json", "Accept": "text/event-stream",
                "User-Agent": "onprem.llm_serving-bench", "Connection": "keep-alive" if keep_alive else "close"}
        if api_key:
            hdrs["Authorization"] = "Bearer %s" % api_key
        hdrs.update(headers or {})
        self._head_tail = "".join("%s: %s\r\n" % (k, v) for k, v in hdrs.items())
        self.timeout = timeout
        self.clock = clock
        self.defer_send = defer_send
        self.keep_alive = keep_alive
        self._idle = []

    async def _acquire(self):
        while self._idle:
            conn = self._idle.pop()
            if conn.usable():
                return conn
            conn.close()
        loop = asyncio.get_event_loop()
        _transport, conn = await loop.create_connection(_Connection, self.host, self.port, ssl=self.ssl)
        return conn

    def _release(self, conn, reusable):
        conn.response = None
        if reusable and self.keep_alive and conn.usable():
            self._idle.append(conn)
        else:
            conn.close()

    def close(self):
        while self._idle:
            self._idle.pop().close()

    async def stream_request(self, path, body, record):
        """POST body, parse the SSE answer into ``record`` exactly like vLLM's request functions."""
        # The start comes before the body is encoded, as in vLLM's request functions (aiohttp encodes json= inside session.post).
        st = self.clock()
        record["start_time"] = st
        payload = json.dumps(body).encode("utf-8")
        head = ("POST %s%s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n" % (self.prefix, path, self._head_tail, len(payload))).encode("latin-1")
        clock = self.clock
        chat = "messages" in body
        itl = record["itl"]
        # what the events have said so far; on_body updates it where each read arrives
        first = done = False
        chars = 0
        recent = st
        pending = b""  # an event's start whose end has not arrived yet
        raw = []  # the body of an answer other than 200

        def on_body(piece):
            nonlocal first, done, chars, recent, pending
            if response.status != 200:
                raw.append(piece)
                return
            buf = pending + piece if pending else piece
            if b"\r" in buf:
                buf = buf.replace(b"\r\n", b"\n")
            blocks = buf.split(b"\n\n")
            pending = blocks.pop()
            for data_bytes in sse_payloads(blocks):
                if data_bytes == b"[DONE]":
                    done = True
                    continue
                # One timestamp per event, as vLLM's request functions take it: before parsing the JSON for
                # chat, after it for completions. Events that came in one network read get distinct times.
                if chat:
                    t = clock()
                    data = json.loads(data_bytes.decode("utf-8"))
                else:
                    data = json.loads(data_bytes.decode("utf-8"))
                    t = clock()
                choices = data.get("choices")
                if choices:
                    ch = choices[0]
                    text = (ch.get("delta") or {}).get("content") if "delta" in ch else ch.get("text")
                    if not first:
                        first = True
                        record["ttft"] = t - st
                    else:
                        itl.append(t - recent)
                    recent = t
                    if text:
                        chars += len(text)
                elif data.get("usage"):
                    usage = data["usage"]
                    record["output_tokens"] = usage.get("completion_tokens") or 0
                    if usage.get("prompt_tokens") is not None:
                        record["prompt_len"] = usage["prompt_tokens"]
                elif data.get("error"):
                    record["error"] = "error event: %s" % json.dumps(data["error"])[:300]

        conn = None
        reusable = False
        try:
            conn = await self._acquire()
            response = _Response(asyncio.get_event_loop(), on_body)
            conn.response = response
            if self.defer_send:
                # As aiohttp (3.14, Python 3.11) in vLLM's request functions: the request is written by a task of
                # its own, so every request released in one loop iteration takes its start time before any is sent.
                await asyncio.sleep(0)
            if conn.closed:
                raise ConnectionResetError("connection closed before the request was sent")
            conn.send(head + payload)
            reusable = await response.done
            if response.status != 200:
                record["error"] = "HTTP %d: %s" % (response.status, b"".join(raw)[:300].decode("utf-8", "replace"))
                return record
            record["generated_chars"] = chars
            if first and not record["error"]:
                record["success"] = True
            elif not record["error"]:
                record["error"] = "Never received a valid chunk to calculate TTFT."
            if not done and record["success"]:
                # vLLM counts such a request as successful too; keep the fact visible.
                record["error"] = "stream ended without [DONE]"
            record["latency"] = recent - st
        except Exception as exc:  # every failure becomes a failed record, never an average
            record["success"] = False
            record["error"] = "%s: %s" % (type(exc).__name__, exc)
            reusable = False
        finally:
            if conn is not None:
                self._release(conn, reusable)
        return record


async def _run_level_async(client, path, api, model, requests, warmups, max_concurrency, request_rate, burstiness, seed, ignore_eos,
                           extra_body, clock, ready_check, before_run):
    sem = asyncio.Semaphore(max_concurrency) if max_concurrency else None

    loop = asyncio.get_event_loop()

    async def timed(body, rec):
        # The timeout cancels this very task from a timer, as aiohttp's ClientTimeout does inside vLLM's request
        # functions. asyncio.wait_for would run each request in a task of its own: one more loop iteration between a
        # request's end and its slot's release, during which the next request's send (which wakes the server and, on a
        # busy machine, gets this process preempted) overtakes the releases of requests that ended at the same time,
        # and their slots stand idle.
        task = asyncio.current_task() if hasattr(asyncio, "current_task") else asyncio.Task.current_task()
        fired = []

        def expire():
            fired.append(True)
            task.cancel()

        handle = loop.call_later(client.timeout, expire)
        try:
            return await client.stream_request(path, body, rec)
        except asyncio.CancelledError:
            if not fired:
                raise
            if hasattr(task, "uncancel"):  # Python 3.11+: the cancellation was ours and is handled
                task.uncancel()
            rec["success"] = False
            rec["error"] = "no complete answer within timeout=%s s" % client.timeout
            return rec
        finally:
            handle.cancel()

    async def one(req):
        rec = new_record(req["prompt_len"])
        body = request_body(api, model, req, ignore_eos, extra_body)
        if sem is None:
            return await timed(body, rec)
        async with sem:
            return await timed(body, rec)

    # As vllm bench serve: (with --ready-check-timeout-sec, off by default) one test request alone, then the warm-ups
    # (first prompt, released at once under the level's concurrency), all on the connection pool the measured requests reuse.
    if requests and ready_check:
        await one(requests[0])
    if requests and warmups:
        await asyncio.gather(*[one(requests[0]) for _i in range(warmups)])
    if before_run is not None:
        before_run()
    offsets = arrival_offsets(len(requests), request_rate, burstiness, seed)
    # vLLM freezes the garbage collector's heap before the run (freeze_gc_heap) to keep GC pauses out of it.
    gc.collect()
    if hasattr(gc, "freeze"):
        gc.freeze()
    try:
        start = clock()
        tasks = []
        for req, off in zip(requests, offsets):
            if off > 0:
                delay = start + off - clock()
                if delay > 0:
                    await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(req)))
        records = await asyncio.gather(*tasks)
        duration = clock() - start
    finally:
        if hasattr(gc, "unfreeze"):
            gc.unfreeze()
    return list(records), duration


def run_level(client, api, model, requests, warmups=0, max_concurrency=None, request_rate=float("inf"), burstiness=1.0, seed=0, ignore_eos=False,
              extra_body=None, clock=time.perf_counter, ready_check=False, before_run=None):
    """Run one closed- or open-loop level; returns (records, duration_s).

    Before the measured requests, unmeasured ones on the same connections: with ``ready_check`` the first prompt
    alone (vllm bench serve's initial test run, which its --ready-check-timeout-sec turns on), then ``warmups``
    copies of it at the level's concurrency.
    ``before_run`` (no arguments) is called between them and the measured requests, with nothing in flight.
    """
    path = "/v1/chat/completions" if api == "chat" else "/v1/completions"
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_run_level_async(client, path, api, model, requests, warmups, max_concurrency, request_rate, burstiness,
                                                        seed, ignore_eos, extra_body, clock, ready_check, before_run))
    finally:
        client.close()
        loop.close()


def levels_from(concurrency, request_rates, max_concurrency):
    """The sweep: closed-loop levels first, then open-loop ones."""
    levels = []
    for c in concurrency or []:
        levels.append({"mode": "closed_loop", "max_concurrency": int(c), "request_rate": float("inf")})
    for r in request_rates or []:
        levels.append({"mode": "open_loop", "max_concurrency": max_concurrency, "request_rate": float(r)})
    return levels


def summarize_level(level, records, duration, percentiles, goodput, cache, num_prompts):
    out = {
        "mode": level["mode"],
        "max_concurrency": level["max_concurrency"],
        "request_rate": "inf" if math.isinf(level["request_rate"]) else level["request_rate"],
        "num_prompts": num_prompts,
    }
    out.update(calculate_metrics(records, duration, percentiles, goodput))
    out.update(cache)
    errors = [r["error"] for r in records if not r["success"] and r["error"]]
    out["errors"] = errors[:10]
    return out


def fetch_metrics(http_client):
    """/metrics as a dict, or {} when the engine has none (not vLLM) or it fails."""
    try:
        resp = http_client.request("GET", "/metrics", accept="text/plain")
    except Exception:  # metrics are optional; the benchmark goes on without them
        return {}
    if resp.status != 200:
        return {}
    return parse_prometheus(resp.text)


def vllm_report(level_result, meta, records=None):
    """One level as a JSON document with vllm bench serve's keys (plus per-request records)."""
    doc = dict(meta)
    doc.update(level_result)
    if records is not None:
        doc["input_lens"] = [r["prompt_len"] for r in records]
        doc["output_lens"] = [(r["output_tokens"] or 1) if r["success"] else 0 for r in records]
        doc["ttfts"] = [r["ttft"] for r in records]
        doc["itls"] = [r["itl"] for r in records]
        doc["latencies"] = [r["latency"] for r in records]
        doc["start_times"] = [r["start_time"] for r in records]
        doc["errors"] = [r["error"] for r in records]
    return doc
