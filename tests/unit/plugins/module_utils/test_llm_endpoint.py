# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_llm_endpoint with a fake client at the HttpClient interface: readiness, detection, models, per-protocol checks."""
from __future__ import annotations

import json

import pytest

from ansible_collections.onprem.llm_serving.plugins.module_utils import _llm_endpoint as e
from ansible_collections.onprem.llm_serving.plugins.module_utils import _llm_http as h
from ansible_collections.onprem.llm_serving.plugins.module_utils import _systemd


class Seq(list):
    """Successive answers of one route (the last one repeats)."""


class FakeClient(object):
    """Scripted answers: routes[(method, path)] -> an answer, or Seq([answers]) (last one repeats).

    An answer is (status, body), an exception instance, or for streams a list of byte chunks.
    Stream chunks arrive 10 ms apart on the fake clock.
    """

    def __init__(self, routes, api_key=None, keyless=None):
        self.routes = dict((k, list(v) if isinstance(v, Seq) else [v]) for k, v in routes.items())
        self.keyless = dict(keyless or {})  # answers to a request sent without a key, where they differ
        self.api_key = api_key
        self.extra_headers = {}
        self.now = 0.0
        self.calls = []
        self.keys_sent = []

    def clock(self):
        return self.now

    def url_for(self, path):
        return "http://fake:8000" + path

    def _next(self, method, path):
        self.keys_sent.append(self.api_key)
        if not self.api_key and (method, path) in self.keyless:
            return self.keyless[(method, path)]
        answers = self.routes.get((method, path))
        if answers is None:
            return (404, b"")
        return answers.pop(0) if len(answers) > 1 else answers[0]

    def request(self, method, path, body=None, timeout=None, accept=None):
        self.calls.append((method, path, body))
        ans = self._next(method, path)
        if isinstance(ans, Exception):
            raise ans
        status, payload = ans
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return h.Response(status, {}, raw, self.now, self.now)

    def call_json(self, method, path, body=None, timeout=None):
        resp = self.request(method, path, body)
        if not 200 <= resp.status < 300:
            raise h.classify_status(method, self.url_for(path), resp.status, resp.body, bool(self.api_key))
        self.now += 0.05
        return json.loads(resp.text), resp

    def stream(self, method, path, body=None, timeout=None, accept=None):
        self.calls.append((method, path, body))
        ans = self._next(method, path)
        if isinstance(ans, Exception):
            raise ans
        yield self.now, None
        for chunk in ans:
            if isinstance(chunk, Exception):
                raise chunk
            self.now += 0.010
            yield self.now, chunk


def sse(*objs):
    return [("data: %s\n\n" % (o if isinstance(o, str) else json.dumps(o))).encode() for o in objs]


