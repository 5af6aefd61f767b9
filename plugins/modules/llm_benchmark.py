#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: llm_benchmark
short_description: Load-test an OpenAI-compatible LLM endpoint and measure it the way C(vllm bench serve) does
version_added: "0.1.0"
description:
  - Sends a fixed-seed workload to C(/v1/completions) or C(/v1/chat/completions) (streamed, with
    C(stream_options.include_usage)) at each level of a sweep - closed loop at each O(concurrency) (all requests released at
    once, at most that many in flight, like C(vllm bench serve --max-concurrency N --request-rate inf)) and open loop at each
    O(request_rate) (Poisson arrivals, optionally capped by O(max_concurrency)) - and returns per level the figures of
    C(vllm bench serve) under the same JSON keys.
  - Warm-up requests (O(warmup_requests)) run before each level and are not measured.
  - "Definitions, identical to vLLM 0.32 C(vllm/benchmarks/serve.py) and C(lib/endpoint_request_func.py):"
  - "TTFT - arrival of the first SSE event whose C(choices) is non-empty minus the request's start (taken before the body is encoded,
    the connection acquired and the request sent; requests released together all take their start before the first of them is sent,
    as aiohttp writes requests from a task of their own in vLLM's request functions)."
  - "ITL - gaps between successive such events of a request, pooled over all successful requests. Each event is timestamped when
    it is parsed, as vLLM does, also when several came in one network read."
  - "E2EL - arrival of the last token-bearing event minus the start (the usage chunk and C([DONE]) do not extend it)."
  - "Output tokens - C(usage.completion_tokens) of the final usage chunk (1 when the server sends none)."
  - "TPOT - per request (E2EL - TTFT) / (output tokens - 1), only for requests with more than one output token."
  - "Statistics - mean, median, population standard deviation and percentiles with linear interpolation (numpy's defaults); an
    empty series counts as 0."
  - "Throughput - C(request_throughput) = completed / duration, C(output_throughput) = output tokens / duration,
    C(total_token_throughput) = (prompt tokens from C(usage.prompt_tokens) + output tokens) / duration; duration runs from the
    release of the first measured request to the end of the last one."
  - "Goodput - requests that meet every SLO in O(goodput) (C(ttft), C(tpot), C(e2el) in ms; TPOT counts as 0 for a one-token
    answer) / duration."
  - "Failed requests (non-200 status, no token event, connection lost) are counted in C(failed) and never averaged in."
  - Reads vLLM's C(/metrics) before and after each level and reports the prefix-cache hit rate of the level
    (C(vllm:prefix_cache_hits_total) / C(vllm:prefix_cache_queries_total) deltas, in tokens).
  - The client is asyncio with a raw HTTP/1.1 keep-alive pool from the Python standard library, one process. Measured with
    C(tests/bench/fidelity_vs_vllm_bench.py --client-capacity) on 2 cores shared with a fake server sending one token per 20 ms -
    256 streams at 11,700 tokens/s with ITL p50 20.9 ms, using 37% of one core; 512 streams at 22,900 tokens/s, 64% of one core;
    it saturates one core near 40,000 token events/s.
author:
  - onprem.llm_serving maintainers (@onprem)
extends_documentation_fragment:
  - onprem.llm_serving.llm_http
