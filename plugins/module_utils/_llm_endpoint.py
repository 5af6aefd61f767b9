# -*- coding: utf-8 -*-
# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Logic of llm_endpoint: is this endpoint really serving?

Pure: talks only to an HttpClient-like object (``request``, ``call_json``, ``stream``,
``url_for``, ``api_key``) and to injected ``sleep``/``monotonic`` callables, so tests swap in
fakes. Returns plain data; raises the typed errors of _llm_http.
"""

from __future__ import annotations

import copy
import json
import time

from ansible_collections.onprem.llm_serving.plugins.module_utils._llm_http import (
    LlmAuthError,
    LlmError,
    LlmHttpError,
    LlmModelNotServedError,
    LlmProtocolError,
    LlmStreamError,
    NdjsonParser,
    SseParser,
    classify_status,
    parse_prometheus,
)

ENGINES = ("auto", "openai", "tgi", "ollama")
APIS = {
    "openai": ("chat", "completions"),
    "tgi": ("generate",),
    "ollama": ("chat", "generate"),
}
STREAMING = ("both", "streamed", "non_streamed")
READY_PROBE = {
    "openai": "/v1/models",
    "auto": "/v1/models",
    "tgi": "/health",
    "ollama": "/api/version",
}
# where each protocol lists its models (resolve_model names it in its errors)
MODELS_PATH = {
    "openai": "/v1/models",
    "ollama": "/api/tags",
    "tgi": "/info",
}
# a read-only route that needs the key where a key is needed (a gateway door asks it for every route; TGI's /info may
# be closed by a door's allow-list, its /v1/models is not)
KEYED_PATH = {
    "openai": "/v1/models",
    "ollama": "/api/tags",
    "tgi": "/v1/models",
}
VLLM_METRICS = (
    "vllm:prefix_cache_queries_total",
    "vllm:prefix_cache_hits_total",
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
)


class LlmGenerationError(LlmHttpError):
    """The engine answered, but did not prove a real generation (too few tokens, empty text)."""


class LlmNotReadyError(LlmHttpError):
    """The endpoint did not become ready before the deadline."""


def _ms(seconds):
    return None if seconds is None else round(seconds * 1000.0, 3)


def _mean(values):
    return sum(values) / len(values) if values else None


def _median(values):
    if not values:
        return None
    s = sorted(values)
    n = len(s)
    mid = n // 2
    return s[mid] if n % 2 else (s[mid - 1] + s[mid]) / 2.0


# ---------------------------------------------------------------------------------------------
# Readiness
# ---------------------------------------------------------------------------------------------
def wait_ready(client, path, deadline_s, sleep=time.sleep, monotonic=time.monotonic, first_delay=0.5, max_delay=5.0, also_ready=(),
               watch=None):
    """Poll GET ``path`` until 2xx (or a status in ``also_ready``). Refused/reset/timeout/502/503/504 are retried with backoff.

    Returns {"time_to_ready_s", "attempts", "waited_for"} (waited_for lists the distinct reasons
    seen while waiting). Auth errors and other 4xx fail at once: waiting would not fix them.
    ``watch`` (optional): called after each attempt that was not ready; a string it returns ends the wait at once with
    that message (the process that should answer is gone: module_utils._systemd.unit_watch).
    """
    start = monotonic()
    delay = first_delay
    attempts = 0
    reasons = []
    while True:
        attempts += 1
        last = None
        try:
            resp = client.request("GET", path)
            if 200 <= resp.status < 300 or resp.status in also_ready:
                return {"time_to_ready_s": round(monotonic() - start, 3), "attempts": attempts, "waited_for": reasons}
            last = classify_status("GET", client.url_for(path), resp.status, resp.body, bool(client.api_key))
            if not last.retryable:
                raise last
        except LlmHttpError as exc:
            if not exc.retryable:
                raise
            last = exc
        reason = last.meaning if last.status is None else "HTTP %s" % last.status
        if reason not in reasons:
            reasons.append(reason)
        elapsed = monotonic() - start
        gone = watch() if watch is not None else None
        if gone:
            raise LlmNotReadyError("GET", client.url_for(path), "not ready after %.1f s and %d attempts (last: %s), and it will not be: %s"
                                   % (elapsed, attempts, last.meaning, gone), last.status, last.body)
        if elapsed + delay > deadline_s:
            raise LlmNotReadyError("GET", client.url_for(path),
                                   "not ready after %.1f s and %d attempts (last: %s). Raise ready_timeout if the model is still loading, "
                                   "or check the engine's service and log." % (elapsed, attempts, last.meaning), last.status, last.body)
        sleep(delay)
        delay = min(delay * 2, max_delay)


def refuse_without_key(client, path):
    """GET ``path`` once without the client's API key and require HTTP 401: the endpoint (a gateway's door, an engine
    started with its key) refuses a request that carries none. Anything else raises LlmAuthError naming what answered."""
    if not client.api_key:
        raise LlmError("refused_without_key needs api_key: the check compares an answer without the key with the answers with it")
    anonymous = copy.copy(client)
    anonymous.api_key = None
    anonymous.extra_headers = dict((k, v) for k, v in client.extra_headers.items() if k.lower() != "authorization")
    resp = anonymous.request("GET", path)
    if resp.status != 401:
        raise LlmAuthError("GET", client.url_for(path),
                           "answered without an API key, where HTTP 401 was expected: anyone who reaches this address is served "
                           "(refused_without_key). Serve it through the gateway's door, or start the engine with its API key.",
                           resp.status, resp.body)


# ---------------------------------------------------------------------------------------------
# Engine detection and model listing
# ---------------------------------------------------------------------------------------------
def _try_json(client, path):
    """GET path; JSON dict on 2xx, None otherwise. A 401 propagates (the key needs fixing); a 403 is a route closed to
    this client (a gateway's allow-list refuses /version, /info, /api/version), so the engine is not told by it."""
    try:
        resp = client.request("GET", path)
    except LlmHttpError:
        return None
    if resp.status == 401:
        raise classify_status("GET", client.url_for(path), resp.status, resp.body, bool(client.api_key))
    if not 200 <= resp.status < 300:
        return None
    try:
        data = json.loads(resp.text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def detect_engine(client):
    """Tell vLLM, TGI and Ollama apart by the version routes each one alone serves.

    /api/version answers {"version"} only on Ollama; /info answers {"model_id", "version"} only
    on TGI; /version answers {"version"} on vLLM. Returns (server, protocol, version, info):
    server in vllm/tgi/ollama/openai (an unknown OpenAI-compatible server).
    """
    data = _try_json(client, "/api/version")
    if data and "version" in data:
        return "ollama", "ollama", str(data["version"]), data
    data = _try_json(client, "/info")
    if data and "model_id" in data:
        return "tgi", "tgi", str(data.get("version", "")), data
    data = _try_json(client, "/version")
    if data and "version" in data:
        return "vllm", "openai", str(data["version"]), data
    return "openai", "openai", None, {}


def served_models(client, protocol, info=None):
    """Names of the served models in the engine's own terms."""
    if protocol == "openai":
        data, _resp = client.call_json("GET", "/v1/models")
        return [str(m.get("id")) for m in data.get("data", []) if isinstance(m, dict)]
    if protocol == "ollama":
        data, _resp = client.call_json("GET", "/api/tags")
        return [str(m.get("name") or m.get("model")) for m in data.get("models", []) if isinstance(m, dict)]
    if protocol == "tgi":
        if not info:
            info, _resp = client.call_json("GET", "/info")
        return [str(info.get("model_id"))] if info.get("model_id") else []
    raise LlmError("unknown protocol %r" % protocol)


def resolve_model(wanted, served, protocol, url):
    """The served name to use. Ollama's 'tiny' matches 'tiny:latest'."""
    if not served:
        raise LlmModelNotServedError("GET", url, "the engine serves no model at all; load one (engine's model option) and retry.")
    if not wanted:
        return served[0]
    if wanted in served:
        return wanted
    if protocol == "ollama" and ":" not in wanted and wanted + ":latest" in served:
        return wanted + ":latest"
    raise LlmModelNotServedError("GET", url, "model '%s' is not served; served: %s. Set model to one of them." % (wanted, json.dumps(served)))


# ---------------------------------------------------------------------------------------------
# Generation checks
# ---------------------------------------------------------------------------------------------
def _timing(start, first, token_times, end, n_tokens):
    """TTFT, ITL and throughput like vllm bench serve: ITL = gaps between token-bearing chunks."""
    ttft = (first - start) if first is not None else None
    itl = [b - a for a, b in zip(token_times, token_times[1:])]
    e2e = end - start
    out = {
        "ttft_ms": _ms(ttft),
        "itl_ms_mean": _ms(_mean(itl)),
        "itl_ms_median": _ms(_median(itl)),
        "e2e_ms": _ms(e2e),
        "tokens_per_s": round(n_tokens / e2e, 3) if e2e > 0 and n_tokens else None,
        "tpot_ms": _ms((e2e - ttft) / (n_tokens - 1)) if ttft is not None and n_tokens and n_tokens > 1 else None,
    }
    return out


def _openai_body(api, model, prompt, max_tokens, stream, ignore_eos):
    body = {"model": model, "max_tokens": max_tokens, "stream": stream, "temperature": 0.0}
    if api == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if stream:
        body["stream_options"] = {"include_usage": True}
    if ignore_eos:
        body["ignore_eos"] = True
    return body


def _check_openai(client, api, model, prompt, max_tokens, stream, ignore_eos, clock):
    path = "/v1/chat/completions" if api == "chat" else "/v1/completions"
    url = client.url_for(path)
    body = _openai_body(api, model, prompt, max_tokens, stream, ignore_eos)
    result = {"api": api, "path": path, "stream": stream}
    if not stream:
        start = clock()
        data, resp = client.call_json("POST", path, body)
        end = clock()
        choices = data.get("choices") or []
        if not choices:
            raise LlmProtocolError("POST", url, "the answer has no choices: not an OpenAI-compatible completion.", resp.status, resp.body)
        ch = choices[0]
        text = (ch.get("message") or {}).get("content") if api == "chat" else ch.get("text")
        usage = data.get("usage") or {}
        n = usage.get("completion_tokens")
        result.update({"output_tokens": n, "token_source": "usage" if n is not None else None, "finish_reason": ch.get("finish_reason"),
                       "prompt_tokens": usage.get("prompt_tokens"), "text_chars": len(text or ""), "ended_properly": ch.get("finish_reason") is not None,
                       "e2e_ms": _ms(end - start), "tokens_per_s": round(n / (end - start), 3) if n and end > start else None})
        return result
    start = clock()
    parser = SseParser()
    first = None
    token_times = []
    text = []
    usage = None
    finish = None
    done = False
    chunks = 0
    end = start
    for t, chunk in client.stream("POST", path, body):
        if chunk is None:
            continue
        for ev in parser.feed(chunk, t):
            if ev.data == "[DONE]":
                done = True
                continue
            if done:
                raise LlmStreamError("POST", url, "data arrived after [DONE]: malformed SSE stream.", body=ev.data)
            try:
                data = json.loads(ev.data)
            except ValueError:
                raise LlmStreamError("POST", url, "an SSE event is not JSON: not an OpenAI-compatible stream.", body=ev.data)
            if "error" in data and not data.get("choices"):
                raise LlmStreamError("POST", url, "the engine reported an error inside the stream: %s" % json.dumps(data["error"])[:200], body=ev.data)
            choices = data.get("choices")
            if choices:
                ch = choices[0]
                piece = (ch.get("delta") or {}).get("content") if api == "chat" else ch.get("text")
                if first is None:
                    first = ev.t
                token_times.append(ev.t)
                end = ev.t
                chunks += 1
                text.append(piece or "")
                if ch.get("finish_reason"):
                    finish = ch.get("finish_reason")
            if data.get("usage"):
                usage = data["usage"]
    if not done:
        raise LlmStreamError("POST", url, "the SSE stream ended after %d token chunks without 'data: [DONE]': the engine died mid-stream "
                             "or a proxy cut the connection." % chunks)
    if first is None:
        raise LlmGenerationError("POST", url, "the stream carried no token chunk (no non-empty choices).")
    n = usage.get("completion_tokens") if usage else None
    source = "usage"
    if n is None:
        n = sum(1 for p in text if p)
        source = "chunks"
    result.update({"output_tokens": n, "token_source": source, "finish_reason": finish, "prompt_tokens": (usage or {}).get("prompt_tokens"),
                   "text_chars": len("".join(text)), "ended_properly": True, "chunks": chunks})
    result.update(_timing(start, first, token_times, end, n))
    return result


def _check_tgi(client, api, model, prompt, max_tokens, stream, ignore_eos, clock):
    path = "/generate_stream" if stream else "/generate"
    url = client.url_for(path)
    body = {"inputs": prompt, "parameters": {"max_new_tokens": max_tokens, "details": True}}
    result = {"api": api, "path": path, "stream": stream}
    if not stream:
        start = clock()
        data, resp = client.call_json("POST", path, body)
        end = clock()
        if isinstance(data, list) and data:
            data = data[0]
        if "generated_text" not in data:
            raise LlmProtocolError("POST", url, "the answer has no generated_text: not TGI's /generate.", resp.status, resp.body)
        details = data.get("details") or {}
        n = details.get("generated_tokens")
        result.update({"output_tokens": n, "token_source": "engine" if n is not None else None, "finish_reason": details.get("finish_reason"),
                       "text_chars": len(data.get("generated_text") or ""), "ended_properly": True, "e2e_ms": _ms(end - start),
                       "tokens_per_s": round(n / (end - start), 3) if n and end > start else None})
        return result
    start = clock()
    parser = SseParser()
    first = None
    token_times = []
    final = None
    n_events = 0
    end = start
    for t, chunk in client.stream("POST", path, body):
        if chunk is None:
            continue
        for ev in parser.feed(chunk, t):
            try:
                data = json.loads(ev.data)
            except ValueError:
                raise LlmStreamError("POST", url, "an SSE event is not JSON: not TGI's /generate_stream.", body=ev.data)
            if "error" in data:
                raise LlmStreamError("POST", url, "TGI reported an error inside the stream (%s): %s" % (data.get("error_type"), data.get("error")),
                                     body=ev.data)
            if final is not None:
                raise LlmStreamError("POST", url, "an event arrived after the final one (generated_text set): malformed stream.", body=ev.data)
            if "token" not in data:
                raise LlmStreamError("POST", url, "an event has no token: not TGI's /generate_stream.", body=ev.data)
            if first is None:
                first = ev.t
            token_times.append(ev.t)
            end = ev.t
            n_events += 1
            if data.get("generated_text") is not None:
                final = data
    if final is None:
        raise LlmStreamError("POST", url, "the stream ended after %d token events without the final event (generated_text and details): "
                             "the engine died mid-stream or a proxy cut the connection." % n_events)
    details = final.get("details") or {}
    n = details.get("generated_tokens")
    source = "engine"
    if n is None:
        n = n_events
        source = "chunks"
    result.update({"output_tokens": n, "token_source": source, "finish_reason": details.get("finish_reason"),
                   "prompt_tokens": details.get("input_length"), "text_chars": len(final.get("generated_text") or ""), "ended_properly": True,
                   "chunks": n_events})
    result.update(_timing(start, first, token_times, end, n))
    return result


def _ollama_server_figures(final):
    figures = {}
    for key in ("eval_count", "eval_duration", "prompt_eval_count", "prompt_eval_duration", "load_duration", "total_duration"):
        if key in final:
            figures[key] = final[key]
    if final.get("eval_count") and final.get("eval_duration"):
        figures["eval_tokens_per_s"] = round(final["eval_count"] / (final["eval_duration"] / 1e9), 3)
    if final.get("prompt_eval_count") and final.get("prompt_eval_duration"):
        figures["prompt_eval_tokens_per_s"] = round(final["prompt_eval_count"] / (final["prompt_eval_duration"] / 1e9), 3)
    return figures


def _check_ollama(client, api, model, prompt, max_tokens, stream, ignore_eos, clock):
    path = "/api/chat" if api == "chat" else "/api/generate"
    url = client.url_for(path)
    body = {"model": model, "stream": stream, "options": {"num_predict": max_tokens, "temperature": 0}}
    if api == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    result = {"api": api, "path": path, "stream": stream}

    def piece_of(obj):
        if api == "chat":
            return (obj.get("message") or {}).get("content") or ""
        return obj.get("response") or ""

    if not stream:
        start = clock()
        data, resp = client.call_json("POST", path, body)
        end = clock()
        if not data.get("done"):
            raise LlmProtocolError("POST", url, "the answer lacks done:true: not Ollama's %s." % path, resp.status, resp.body)
        n = data.get("eval_count")
        result.update({"output_tokens": n, "token_source": "engine" if n is not None else None, "finish_reason": data.get("done_reason"),
                       "prompt_tokens": data.get("prompt_eval_count"), "text_chars": len(piece_of(data)), "ended_properly": True,
                       "e2e_ms": _ms(end - start), "tokens_per_s": round(n / (end - start), 3) if n and end > start else None,
                       "server": _ollama_server_figures(data)})
        return result
    start = clock()
    parser = NdjsonParser("POST", url)
    first = None
    token_times = []
    final = None
    pieces = 0
    end = start
    for t, chunk in client.stream("POST", path, body, accept="application/x-ndjson"):
        if chunk is None:
            continue
        for ts, obj in parser.feed(chunk, t):
            if not isinstance(obj, dict):
                raise LlmStreamError("POST", url, "a stream line is not a JSON object.", body=json.dumps(obj))
            if obj.get("error"):
                raise LlmStreamError("POST", url, "Ollama reported an error inside the stream: %s" % obj.get("error"), body=json.dumps(obj))
            if final is not None:
                raise LlmStreamError("POST", url, "a line arrived after done:true: malformed stream.", body=json.dumps(obj))
            if obj.get("done"):
                final = obj
                if piece_of(obj):
                    token_times.append(ts)
                    end = ts
                continue
            if first is None:
                first = ts
            token_times.append(ts)
            end = ts
            pieces += 1
    if final is None:
        raise LlmStreamError("POST", url, "the NDJSON stream ended after %d lines without done:true: the engine died mid-stream or a proxy "
                             "cut the connection." % pieces)
    if first is None:
        raise LlmGenerationError("POST", url, "the stream carried no token line before done:true.")
    n = final.get("eval_count")
    source = "engine"
    if n is None:
        n = pieces
        source = "chunks"
    result.update({"output_tokens": n, "token_source": source, "finish_reason": final.get("done_reason"), "prompt_tokens": final.get("prompt_eval_count"),
                   "ended_properly": True, "chunks": pieces, "server": _ollama_server_figures(final)})
    result.update(_timing(start, first, token_times, end, n))
    return result


CHECKERS = {"openai": _check_openai, "tgi": _check_tgi, "ollama": _check_ollama}


def vllm_metrics(client):
    """Selected vLLM /metrics figures (summed over label sets) and the prefix-cache hit rate."""
    try:
        resp = client.request("GET", "/metrics", accept="text/plain")
    except LlmHttpError:
        return {}
    if resp.status != 200:
        return {}
    values = parse_prometheus(resp.text)
    out = dict((k.replace("vllm:", ""), values[k]) for k in VLLM_METRICS if k in values)
    q = values.get("vllm:prefix_cache_queries_total")
    h = values.get("vllm:prefix_cache_hits_total")
    if q:
        out["prefix_cache_hit_rate"] = round(h / q, 4) if h is not None else None
    return out


class EndpointChecker(object):
    """Runs the whole smoke test against one endpoint."""

    def __init__(self, client, sleep=time.sleep, monotonic=time.monotonic, clock=None):
        self.client = client
        self.sleep = sleep
        self.monotonic = monotonic
        self.clock = clock or client.clock

    def plan(self, engine, apis, streaming):
        protocols = [engine] if engine != "auto" else ["openai", "tgi", "ollama"]
        for proto in protocols:
            for api in apis or []:
                if api not in APIS[proto] and engine != "auto":
                    raise LlmError("apis entry %r is not an API of engine %s; choose from %s" % (api, engine, ", ".join(APIS[proto])))
        if streaming == "both":
            modes = [True, False]
        else:
            modes = [streaming == "streamed"]
        return modes

    def run(self, engine="auto", model=None, apis=None, streaming="both", prompt="Hello", max_tokens=32, min_tokens=8, ignore_eos=False,
            ready_timeout=600.0, collect_metrics=True, watch=None, refused_without_key=False):
        modes = self.plan(engine, apis, streaming)
        # engine=auto: the server answering at all (even 404: not an OpenAI route) means it is up; detection follows.
        also = (404, 405) if engine == "auto" else ()
        ready = wait_ready(self.client, READY_PROBE[engine], ready_timeout, self.sleep, self.monotonic, also_ready=also, watch=watch)
        server, detected_protocol, version, info = detect_engine(self.client)
        protocol = detected_protocol if engine == "auto" else engine
        if engine == "tgi" and not info.get("model_id"):
            info, _resp = self.client.call_json("GET", "/info")
            version = str(info.get("version", ""))
            server = "tgi"
        if refused_without_key:
            refuse_without_key(self.client, KEYED_PATH[protocol])
        served = served_models(self.client, protocol, info)
        model_name = resolve_model(model, served, protocol, self.client.url_for(MODELS_PATH[protocol]))
        use_apis = [a for a in (apis or APIS[protocol]) if a in APIS[protocol]]
        if not use_apis:
            raise LlmError("none of apis %s is an API of the detected engine %s (%s); choose from %s"
                           % (apis, server, protocol, ", ".join(APIS[protocol])))
        checks = []
        for api in use_apis:
            for stream in modes:
                res = CHECKERS[protocol](self.client, api, model_name, prompt, max_tokens, stream, ignore_eos, self.clock)
                n = res.get("output_tokens")
                if n is None or n < min_tokens:
                    raise LlmGenerationError("POST", self.client.url_for(res["path"]),
                                             "generated %s tokens (finish_reason %s, counted from %s), fewer than min_tokens=%d: no real generation "
                                             "proven. Raise max_tokens, set ignore_eos (vLLM) or lower min_tokens."
                                             % (n, res.get("finish_reason"), res.get("token_source"), min_tokens))
                checks.append(res)
        result = {
            "engine": server,
            "protocol": protocol,
            "engine_version": version,
            "model": model_name,
            "served_models": served,
            "time_to_ready_s": ready["time_to_ready_s"],
            "ready_attempts": ready["attempts"],
            "waited_for": ready["waited_for"],
            "checks": checks,
        }
        streamed = [c for c in checks if c["stream"]]
        lead = streamed[0] if streamed else checks[0]
        for key in ("ttft_ms", "itl_ms_mean", "itl_ms_median", "tpot_ms", "e2e_ms", "tokens_per_s", "output_tokens"):
            result[key] = lead.get(key)
        server_figures = {}
        if protocol == "ollama":
            server_figures = dict(lead.get("server") or {})
            try:
                ps, _resp = self.client.call_json("GET", "/api/ps")
                server_figures["loaded_models"] = [dict((k, m.get(k)) for k in ("name", "size", "size_vram") if k in m) for m in ps.get("models", [])]
            except LlmHttpError:
                pass
        elif server == "vllm" and collect_metrics:
            server_figures = vllm_metrics(self.client)
        result["server"] = server_figures
        return result


__all__ = ["EndpointChecker", "LlmAuthError", "LlmGenerationError", "LlmNotReadyError", "wait_ready", "detect_engine", "resolve_model",
           "refuse_without_key"]
