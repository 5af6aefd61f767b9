# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""tgi-stand-in: a STAND-IN for text-generation-inference, NOT TGI. It generates no real text.

It lets the tgi role's mechanics (image loaded from a tarball, unit, port mapping 3000 -> 80, env,
API key, restart, readiness) be tested where no part of TGI can be obtained. It takes the options of
`text-generation-launcher` (flags or the same environment variables) and answers TGI's documented HTTP
contract, after huggingface/text-generation-inference router/src/server.rs and router/src/lib.rs:

  GET  /health               200 empty, or 503 {"error":"unhealthy","error_type":"healthcheck"} while "loading"
  GET  /info                 Info (model_id, max_input_tokens, max_total_tokens, router, version, ...)
  GET  /metrics              Prometheus text (tgi_request_count, tgi_request_success, ...)
  GET  /v1/models            OpenAI model list
  POST /generate, /          GenerateResponse {"generated_text", "details"}
  POST /generate_stream      SSE: data:{"index","token":{id,text,logprob,special},"generated_text":null,"details":null}
                             ..., the last event carrying generated_text (and details when asked)
  POST /v1/chat/completions  OpenAI chat (streamed: chunks then `data: [DONE]`)
  POST /v1/completions       OpenAI completions

With --api-key (API_KEY) the generation routes need "Authorization: Bearer <key>" (401 otherwise);
/health, /info, /metrics and /v1/models stay open, as the router's info routes do.
Standard library only: it runs on the lab's Debian 12 python3.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "3.3.6-stand-in"
WORDS = ["The", " light", "house", " keeper", " found", " a", " bottle", " on", " the", " shore", " at", " dawn", ",", " and",
         " inside", " it", " a", " letter", " written", " in", " faded", " ink", "."]
OPEN_ROUTES = ("/health", "/info", "/metrics", "/v1/models", "/ping")


