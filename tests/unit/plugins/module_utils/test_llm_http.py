# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_llm_http: stream parsers, error classification, Prometheus parsing, and the client against a local socket server."""
from __future__ import annotations

import socket
import threading

import pytest

from ansible_collections.onprem.llm_serving.plugins.module_utils import _llm_http as h


# -- SSE -----------------------------------------------------------------------------------------
def test_sse_events_split_anywhere_keep_their_arrival_time():
    raw = b'data: {"a":1}\n\n: keep-alive\n\ndata:{"b":2}\r\n\r\nevent: x\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n'
    parser = h.SseParser()
    events = []
    for i in range(len(raw)):
        events.extend(parser.feed(raw[i:i + 1], t=float(i)))
    assert [(e.data, e.event) for e in events] == [('{"a":1}', None), ('{"b":2}', None), ("line1\nline2", "x"), ("[DONE]", None)]
    # each event is stamped with the time of the byte that completed it
    assert events[0].t == float(raw.index(b"\n\n") + 1)
    assert not parser.pending()


def test_sse_multibyte_utf8_split_across_chunks():
    raw = 'data: {"t":"héllo ✓"}\n\n'.encode("utf-8")
    parser = h.SseParser()
    cut = raw.index(b"\xc3") + 1
    assert parser.feed(raw[:cut], 1.0) == []
    (ev,) = parser.feed(raw[cut:], 2.0)
    assert ev.data == '{"t":"héllo ✓"}' and ev.t == 2.0


def test_sse_pending_reports_an_unfinished_event():
    parser = h.SseParser()
    parser.feed(b'data: {"half"', 1.0)
    assert parser.pending()


# -- NDJSON --------------------------------------------------------------------------------------
def test_ndjson_lines_split_across_chunks():
    parser = h.NdjsonParser()
    assert parser.feed(b'{"response":"A","done":false}\n{"resp', 1.0) == [(1.0, {"response": "A", "done": False})]
    assert parser.feed(b'onse":"","done":true}\n', 2.0) == [(2.0, {"response": "", "done": True})]
    assert not parser.pending()


def test_ndjson_garbage_is_a_stream_error():
    with pytest.raises(h.LlmStreamError, match="not JSON"):
        h.NdjsonParser("POST", "http://x/api/generate").feed(b"<html>\n", 0.0)


# -- classification ------------------------------------------------------------------------------
@pytest.mark.parametrize("status, body, key, cls, words", [
    (401, '{"error":"Unauthorized"}', False, h.LlmAuthError, "wants an API key: set api_key"),
    (401, '{"error":"Unauthorized"}', True, h.LlmAuthError, "API key was refused"),
    (403, "", True, h.LlmAuthError, "forbidden"),
    (404, '{"error":{"message":"The model `x` does not exist.","type":"NotFoundError","code":404}}', False, h.LlmModelNotServedError,
     "model is not served"),
    (404, '{"error":"model \\"x\\" not found, try pulling it first"}', False, h.LlmModelNotServedError, "not served"),
    (404, "Not Found", False, h.LlmStatusError, "path not served"),
    (400, '{"error":{"message":"max_tokens is too large"}}', False, h.LlmStatusError, "max_tokens is too large"),
    (422, '{"error":"Input validation error","error_type":"validation"}', False, h.LlmStatusError, "Input validation error"),
    (429, "", False, h.LlmStatusError, "overloaded"),
    (500, '{"detail":"boom"}', False, h.LlmStatusError, "failed internally (boom)"),
    (503, '{"error":"unhealthy","error_type":"healthcheck"}', False, h.LlmStatusError, "not ready"),
])
def test_classify_status(status, body, key, cls, words):
    err = h.classify_status("GET", "http://gpu01:8000/v1/models", status, body, key)
    assert err.__class__ is cls
    text = str(err)
    assert text.startswith("GET http://gpu01:8000/v1/models returned HTTP %d: " % status)
    assert words in text
    assert err.retryable == (status in (502, 503, 504))


def test_body_start_is_one_short_line():
    assert h.body_start("a\n  b\tc" + "x" * 400).startswith("a b c")
    assert len(h.body_start("x" * 1000)) == h.BODY_START_CHARS + 3


