# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""REPLAY servers: not TGI and not Ollama, but HTTP servers that replay their documented wire format.

No part of text-generation-inference can be installed on the test machine (Rust router, image in an
unreachable registry), so TgiReplay answers what TGI's router answers, byte for byte where the
source fixes the bytes:

- Routes, status codes and bodies: huggingface/text-generation-inference router/src/server.rs
  (`health` -> 200 empty or 503 {"error":"unhealthy","error_type":"healthcheck"}; `get_model_info`
  -> Info; `openai_get_model_info`; `generate` -> GenerateResponse; `generate_stream` -> one SSE
  event per token (StreamResponse with generated_text null, details null), the last one carrying
  generated_text and, when parameters.details, StreamDetails).
- JSON shapes and field order: router/src/lib.rs (Info, Token {id,text,logprob,special},
  StreamResponse {index,token,[top_tokens skipped when empty],generated_text,details},
  StreamDetails {finish_reason,generated_tokens,seed,input_length}, ErrorResponse {error,error_type},
  FinishReason serialised snake_case: "length" / "eos_token" / "stop_sequence"); serde_json writes
  compact JSON (no spaces).
- SSE framing: axum response/sse.rs `Event::json_data` writes `data:` + compact JSON + "\\n", then
  "\\n"; keep-alive comments ":\\n\\n"; headers content-type text/event-stream, cache-control
  no-cache; TGI adds x-compute-type, x-compute-characters and X-Accel-Buffering: no. Bodies are
  chunked (hyper).