def compact(obj):
    """serde_json style: no spaces."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def env_default(name, default):
    return os.environ.get(name, default)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="tgi-stand-in", description=__doc__.split("\n\n", maxsplit=1)[0])
    p.add_argument("--model-id", default=env_default("MODEL_ID", "bigscience/bloom-560m"))
    p.add_argument("--revision", default=env_default("REVISION", None))
    p.add_argument("--num-shard", type=int, default=int(env_default("NUM_SHARD", "1")))
    p.add_argument("--quantize", default=env_default("QUANTIZE", None))
    p.add_argument("--max-concurrent-requests", type=int, default=int(env_default("MAX_CONCURRENT_REQUESTS", "128")))
    p.add_argument("--max-input-tokens", type=int, default=int(env_default("MAX_INPUT_TOKENS", "1024")))
    p.add_argument("--max-total-tokens", type=int, default=int(env_default("MAX_TOTAL_TOKENS", "2048")))
    p.add_argument("--max-batch-prefill-tokens", type=int, default=int(env_default("MAX_BATCH_PREFILL_TOKENS", "4096")))
    p.add_argument("--hostname", default=env_default("HOSTNAME_BIND", "0.0.0.0"))
    p.add_argument("--port", type=int, default=int(env_default("PORT", "3000")))
    p.add_argument("--usage-stats", default=env_default("USAGE_STATS", "on"), choices=["on", "off", "no-stack"])
    p.add_argument("--api-key", default=env_default("API_KEY", None))
    p.add_argument("--json-output", action="store_true", help="accepted like the launcher's (the official image's CMD)")
    p.add_argument("--graceful-termination-timeout", type=int, default=int(env_default("GRACEFUL_TERMINATION_TIMEOUT", "90")),
                   help="like the launcher's: on SIGTERM stop accepting, let requests in flight finish for this long, then exit")
    p.add_argument("--warmup-seconds", type=float, default=float(env_default("STANDIN_WARMUP_SECONDS", "2")),
                   help="stand-in only: /health answers 503 this long after start (model 'loading')")
    return p.parse_args(argv)


class State(object):
    def __init__(self, args):
        self.args = args
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.counters = {"tgi_request_count": 0, "tgi_request_success": 0, "tgi_request_failure": 0,
                         "tgi_request_generated_tokens_sum": 0}

    def count(self, **inc):
        with self.lock:
            for k, v in inc.items():
                self.counters[k] += v

    def ready(self):
        return time.monotonic() - self.started >= self.args.warmup_seconds

    def info(self):
        a = self.args
        return {"model_id": a.model_id, "model_sha": a.revision, "model_pipeline_tag": "text-generation",
                "max_concurrent_requests": a.max_concurrent_requests, "max_best_of": 2, "max_stop_sequences": 4,
                "max_input_tokens": a.max_input_tokens, "max_total_tokens": a.max_total_tokens, "validation_workers": 2,
                "max_client_batch_size": 4, "router": "text-generation-router", "version": VERSION, "sha": None,
                "docker_label": "tgi-stand-in"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tgi-stand-in"

    def log_message(self, fmt, *args):
        sys.stderr.write("tgi-stand-in: %s %s\n" % (self.address_string(), fmt % args))

    def handle_one_request(self):
        BaseHTTPRequestHandler.handle_one_request(self)
        # draining: a keep-alive connection closes after the request it carried, as hyper's graceful shutdown does
        if getattr(self.server, "draining", False):
            self.close_connection = True

    @property
    def state(self):
        return self.server.state

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw.decode("utf-8")) if raw else {}
        except ValueError:
            return None

    def _send(self, status, body, ctype="application/json", extra=None):
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _start_sse(self, extra=None):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("x-accel-buffering", "no")
        self.send_header("transfer-encoding", "chunked")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def _chunk(self, text):
        data = text.encode("utf-8")
        self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
        self.wfile.flush()

    def _end(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _authorized(self):
        key = self.state.args.api_key
        path = self.path.split("?")[0]
        if not key or path in OPEN_ROUTES:
            return True
        if (self.headers.get("Authorization") or "").lower() == ("Bearer " + key).lower():
            return True
        self._send(401, b"", ctype="text/plain")
        return False

    def _tokens(self, n):
        return [WORDS[i % len(WORDS)] for i in range(n)]

    def do_GET(self):
        path = self.path.split("?")[0]
        if not self._authorized():
            return None
        if path in ("/health", "/ping", "/"):
            if not self.state.ready():
                return self._send(503, compact({"error": "unhealthy", "error_type": "healthcheck"}))
            return self._send(200, b"", ctype="text/plain")
        if path == "/info":
            return self._send(200, compact(self.state.info()))
        if path == "/v1/models":
            mid = self.state.args.model_id
            return self._send(200, compact({"object": "list", "data": [{"id": mid, "object": "model", "created": 0, "owned_by": mid}]}))
        if path == "/metrics":
            with self.state.lock:
                lines = ["# TYPE %s counter\n%s %d" % (k, k, v) for k, v in sorted(self.state.counters.items())]
            return self._send(200, "\n".join(lines) + "\n", ctype="text/plain; version=0.0.4")
        return self._send(404, b"", ctype="text/plain")

    def do_POST(self):
        path = self.path.split("?")[0]
        body = self._body()  # read it first: a refused request must not leave its body in the connection
        if not self._authorized():
            return None
        if body is None:
            self.state.count(tgi_request_count=1, tgi_request_failure=1)
            return self._send(422, compact({"error": "Failed to deserialize the JSON body into the target type", "error_type": "validation"}))
        if path in ("/generate", "/"):
            return self._generate(body, stream=bool(body.get("stream")) if path == "/" else False)
        if path == "/generate_stream":
            return self._generate(body, stream=True)
        if path == "/v1/chat/completions":
            return self._openai(body, chat=True)
        if path == "/v1/completions":
            return self._openai(body, chat=False)
        return self._send(404, b"", ctype="text/plain")

    def _limit(self, n):
        a = self.state.args
        if n + 1 > a.max_total_tokens:
            return "`inputs` tokens + `max_new_tokens` must be <= %d. Given: 1 `inputs` tokens and %d `max_new_tokens`" % (a.max_total_tokens, n)
        return None

    def _generate(self, body, stream):
        params = body.get("parameters") or {}
        n = int(params.get("max_new_tokens") or 100)
        err = self._limit(n)
        self.state.count(tgi_request_count=1)
        if err:
            self.state.count(tgi_request_failure=1)
            return self._send(422, compact({"error": err, "error_type": "validation"}))
        words = self._tokens(n)
        headers = {"x-compute-type": "stand-in", "x-compute-characters": str(len(str(body.get("inputs", ""))))}
        self.state.count(tgi_request_success=1, tgi_request_generated_tokens_sum=n)
        if not stream:
            out = {"generated_text": "".join(words)}
            if params.get("details"):
                out["details"] = {"finish_reason": "length", "generated_tokens": n, "seed": None, "prefill": [],
                                  "tokens": [{"id": 100 + i, "text": w, "logprob": -0.5, "special": False} for i, w in enumerate(words)]}
            headers.update({"x-prompt-tokens": "1", "x-generated-tokens": str(n)})
            return self._send(200, compact(out), extra=headers)
        self._start_sse(headers)
        for i, w in enumerate(words):
            last = i == n - 1
            ev = {"index": i + 1, "token": {"id": 100 + i, "text": w, "logprob": -0.5, "special": False},
                  "generated_text": "".join(words) if last else None,
                  "details": ({"finish_reason": "length", "generated_tokens": n, "seed": None, "input_length": 1}
                              if last and params.get("details") else None)}
            self._chunk("data:" + compact(ev) + "\n\n")
        return self._end()

    def _openai(self, body, chat):
        n = int(body.get("max_tokens") or body.get("max_completion_tokens") or 100)
        err = self._limit(n)
        self.state.count(tgi_request_count=1)
        if err:
            self.state.count(tgi_request_failure=1)
            return self._send(422, compact({"error": err, "error_type": "validation"}))
        self.state.count(tgi_request_success=1, tgi_request_generated_tokens_sum=n)
        words = self._tokens(n)
        created = int(time.time())
        model = body.get("model") or self.state.args.model_id
        kind = "chat.completion" if chat else "text_completion"
        usage = {"prompt_tokens": 1, "completion_tokens": n, "total_tokens": n + 1}
        if not body.get("stream"):
            choice = {"index": 0, "logprobs": None, "finish_reason": "length"}
            if chat:
                choice["message"] = {"role": "assistant", "content": "".join(words)}
            else:
                choice["text"] = "".join(words)
            return self._send(200, compact({"object": kind, "id": "", "created": created, "model": model,
                                            "system_fingerprint": VERSION, "choices": [choice], "usage": usage}))
        self._start_sse()
        for i, w in enumerate(words):
            last = i == n - 1
            if chat:
                choice = {"index": 0, "delta": {"role": "assistant", "content": w}, "logprobs": None,
                          "finish_reason": "length" if last else None}
                ev = {"object": "chat.completion.chunk", "id": "", "created": created, "model": model,
                      "system_fingerprint": VERSION, "choices": [choice], "usage": usage if last else None}
            else:
                ev = {"object": "text_completion", "id": "", "created": created, "model": model, "system_fingerprint": VERSION,
                      "choices": [{"index": 0, "text": w, "logprobs": None, "finish_reason": "length" if last else None}]}
            self._chunk("data: " + compact(ev) + "\n\n")
        self._chunk("data: [DONE]\n\n")
        return self._end()


class DrainingServer(ThreadingHTTPServer):
    """Counts the requests in flight, so that SIGTERM can let them finish (TGI's graceful termination)."""

    daemon_threads = True

    def __init__(self, *args, **kwargs):
        ThreadingHTTPServer.__init__(self, *args, **kwargs)
        self.inflight = 0
        self.inflight_lock = threading.Lock()
        self.draining = False

    def process_request_thread(self, request, client_address):
        with self.inflight_lock:
            self.inflight += 1
        try:
            ThreadingHTTPServer.process_request_thread(self, request, client_address)
        finally:
            with self.inflight_lock:
                self.inflight -= 1


def drain(httpd, timeout):
    """After serve_forever returned: wait up to ``timeout`` s for the requests in flight; True when none is left."""
    deadline = time.monotonic() + timeout
    while httpd.inflight > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    return httpd.inflight == 0


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    offline = os.environ.get("HF_HUB_OFFLINE")
    if os.path.isabs(args.model_id) and not os.path.isfile(os.path.join(args.model_id, "config.json")):
        sys.stderr.write("tgi-stand-in: model_id %s has no config.json (not a model directory)\n" % args.model_id)
        return 1
    if not os.path.isabs(args.model_id) and offline != "1":
        sys.stderr.write("tgi-stand-in: %s is a hub id and HF_HUB_OFFLINE is %r: the real TGI would download it now\n"
                         % (args.model_id, offline))
    sys.stderr.write("tgi-stand-in %s (a STAND-IN, not TGI): model_id=%s num_shard=%d quantize=%s max_input_tokens=%d "
                     "max_total_tokens=%d max_concurrent_requests=%d usage_stats=%s HF_HUB_OFFLINE=%s api_key=%s port=%d\n"
                     % (VERSION, args.model_id, args.num_shard, args.quantize, args.max_input_tokens, args.max_total_tokens,
                        args.max_concurrent_requests, args.usage_stats, offline, "set" if args.api_key else "unset", args.port))
    httpd = DrainingServer((args.hostname, args.port), Handler)
    httpd.state = State(args)

    def on_sigterm(_signum, _frame):
        sys.stderr.write("tgi-stand-in: SIGTERM, draining for up to %d s\n" % args.graceful_termination_timeout)
        httpd.draining = True
        # shutdown() waits for serve_forever to return: call it from another thread than the one serving
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    drained = drain(httpd, args.graceful_termination_timeout)
    sys.stderr.write("tgi-stand-in: %s\n" % ("drained" if drained else "%d request(s) cut at the timeout" % httpd.inflight))
    httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
