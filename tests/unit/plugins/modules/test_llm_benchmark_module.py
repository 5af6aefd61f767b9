# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""llm_benchmark main() through patch_module_args; the load generator is faked at run_level, /v1/models comes from the TGI replay."""

from __future__ import annotations

import json

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.onprem.llm_serving.plugins.modules import llm_benchmark
from ansible_collections.onprem.llm_serving.tests.integration.replay.replay_servers import TgiReplay


def run(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as info:
            llm_benchmark.main()
    out = capsys.readouterr().out
    result = json.loads(out)
    result["rc"] = info.value.code
    return result, out


def fake_run_level(calls):
    def run_level(client, api, model, requests, warmups=0, max_concurrency=None, request_rate=float("inf"), burstiness=1.0, seed=0,
                  ignore_eos=False, extra_body=None, clock=None, ready_check=False, before_run=None):
        calls.append({"api": api, "model": model, "n": len(requests), "conc": max_concurrency, "rate": request_rate, "ignore_eos": ignore_eos,
                      "warmups": warmups, "ready_check": ready_check, "prompts": [r["prompt"] for r in requests]})
        if before_run is not None:
            before_run()
        records = []
        for i, req in enumerate(requests):
            records.append({"success": i != 0, "ttft": 0.01, "itl": [0.002] * (req["output_len"] - 1), "latency": 0.01 + 0.002 * (req["output_len"] - 1),
                            "output_tokens": req["output_len"], "prompt_len": req["prompt_len"], "start_time": 0.1 * i,
                            "error": "" if i else "HTTP 500: boom", "generated_chars": 0})
        return records, 1.0
    return run_level


def test_sweep_returns_vllm_keys_per_level(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(llm_benchmark, "run_level", fake_run_level(calls))
    with TgiReplay(model="tiny") as srv:
        result, _out = run(capsys, {"url": srv.url, "num_prompts": 5, "input_len": 8, "output_len": 4, "concurrency": [1, 8], "request_rate": [2.0],
                                    "vocab_size": 100,
                                    "warmup_requests": 2, "ignore_eos": True, "return_records": True})
    assert result["rc"] == 0 and result["changed"] is False and result["model"] == "tiny"
    # one run per level: the 2 warm-ups go first in it, on the same connections (no test request: vllm bench serve's is off by default)
    assert [(c["n"], c["conc"], c["rate"], c["warmups"], c["ready_check"]) for c in calls] == [
        (5, 1, float("inf"), 2, False), (5, 8, float("inf"), 2, False), (5, None, 2.0, 2, False)]
    assert result["plan"]["prompt_format"] == "token_ids" and "prompt_calibration" not in result["plan"]
    level = result["levels"][1]
    assert (level["mode"], level["max_concurrency"], level["request_rate"], level["completed"], level["failed"]) == ("closed_loop", 8, "inf", 4, 1)
    assert level["mean_ttft_ms"] == pytest.approx(10.0) and level["p99_itl_ms"] == pytest.approx(2.0) and level["output_throughput"] == 16.0
    assert level["errors"] == ["HTTP 500: boom"]
    assert result["report"][2]["request_rate"] == 2.0 and result["report"][0]["output_lens"] == [0, 4, 4, 4, 4]


def test_text_prompts_fall_back_to_one_word_per_token_without_a_token_counter(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(llm_benchmark, "run_level", fake_run_level(calls))
    with TgiReplay(model="tiny") as srv:  # the replay serves /v1/models but neither /tokenize nor /v1/completions
        result, _out = run(capsys, {"url": srv.url, "num_prompts": 2, "input_len": 8, "output_len": 4, "concurrency": [1], "warmup_requests": 0})
    assert result["rc"] == 0
    assert (result["plan"]["prompt_format"], result["plan"]["prompt_calibration"]) == ("text", {"method": "none"})
    assert [len(p.split()) for p in calls[0]["prompts"]] == [8, 8] and "prompt_check" not in result["plan"]


class FakeCounter(object):
    """A token counter with a toy tokenizer: 1 token per 3 letters of a word, plus `overhead` tokens of the server's own."""

    def __init__(self, method, overhead):
        self.method, self.overhead, self.calls = method, overhead, 0

    def count(self, text):
        self.calls += 1
        return self.overhead + sum(-(-len(w) // 3) for w in text.split())


@pytest.mark.parametrize("method, overhead, checked", [("tokenize", 1, 6), ("usage", 5, 1)])
def test_text_prompts_are_input_len_tokens_by_the_servers_counter(monkeypatch, capsys, method, overhead, checked):
    calls = []
    asked = []
    monkeypatch.setattr(llm_benchmark, "run_level", fake_run_level(calls))

    def token_counter(client, model, api, wanted):
        asked.append((model, api, wanted))
        return FakeCounter(method, overhead)
    monkeypatch.setattr(llm_benchmark, "token_counter", token_counter)
    with TgiReplay(model="tiny") as srv:
        result, _out = run(capsys, {"url": srv.url, "num_prompts": 6, "input_len": 32, "output_len": 4, "concurrency": [1], "api": "chat",
                                    "prompt_calibration": "auto"})
    assert result["rc"] == 0 and asked == [("tiny", "chat", "auto")]
    cal = result["plan"]["prompt_calibration"]
    assert (cal["method"], cal["overhead"], cal["words"]) == (method, overhead, 126) and cal["calls"] > 0
    # every prompt is 32 tokens as the server counts them; with usage (a generation per count) only the first is checked again
    counter = FakeCounter(method, overhead)
    assert [counter.count(p) for p in calls[0]["prompts"]] == [32] * 6
    assert result["plan"]["prompt_check"] == {"checked": checked, "exact": checked, "max_error": 0, "calls": checked}
    assert result["levels"][0]["total_input_tokens"] == 5 * 32  # the fake's first record fails


def test_check_mode_plans_and_sends_no_load(monkeypatch, capsys):
    def boom(*a, **k):
        raise AssertionError("load sent in check mode")
    monkeypatch.setattr(llm_benchmark, "run_level", boom)
    with TgiReplay(model="tiny") as srv:
        result, _out = run(capsys, {"url": srv.url, "_ansible_check_mode": True, "api": "chat"})
    assert result["rc"] == 0 and "levels" not in result
    assert result["plan"]["prompt_format"] == "text" and [lv["max_concurrency"] for lv in result["plan"]["levels"]] == [1, 8, 32]


@pytest.mark.parametrize("args, words", [
    ({"concurrency": [], "request_rate": []}, "neither concurrency nor request_rate"),
    ({"concurrency": [0]}, "has a level below 1"),
    ({"request_rate": [0.0]}, "rate <= 0"),
    ({"goodput": {"latency": 5}}, "goodput has unknown keys ['latency']"),
    ({"percentiles": [120.0]}, "must lie in (0, 100]"),
    ({"api": "chat", "prompt_format": "token_ids"}, "token_ids works only with api=completions"),
    ({"prompt_format": "token_ids"}, "prompt_format=token_ids needs vocab_size"),
    ({"vocab_size": 8}, "vocab_size is 8"),
])
def test_option_errors(capsys, args, words):
    args = dict(args, url="http://127.0.0.1:9")
    result, _out = run(capsys, args)
    assert result["rc"] == 1 and words in result["msg"]


def test_unserved_model_fails_before_any_load(monkeypatch, capsys):
    monkeypatch.setattr(llm_benchmark, "run_level", fake_run_level([]))
    with TgiReplay(model="tiny") as srv:
        result, _out = run(capsys, {"url": srv.url, "model": "big"})
    assert result["rc"] == 1 and "model 'big' is not served; served: [\"tiny\"]" in result["msg"]
    assert result["plan"]["levels"][0]["max_concurrency"] == 1