# -- Prometheus ----------------------------------------------------------------------------------
def test_parse_prometheus_sums_label_sets():
    text = ('# HELP vllm:prefix_cache_hits_total x\n# TYPE vllm:prefix_cache_hits_total counter\n'
            'vllm:prefix_cache_hits_total{engine="0",model_name="tiny"} 12.0\n'
            'vllm:prefix_cache_hits_total{engine="1",model_name="tiny"} 3.0\n'
            'vllm:num_requests_running{model_name="a,b} c"} 2\n'
            'python_gc_objects_collected_total{generation="0"} 9\n')
    assert h.parse_prometheus(text) == {"vllm:prefix_cache_hits_total": 15.0, "vllm:num_requests_running": 2.0}


# -- client --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, words", [
    ({"url": "gpu01:8000"}, "not an http:// or https:// URL"),
    ({"url": "http://gpu01:8000", "client_key": "/k.pem"}, "client_key is set without client_cert"),
])
def test_client_config_errors(kwargs, words):
    with pytest.raises(h.LlmConfigError, match=words):
        h.HttpClient(**kwargs)


def test_client_headers_carry_key_and_extras_and_prefix():
    c = h.HttpClient("https://proxy.example/llm/", api_key="k", headers={"X-Team": "a"})
    assert (c.host, c.port, c.prefix) == ("proxy.example", 443, "/llm")
    hdrs = c.headers_for(body={})
    assert hdrs["Authorization"] == "Bearer k" and hdrs["X-Team"] == "a" and hdrs["Content-Type"] == "application/json"
    assert c.url_for("/v1/models") == "https://proxy.example/llm/v1/models"


def _one_shot_server(payload):
    """A socket server that answers one connection with raw bytes, then closes."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def serve():
        conn, _addr = srv.accept()
        # Read the whole request first: closing a socket with unread bytes sends a RST, which the
        # client would see as "connection reset" instead of the cut we mean to test.
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, body = data.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _sep, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            body += conn.recv(65536)
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        conn.close()
        srv.close()

    threading.Thread(target=serve, daemon=True).start()
    return "http://127.0.0.1:%d" % srv.getsockname()[1]


def test_stream_yields_chunks_with_times():
    body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    url = _one_shot_server(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + body)
    ticks = iter(range(100))
    c = h.HttpClient(url, clock=lambda: float(next(ticks)))
    got = list(c.stream("POST", "/x", {"a": 1}))
    assert got[0][1] is None
    assert b"".join(chunk for _t, chunk in got[1:]) == b"hello world"
    assert [t for t, _c in got] == sorted(t for t, _c in got)


def test_stream_cut_mid_body_is_a_stream_error():
    url = _one_shot_server(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
    c = h.HttpClient(url)
    with pytest.raises(h.LlmStreamError, match="closed in the middle"):
        list(c.stream("POST", "/x", {}))


def test_stream_error_status_is_classified():
    url = _one_shot_server(b'HTTP/1.1 401 Unauthorized\r\ncontent-length: 24\r\n\r\n{"error":"Unauthorized"}')
    with pytest.raises(h.LlmAuthError, match="wants an API key"):
        list(h.HttpClient(url).stream("POST", "/v1/completions", {}))


def test_refused_connection_is_retryable_and_says_so():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(h.LlmConnectError) as info:
        h.HttpClient("http://127.0.0.1:%d" % port, timeout=2).request("GET", "/health")
    assert info.value.retryable
    assert "connection refused: nothing listens on 127.0.0.1:%d" % port in str(info.value)


def test_call_json_rejects_non_json():
    url = _one_shot_server(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n<html")
    with pytest.raises(h.LlmProtocolError, match="not JSON"):
        h.HttpClient(url).call_json("GET", "/v1/models")


def test_client_from_params():
    c = h.client_from_params({"url": "http://a:1", "api_key": "k", "headers": None, "timeout": 5.0, "validate_certs": False, "ca_path": None,
                              "client_cert": None, "client_key": None})
    assert (c.api_key, c.timeout, c.validate_certs) == ("k", 5.0, False)
