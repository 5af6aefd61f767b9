# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""llm_endpoint against an Ollama REPLAY server (tests/integration/replay/replay_servers.py: OllamaReplay),
and the replay checked against the REAL Ollama server.

OllamaReplay replays the native API as documented in ollama/ollama docs/api.md (NDJSON streams,
final object with done:true and the eval figures in nanoseconds, /api/tags, /api/ps, /api/version).
The replay tests need nothing. The last tests start the real server from the lab's archive
(tools/artefacts.py: .cache/artefacts/ollama/ollama-linux-amd64.tgz, Intel's IPEX-LLM build of Ollama
0.5.4, CPU backend) with the demo GGUF, run llm_endpoint against it, and compare the replay's wire
format with the real one; they are skipped, with the reason, when the archive or the model is absent
(LLM_TEST_OLLAMA_ARCHIVE, LLM_TEST_ARTEFACTS_MODELS override the paths). The module runs through Ansible itself.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "replay"))

from replay_servers import OllamaReplay  # noqa: E402
from run_module import run_module  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARCHIVE = os.environ.get("LLM_TEST_OLLAMA_ARCHIVE", os.path.join(ROOT, ".cache", "artefacts", "ollama", "ollama-linux-amd64.tgz"))
MODELS = os.environ.get("LLM_TEST_ARTEFACTS_MODELS", os.path.join(ROOT, ".cache", "artefacts", "models"))


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


# -- the real server -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_ollama(tmp_path_factory):
    gguf = os.path.join(MODELS, "tiny-llama-f32.gguf")
    modelfile = os.path.join(MODELS, "tiny-llama.Modelfile")
    for path in (ARCHIVE, gguf, modelfile):
        if not os.path.exists(path):
            pytest.skip("%s is missing (tools/artefacts.py builds the lab's Ollama archive and the demo model)" % path)
    top = tmp_path_factory.mktemp("ollama")
    with tarfile.open(ARCHIVE) as tar:
        tar.extractall(str(top))
    for path in (gguf, modelfile):
        shutil.copy(path, str(top))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    env = dict(os.environ, HOME=str(top), OLLAMA_HOST="127.0.0.1:%d" % port, OLLAMA_MODELS=str(top / "models"))
    binary = str(top / "lib" / "ollama" / "ollama-lib")
    log = open(str(top / "serve.log"), "w")
    proc = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = "http://127.0.0.1:%d" % port
        for _i in range(100):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/api/version")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        subprocess.run([binary, "create", "tiny", "-f", "tiny-llama.Modelfile"], cwd=str(top), env=env, check=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


def test_real_ollama_proves_generation(real_ollama):
    res, _out = run_module("llm_endpoint", {"url": real_ollama, "model": "tiny", "max_tokens": 16, "min_tokens": 16})
    assert not res.get("failed"), res.get("msg")
    assert res["engine"] == "ollama" and res["engine_version"].startswith("0.5.4") and res["model"] == "tiny:latest"
    assert [(c["path"], c["stream"], c["output_tokens"]) for c in res["checks"]] == [
        ("/api/chat", True, 16), ("/api/chat", False, 16), ("/api/generate", True, 16), ("/api/generate", False, 16)]
    assert res["server"]["eval_count"] == 16 and res["server"]["loaded_models"][0]["size_vram"] == 0


def _raw(url, method, path, body=None):
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, resp.getheader("Content-Type"), resp.getheader("Transfer-Encoding"), data


def _shape(obj):
    """Key order of a JSON object, recursively (values ignored)."""
    if isinstance(obj, dict):
        return [(k, _shape(v)) for k, v in obj.items()]
    if isinstance(obj, list):
        return [_shape(obj[0])] if obj and isinstance(obj[0], dict) else "list"
    return type(obj).__name__


@pytest.mark.parametrize("path, body", [
    ("/api/generate", {"model": "tiny", "prompt": "hi", "options": {"num_predict": 4}}),
    ("/api/chat", {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 4}}),
    ("/api/generate", {"model": "tiny", "prompt": "hi", "stream": False, "options": {"num_predict": 4}}),
    ("/api/chat", {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stream": False, "options": {"num_predict": 4}}),
    ("/api/tags", None),
    ("/api/ps", None),
    ("/api/version", None),
])
def test_replay_speaks_like_the_real_server(real_ollama, path, body):
    method = "POST" if body is not None else "GET"
    real = _raw(real_ollama, method, path, body)
    with OllamaReplay() as srv:
        replay = _raw(srv.url, method, path, body)
    assert real[:3] == replay[:3]  # status, content type, chunked or not
    real_lines = [json.loads(line) for line in real[3].splitlines() if line.strip()]
    replay_lines = [json.loads(line) for line in replay[3].splitlines() if line.strip()]
    # Token lines with token lines, the final (or only) object with the final one. Go's omitempty drops
    # zero figures (a cached prompt has no prompt_eval_duration), so the real keys must be the replay's keys
    # in the same order, possibly with some of them left out.
    pairs = [(real_lines[-1], replay_lines[-1])]
    if len(real_lines) > 1:
        pairs.append((real_lines[0], replay_lines[0]))
    for real_obj, replay_obj in pairs:
        assert _ordered_subset(_shape(real_obj), _shape(replay_obj)), (real_obj, replay_obj)
    assert real[3].endswith(b"\n") == replay[3].endswith(b"\n")


def _ordered_subset(small, big):
    """Every (key, shape) of `small` appears in `big`, in the same order."""
    it = iter(big)
    for item in small:
        for other in it:
            if other[0] == item[0]:
                mine, theirs = item[1], other[1]
                if isinstance(mine, list) and len(mine) == 1 and isinstance(mine[0], list):  # list of objects
                    mine, theirs = mine[0], (theirs[0] if isinstance(theirs, list) and theirs else theirs)
                if isinstance(mine, list) and isinstance(theirs, list):
                    if not _ordered_subset(mine, theirs):
                        return False
                elif mine != theirs:
                    return False
                break
        else:
            return False
    return True