def openai_stream(n, chat=True, done=True, usage=True):
    objs = []
    if chat:
        objs.append({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
    for i in range(n):
        piece = {"delta": {"content": "w%d" % i}} if chat else {"text": "w%d" % i}
        piece.update({"index": 0, "finish_reason": "length" if i == n - 1 else None})
        objs.append({"choices": [piece]})
    if usage:
        objs.append({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": n, "total_tokens": n + 5}})
    if done:
        objs.append("[DONE]")
    return sse(*objs)


def vllm_routes(n=8, **kw):
    return {
        ("GET", "/v1/models"): (200, {"object": "list", "data": [{"id": "tiny"}]}),
        ("GET", "/version"): (200, {"version": "0.32.0"}),
        ("POST", "/v1/chat/completions"): openai_stream(n, chat=True, **kw),
        ("POST", "/v1/completions"): openai_stream(n, chat=False, **kw),
        ("GET", "/metrics"): (200, b'vllm:prefix_cache_queries_total{m="t"} 40\nvllm:prefix_cache_hits_total{m="t"} 10\n'),
    }


class Clock(object):
    def __init__(self):
        self.t = 0.0
        self.sleeps = []

    def sleep(self, s):
        self.sleeps.append(s)
        self.t += s

    def monotonic(self):
        return self.t


# -- readiness -----------------------------------------------------------------------------------
def test_wait_ready_retries_refused_and_503_with_backoff():
    refused = h.LlmConnectError("GET", "http://fake:8000/health", "connection refused: nothing listens")
    fc = FakeClient({("GET", "/health"): Seq([refused, refused, (503, {"error": "unhealthy"}), (200, b"")])})
    clock = Clock()
    out = e.wait_ready(fc, "/health", 60, clock.sleep, clock.monotonic)
    assert out["attempts"] == 4 and clock.sleeps == [0.5, 1.0, 2.0] and out["time_to_ready_s"] == 3.5
    assert out["waited_for"] == ["connection refused: nothing listens", "HTTP 503"]


def test_wait_ready_deadline_says_what_it_waited_for():
    fc = FakeClient({("GET", "/health"): (503, {"error": "unhealthy", "error_type": "healthcheck"})})
    clock = Clock()
    with pytest.raises(e.LlmNotReadyError) as info:
        e.wait_ready(fc, "/health", 10, clock.sleep, clock.monotonic)
    msg = str(info.value)
    assert msg.startswith("GET http://fake:8000/health returned HTTP 503: not ready after")
    assert "Raise ready_timeout" in msg and "healthcheck" in msg
    assert sum(clock.sleeps) <= 10


def test_wait_ready_does_not_wait_for_a_wrong_key():
    fc = FakeClient({("GET", "/v1/models"): (401, {"error": "Unauthorized"})}, api_key="bad")
    clock = Clock()
    with pytest.raises(h.LlmAuthError, match="API key was refused"):
        e.wait_ready(fc, "/v1/models", 60, clock.sleep, clock.monotonic)
    assert clock.sleeps == []


def test_wait_ready_auto_accepts_any_answer():
    fc = FakeClient({})
    out = e.wait_ready(fc, "/v1/models", 5, Clock().sleep, Clock().monotonic, also_ready=(404,))
    assert out["attempts"] == 1


class FakeSystemd(object):
    """The SystemdHost calls unit_watch makes: show() answers the next scripted state (the last one repeats), as
    systemctl show would; journal_tail() the unit's log."""

    def __init__(self, states, log="ModuleNotFoundError: No module named 'vllm'"):
        self.states = list(states)
        self.log = log
        self.shown = 0

    def show(self, unit, properties):
        self.shown += 1
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        if isinstance(state, Exception):
            raise state
        return dict(state)

    def journal_tail(self, unit, lines):
        return self.log


RUNNING = {"LoadState": "loaded", "ActiveState": "active", "SubState": "running", "Result": "success", "NRestarts": "0"}


@pytest.mark.parametrize("dead", [
    dict(RUNNING, ActiveState="activating", SubState="auto-restart", Result="exit-code", NRestarts="2"),  # crash loop
    dict(RUNNING, ActiveState="failed", SubState="failed", Result="exit-code"),             # start limit hit
    dict(RUNNING, ActiveState="inactive", SubState="dead"),                                # stopped
    dict(RUNNING, NRestarts="2"),                                                           # restarted twice meanwhile
])
def test_wait_ready_ends_at_once_when_the_unit_died(dead):
    refused = h.LlmConnectError("GET", "http://fake:8000/health", "connection refused: nothing listens")
    fc = FakeClient({("GET", "/health"): refused})
    clock = Clock()
    systemd = FakeSystemd([RUNNING, RUNNING, dead])
    with pytest.raises(e.LlmNotReadyError) as info:
        e.wait_ready(fc, "/health", 600, clock.sleep, clock.monotonic, watch=_systemd.unit_watch(systemd, "vllm-tiny.service"))
    msg = str(info.value)
    # the first look, one while the unit still runs, then the dead state after the second refused attempt
    assert fc.calls.count(("GET", "/health", None)) == 2 and clock.sleeps == [0.5]
    assert "and it will not be: unit vllm-tiny.service is %s (%s, result %s" % (dead["ActiveState"], dead["SubState"], dead["Result"]) in msg
    assert "restarted it %d time(s)" % int(dead["NRestarts"]) in msg
    assert "Its last log lines:\nModuleNotFoundError: No module named 'vllm'" in msg


def test_wait_ready_waits_on_while_the_unit_runs_or_starts():
    refused = h.LlmConnectError("GET", "http://fake:8000/health", "connection refused: nothing listens")
    fc = FakeClient({("GET", "/health"): Seq([refused, refused, refused, (200, b"")])})
    clock = Clock()
    # it had crashed twice before the check began (NRestarts 2 at the first look) and is loading again: not a new death;
    # killed once from outside meanwhile (auto-restart, then one more restart): systemd brings it back, the wait goes on;
    # one systemctl call fails meanwhile: the wait goes on
    loading = dict(RUNNING, NRestarts="2")
    killed = dict(RUNNING, ActiveState="activating", SubState="auto-restart", Result="signal", NRestarts="2")
    systemd = FakeSystemd([loading, killed, _systemd.SystemdError("busy"), dict(loading, NRestarts="3")])
    out = e.wait_ready(fc, "/health", 600, clock.sleep, clock.monotonic, watch=_systemd.unit_watch(systemd, "vllm-tiny.service"))
    assert out["attempts"] == 4 and systemd.shown == 4


def test_a_unit_this_host_does_not_know_is_not_watched():
    assert _systemd.unit_watch(FakeSystemd([dict(RUNNING, LoadState="not-found", ActiveState="inactive")]), "vllm-x.service") is None


def test_without_journal_access_the_message_names_the_command():
    watch = _systemd.unit_watch(FakeSystemd([RUNNING, dict(RUNNING, ActiveState="failed", SubState="failed")], log=""), "tgi-a.service")
    assert watch().endswith("See `journalctl -u tgi-a.service`.")


# -- detection and models ------------------------------------------------------------------------
@pytest.mark.parametrize("routes, expected", [
    ({("GET", "/api/version"): (200, {"version": "0.5.4"})}, ("ollama", "ollama", "0.5.4")),
    ({("GET", "/info"): (200, {"model_id": "m", "version": "3.3.6"})}, ("tgi", "tgi", "3.3.6")),
    ({("GET", "/version"): (200, {"version": "0.32.0"})}, ("vllm", "openai", "0.32.0")),
    ({("GET", "/version"): (200, b"<html>")}, ("openai", "openai", None)),
    # behind the gateway: the version routes are closed (403), the OpenAI API is open
    ({("GET", "/api/version"): (403, {}), ("GET", "/info"): (403, {}), ("GET", "/version"): (403, {})}, ("openai", "openai", None)),
])
def test_detect_engine(routes, expected):
    assert e.detect_engine(FakeClient(routes))[:3] == expected


def test_detect_engine_stops_at_a_wrong_key():
    with pytest.raises(h.LlmHttpError) as info:
        e.detect_engine(FakeClient({("GET", "/api/version"): (401, {})}))
    assert info.value.status == 401


@pytest.mark.parametrize("wanted, served, proto, expected", [
    (None, ["tiny", "big"], "openai", "tiny"),
    ("big", ["tiny", "big"], "openai", "big"),
    ("tiny", ["tiny:latest"], "ollama", "tiny:latest"),
])
def test_resolve_model(wanted, served, proto, expected):
    assert e.resolve_model(wanted, served, proto, "u") == expected


def test_resolve_model_error_lists_served():
    with pytest.raises(h.LlmModelNotServedError) as info:
        e.resolve_model("x", ["tiny", "big"], "openai", "http://fake:8000/v1/models")
    assert "model 'x' is not served; served: [\"tiny\", \"big\"]. Set model to one of them." in str(info.value)


# -- full runs -------------------------------------------------------------------------------------
def test_vllm_run_all_paths_and_metrics():
    fc = FakeClient(vllm_routes(8))
    chat_reply = {"choices": [{"message": {"content": "abc"}, "finish_reason": "length"}], "usage": {"prompt_tokens": 5, "completion_tokens": 8}}
    text_reply = {"choices": [{"text": "abc", "finish_reason": "length"}], "usage": {"prompt_tokens": 5, "completion_tokens": 8}}
    fc.routes[("POST", "/v1/chat/completions")].append((200, chat_reply))
    fc.routes[("POST", "/v1/completions")].append((200, text_reply))
    checker = e.EndpointChecker(fc, sleep=Clock().sleep, monotonic=Clock().monotonic)
    out = checker.run(engine="auto", model="tiny", max_tokens=8, min_tokens=8, ignore_eos=True)
    assert (out["engine"], out["protocol"], out["engine_version"], out["model"]) == ("vllm", "openai", "0.32.0", "tiny")
    assert [(c["path"], c["stream"]) for c in out["checks"]] == [
        ("/v1/chat/completions", True), ("/v1/chat/completions", False), ("/v1/completions", True), ("/v1/completions", False)]
    first = out["checks"][0]
    # chat: role chunk at 10 ms (TTFT, as vLLM counts it), 8 token chunks 10 ms apart, usage at 100 ms
    assert (first["ttft_ms"], first["itl_ms_mean"], first["e2e_ms"], first["output_tokens"], first["chunks"]) == (10.0, 10.0, 90.0, 8, 9)
    assert first["tpot_ms"] == pytest.approx(80.0 / 7, abs=1e-3)
    assert out["server"]["prefix_cache_hit_rate"] == 0.25
    posted = [c[2] for c in fc.calls if c[0] == "POST"]
    assert posted[0]["stream_options"] == {"include_usage": True} and posted[0]["ignore_eos"] is True and posted[0]["max_tokens"] == 8


def keyed_vllm(n=8):
    """A door in front of vLLM: every answer as vllm_routes with the key, 401 on /v1/models without one."""
    return FakeClient(vllm_routes(n), api_key="door-key", keyless={("GET", "/v1/models"): (401, {"error": "no key"})})


def test_refused_without_key_asks_once_without_the_key_then_generates_with_it():
    fc = keyed_vllm()
    out = e.EndpointChecker(fc).run(engine="openai", model="tiny", apis=["chat"], streaming="streamed", max_tokens=8, min_tokens=8,
                                    refused_without_key=True)
    assert out["model"] == "tiny" and out["output_tokens"] == 8
    anonymous = [call for call, key in zip(fc.calls, fc.keys_sent) if key is None]
    assert anonymous == [("GET", "/v1/models", None)]  # one request without the key, before any generation
    assert fc.calls.index(("GET", "/v1/models", None)) < [c[0] for c in fc.calls].index("POST")
    assert fc.api_key == "door-key"  # the checker's own client keeps its key


@pytest.mark.parametrize("answer", [(200, {"object": "list", "data": [{"id": "tiny"}]}), (403, {"error": "closed"}), (404, b"")])
def test_refused_without_key_fails_on_any_answer_but_401_and_generates_nothing(answer):
    fc = FakeClient(vllm_routes(8), api_key="door-key", keyless={("GET", "/v1/models"): answer})
    with pytest.raises(h.LlmAuthError, match=r"GET http://fake:8000/v1/models returned HTTP %d: answered without an API key, where HTTP 401 "
                       r"was expected: anyone who reaches this address is served \(refused_without_key\)" % answer[0]):
        e.EndpointChecker(fc).run(engine="openai", refused_without_key=True)
    assert not [c for c in fc.calls if c[0] == "POST"]


def test_refused_without_key_asks_ollamas_tag_list():
    fc = FakeClient({("GET", "/api/version"): (200, {"version": "0.5.4"})}, api_key="k",
                    keyless={("GET", "/api/tags"): (200, {"models": []})})
    with pytest.raises(h.LlmAuthError, match=r"GET http://fake:8000/api/tags returned HTTP 200: answered without an API key"):
        e.EndpointChecker(fc).run(engine="ollama", refused_without_key=True)


def test_refused_without_key_needs_a_key():
    with pytest.raises(h.LlmError, match="refused_without_key needs api_key"):
        e.refuse_without_key(FakeClient(vllm_routes()), "/v1/models")


def test_refused_without_key_drops_an_authorization_header_given_in_headers():
    fc = keyed_vllm()
    fc.extra_headers = {"authorization": "Bearer door-key", "X-Trace": "1"}
    seen = []
    real_request = FakeClient.request

    def request(self, method, path, body=None, timeout=None, accept=None):
        seen.append((self.api_key, dict(self.extra_headers)))
        return real_request(self, method, path, body, timeout, accept)

    FakeClient.request = request
    try:
        e.refuse_without_key(fc, "/v1/models")
    finally:
        FakeClient.request = real_request
    assert seen == [(None, {"X-Trace": "1"})]
    assert fc.extra_headers == {"authorization": "Bearer door-key", "X-Trace": "1"}


def test_openai_stream_without_done_is_an_error():
    fc = FakeClient(vllm_routes(8, done=False))
    with pytest.raises(h.LlmStreamError, match=r"without 'data: \[DONE\]'"):
        e.EndpointChecker(fc).run(engine="openai", apis=["completions"], streaming="streamed", max_tokens=8, min_tokens=8)


def test_openai_stream_cut_is_an_error():
    routes = vllm_routes(8)
    routes[("POST", "/v1/completions")] = openai_stream(3, chat=False, done=False, usage=False)[:3] + [
        h.LlmStreamError("POST", "http://fake:8000/v1/completions", "the connection closed in the middle of the response")]
    with pytest.raises(h.LlmStreamError, match="closed in the middle"):
        e.EndpointChecker(FakeClient(routes)).run(engine="openai", apis=["completions"], streaming="streamed")


def test_too_few_tokens_is_no_proof():
    fc = FakeClient(vllm_routes(3))
    with pytest.raises(e.LlmGenerationError) as info:
        e.EndpointChecker(fc).run(engine="openai", apis=["completions"], streaming="streamed", max_tokens=32, min_tokens=8)
    assert "generated 3 tokens (finish_reason length, counted from usage), fewer than min_tokens=8" in str(info.value)


def test_tokens_counted_from_chunks_without_usage():
    fc = FakeClient(vllm_routes(9, usage=False))
    out = e.EndpointChecker(fc).run(engine="openai", apis=["completions"], streaming="streamed", min_tokens=8)
    assert out["checks"][0]["token_source"] == "chunks" and out["output_tokens"] == 9


def test_apis_must_belong_to_the_engine():
    with pytest.raises(h.LlmError, match="not an API of engine tgi"):
        e.EndpointChecker(FakeClient({})).run(engine="tgi", apis=["chat"])


def tgi_stream(n, final=True, error=None):
    objs = []
    for i in range(n):
        last = final and i == n - 1
        objs.append({"index": i + 1, "token": {"id": i, "text": "w", "logprob": -1.0, "special": False},
                     "generated_text": "w" * n if last else None,
                     "details": {"finish_reason": "length", "generated_tokens": n, "seed": None, "input_length": 4} if last else None})
    if error:
        objs.append(error)
    return [("data:%s\n\n" % json.dumps(o, separators=(",", ":"))).encode() for o in objs]


def tgi_routes(stream):
    return {("GET", "/health"): (200, b""), ("GET", "/info"): (200, {"model_id": "m", "version": "3.3.6"}),
            ("POST", "/generate_stream"): stream,
            ("POST", "/generate"): (200, {"generated_text": "w" * 8, "details": {"finish_reason": "length", "generated_tokens": 8}})}


def test_tgi_native_both_modes():
    out = e.EndpointChecker(FakeClient(tgi_routes(tgi_stream(8)))).run(engine="tgi", max_tokens=8, min_tokens=8)
    assert [(c["path"], c["output_tokens"], c["token_source"]) for c in out["checks"]] == [
        ("/generate_stream", 8, "engine"), ("/generate", 8, "engine")]
    assert out["checks"][0]["prompt_tokens"] == 4 and out["ttft_ms"] == 10.0


@pytest.mark.parametrize("stream, words", [
    (tgi_stream(5, final=False), "without the final event"),
    (tgi_stream(2, final=False, error={"error": "Request failed during generation", "error_type": "generation"}),
     r"TGI reported an error inside the stream \(generation\): Request failed"),
])
def test_tgi_stream_errors(stream, words):
    with pytest.raises(h.LlmStreamError, match=words):
        e.EndpointChecker(FakeClient(tgi_routes(stream))).run(engine="tgi", streaming="streamed")


def ollama_lines(n, chat, final=True):
    lines = []
    for i in range(n):
        obj = {"model": "tiny", "created_at": "t", "done": False}
        obj.update({"message": {"role": "assistant", "content": "w"}} if chat else {"response": "w"})
        lines.append(obj)
    if final:
        lines.append({"model": "tiny", "done": True, "done_reason": "length", "eval_count": n, "eval_duration": 50000000,
                      "prompt_eval_count": 3, "prompt_eval_duration": 1000000})
    return [(json.dumps(o) + "\n").encode() for o in lines]


def ollama_routes(final=True):
    final_obj = {"model": "tiny", "done": True, "done_reason": "length", "eval_count": 10, "eval_duration": 50000000}
    return {("GET", "/api/version"): (200, {"version": "0.5.4"}), ("GET", "/api/tags"): (200, {"models": [{"name": "tiny:latest"}]}),
            ("GET", "/api/ps"): (200, {"models": [{"name": "tiny:latest", "size": 1, "size_vram": 0, "digest": "x"}]}),
            ("POST", "/api/chat"): Seq([ollama_lines(10, True, final), (200, dict(final_obj, message={"content": "w" * 10}))]),
            ("POST", "/api/generate"): Seq([ollama_lines(10, False, final), (200, dict(final_obj, response="w" * 10))])}


def test_ollama_native_figures():
    out = e.EndpointChecker(FakeClient(ollama_routes())).run(engine="auto", model="tiny", max_tokens=10)
    assert out["model"] == "tiny:latest" and len(out["checks"]) == 4
    assert out["server"]["eval_tokens_per_s"] == 200.0 and out["server"]["prompt_eval_tokens_per_s"] == 3000.0
    assert out["server"]["loaded_models"] == [{"name": "tiny:latest", "size": 1, "size_vram": 0}]
    assert out["checks"][0]["chunks"] == 10 and out["checks"][0]["ttft_ms"] == 10.0


def test_ollama_stream_without_done_is_an_error():
    with pytest.raises(h.LlmStreamError, match="without done:true"):
        e.EndpointChecker(FakeClient(ollama_routes(final=False))).run(engine="ollama", streaming="streamed")
