# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""llm_endpoint main() through patch_module_args, against the in-process TGI and Ollama replay servers."""

from __future__ import annotations

import json

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.onprem.llm_serving.plugins.modules import llm_endpoint
from ansible_collections.onprem.llm_serving.tests.integration.replay.replay_servers import OllamaReplay, TgiReplay


def run(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as info:
            llm_endpoint.main()
    out = capsys.readouterr().out
    result = json.loads(out)
    result["rc"] = info.value.code
    return result, out


def test_tgi_replay_passes_and_changes_nothing(capsys):
    with TgiReplay() as srv:
        result, _out = run(capsys, {"url": srv.url, "max_tokens": 10, "min_tokens": 10})
    assert result["rc"] == 0 and result["changed"] is False
    assert result["engine"] == "tgi" and [c["output_tokens"] for c in result["checks"]] == [10, 10]


def test_check_mode_runs_the_read_only_checks(capsys):
    with OllamaReplay() as srv:
        result, _out = run(capsys, {"url": srv.url, "model": "tiny", "_ansible_check_mode": True, "apis": ["generate"]})
    assert result["rc"] == 0 and result["changed"] is False and len(result["checks"]) == 2


def test_api_key_never_reaches_the_result(capsys):
    with TgiReplay(api_key="hunter2-key") as srv:
        result, out = run(capsys, {"url": srv.url, "engine": "tgi", "api_key": "hunter2-key"})
    assert result["rc"] == 0
    assert "hunter2-key" not in out
    assert result["invocation"]["module_args"]["api_key"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def test_failure_says_what_was_called_and_how_to_fix(capsys):
    with OllamaReplay() as srv:
        result, _out = run(capsys, {"url": srv.url, "model": "llama3", "engine": "ollama"})
    assert result["rc"] == 1 and result["failed"] is True
    assert result["msg"].startswith("llm_endpoint %s (engine=ollama, model=llama3): GET %s/api/tags" % (srv.url, srv.url))
    assert "model 'llama3' is not served; served: [\"tiny:latest\"]" in result["msg"]


@pytest.mark.parametrize("args, words", [
    ({"url": "http://127.0.0.1:9", "min_tokens": 40, "max_tokens": 32}, "min_tokens (40) is larger than max_tokens (32)"),
    ({"url": "ftp://x"}, "is not an http:// or https:// URL"),
    ({"url": "http://127.0.0.1:9", "engine": "tgi", "apis": ["chat"]}, "apis entry 'chat' is not an API of engine tgi"),
    ({"url": "http://127.0.0.1:9", "refused_without_key": True},
     "refused_without_key is true but api_key is not set: the check sends one request without the key"),
])
def test_option_errors(capsys, args, words):
    result, _out = run(capsys, args)
    assert result["rc"] == 1 and words in result["msg"]


def test_refused_without_key_fails_on_an_engine_that_serves_without_its_key(capsys):
    """The Ollama replay has no key: a request without one is served, so the check fails before any generation."""
    with OllamaReplay() as srv:
        result, out = run(capsys, {"url": srv.url, "engine": "ollama", "api_key": "door-key-123", "refused_without_key": True})
    assert result["rc"] == 1 and "checks" not in result
    assert result["msg"] == ("llm_endpoint %s (engine=ollama, model=None): GET %s/api/tags returned HTTP 200: answered without an API key, "
                             "where HTTP 401 was expected: anyone who reaches this address is served (refused_without_key). Serve it "
                             "through the gateway's door, or start the engine with its API key." % (srv.url, srv.url)
                             + result["msg"][result["msg"].index(" Body starts:"):])
    assert "door-key-123" not in out


def test_refused_without_key_passes_where_a_request_without_the_key_gets_401(capsys):
    with TgiReplay(api_key="hunter2-key") as srv:
        result, out = run(capsys, {"url": srv.url, "engine": "tgi", "api_key": "hunter2-key", "refused_without_key": True})
    assert result["rc"] == 0, result.get("msg")
    assert [c["output_tokens"] for c in result["checks"]] == [32, 32]
    assert "hunter2-key" not in out