options:
  timeout:
    description: Seconds to wait for the readiness and metrics calls, and the limit of each benchmark request.
    type: float
    default: 600.0
  model:
    description: Served model name (an C(id) of C(/v1/models)). When omitted, the first served model.
    type: str
  api:
    description: OpenAI endpoint to load - V(completions) (C(vllm bench serve --backend openai)) or V(chat) (C(--backend openai-chat)).
    type: str
    choices: [completions, chat]
    default: completions
  workload:
    description:
      - V(random) - O(num_prompts) prompts of O(input_len) random tokens each, answers of O(output_len) tokens.
      - V(prefix_repetition) - O(num_prefixes) shared prefixes of O(prefix_len) tokens, each followed by a random suffix of O(suffix_len)
        tokens, shuffled (vLLM's C(prefix_repetition) dataset) to show prefix caching.
    type: str
    choices: [random, prefix_repetition]
    default: random
  prompt_format:
    description:
      - V(token_ids) sends the prompt as a list of token ids drawn below O(vocab_size) (exact input lengths, the server adds no
        token to them; C(/v1/completions) on vLLM only).
      - V(text) sends words from a fixed list whose token counts by the server's own tokenizer add up exactly to the wanted
        length (see O(prompt_calibration)), as C(vllm bench serve)'s random dataset decodes and re-encodes random token ids
        with the model's tokenizer until they are exactly O(input_len) tokens. Reported input lengths are the server's
        C(usage.prompt_tokens).
      - V(auto) uses V(token_ids) for V(completions) when O(vocab_size) is set, V(text) otherwise.
    type: str
    choices: [auto, text, token_ids]
    default: auto
  prompt_calibration:
    description:
      - How V(text) prompts get their exact token counts. The module measures the token cost of each word of its list and the
        tokens the server adds itself (BOS, a chat or Ollama template) with a token counter, then composes prompts of words
        whose costs add up. With V(random), a prompt is O(input_len) tokens as the server counts them, its own tokens
        included (vLLM's random dataset takes the tokenizer's special tokens off O(input_len) the same way); with
        V(prefix_repetition) the text is O(prefix_len) + O(suffix_len) tokens and the server's own tokens come on top, as
        in vLLM.
      - V(tokenize) counts with vLLM's C(POST /tokenize) (no generation; the completions prompt with the special tokens the
        server adds, or the chat messages with the template). Every prompt of the V(random) workload is then counted again
        and redrawn when it is off (C(prompt_check) in RV(plan)).
      - V(usage) counts with C(usage.prompt_tokens) of 1-token, non-streamed requests on the benchmarked API (any
        OpenAI-compatible server; Ollama's OpenAI API, which takes text only). Words are measured 8 at a time, then one by one
        where a group is not one token per word - from about 17 requests (a large vocabulary) to about 143 (a tiny one) before
        the first level, and one more to check the first prompt.
      - V(auto) uses V(tokenize) when the server answers C(/tokenize), else V(usage), else V(none).
      - V(none) sends one word per token without measuring anything; lengths are then only approximate.
    type: str
    choices: [auto, tokenize, usage, none]
    default: auto
  vocab_size:
    description:
      - Token ids of V(token_ids) prompts are drawn from 16 to this value (exclusive). Use the model's vocabulary size or less
        (ids beyond it are refused by the engine). Required for O(prompt_format=token_ids).
    type: int
  num_prompts:
    description: Measured requests per level.
    type: int
    default: 100
  input_len:
    description: Prompt length in tokens as the server counts them (V(random)), the tokens it adds itself included.
    type: int
    default: 128
  output_len:
    description: Answer length in tokens (C(max_tokens)).
    type: int
    default: 128
  range_ratio:
    description:
      - Lengths of V(random) are drawn uniformly from the integers in [floor(len*(1-ratio)), ceil(len*(1+ratio))], the input
        length less the server's own tokens (as vLLM's get_sampling_params); output lengths are at least 1.
    type: float
    default: 0.0
  prefix_len:
    description: Shared prefix length in tokens (V(prefix_repetition)).
    type: int
    default: 256
  suffix_len:
    description: Random suffix length in tokens (V(prefix_repetition)).
    type: int
    default: 256
  num_prefixes:
    description: Number of distinct shared prefixes (V(prefix_repetition)).
    type: int
    default: 10
  seed:
    description: Seed of the workload and of the Poisson arrivals; the same seed gives the same requests.
    type: int
    default: 0
  concurrency:
    description: Closed-loop levels - the number of requests in flight at each.
    type: list
    elements: int
    default: [1, 8, 32]
  request_rate:
    description: Open-loop levels - Poisson arrival rates in requests per second.
    type: list
    elements: float
    default: []
  burstiness:
    description: Shape of the gamma distribution of open-loop arrival gaps; 1 is a Poisson process.
    type: float
    default: 1.0
  max_concurrency:
    description: Cap on requests in flight for open-loop levels (unbounded when omitted).
    type: int
  warmup_requests:
    description:
      - Unmeasured requests (the first prompt) sent before each level, released at once under that level's concurrency, as
        C(vllm bench serve --num-warmups). They run on the connection pool the measured requests then reuse.
    type: int
    default: 2
  ignore_eos:
    description: Ask vLLM to ignore end-of-sequence (C(--ignore-eos)) so every answer has O(output_len) tokens.
    type: bool
    default: false
  percentiles:
    description: Percentiles reported for each metric (C(--metric-percentiles)).
    type: list
    elements: float
    default: [99]
  goodput:
    description: SLOs in ms for goodput, keys C(ttft), C(tpot), C(e2el) (C(--goodput ttft:500 tpot:50)).
    type: dict
  return_records:
    description: Add the per-request records (C(input_lens), C(output_lens), C(ttfts), C(itls), C(latencies), C(start_times), C(errors))
      to each entry of RV(report).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: In check mode the module checks that the endpoint is up and serves O(model), and returns RV(plan) without sending load.
  diff_mode:
    support: none
    description: Nothing is changed, so there is no diff.
  idempotent:
    support: full
    description: Always returns RV(ignore:changed=false); the endpoint is loaded, not changed.