OllamaReplay answers what the Ollama server answers, after ollama/ollama docs/api.md ("Generate a
completion", "Generate a chat completion", "List Local Models", "List Running Models", "Version"):
newline-delimited JSON objects (Go encoding/json: compact, struct field order, omitempty fields left
out), content-type application/x-ndjson when streamed, application/json otherwise; durations in
nanoseconds; the final object has done:true, done_reason, total_duration, load_duration,
prompt_eval_count, prompt_eval_duration, eval_count, eval_duration; an unknown model is
404 {"error":"model \\"x\\" not found, try pulling it first"}.

Knobs for failure tests: ``unhealthy_first`` (answer 503 / refuse readiness for the first N probes),
``die_after`` (close the connection after N token events, mid-stream), ``token_delay`` (seconds
between tokens), ``api_key`` (require "Authorization: Bearer <key>", as a proxy in front would).
"""
from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORDS = ["The", " light", "house", " keeper", " found", " a", " bottle", " on", " the", " shore", " at", " dawn", ",", " and", " inside",
         " it", " a", " letter", " written", " in", " faded", " ink", "."]


def compact(obj):
    """serde_json / Go encoding/json style: no spaces, keys in the given order."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "replay"

    def log_message(self, fmt, *args):  # keep test output clean
        pass

    # -- plumbing ------------------------------------------------------------------------------
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

    def _start_chunked(self, ctype, extra=None):
        self.send_response(200)
        self.send_header("content-type", ctype)
        self.send_header("transfer-encoding", "chunked")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def _chunk(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
        self.wfile.flush()

    def _end_chunked(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _die(self):
        """Close the TCP connection abruptly, mid-stream, as a crashed engine does."""
        self.wfile.flush()
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.close_connection = True

    def _authorized(self):
        key = self.server.replay.api_key
        if not key:
            return True
        if self.headers.get("Authorization") == "Bearer %s" % key:
            return True
        self._send(401, compact({"error": "Unauthorized"}))
        return False

    def do_GET(self):
        if self._authorized():
            self.server.replay.get(self)

    def do_POST(self):
        if self._authorized():
            self.server.replay.post(self)


class _Replay(object):
    def __init__(self, unhealthy_first=0, die_after=None, token_delay=0.0, api_key=None, model="tiny"):
        self.unhealthy_first = unhealthy_first
        self.die_after = die_after
        self.token_delay = token_delay
        self.api_key = api_key
        self.model = model
        self.probes = 0
        self.requests = []
        self.httpd = None
        self.thread = None

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.httpd.server_address[1]

    def start(self):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.replay = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _tokens(self, n):
        return [WORDS[i % len(WORDS)] for i in range(n)]


class TgiReplay(_Replay):
    """Replays TGI's router (version 3.x wire format). See the module docstring for the sources."""

    version = "3.3.6"

    def info(self):
        return {"model_id": self.model, "model_sha": None, "model_pipeline_tag": "text-generation", "max_concurrent_requests": 128, "max_best_of": 2,
                "max_stop_sequences": 4, "max_input_tokens": 1024, "max_total_tokens": 2048, "validation_workers": 2, "max_client_batch_size": 4,
                "router": "text-generation-router", "version": self.version, "sha": None, "docker_label": None}

    def get(self, h):
        self.requests.append(("GET", h.path))
        if h.path == "/health":
            self.probes += 1
            if self.probes <= self.unhealthy_first:
                return h._send(503, compact({"error": "unhealthy", "error_type": "healthcheck"}))
            return h._send(200, b"", ctype="text/plain")
        if h.path == "/info":
            return h._send(200, compact(self.info()))
        if h.path == "/v1/models":
            return h._send(200, compact({"object": "list", "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": self.model}]}))
        if h.path == "/metrics":
            return h._send(200, "# TYPE tgi_request_count counter\ntgi_request_count 3\n", ctype="text/plain; version=0.0.4")
        return h._send(404, b"", ctype="text/plain")

    def post(self, h):
        body = h._body()
        self.requests.append(("POST", h.path, body))
        if body is None:
            return h._send(422, compact({"error": "Failed to deserialize the JSON body into the target type", "error_type": "validation"}))
        params = body.get("parameters") or {}
        n = int(params.get("max_new_tokens") or 100)
        words = self._tokens(n)
        headers = {"x-compute-type": "gpu+optimized", "x-compute-characters": str(len(body.get("inputs", "")))}
        if h.path == "/generate":
            out = {"generated_text": "".join(words)}
            if params.get("details"):
                out["details"] = {"finish_reason": "length", "generated_tokens": n, "seed": None, "prefill": [],
                                  "tokens": [{"id": 100 + i, "text": w, "logprob": -0.5, "special": False} for i, w in enumerate(words)]}
            headers.update({"x-prompt-tokens": "12", "x-generated-tokens": str(n)})
            return h._send(200, compact(out), extra=headers)
        if h.path == "/generate_stream":
            headers.update({"cache-control": "no-cache", "x-accel-buffering": "no"})
            h._start_chunked("text/event-stream", headers)
            for i, w in enumerate(words):
                if self.die_after is not None and i >= self.die_after:
                    return h._die()
                if self.token_delay:
                    time.sleep(self.token_delay)
                last = i == n - 1
                ev = {"index": i + 1, "token": {"id": 100 + i, "text": w, "logprob": -0.5, "special": False},
                      "generated_text": "".join(words) if last else None,
                      "details": ({"finish_reason": "length", "generated_tokens": n, "seed": None, "input_length": 12}
                                  if last and params.get("details") else None)}
                h._chunk("data:" + compact(ev) + "\n\n")
            return h._end_chunked()
        return h._send(404, b"", ctype="text/plain")


class OllamaReplay(_Replay):
    """Replays the Ollama server's native API after docs/api.md. See the module docstring.

    Checked against the real server (Ollama 0.5.4, IPEX-LLM build) by test_llm_ollama_replay.py when the lab's
    archive is present: same content types (Gin's "application/json; charset=utf-8", "application/x-ndjson") and
    the same key order on every line. 0.5.4 words an unknown model {"error":"model 'x' not found"}; the replay keeps
    the docs' newer wording; the module classifies both.
    """

    version = "0.5.4"
    created_at = "2026-11-24T00:00:00.000000000Z"
    json_ctype = "application/json; charset=utf-8"

    def names(self):
        return [self.model + ":latest"]

    @staticmethod
    def details():
        return {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"], "parameter_size": "492K",
                "quantization_level": "unknown"}

    def get(self, h):
        self.requests.append(("GET", h.path))
        if h.path == "/api/version":
            self.probes += 1
            if self.probes <= self.unhealthy_first:
                return h._die()  # the server is not listening yet: the connection drops
            return h._send(200, compact({"version": self.version}), ctype=self.json_ctype)
        if h.path == "/api/tags":
            models = [{"name": n, "model": n, "modified_at": "2026-11-24T00:00:00Z", "size": 2180000, "digest": "0" * 64,
                       "details": self.details()} for n in self.names()]
            return h._send(200, compact({"models": models}), ctype=self.json_ctype)
        if h.path == "/api/ps":
            models = [{"name": n, "model": n, "size": 4400000, "digest": "0" * 64, "details": self.details(), "expires_at": "2026-11-24T00:05:00Z",
                       "size_vram": 0} for n in self.names()]
            return h._send(200, compact({"models": models}), ctype=self.json_ctype)
        if h.path == "/v1/models":  # docs/openai.md: the OpenAI-compatible listing
            data = [{"id": n, "object": "model", "created": 1795478400, "owned_by": "library"} for n in self.names()]
            return h._send(200, compact({"object": "list", "data": data}), ctype=self.json_ctype)
        if h.path == "/":
            return h._send(200, "Ollama is running", ctype="text/plain; charset=utf-8")
        return h._send(404, "404 page not found", ctype="text/plain")

    def _final(self, name, n, chat, text=""):
        obj = {"model": name, "created_at": self.created_at}
        if chat:
            obj["message"] = {"role": "assistant", "content": text}
            obj["done_reason"] = "length"
            obj["done"] = True
        else:
            obj["response"] = text
            obj["done"] = True
            obj["done_reason"] = "length"
            obj["context"] = [1, 2, 3]
        obj.update({"total_duration": 120000000, "load_duration": 20000000, "prompt_eval_count": 26, "prompt_eval_duration": 10000000,
                    "eval_count": n, "eval_duration": 80000000})
        return obj

    def post(self, h):
        body = h._body()
        self.requests.append(("POST", h.path, body))
        if h.path not in ("/api/generate", "/api/chat"):
            return h._send(404, "404 page not found", ctype="text/plain")
        if body is None:
            return h._send(400, compact({"error": "invalid character looking for beginning of value"}), ctype=self.json_ctype)
        name = body.get("model", "")
        full = name if ":" in name else name + ":latest"
        if full not in self.names():
            return h._send(404, compact({"error": "model \"%s\" not found, try pulling it first" % name}), ctype=self.json_ctype)
        chat = h.path == "/api/chat"
        n = int((body.get("options") or {}).get("num_predict") or 16)
        words = self._tokens(n)
        if body.get("stream", True) is False:
            return h._send(200, compact(self._final(name, n, chat, "".join(words))), ctype=self.json_ctype)
        h._start_chunked("application/x-ndjson")
        for i, w in enumerate(words):
            if self.die_after is not None and i >= self.die_after:
                return h._die()
            if self.token_delay:
                time.sleep(self.token_delay)
            if chat:
                obj = {"model": name, "created_at": self.created_at, "message": {"role": "assistant", "content": w}, "done": False}
            else:
                obj = {"model": name, "created_at": self.created_at, "response": w, "done": False}
            h._chunk(compact(obj) + "\n")
        h._chunk(compact(self._final(name, n, chat)) + "\n")
        return h._end_chunked()
