# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""llm_endpoint against a TGI REPLAY server (tests/integration/replay/replay_servers.py: TgiReplay).

TGI itself cannot run on the test machine (Rust router; its image lives in an unreachable
registry). TgiReplay replays the wire format fixed by huggingface/text-generation-inference
router/src/server.rs and router/src/lib.rs, framed by axum's response/sse.rs (`data:` + compact
JSON, no space) - see the replay module's docstring. The module runs through Ansible itself.
"""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "replay"))

from replay_servers import TgiReplay  # noqa: E402
from run_module import run_module  # noqa: E402


def test_auto_detects_tgi_and_proves_generation_streamed_and_not():
    with TgiReplay(model="bigscience/bloom-560m") as srv:
        res, _out = run_module("llm_endpoint", {"url": srv.url, "max_tokens": 12, "min_tokens": 12})
    assert not res.get("failed"), res.get("msg")
    assert res["changed"] is False
    assert (res["engine"], res["protocol"], res["engine_version"]) == ("tgi", "tgi", "3.3.6")
    assert res["model"] == "bigscience/bloom-560m"
    assert [(c["path"], c["stream"]) for c in res["checks"]] == [("/generate_stream", True), ("/generate", False)]
    assert all(c["output_tokens"] == 12 and c["token_source"] == "engine" and c["finish_reason"] == "length" for c in res["checks"])
    streamed = res["checks"][0]
    assert streamed["chunks"] == 12 and streamed["ended_properly"] is True
    assert res["ttft_ms"] > 0 and res["itl_ms_mean"] >= 0 and res["e2e_ms"] >= res["ttft_ms"]
    posted = [r for r in srv.requests if r[0] == "POST"]
    assert posted[0][2] == {"inputs": posted[0][2]["inputs"], "parameters": {"max_new_tokens": 12, "details": True}}


def test_waits_through_503_while_the_model_loads():
    with TgiReplay(unhealthy_first=2) as srv:
        res, _out = run_module("llm_endpoint", {"url": srv.url, "engine": "tgi", "ready_timeout": 30})
    assert not res.get("failed"), res.get("msg")
    assert res["ready_attempts"] == 3
    assert res["waited_for"] == ["HTTP 503"]
    assert res["time_to_ready_s"] >= 1.0  # backoff 0.5 s then 1 s


def test_gives_up_at_the_deadline_with_the_reason():
    with TgiReplay(unhealthy_first=1000) as srv:
        res, _out = run_module("llm_endpoint", {"url": srv.url, "engine": "tgi", "ready_timeout": 2})
    assert res["failed"]
    assert "GET %s/health returned HTTP 503" % srv.url in res["msg"]
    assert "not ready after" in res["msg"] and "ready_timeout" in res["msg"]
    assert '"error_type":"healthcheck"' in res["msg"]


def test_stream_cut_mid_way_is_reported_as_such():
    with TgiReplay(die_after=3) as srv:
        res, _out = run_module("llm_endpoint", {"url": srv.url, "engine": "tgi", "streaming": "streamed"})
    assert res["failed"]
    assert "POST %s/generate_stream" % srv.url in res["msg"]
    assert "connection closed in the middle" in res["msg"] or "without the final event" in res["msg"]


@pytest.mark.parametrize("model", ["not-the-served-one"])
def test_wrong_model_lists_the_served_one(model):
    with TgiReplay(model="bigscience/bloom-560m") as srv:
        res, _out = run_module("llm_endpoint", {"url": srv.url, "engine": "tgi", "model": model})
    assert res["failed"]
    assert "model '%s' is not served; served: [\"bigscience/bloom-560m\"]" % model in res["msg"]


def test_too_few_tokens_is_no_proof():
    with TgiReplay() as srv:
        res, _out = run_module("llm_endpoint", {"url": srv.url, "engine": "tgi", "max_tokens": 4, "min_tokens": 4})
        assert not res.get("failed"), res.get("msg")
        res, _out = run_module("llm_endpoint", {"url": srv.url, "engine": "tgi", "max_tokens": 4, "min_tokens": 5})
    assert res["failed"]
    assert "min_tokens (5) is larger than max_tokens (4)" in res["msg"]


def test_api_key_is_sent_and_never_shown():
    with TgiReplay(api_key="s3cr3t-key") as srv:
        bad, out_bad = run_module("llm_endpoint", {"url": srv.url, "engine": "tgi", "api_key": "wrong-key"})
        good, out_good = run_module("llm_endpoint", {"url": srv.url, "engine": "tgi", "api_key": "s3cr3t-key"})
    assert bad["failed"] and "HTTP 401" in bad["msg"] and "API key was refused" in bad["msg"]
    assert not good.get("failed"), good.get("msg")
    assert "s3cr3t-key" not in out_good and "wrong-key" not in out_bad