notes:
  - Read-only for the endpoint; always returns C(changed=false). It does load it, so run it where that is acceptable.
  - Run it on a host with spare CPU (often the controller, with C(delegate_to)); the load generator should not share cores with the engine.
  - Write the report on the controller with M(ansible.builtin.copy) and C(content), as C(playbooks/benchmark.yml) does.
  - The client connects straight to O(url); it does not read C(HTTP_PROXY)/C(HTTPS_PROXY)/C(NO_PROXY) or C(~/.netrc).
    C(vllm bench serve) does (its aiohttp session trusts the environment), and looks both up for every request in a thread pool
    after the request's start time - 0.6 to 1 ms per request on the lab's busy 2-core machine, more when many start at once. Its TTFT
    and E2EL include that time; this module's do not, so expect its TTFT to be that much lower (visible with a tiny model,
    negligible against the tens of milliseconds of a real prefill). C(tests/bench/fidelity_vs_vllm_bench.py --client-overhead)
    measures both clients against a server of known timing; on the lab's 2-core machine, at concurrency 1, 8 and 32, this module
    added 0.3, 0.6 and 1.4-1.6 ms to the true TTFT and C(vllm bench serve) 1.1, 3.0-3.4 and 7.5-8.1 ms.
  - The client parses each response where the bytes arrive (an asyncio protocol), with no stream reader or task wake-up per network
    read, so at high concurrency its own CPU does not slow an engine that shares the machine.
seealso:
  - module: onprem.llm_serving.llm_endpoint
"""

EXAMPLES = r"""
- name: Concurrency sweep 1, 8, 32 against vLLM, 200 prompts of 128 in / 128 out
  onprem.llm_serving.llm_benchmark:
    url: http://gpu01:8000
    model: tiny
    num_prompts: 200
    concurrency: [1, 8, 32]
    ignore_eos: true
    goodput:
      ttft: 500
      tpot: 50
  delegate_to: localhost
  register: bench

- name: Ollama's OpenAI API - prompts of exactly 256 tokens as Ollama counts them (template included), measured from usage
  onprem.llm_serving.llm_benchmark:
    url: http://gpu02:11434
    model: "llama3.1:8b"
    input_len: 256
    output_len: 128
    prompt_calibration: usage
    concurrency: [1, 4]
  delegate_to: localhost

- name: Open loop at 2 and 4 requests/s with shared prefixes (prefix cache)
  onprem.llm_serving.llm_benchmark:
    url: http://gpu01:8000
    workload: prefix_repetition
    num_prefixes: 5
    prefix_len: 512
    suffix_len: 64
    concurrency: []
    request_rate: [2, 4]
    percentiles: [50, 90, 99]
"""

RETURN = r"""
model:
  description: Model that was loaded.
  returned: always
  type: str
  sample: tiny
plan:
  description:
    - The levels that run (or would run in check mode), with the workload settings.
    - For text prompts, not in check mode, also C(prompt_calibration) (C(method) - C(tokenize), C(usage) or C(none) -,
      C(overhead) - the tokens the server adds itself -, C(words) measured and C(calls) made) and C(prompt_check)
      (C(checked), C(exact), C(max_error) in tokens, C(calls)) from counting the prompts again with the server.
  returned: always
  type: dict
  sample:
    api: completions
    workload: random
    prompt_format: text
    input_len: 128
    prompt_calibration: {method: tokenize, overhead: 1, words: 126, calls: 142}
    prompt_check: {checked: 100, exact: 100, max_error: 0, calls: 100}
