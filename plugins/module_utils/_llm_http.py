# -*- coding: utf-8 -*-
# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared HTTP client for LLM serving endpoints (vLLM, TGI, Ollama).

Standard library only (http.client, ssl, json): the modules run on any host with Python 3.8+,
with nothing to install. Private to this collection (leading underscore).

What lives here:
- ``CLIENT_ARGSPEC``: the connection options every llm_* module shares (url, api_key with
  no_log, headers, timeout, validate_certs, ca_path, client_cert, client_key).
- ``HttpClient``: one request, or one streamed response read chunk by chunk with the arrival
  time (``time.perf_counter``) of every chunk.
- ``SseParser`` and ``NdjsonParser``: incremental parsers for Server-Sent Events (OpenAI, TGI)
  and newline-delimited JSON (Ollama); each message carries the arrival time of the chunk
  that completed it.
- Typed errors whose ``str()`` says what was called, the HTTP status, the start of the body and
  what it means for the operator.
"""

from __future__ import annotations

import codecs
import json
import socket
import ssl
import time

try:  # Python 3
    import http.client as http_client
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover
    http_client = None
    urlsplit = None

BODY_START_CHARS = 300

CLIENT_ARGSPEC = dict(
    url=dict(type="str", required=True),
    api_key=dict(type="str", no_log=True),
    headers=dict(type="dict", default={}),
    timeout=dict(type="float", default=60.0),
    validate_certs=dict(type="bool", default=True),
    ca_path=dict(type="path"),
    client_cert=dict(type="path"),
    client_key=dict(type="path", no_log=False),
)


def client_from_params(params, clock=None):
    """Build an HttpClient from module parameters holding CLIENT_ARGSPEC's keys."""
    return HttpClient(
        url=params["url"],
        api_key=params.get("api_key"),
        headers=params.get("headers") or {},
        timeout=params.get("timeout") or 60.0,
        validate_certs=params.get("validate_certs", True),
        ca_path=params.get("ca_path"),
        client_cert=params.get("client_cert"),
        client_key=params.get("client_key"),
        clock=clock,
    )


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
class LlmError(Exception):
    """Base of every error raised by the llm_* logic."""


class LlmConfigError(LlmError):
    """An option value cannot work (bad URL, client_key without client_cert, ...)."""


class LlmHttpError(LlmError):
    """A call failed. ``str()`` is the operator-facing message."""

    retryable = False

    def __init__(self, method, url, meaning, status=None, body=None):
        self.method = method
        self.url = url
        self.meaning = meaning
        self.status = status
        self.body = body if body is not None else ""
        super(LlmHttpError, self).__init__(self._render())

    def _render(self):
        what = "%s %s" % (self.method, self.url)
        if self.status is not None:
            text = "%s returned HTTP %s: %s" % (what, self.status, self.meaning)
        else:
            text = "%s failed: %s" % (what, self.meaning)
        start = body_start(self.body)
        if start:
            text += " Body starts: %s" % start
        return text


class LlmConnectError(LlmHttpError):
    """Nothing answered (refused, unreachable, reset before a response)."""

    retryable = True


class LlmTimeoutError(LlmHttpError):
    """No answer within the timeout."""

    retryable = True


class LlmTlsError(LlmHttpError):
    """The TLS handshake failed (untrusted certificate, wrong client certificate)."""


class LlmStatusError(LlmHttpError):
    """The server answered with a non-2xx status."""

    def __init__(self, method, url, meaning, status=None, body=None):
        super(LlmStatusError, self).__init__(method, url, meaning, status, body)
        self.retryable = status in (502, 503, 504)


class LlmAuthError(LlmStatusError):
    """401/403: the API key is missing or refused."""


class LlmModelNotServedError(LlmStatusError):
    """The requested model is not among the served ones."""


class LlmStreamError(LlmHttpError):
    """A streamed response was malformed or ended before its proper end marker."""


class LlmProtocolError(LlmHttpError):
    """A response was not what the engine's documented API returns (bad JSON, missing field)."""


def body_start(body, limit=BODY_START_CHARS):
    """First ``limit`` characters of a body on one line, for error messages."""
    if body is None:
        return ""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    body = " ".join(body.split())
    if len(body) > limit:
        body = body[:limit] + "..."
    return body


