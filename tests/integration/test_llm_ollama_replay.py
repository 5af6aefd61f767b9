# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""llm_endpoint against an Ollama REPLAY server (tests/integration/replay/replay_servers.py: OllamaReplay).

OllamaReplay replays the native API as documented in ollama/ollama docs/api.md (NDJSON streams,
final object with done:true and the eval figures in nanoseconds, /api/tags, /api/ps, /api/version).
The real Ollama server can run here only after building a stand-in for its SYCL library (see the
lab notes); these tests need nothing. The module runs through Ansible itself.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "replay"))

from replay_servers import OllamaReplay  # noqa: E402
from run_module import run_module  # noqa: E402


def test_auto_detects_ollama_and_runs_chat_and_generate_both_ways():
    with OllamaReplay() as srv:
        res, _out = run_module("llm_endpoint", {"url": srv.url, "model": "tiny", "max_tokens": 16, "min_tokens": 16})
    assert not res.get("failed"), res.get("msg")
    assert (res["engine"], res["protocol"], res["engine_version"], res["model"]) == ("ollama", "ollama", "0.5.4", "tiny:latest")
    assert [(c["path"], c["stream"]) for c in res["checks"]] == [
        ("/api/chat", True), ("/api/chat", False), ("/api/generate", True), ("/api/generate", False)]
    assert all(c["output_tokens"] == 16 and c["token_source"] == "engine" and c["finish_reason"] == "length" for c in res["checks"])
    assert res["checks"][0]["chunks"] == 16
    server = res["server"]
    assert server["eval_count"] == 16 and server["eval_duration"] == 80000000
    assert server["eval_tokens_per_s"] == 200.0  # 16 / 0.08 s
    assert server["loaded_models"] == [{"name": "tiny:latest", "size": 4400000, "size_vram": 0}]
    posted = [r[2] for r in srv.requests if r[0] == "POST"]
    assert posted[0]["options"]["num_predict"] == 16 and posted[0]["stream"] is True and posted[1]["stream"] is False


def test_waits_until_the_server_listens():
    with OllamaReplay(unhealthy_first=2) as srv:
        res, _out = run_module("llm_endpoint", {"url": srv.url, "engine": "ollama", "ready_timeout": 30})
    assert not res.get("failed"), res.get("msg")
    assert res["ready_attempts"] == 3
    assert len(res["waited_for"]) == 1 and "closed before a response" in res["waited_for"][0]


def test_unknown_model_names_the_served_ones():
    with OllamaReplay() as srv:
        res, _out = run_module("llm_endpoint", {"url": srv.url, "model": "llama3"})
    assert res["failed"]
    assert "model 'llama3' is not served; served: [\"tiny:latest\"]" in res["msg"]


def test_stream_cut_mid_way_is_reported_as_such():
    with OllamaReplay(die_after=5) as srv:
        res, _out = run_module("llm_endpoint", {"url": srv.url, "model": "tiny", "apis": ["generate"], "streaming": "streamed"})
    assert res["failed"]
    assert "POST %s/api/generate" % srv.url in res["msg"]
    assert "connection closed in the middle" in res["msg"] or "without done:true" in res["msg"]


def test_check_mode_runs_the_same_read_only_checks():
    with OllamaReplay() as srv:
        res, _out = run_module("llm_endpoint", {"url": srv.url, "model": "tiny", "streaming": "non_streamed"}, check=True)
    assert not res.get("failed"), res.get("msg")
    assert res["changed"] is False and len(res["checks"]) == 2