levels:
  description:
    - One entry per level, with C(mode), C(max_concurrency), C(request_rate), C(num_prompts) and vLLM's keys C(duration),
      C(completed), C(failed), C(total_input_tokens), C(total_output_tokens), C(request_throughput), C(request_goodput),
      C(output_throughput), C(total_token_throughput), C(max_output_tokens_per_s), C(max_concurrent_requests), and for each of
      C(ttft), C(tpot), C(itl), C(e2el) - C(mean_*_ms), C(median_*_ms), C(std_*_ms), C(p<N>_*_ms); plus C(prefix_cache_hit_rate),
      C(prefix_cache_hits), C(prefix_cache_queries) on vLLM, and up to 10 C(errors).
  returned: success, not in check mode
  type: list
  elements: dict
  sample:
    - mode: closed_loop
      max_concurrency: 8
      request_rate: inf
      completed: 100
      failed: 0
      mean_ttft_ms: 31.2
      median_ttft_ms: 28.9
      p99_ttft_ms: 80.4
      median_itl_ms: 6.1
      output_throughput: 1150.3
report:
  description: One JSON-ready document per level with the keys of C(vllm bench serve --save-result) (plus records when O(return_records)).
  returned: success, not in check mode
  type: list
  elements: dict
"""

import functools
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.onprem.llm_serving.plugins.module_utils._llm_http import (
    CLIENT_ARGSPEC,
    LlmError,
    client_from_params,
)
from ansible_collections.onprem.llm_serving.plugins.module_utils._llm_endpoint import resolve_model, served_models, wait_ready
from ansible_collections.onprem.llm_serving.plugins.module_utils._llm_benchmark import (
    AsyncStreamClient,
    COUNTERS,
    align_prompts,
    build_workload,
    calibrate_prompt_tokens,
    fetch_metrics,
    levels_from,
    prefix_cache_delta,
    run_level,
    summarize_level,
    token_counter,
    vllm_report,
)


def argument_spec():
    spec = dict(CLIENT_ARGSPEC)
    spec["timeout"] = dict(type="float", default=600.0)
    spec.update(
        model=dict(type="str"),
        api=dict(type="str", default="completions", choices=["completions", "chat"]),
        workload=dict(type="str", default="random", choices=["random", "prefix_repetition"]),
        prompt_format=dict(type="str", default="auto", choices=["auto", "text", "token_ids"]),
        prompt_calibration=dict(type="str", default="auto", choices=list(COUNTERS)),
        vocab_size=dict(type="int"),
        num_prompts=dict(type="int", default=100),
        input_len=dict(type="int", default=128),
        output_len=dict(type="int", default=128),
        range_ratio=dict(type="float", default=0.0),
        prefix_len=dict(type="int", default=256),
        suffix_len=dict(type="int", default=256),
        num_prefixes=dict(type="int", default=10),
        seed=dict(type="int", default=0),
        concurrency=dict(type="list", elements="int", default=[1, 8, 32]),
        request_rate=dict(type="list", elements="float", default=[]),
        burstiness=dict(type="float", default=1.0),
        max_concurrency=dict(type="int"),
        warmup_requests=dict(type="int", default=2),
        ignore_eos=dict(type="bool", default=False),
        percentiles=dict(type="list", elements="float", default=[99.0]),
        goodput=dict(type="dict"),
        return_records=dict(type="bool", default=False),
    )
    return spec


def snapshot_metrics(client, into):
    """Fill ``into`` with the engine's /metrics now (run_level's before_run hook)."""
    into.update(fetch_metrics(client))


def validate(p):
    """Option errors that the argument spec cannot express; returns a message or None."""
    if not p["concurrency"] and not p["request_rate"]:
        return "neither concurrency nor request_rate lists a level; set at least one of them"
    if any(c < 1 for c in p["concurrency"]):
        return "concurrency %s has a level below 1; every closed-loop level needs at least one request in flight" % p["concurrency"]
    if any(r <= 0 for r in p["request_rate"]):
        return "request_rate %s has a rate <= 0; give rates in requests per second above 0" % p["request_rate"]
    if p["num_prompts"] < 1:
        return "num_prompts is %d; set it to 1 or more" % p["num_prompts"]
    if p["burstiness"] <= 0:
        return "burstiness is %s; it must be above 0 (1 is Poisson)" % p["burstiness"]
    bad = sorted(set(p["goodput"] or {}) - {"ttft", "tpot", "e2el"})
    if bad:
        return "goodput has unknown keys %s; use ttft, tpot and e2el (values in ms)" % bad
    if any(not 0 < q <= 100 for q in p["percentiles"]):
        return "percentiles %s must lie in (0, 100]" % p["percentiles"]
    if p["prompt_format"] == "token_ids" and p["api"] == "chat":
        return "prompt_format=token_ids works only with api=completions; set prompt_format to text or auto"
    if p["prompt_format"] == "token_ids" and not p["vocab_size"]:
        return "prompt_format=token_ids needs vocab_size (the model's vocabulary size); set vocab_size or use prompt_format=text"
    if p["vocab_size"] is not None and p["vocab_size"] <= 16:
        return "vocab_size is %d; token ids are drawn from 16 up to vocab_size, so set the model's vocabulary size" % p["vocab_size"]
    return None


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    msg = validate(p)
    if msg:
        module.fail_json(msg=msg)
    token_ids = p["prompt_format"] == "token_ids" or (p["prompt_format"] == "auto" and p["api"] == "completions" and bool(p["vocab_size"]))
    levels = levels_from(p["concurrency"], p["request_rate"], p["max_concurrency"])
    plan = {
        "api": p["api"], "workload": p["workload"], "prompt_format": "token_ids" if token_ids else "text", "num_prompts": p["num_prompts"],
        "input_len": p["input_len"], "output_len": p["output_len"], "seed": p["seed"], "warmup_requests": p["warmup_requests"],
        "levels": [dict(lv, request_rate="inf" if lv["request_rate"] == float("inf") else lv["request_rate"]) for lv in levels],
    }
    goodput = dict((k, float(v)) for k, v in (p["goodput"] or {}).items())
    try:
        client = client_from_params(p)
        wait_ready(client, "/v1/models", p["timeout"])
        model = resolve_model(p["model"], served_models(client, "openai"), "openai", client.url_for("/v1/models"))
        if module.check_mode:
            module.exit_json(changed=False, model=model, plan=plan)
        calibration = None
        if not token_ids:
            counter = token_counter(client, model, p["api"], p["prompt_calibration"])
            if counter is None:
                plan["prompt_calibration"] = {"method": "none"}
            else:
                calibration = calibrate_prompt_tokens(counter)
                plan["prompt_calibration"] = {"method": calibration["method"], "overhead": calibration["overhead"],
                                              "words": len(calibration["costs"]), "calls": calibration["calls"]}
        requests = build_workload(p["workload"], p["num_prompts"], p["input_len"], p["output_len"], p["seed"], p["range_ratio"], p["prefix_len"],
                                  p["suffix_len"], p["num_prefixes"], token_ids, p["vocab_size"] or 32000, calibration)
        if calibration is not None and p["workload"] == "random":
            # /tokenize is cheap and generates nothing: count every prompt; usage costs a generation: the first only.
            plan["prompt_check"] = align_prompts(counter, requests, calibration, p["seed"], None if counter.method == "tokenize" else 1)
        results = []
        report = []
        for lv in levels:
            stream_client = AsyncStreamClient(p["url"], p["api_key"], p["headers"], p["timeout"], p["validate_certs"], p["ca_path"],
                                              p["client_cert"], p["client_key"])
            before = {}  # /metrics after the warm-ups: the prefix-cache figures are the level's own
            records, duration = run_level(stream_client, p["api"], model, requests, p["warmup_requests"], lv["max_concurrency"], lv["request_rate"],
                                          p["burstiness"], p["seed"], p["ignore_eos"], before_run=functools.partial(snapshot_metrics, client, before))
            after = fetch_metrics(client)
            summary = summarize_level(lv, records, duration, p["percentiles"], goodput, prefix_cache_delta(before, after), len(requests))
            results.append(summary)
            meta = {"backend": "openai-chat" if p["api"] == "chat" else "openai", "model_id": model, "num_prompts": len(requests),
                    "request_rate": summary["request_rate"], "burstiness": p["burstiness"], "max_concurrency": lv["max_concurrency"],
                    "workload": p["workload"], "seed": p["seed"]}
            report.append(vllm_report(summary, meta, records if p["return_records"] else None))
    except LlmError as exc:
        module.fail_json(msg="llm_benchmark %s (model=%s): %s" % (p["url"], p["model"], exc), plan=plan)
    except Exception as exc:  # unexpected: keep the traceback for a bug report
        module.fail_json(msg="llm_benchmark %s: unexpected %s: %s" % (p["url"], type(exc).__name__, exc), exception=traceback.format_exc(), plan=plan)
    module.exit_json(changed=False, model=model, plan=plan, levels=results, report=report)


if __name__ == "__main__":
    main()
