# -*- coding: utf-8 -*-
# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Logic of llm_benchmark: load an OpenAI-compatible endpoint and measure it like ``vllm bench serve``.

Standard library only. Three parts:

1. Workloads (fixed seed): ``random`` prompts of given input/output lengths and
   ``prefix_repetition`` (N shared prefixes + random suffixes, shuffled), after vLLM's datasets.
2. A load generator on asyncio with a raw HTTP/1.1 client (keep-alive pool, chunked decoding,
   TLS through ssl.SSLContext): closed loop (``max_concurrency`` requests in flight, all
   requests released at once, as ``--max-concurrency N --request-rate inf``) or open loop
   (Poisson arrivals at ``request_rate``, gamma intervals rescaled so the last arrival is at
   N / rate, as vLLM's get_request does).
3. Metrics computed exactly as vllm/benchmarks/serve.py ``calculate_metrics`` and
   lib/endpoint_request_func.py do (vLLM 0.32):

   - TTFT: arrival of the first SSE event whose ``choices`` is non-empty minus the request's
     start (taken just before the connection is acquired and the request sent).
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
import json
import math
import random
import ssl
import time

from ansible_collections.onprem.llm_serving.plugins.module_utils._llm_http import (
    LlmConfigError,
    LlmHttpError,
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
def _lengths(rng, base, range_ratio):
    lo = int(base * (1 - range_ratio))
    hi = int(base * (1 + range_ratio))
    return max(1, rng.randint(max(lo, 1), max(hi, 1)))


def _tokens(rng, n, vocab_size, token_ids, words_per_token=1.0):
    if token_ids:
        # Skip the lowest ids, where tokenizers keep their special tokens.
        low = min(16, max(vocab_size - 1, 0))
        return [rng.randrange(low, vocab_size) for _i in range(n)]
    return [rng.choice(WORDS) for _i in range(max(1, int(round(n * words_per_token))))]


def _join(tokens, token_ids):
    return list(tokens) if token_ids else " ".join(tokens)


def build_workload(kind="random", num_prompts=100, input_len=128, output_len=128, seed=0, range_ratio=0.0, prefix_len=256, suffix_len=256,
                   num_prefixes=10, token_ids=False, vocab_size=32000, words_per_token=1.0):
    """A list of {"prompt", "prompt_len", "output_len"}; same arguments, same list.

    Text prompts hold ``round(tokens * words_per_token)`` words, so that they come close to the wanted
    token counts once ``calibrate_words_per_token`` has measured the server's tokenizer.
    """
    rng = random.Random(seed)
    reqs = []
    if kind == "random":
        for _i in range(num_prompts):
            n_in = _lengths(rng, input_len, range_ratio)
            n_out = _lengths(rng, output_len, range_ratio)
            reqs.append({"prompt": _join(_tokens(rng, n_in, vocab_size, token_ids, words_per_token), token_ids), "prompt_len": n_in,
                         "output_len": n_out})
        return reqs
    if kind == "prefix_repetition":
        per_prefix = num_prompts // num_prefixes if num_prefixes else 0
        if per_prefix == 0:
            raise LlmConfigError("num_prompts (%d) must be at least num_prefixes (%d) for the prefix_repetition workload; raise num_prompts or "
                                 "lower num_prefixes" % (num_prompts, num_prefixes))
        for _p in range(num_prefixes):
            prefix = _tokens(rng, prefix_len, vocab_size, token_ids, words_per_token)
            for _i in range(per_prefix):
                suffix = _tokens(rng, suffix_len, vocab_size, token_ids, words_per_token)
                reqs.append({"prompt": _join(prefix + suffix, token_ids), "prompt_len": prefix_len + suffix_len, "output_len": output_len})
        rng.shuffle(reqs)
        return reqs
    raise LlmConfigError("workload %r is unknown; choose one of %s" % (kind, ", ".join(WORKLOADS)))


def calibrate_words_per_token(http_client, model, words=200, seed=12345):
    """Words of the fixed list per token of the server's tokenizer, from usage.prompt_tokens of one
    1-token completion of a ``words``-word prompt. Returns (ratio, prompt_tokens); (1.0, None) when the
    server gives no usage (then one word is taken as one token)."""
    rng = random.Random(seed)
    prompt = " ".join(rng.choice(WORDS) for _i in range(words))
    try:
        data, _resp = http_client.call_json("POST", "/v1/completions", {"model": model, "prompt": prompt, "max_tokens": 1, "stream": False})
    except LlmHttpError:  # no completions API (chat-only server): fall back to one word per token
        return 1.0, None
    tokens = (data.get("usage") or {}).get("prompt_tokens")
    if not tokens:
        return 1.0, None
    return float(words) / tokens, tokens


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
        body = {"model": model, "messages": [{"role": "user", "content": req["prompt"]}], "max_completion_tokens": req["output_len"],
                "stream": True, "stream_options": {"include_usage": True}}
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


class AsyncStreamClient(object):
    """Minimal HTTP/1.1 client on asyncio streams with a keep-alive connection pool."""

    def __init__(self, url, api_key=None, headers=None, timeout=600.0, validate_certs=True, ca_path=None, client_cert=None, client_key=None,
                 clock=time.perf_counter):
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
                "User-Agent": "onprem.llm_serving-bench", "Connection": "keep-alive"}
        if api_key:
            hdrs["Authorization"] = "Bearer %s" % api_key
        hdrs.update(headers or {})
        self._head_tail = "".join("%s: %s\r\n" % (k, v) for k, v in hdrs.items())
        self.timeout = timeout
        self.clock = clock
        self._idle = []

    async def _acquire(self):
        while self._idle:
            reader, writer = self._idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        return await asyncio.open_connection(self.host, self.port, ssl=self.ssl, limit=1 << 20)

    def _release(self, conn, reusable):
        if reusable:
            self._idle.append(conn)
        else:
            conn[1].close()

    def close(self):
        while self._idle:
            self._idle.pop()[1].close()

    async def _read_head(self, reader):
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionResetError("connection closed before the status line")
        parts = status_line.decode("latin-1").split(" ", 2)
        status = int(parts[1])
        headers = {}
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            k, _sep, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        return status, headers

    async def _body_chunks(self, reader, headers):
        """Yield body pieces as they arrive (chunked, content-length or until close)."""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            # One network read -> the payload of every complete chunk in it (like aiohttp's iter_any):
            # one await per read, however many SSE events the read carries.
            buf = b""
            while True:
                out = []
                while True:
                    eol = buf.find(b"\r\n")
                    if eol < 0:
                        break
                    size = int(buf[:eol].split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        rest = buf[eol + 2:]
                        if rest.startswith(b"\r\n") or b"\r\n\r\n" in rest:  # end, after optional trailers
                            if out:
                                yield b"".join(out)
                            return
                        break
                    end = eol + 2 + size
                    if len(buf) < end + 2:
                        break
                    out.append(buf[eol + 2:end])
                    buf = buf[end + 2:]
                if out:
                    yield b"".join(out)
                data = await reader.read(65536)
                if not data:
                    raise ConnectionResetError("connection closed inside a chunked body")
                buf += data
        elif "content-length" in headers:
            left = int(headers["content-length"])
            while left > 0:
                data = await reader.read(min(left, 65536))
                if not data:
                    raise ConnectionResetError("connection closed %d bytes before the end of the body" % left)
                left -= len(data)
                yield data
        else:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                yield data

    async def stream_request(self, path, body, record):
        """POST body, parse the SSE answer into ``record`` exactly like vLLM's request functions."""
        payload = json.dumps(body).encode("utf-8")
        head = ("POST %s%s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n" % (self.prefix, path, self._head_tail, len(payload))).encode("latin-1")
        st = self.clock()
        record["start_time"] = st
        most_recent = st
        conn = None
        reusable = False
        try:
            conn = await self._acquire()
            reader, writer = conn
            writer.write(head + payload)
            status, headers = await self._read_head(reader)
            if status != 200:
                raw = b""
                async for piece in self._body_chunks(reader, headers):
                    raw += piece
                record["error"] = "HTTP %d: %s" % (status, raw[:300].decode("utf-8", "replace"))
                reusable = headers.get("connection", "").lower() != "close"
                return record
            first = False
            chars = 0
            done = False
            buf = b""
            async for piece in self._body_chunks(reader, headers):
                t = self.clock()
                buf += piece
                if b"\r" in buf:
                    buf = buf.replace(b"\r\n", b"\n")
                blocks = buf.split(b"\n\n")
                buf = blocks.pop()
                for payload in sse_payloads(blocks):
                    if payload == b"[DONE]":
                        done = True
                        continue
                    data = json.loads(payload.decode("utf-8"))
                    choices = data.get("choices")
                    if choices:
                        ch = choices[0]
                        text = (ch.get("delta") or {}).get("content") if "delta" in ch else ch.get("text")
                        if not first:
                            first = True
                            record["ttft"] = t - st
                        else:
                            record["itl"].append(t - most_recent)
                        most_recent = t
                        chars += len(text or "")
                    elif data.get("usage"):
                        usage = data["usage"]
                        record["output_tokens"] = usage.get("completion_tokens") or 0
                        if usage.get("prompt_tokens") is not None:
                            record["prompt_len"] = usage["prompt_tokens"]
                    elif data.get("error"):
                        record["error"] = "error event: %s" % json.dumps(data["error"])[:300]
            reusable = headers.get("connection", "").lower() != "close"
            record["generated_chars"] = chars
            if first and not record["error"]:
                record["success"] = True
            elif not record["error"]:
                record["error"] = "Never received a valid chunk to calculate TTFT."
            if not done and record["success"]:
                # vLLM counts such a request as successful too; keep the fact visible.
                record["error"] = "stream ended without [DONE]"
            record["latency"] = most_recent - st
        except Exception as exc:  # every failure becomes a failed record, never an average
            record["success"] = False
            record["error"] = "%s: %s" % (type(exc).__name__, exc)
            reusable = False
        finally:
            if conn is not None:
                self._release(conn, reusable)
        return record


async def _run_level_async(client, path, api, model, requests, warmups, max_concurrency, request_rate, burstiness, seed, ignore_eos,
                           extra_body, clock):
    sem = asyncio.Semaphore(max_concurrency) if max_concurrency else None

    async def timed(body, rec):
        try:
            return await asyncio.wait_for(client.stream_request(path, body, rec), client.timeout)
        except asyncio.TimeoutError:
            rec["success"] = False
            rec["error"] = "no complete answer within timeout=%s s" % client.timeout
            return rec

    async def one(req):
        rec = new_record(req["prompt_len"])
        body = request_body(api, model, req, ignore_eos, extra_body)
        if sem is None:
            return await timed(body, rec)
        async with sem:
            return await timed(body, rec)

    if warmups:
        await asyncio.gather(*[one(requests[0]) for _i in range(warmups)])
    offsets = arrival_offsets(len(requests), request_rate, burstiness, seed)
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
    return list(records), duration


def run_level(client, api, model, requests, warmups=0, max_concurrency=None, request_rate=float("inf"), burstiness=1.0, seed=0, ignore_eos=False,
              extra_body=None, clock=time.perf_counter):
    """Run one closed- or open-loop level; returns (records, duration_s)."""
    path = "/v1/chat/completions" if api == "chat" else "/v1/completions"
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_run_level_async(client, path, api, model, requests, warmups, max_concurrency, request_rate, burstiness,
                                                        seed, ignore_eos, extra_body, clock))
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