def _error_text(body):
    """The engine's own error message from a JSON error body, if any."""
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return ""
    if isinstance(data, dict):
        err = data.get("error", data.get("message", data.get("detail", "")))
        if isinstance(err, dict):
            err = err.get("message", "")
        if isinstance(err, list):
            err = json.dumps(err)
        return str(err or "")
    return ""


def classify_status(method, url, status, body, api_key_set=False):
    """Turn a non-2xx answer into a typed error whose message says what it means and how to fix it."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    body = body or ""
    engine_msg = _error_text(body)
    low = (engine_msg or body).lower()
    if status == 401:
        if api_key_set:
            meaning = "the API key was refused: check api_key against the key the engine was started with (vLLM --api-key, TGI/OpenAI proxy)."
        else:
            meaning = "the endpoint wants an API key: set api_key (sent as 'Authorization: Bearer ...')."
        return LlmAuthError(method, url, meaning, status, body)
    if status == 403:
        return LlmAuthError(method, url, "access forbidden: the API key or client certificate is not allowed here; check api_key, client_cert and client_key.",
                            status, body)
    if status == 404:
        if "model" in low and ("not exist" in low or "not found" in low):
            return LlmModelNotServedError(method, url, "the requested model is not served: set model to one of the served names (GET /v1/models lists them).",
                                          status, body)
        return LlmStatusError(method, url, "path not served: the engine behind url does not offer this API; check url (no /v1 suffix) and engine.",
                              status, body)
    if status == 405:
        return LlmStatusError(method, url, "method not allowed: the path exists but not for this method; check url and engine.", status, body)
    if status in (400, 422):
        return LlmStatusError(method, url, "the engine refused the request as invalid (%s); check model, max_tokens against the model's "
                              "context length, and prompt." % (engine_msg or "no reason given"), status, body)
    if status == 424:
        return LlmStatusError(method, url, "generation failed inside the engine (TGI 424); see the engine's log.", status, body)
    if status == 429:
        return LlmStatusError(method, url, "the engine is overloaded or rate limited; lower the concurrency or retry later.", status, body)
    if status == 502 or status == 504:
        return LlmStatusError(method, url, "a proxy in front of the engine got no good answer from it: the engine is down or still starting.", status, body)
    if status == 503:
        return LlmStatusError(method, url, "the engine is not ready (loading the model or unhealthy); wait longer (ready_timeout) or check its log.",
                              status, body)
    if status >= 500:
        return LlmStatusError(method, url, "the engine failed internally (%s); see the engine's log." % (engine_msg or "no reason given"), status, body)
    return LlmStatusError(method, url, "unexpected HTTP status.", status, body)


# ---------------------------------------------------------------------------------------------
# Stream parsers
# ---------------------------------------------------------------------------------------------
class SseEvent(object):
    """One Server-Sent Event: its ``data`` (str), ``event`` name and arrival time ``t``."""

    __slots__ = ("data", "event", "t")

    def __init__(self, data, event, t):
        self.data = data
        self.event = event
        self.t = t

    def __repr__(self):
        return "SseEvent(%r, %r, %r)" % (self.data, self.event, self.t)


class SseParser(object):
    """Incremental Server-Sent Events parser (WHATWG rules for fields and line endings).

    ``feed(chunk, t)`` returns the events that chunk completed. Comments (lines starting with
    ':', used as keep-alives) are dropped. ``data:x`` and ``data: x`` both give ``x``
    (TGI writes the first, vLLM and Ollama the second).
    """

    def __init__(self):
        self._buf = ""
        self._data = []
        self._event = None
        self._pending_cr = False
        self._dec = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, chunk, t=None):
        if isinstance(chunk, bytes):
            chunk = self._dec.decode(chunk)
        if self._pending_cr and chunk.startswith("\n"):
            chunk = chunk[1:]
        self._pending_cr = chunk.endswith("\r")
        self._buf += chunk.replace("\r\n", "\n").replace("\r", "\n")
        events = []
        while True:
            idx = self._buf.find("\n")
            if idx < 0:
                break
            line = self._buf[:idx]
            self._buf = self._buf[idx + 1:]
            if line == "":
                if self._data:
                    events.append(SseEvent("\n".join(self._data), self._event, t))
                self._data = []
                self._event = None
                continue
            if line.startswith(":"):
                continue
            field, sep, value = line.partition(":")
            if sep and value.startswith(" "):
                value = value[1:]
            if field == "data":
                self._data.append(value)
            elif field == "event":
                self._event = value
        return events

    def pending(self):
        """True when bytes of an unfinished event are buffered."""
        return bool(self._data or self._buf.strip())


class NdjsonParser(object):
    """Incremental newline-delimited JSON parser: ``feed`` returns ``(t, obj)`` pairs."""

    def __init__(self, method="POST", url=""):
        self._buf = b""
        self._method = method
        self._url = url

    def feed(self, chunk, t=None):
        if isinstance(chunk, str):
            chunk = chunk.encode("utf-8")
        self._buf += chunk
        out = []
        while True:
            idx = self._buf.find(b"\n")
            if idx < 0:
                break
            line = self._buf[:idx].strip()
            self._buf = self._buf[idx + 1:]
            if not line:
                continue
            try:
                out.append((t, json.loads(line.decode("utf-8"))))
            except ValueError:
                raise LlmStreamError(self._method, self._url, "a stream line is not JSON, so this is not an NDJSON stream (wrong engine?).",
                                     body=line)
        return out

    def pending(self):
        return bool(self._buf.strip())


# ---------------------------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------------------------
class Response(object):
    """A complete (non-streamed) response."""

    def __init__(self, status, headers, body, started, finished):
        self.status = status
        self.headers = headers
        self.body = body
        self.started = started
        self.finished = finished

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    @property
    def elapsed(self):
        return self.finished - self.started


class HttpClient(object):
    """Small HTTP/1.1 client over http.client with the options every llm_* module shares."""

    def __init__(self, url, api_key=None, headers=None, timeout=60.0, validate_certs=True, ca_path=None,
                 client_cert=None, client_key=None, clock=None, connection_factory=None):
        parts = urlsplit(url or "")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LlmConfigError("url %r is not an http:// or https:// URL with a host; set url to the engine's base URL, e.g. http://host:8000"
                                 % (url,))
        if client_key and not client_cert:
            raise LlmConfigError("client_key is set without client_cert; set client_cert to the certificate that goes with the key")
        self.base_url = url.rstrip("/")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.api_key = api_key
        self.extra_headers = dict(headers or {})
        self.timeout = float(timeout)
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.client_cert = client_cert
        self.client_key = client_key
        self.clock = clock or time.perf_counter
        self._connection_factory = connection_factory
        self._ssl_context = None

    # -- plumbing ------------------------------------------------------------------------------
    def url_for(self, path):
        return self.base_url + path

    def ssl_context(self):
        if self.scheme != "https":
            return None
        if self._ssl_context is None:
            ctx = ssl.create_default_context(cafile=self.ca_path) if self.ca_path else ssl.create_default_context()
            if not self.validate_certs:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if self.client_cert:
                ctx.load_cert_chain(self.client_cert, self.client_key)
            self._ssl_context = ctx
        return self._ssl_context

    def headers_for(self, body=None, accept="application/json"):
        headers = {"Accept": accept, "User-Agent": "onprem.llm_serving"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = "Bearer %s" % self.api_key
        headers.update(self.extra_headers)
        return headers

    def _connect(self, timeout):
        if self._connection_factory is not None:
            return self._connection_factory(self, timeout)
        if self.scheme == "https":
            return http_client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self.ssl_context())
        return http_client.HTTPConnection(self.host, self.port, timeout=timeout)

    def _wrap_exc(self, method, url, exc):
        if isinstance(exc, LlmError):
            return exc
        if isinstance(exc, ssl.SSLCertVerificationError if hasattr(ssl, "SSLCertVerificationError") else ssl.CertificateError):
            return LlmTlsError(method, url, "the server's TLS certificate is not trusted (%s): set ca_path to the CA that signed it, "
                               "or validate_certs=false for a lab." % exc)
        if isinstance(exc, ssl.SSLError):
            return LlmTlsError(method, url, "TLS handshake failed (%s): check the https URL, ca_path, client_cert and client_key." % exc)
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return LlmTimeoutError(method, url, "no answer within %s s: the engine is busy or hung; raise timeout or check the engine." % self.timeout)
        if isinstance(exc, ConnectionRefusedError):
            return LlmConnectError(method, url, "connection refused: nothing listens on %s:%s yet; is the engine running and is url right?"
                                   % (self.host, self.port))
        if isinstance(exc, socket.gaierror):
            return LlmConnectError(method, url, "cannot resolve host %r (%s); check url." % (self.host, exc))
        if isinstance(exc, (ConnectionResetError, BrokenPipeError, http_client.RemoteDisconnected)):
            return LlmConnectError(method, url, "the connection was closed before a response (%s): the engine restarted or crashed." % exc)
        if isinstance(exc, http_client.IncompleteRead):
            return LlmStreamError(method, url, "the connection closed in the middle of the response (%d bytes read): the engine died or "
                                  "a proxy cut it." % len(exc.partial))
        if isinstance(exc, (OSError, http_client.HTTPException)):
            return LlmConnectError(method, url, "network error: %s" % exc)
        return exc

    def _encode(self, body):
        if body is None:
            return None
        if isinstance(body, bytes):
            return body
        return json.dumps(body).encode("utf-8")

    # -- API -----------------------------------------------------------------------------------
    def request(self, method, path, body=None, timeout=None, accept="application/json"):
        """One request; returns Response for every status (callers decide what is an error)."""
        url = self.url_for(path)
        data = self._encode(body)
        conn = None
        started = self.clock()
        try:
            conn = self._connect(timeout or self.timeout)
            conn.request(method, self.prefix + path, body=data, headers=self.headers_for(body, accept))
            resp = conn.getresponse()
            raw = resp.read()
            finished = self.clock()
            return Response(resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), raw, started, finished)
        except Exception as exc:  # converted into typed, actionable errors
            raise self._wrap_exc(method, url, exc)
        finally:
            if conn is not None:
                conn.close()

    def call(self, method, path, body=None, timeout=None):
        """Request and require 2xx; returns Response."""
        resp = self.request(method, path, body=body, timeout=timeout)
        if not 200 <= resp.status < 300:
            raise classify_status(method, self.url_for(path), resp.status, resp.body, bool(self.api_key))
        return resp

    def call_json(self, method, path, body=None, timeout=None):
        """Request, require 2xx and a JSON body; returns (data, Response)."""
        resp = self.call(method, path, body=body, timeout=timeout)
        try:
            return json.loads(resp.text), resp
        except ValueError:
            raise LlmProtocolError(method, self.url_for(path), "the answer is not JSON: url points at something that is not the expected engine.",
                                   resp.status, resp.body)

    def stream(self, method, path, body=None, timeout=None, accept="text/event-stream"):
        """Send a request and yield ``(t, chunk_bytes)`` as chunks arrive.

        The first item is ``(t_headers, None)`` once the status line and headers are in.
        A non-2xx status raises the classified error (after reading the body). A connection
        that dies mid-body raises LlmStreamError.
        """
        url = self.url_for(path)
        data = self._encode(body)
        conn = None
        try:
            conn = self._connect(timeout or self.timeout)
            conn.request(method, self.prefix + path, body=data, headers=self.headers_for(body, accept))
            resp = conn.getresponse()
            if not 200 <= resp.status < 300:
                raw = resp.read()
                raise classify_status(method, url, resp.status, raw, bool(self.api_key))
            yield self.clock(), None
            while True:
                chunk = resp.read1(65536)
                t = self.clock()
                if not chunk:
                    break
                yield t, chunk
        except Exception as exc:
            raise self._wrap_exc(method, url, exc)
        finally:
            if conn is not None:
                conn.close()


# ---------------------------------------------------------------------------------------------
# Prometheus text format (vLLM /metrics)
# ---------------------------------------------------------------------------------------------
def parse_prometheus(text, prefixes=("vllm:",)):
    """Sum every sample of each metric name starting with one of ``prefixes`` over its label sets.

    Returns {name: float}. Histogram/summary series keep their suffixes (_sum, _count, _bucket).
    """
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith(tuple(prefixes)):
            continue
        name_end = len(line)
        for i, ch in enumerate(line):
            if ch in "{ ":
                name_end = i
                break
        name = line[:name_end]
        rest = line[name_end:]
        if rest.startswith("{"):
            close = rest.rfind("}")
            rest = rest[close + 1:]
        fields = rest.split()
        if not fields:
            continue
        try:
            value = float(fields[0])
        except ValueError:
            continue
        out[name] = out.get(name, 0.0) + value
    return out
